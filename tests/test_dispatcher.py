"""The dispatcher, one pass at a time: queued jobs start as their team's slots free up, and
what a dead replica left half done is settled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.access.credentials import KeyCredential
from gateway.jobs.gate import INLINE_BODY_BYTES, Admission, Charge, Lookup, Outcome
from gateway.jobs.job import Job, JobState
from gateway.upstream.apis import Api
from tests.conftest import NANO, Simulator
from tests.job_services import JobServices, job_services, until

# A replica that admitted a job and died is noticed once the submit deadline has passed.
SHORT_DEADLINE = {"upstream_submit_timeout": 0.3, "upstream_connect_timeout": 0.1}


@pytest.fixture
async def world(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> AsyncIterator[JobServices]:
    async with job_services(redis_url, namespace, simulator.url, tmp_path) as built:
        yield built


@pytest.fixture
async def dying_world(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> AsyncIterator[JobServices]:
    async with job_services(
        redis_url, namespace, simulator.url, tmp_path, **SHORT_DEADLINE
    ) as built:
        yield built


async def admitted_only(world: JobServices, cred: KeyCredential, raw: bytes) -> Admission:
    """What a replica that died right after admission leaves: a recorded job, never sent."""
    lookup = Lookup(identity=raw.hex()[:64])
    admission = await world.services.gate.admit(
        cred, Api.MODEL, NANO, "", lookup, Charge(0, 0, raw)
    )
    await world.services.queues.mark_waiting(admission.principal.slot)
    return admission


async def job_of(world: JobServices, admission: Admission) -> Job:
    job = await world.services.records.job(admission.principal.slot, admission.record.job_id)
    assert job is not None
    return job


async def test_a_queued_job_starts_when_a_running_one_ends(
    world: JobServices, simulator: Simulator
) -> None:
    cred = await world.team("design", max_concurrent=1)
    running = await world.submit(cred, "first")
    queued = await world.submit(cred, "second")
    dispatcher = world.services.dispatcher
    assert await dispatcher.pass_once() == 0  # the team's one slot is taken
    await world.poll_until(running, lambda j: j.terminal)
    assert await dispatcher.pass_once() == 1
    job = await until(lambda: world.job(queued), lambda j: j.state is not JobState.SUBMITTING)
    assert job.state is JobState.ACTIVE and job.upstream_id
    assert await simulator.count("model.submit") == 2


async def test_a_queued_job_waits_in_order_behind_the_one_before_it(
    world: JobServices,
) -> None:
    cred = await world.team("design", max_concurrent=1)
    running = await world.submit(cred, "first")
    second, third = await world.submit(cred, "second"), await world.submit(cred, "third")
    assert [second.outcome, third.outcome] == [Outcome.QUEUED, Outcome.QUEUED]
    await world.poll_until(running, lambda j: j.terminal)
    assert await world.services.dispatcher.pass_once() == 1
    await until(lambda: world.job(second), lambda j: j.state is JobState.ACTIVE)
    assert (await world.job(third)).state is JobState.QUEUED


async def test_a_job_whose_sender_died_mid_submit_is_listed_as_unknown_and_never_resent(
    dying_world: JobServices, simulator: Simulator
) -> None:
    cred = await dying_world.team("design")
    lost = await admitted_only(dying_world, cred, b'{"prompt": "lost"}')
    assert lost.outcome is Outcome.MISS
    await asyncio.sleep(0.5)  # past the submit deadline: its running slot expires
    assert await dying_world.services.dispatcher.pass_once() == 0
    job = await job_of(dying_world, lost)
    assert job.state is JobState.UNKNOWN and job.reason == "submit abandoned"
    [listed] = await dying_world.services.records.unknown_submits(cred.slot, "design")
    assert listed.request_id == lost.record.request_id
    assert await simulator.count("model.submit") == 0


async def test_a_queued_job_whose_body_never_arrived_is_refused_and_not_sent(
    dying_world: JobServices, simulator: Simulator
) -> None:
    cred = await dying_world.team("design", max_concurrent=1)
    await admitted_only(dying_world, cred, b'{"prompt": "holds the slot"}')
    large = b'{"prompt": "' + b"x" * (INLINE_BODY_BYTES + 1) + b'"}'
    orphan = await admitted_only(dying_world, cred, large)  # its body was to follow, alone
    assert orphan.outcome is Outcome.QUEUED
    await asyncio.sleep(0.5)
    await dying_world.services.dispatcher.pass_once()
    job = await job_of(dying_world, orphan)
    assert job.state is JobState.REJECTED and job.reason == "body never stored"
    assert job.error_status == 503
    assert await simulator.count("model.submit") == 0
