"""The poller, driven one poll at a time: what RunComfy says becomes what every client reads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.jobs.gate import Outcome
from gateway.jobs.job import JobState
from gateway.jobs.poller import Poller, PollerConfig, start_offsets
from gateway.jobs.submit import SubmitAnswer
from gateway.money.amounts import usd_to_micro
from gateway.upstream.apis import Api
from gateway.web.appkeys import METRICS
from tests.conftest import NANO, Gateway, Simulator
from tests.job_services import BASE, JobServices, job_services, until


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


# --- the poller loop: few polls at a time, spread over the tick ----------------------------------


def test_the_polls_of_a_claim_start_evenly_over_the_tick() -> None:
    assert start_offsets(4, 0.2) == pytest.approx([0.0, 0.05, 0.1, 0.15])
    assert start_offsets(1, 0.2) == [0.0]
    assert start_offsets(0, 0.2) == []
    assert start_offsets(3, -0.1) == [0.0, 0.0, 0.0]  # the claim took the whole tick: no wait


def test_the_poller_claims_often_enough_that_a_due_job_waits_at_most_two_ticks() -> None:
    config = PollerConfig(interval=2.0, max_interval=30.0, lease=30.0, batch=64, concurrency=64)
    assert config.tick == 0.05  # 20 claims a second, each at most 64 jobs: 1,280 polls a second
    assert PollerConfig(0.05, 30.0, 2.0, 4, 4).tick == 0.0125  # a quarter of a short interval


@dataclass
class Watch:
    """What pollers did, in the order the event loop did it: the size of each claim, for each
    poll started the loop's turn and how many polls were then in flight, and how often a job
    was polled while a poll of it was in flight."""

    claims: list[int] = field(default_factory=list)
    starts: list[tuple[int, int]] = field(default_factory=list)  # (loop turn, polls in flight)
    turn: int = 0
    in_flight: int = 0
    polling: set[str] = field(default_factory=set)  # jobs with a poll in flight
    overlaps: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)  # a poll has started

    @contextlib.contextmanager
    def on(self, world: JobServices) -> Iterator[None]:
        """Count the claims and polls of ``world``'s poller while the block runs."""
        schedule, poller = world.services.schedule, world.services.poller
        claim_due, poll_once = schedule.claim_due, poller.poll_once

        async def claimed(lease: float, batch: int) -> list[tuple[str, str]]:
            jobs = await claim_due(lease, batch)
            if jobs:
                self.claims.append(len(jobs))
            return jobs

        async def polled(shard: str, jid: str) -> None:
            self.overlaps += jid in self.polling
            self.polling.add(jid)
            self.in_flight += 1
            self.starts.append((self.turn, self.in_flight))
            self.started.set()
            try:
                await poll_once(shard, jid)
            finally:
                self.in_flight -= 1
                self.polling.discard(jid)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(schedule, "claim_due", claimed)
            patch.setattr(poller, "poll_once", polled)
            yield

    async def count_turns(self) -> None:
        while True:
            self.turn += 1
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def _running(*pollers: Poller) -> AsyncIterator[None]:
    """Run ``pollers`` (as replicas do) while the block runs; then stop them as replicas stop."""
    stopping = asyncio.Event()
    runs = [asyncio.create_task(poller.run(stopping)) for poller in pollers]
    try:
        yield
    finally:
        stopping.set()
        await asyncio.gather(*runs)
        for poller in pollers:
            await poller.stop()


async def _ended(world: JobServices, answers: list[SubmitAnswer]) -> None:
    for answer in answers:
        await until(functools.partial(world.job, answer), lambda job: job.terminal, within=20.0)


async def test_a_burst_of_jobs_is_polled_a_few_at_a_time_never_started_together(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> None:
    async with job_services(
        redis_url, namespace, simulator.url, tmp_path, poll_concurrency=4
    ) as world:
        cred = await world.team("design", max_concurrent=100)
        answers = [await world.submit(cred, f"fox {i}") for i in range(24)]
        watch = Watch()
        ticker = asyncio.create_task(watch.count_turns())
        with watch.on(world):
            async with _running(world.services.poller):
                await _ended(world, answers)
        ticker.cancel()
        assert {(await world.job(a)).state for a in answers} == {JobState.SUCCEEDED}
        assert max(watch.claims) <= 4  # GATEWAY_POLL_CONCURRENCY jobs a claim at most
        assert max(in_flight for _, in_flight in watch.starts) <= 4
        turns = [turn for turn, _ in watch.starts]
        assert len(set(turns)) == len(turns)  # requests get a turn between any two starts
        assert await simulator.count("model.result") == 24  # each job ended by one poll


async def test_two_replicas_polling_the_same_jobs_settle_each_once(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> None:
    async with (
        job_services(redis_url, namespace, simulator.url, tmp_path) as one,
        job_services(redis_url, namespace, simulator.url, tmp_path) as other,
    ):
        cred = await one.team("design", max_concurrent=100)
        watch = Watch()  # of both replicas
        with watch.on(one), watch.on(other):
            async with _running(one.services.poller, other.services.poller):
                answers = [await one.submit(cred, f"fox {i}") for i in range(40)]
                await _ended(one, answers)
        assert {(await one.job(a)).state for a in answers} == {JobState.SUCCEEDED}
        assert len(watch.starts) > 40 and watch.overlaps == 0  # never polled by both at once
        ledger = await simulator.ledger()
        budget = await one.services.quotas.budget(answers[0].principal.slot)
        assert len(ledger["jobs"]) == 40
        assert usd_to_micro(budget["settled_usd"]) == ledger["charged_micro"] > 0
        assert budget["reserved_usd"] == 0


async def test_a_stopping_poller_hands_back_the_jobs_it_claimed_and_had_not_started(
    world: JobServices, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=0.0, run_seconds=30.0)
    cred = await world.team("design", max_concurrent=100)
    for i in range(6):
        await world.submit(cred, f"fox {i}")
    watch, stopping = Watch(), asyncio.Event()
    with watch.on(world):
        poller, schedule = world.services.poller, world.services.schedule
        await asyncio.sleep(world.settings.poll_interval_seconds)  # all six due
        run = asyncio.create_task(poller.run(stopping))
        await watch.started.wait()
        stopping.set()  # one poll started, five waiting for their place in the spread
        await run
        await poller.stop()
    assert watch.claims == [6] and len(watch.starts) < 6
    again = await schedule.claim_due(lease=30, batch=10)
    assert len(again) >= 6 - len(watch.starts)  # due now, not when their lease lapses


# --- roles: polls off the request path, in their own process -------------------------------------


def _status_polls(gateway: Gateway) -> float:
    """Status calls this replica made to RunComfy's Model API."""
    labels = {"upstream": "model_api", "call": "status"}
    registry = gateway.app[METRICS].registry
    return registry.get_sample_value("gateway_upstream_request_duration_seconds_count", labels) or 0


async def test_an_api_replica_leaves_the_polling_to_a_poller_replica(gateway_factory: Any) -> None:
    api: Gateway = await gateway_factory(role="api")
    poller: Gateway = await gateway_factory(role="poller")
    key = await api.new_team("design")
    status, body, _ = await api.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a red fox"}
    )
    assert status == 200, body
    path = f"/v1/requests/{body['request_id']}/status"
    for _ in range(400):
        status, body, _ = await api.request("GET", path, key=key)
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "completed"  # the client of the API replica got its answer
    assert _status_polls(api) == 0 and _status_polls(poller) >= 1
