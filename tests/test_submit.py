"""The submit service, driven directly: what a submit is answered, and what RunComfy sees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.common.errors import SubmitOutcomeUnknown, UpstreamClientError
from gateway.jobs.gate import Outcome
from gateway.jobs.job import JobField, JobState
from gateway.jobs.records import Role
from tests.conftest import Simulator
from tests.job_services import JobServices, job_services


@pytest.fixture
async def world(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> AsyncIterator[JobServices]:
    async with job_services(redis_url, namespace, simulator.url, tmp_path) as built:
        yield built


async def test_a_first_submit_is_sent_once_and_answered_with_the_gateways_own_id(
    world: JobServices, simulator: Simulator
) -> None:
    cred = await world.team("design")
    answer = await world.submit(cred, "a red fox")
    assert answer.outcome is Outcome.MISS
    assert answer.record.role is Role.OWNER
    rid = answer.record.request_id
    assert answer.body["request_id"] == rid
    assert answer.body["status_url"].endswith(f"/v1/requests/{rid}/status")
    job = await world.job(answer)
    assert job.state is JobState.ACTIVE
    assert job.upstream_id and job.upstream_id != rid  # RunComfy's id stays inside
    assert job.owner == rid and job.team == "design"
    assert await simulator.count("model.submit") == 1


async def test_an_identical_submit_follows_the_job_in_flight_instead_of_calling_runcomfy(
    world: JobServices, simulator: Simulator
) -> None:
    cred = await world.team("design")
    first = await world.submit(cred, "a red fox")
    second = await world.submit(cred, "a red fox")
    assert second.outcome is Outcome.COALESCED
    assert second.record.job_id == first.record.job_id
    assert second.record.request_id != first.record.request_id
    assert await simulator.count("model.submit") == 1


async def test_a_submit_over_the_teams_concurrency_limit_waits_in_the_queue(
    world: JobServices, simulator: Simulator
) -> None:
    cred = await world.team("design", max_concurrent=1)
    await world.submit(cred, "first")
    queued = await world.submit(cred, "second")
    assert queued.outcome is Outcome.QUEUED
    assert queued.headers["X-Gateway-Queue-Position"] == "1"
    assert (await world.job(queued)).state is JobState.QUEUED
    assert await simulator.count("model.submit") == 1


async def test_a_submit_runcomfy_refuses_gets_its_error_and_a_resubmit_is_sent_afresh(
    world: JobServices, simulator: Simulator
) -> None:
    cred = await world.team("design")
    await simulator.fault(route="model.submit", action="status", status=422, times=1)
    with pytest.raises(UpstreamClientError) as refused:
        await world.submit(cred, "a red fox")
    assert refused.value.status == 422
    again = await world.submit(cred, "a red fox")  # the refused job is not followed
    assert again.outcome is Outcome.MISS
    assert (await world.job(again)).state is JobState.ACTIVE
    assert await simulator.count("model.submit") == 2


async def test_a_submit_with_no_answer_from_runcomfy_is_outcome_unknown_and_never_resent(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> None:
    async with job_services(
        redis_url, namespace, simulator.url, tmp_path, upstream_submit_timeout=0.2
    ) as world:
        cred = await world.team("design")
        await simulator.fault(route="model.submit", action="delay", delay=0.6, after=True)
        with pytest.raises(SubmitOutcomeUnknown):
            await world.submit(cred, "a red fox")
        assert await simulator.count("model.submit") == 1
        [lost] = await world.services.records.unknown_submits(cred.slot, "design")
        assert lost.team_id == "design"


async def test_the_account_wide_cap_queues_a_submit_its_team_would_allow(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> None:
    async with job_services(
        redis_url, namespace, simulator.url, tmp_path, global_max_concurrent_jobs=1
    ) as world:
        design, video = await world.team("design"), await world.team("video")
        assert (await world.submit(design, "first")).outcome is Outcome.MISS
        waiting = await world.submit(video, "second")
        assert waiting.outcome is Outcome.QUEUED
        assert (await world.job(waiting)).state is JobState.QUEUED
        assert await simulator.count("model.submit") == 1


async def test_a_status_poll_reads_the_jobs_status_and_not_its_result_from_redis(
    world: JobServices,
) -> None:
    cred = await world.team("design")
    answer = await world.submit(cred, "a fox to poll")
    await world.poll_until(answer, lambda job: job.terminal)
    rid, gate = answer.record.request_id, world.services.gate
    _, _, whole = await gate.load(cred, rid)
    assert whole is not None and whole.status_body and whole.result_body
    _, _, for_status = await gate.load(cred, rid, JobField.RESULT_BODY)
    assert for_status is not None and for_status.result_body is None
    assert for_status.status_body == whole.status_body and for_status.state is whole.state
    _, _, for_result = await gate.load(cred, rid, JobField.STATUS_BODY)
    assert for_result is not None and for_result.status_body is None
    assert for_result.result_body == whole.result_body
