"""The poller, driven one poll at a time: what RunComfy says becomes what every client reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.jobs.gate import Outcome
from gateway.jobs.job import JobState
from gateway.upstream.apis import Api
from tests.conftest import Simulator
from tests.job_services import BASE, JobServices, job_services


@pytest.fixture
async def world(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> AsyncIterator[JobServices]:
    async with job_services(redis_url, namespace, simulator.url, tmp_path) as built:
        yield built


async def test_a_finished_job_is_settled_with_runcomfys_result_for_every_follower(
    world: JobServices, simulator: Simulator
) -> None:
    cred = await world.team("design")
    owner = await world.submit(cred, "a red fox")
    follower = await world.submit(cred, "a red fox")
    job = await world.poll_until(owner, lambda j: j.terminal)
    assert job.state is JobState.SUCCEEDED
    assert not job.effects_pending  # its slot was freed and its webhooks queued
    proxy = world.services.proxy
    for answer in (owner, follower):
        rid = answer.record.request_id
        _, result = await proxy.result(cred, rid, Api.MODEL, BASE, include_cost=False)
        assert result["request_id"] == rid
        assert result["status"] in ("completed", "succeeded")
    assert await simulator.count("model.result") == 1  # one poller asked, for both


async def test_a_running_job_answers_runcomfys_status_and_is_asked_again(
    world: JobServices, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=0.0, run_seconds=30.0)
    cred = await world.team("design")
    answer = await world.submit(cred, "a red fox")
    job = await world.poll_until(answer, lambda j: j.upstream_status == "in_progress")
    assert job.state is JobState.ACTIVE
    assert job.started_ts is not None  # a serverless run would be billed from here
    rid = answer.record.request_id
    _, status = await world.services.proxy.status(cred, rid, Api.MODEL, BASE)
    assert status["status"] == "in_progress" and status["request_id"] == rid
    count, _ = await world.services.schedule.due_summary()
    assert count == 1  # scheduled for its next poll


async def test_a_job_runcomfy_lost_ends_unknown_and_lets_a_queued_job_go(
    world: JobServices, simulator: Simulator
) -> None:
    cred = await world.team("design", max_concurrent=1)
    running = await world.submit(cred, "first")
    queued = await world.submit(cred, "second")
    assert queued.outcome is Outcome.QUEUED
    await simulator.fault(route="model.status", action="status", status=404, times=None)
    job = await world.poll_until(running, lambda j: j.terminal)
    assert job.state is JobState.UNKNOWN and job.reason == "upstream lost the job"
    assert await world.services.dispatcher.pass_once() == 1
    started = await _await_state(world, queued.principal.slot, queued.record.job_id)
    assert started is JobState.ACTIVE


async def test_transient_upstream_errors_are_retried_without_ending_the_job(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> None:
    async with job_services(
        redis_url, namespace, simulator.url, tmp_path, upstream_retries=0
    ) as world:
        cred = await world.team("design")
        answer = await world.submit(cred, "a red fox")
        await simulator.fault(route="model.status", action="status", status=503, times=2)
        poller = world.services.poller
        for errors in (1, 2):
            await poller.poll_once(answer.principal.slot, answer.record.job_id)
            job = await world.job(answer)
            assert job.state is JobState.ACTIVE and job.poll_errors == errors
        job = await world.poll_until(answer, lambda j: j.terminal)
        assert job.state is JobState.SUCCEEDED


async def _await_state(world: JobServices, shard: str, jid: str) -> JobState:
    for _ in range(200):
        job = await world.services.records.job(shard, jid)
        assert job is not None
        if job.state not in (JobState.QUEUED, JobState.SUBMITTING):
            return job.state
        await asyncio.sleep(0.05)
    raise AssertionError("the queued job never left the queue")
