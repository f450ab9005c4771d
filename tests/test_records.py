"""Requests and jobs as a client sees them, through the gate, the records and the team queues
on the real Redis: what a
submit becomes (a new job, a follower, a hit, a place in the queue), whose requests a key can
read, and that an ended job stays ended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from gateway.access.credentials import KeyCredential, parse_bearer
from gateway.access.teams import TeamService
from gateway.common.errors import Unauthorized
from gateway.jobs.gate import Gate, Lookup, Outcome
from gateway.jobs.job import JobState
from gateway.jobs.queues import TeamQueues
from gateway.jobs.records import Lifetimes, RequestRecords, Role
from gateway.money.quotas import Calendar, QuotaConfig
from gateway.store.client import Store, connect
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts
from gateway.upstream.apis import Api

MODEL = "google/nano-banana/pro/text-to-image"


@dataclass
class World:
    redis: Store
    layout: Layout
    teams: TeamService
    gate: Gate
    records: RequestRecords
    queues: TeamQueues

    async def key(self, team_id: str) -> KeyCredential:
        await self.teams.create_team(team_id, None)
        _, secret = await self.teams.create_key(team_id, None)
        cred = parse_bearer(f"Bearer {secret}", "admin-token-not-used")
        assert isinstance(cred, KeyCredential)
        return cred

    async def submit(self, cred: KeyCredential, identity: str = "fox") -> tuple[Outcome, str]:
        admission = await self.gate.admit(cred, Api.MODEL, MODEL, "", Lookup(identity))
        return admission.outcome, admission.record.job_id


@pytest.fixture
async def world(redis_url: str, namespace: str) -> AsyncIterator[World]:
    redis = connect(redis_url)
    layout = Layout(namespace)
    scripts = Scripts.register(redis)
    lifetimes = Lifetimes(
        request_ttl=600, job_lifetime=600, cache_ttl=600, submit_deadline=30, default_policy="cache"
    )
    quota = QuotaConfig(
        default_queue_depth=10,
        usage_retention=86400,
        poll_rate=0,
        poll_burst=10,
        global_max_concurrent=0,
    )
    calendar = Calendar(ZoneInfo("UTC"))
    yield World(
        redis,
        layout,
        TeamService(redis, scripts, layout),
        Gate(scripts, layout, lifetimes, calendar, quota),
        RequestRecords(redis, scripts, layout, lifetimes, calendar, quota),
        TeamQueues(redis, scripts, layout, calendar, lifetimes.submit_deadline),
    )
    await redis.aclose()


async def test_a_new_submit_starts_a_job_and_an_identical_one_follows_it(world: World) -> None:
    cred = await world.key("design")
    first, job = await world.submit(cred)
    second, followed = await world.submit(cred)
    assert (first, second) == (Outcome.MISS, Outcome.COALESCED)
    assert followed == job


async def test_a_succeeded_job_answers_the_next_identical_submit_from_the_cache(
    world: World,
) -> None:
    cred = await world.key("design")
    _, jid = await world.submit(cred)
    job = await world.records.job(cred.slot, jid)
    assert job is not None
    assert await world.records.update_job(job, JobState.SUCCEEDED) == "submitting"
    outcome, hit = await world.submit(cred)
    assert (outcome, hit) == (Outcome.HIT, jid)


async def test_an_ended_job_never_moves_again(world: World) -> None:
    cred = await world.key("design")
    _, jid = await world.submit(cred)
    job = await world.records.job(cred.slot, jid)
    assert job is not None
    await world.records.update_job(job, JobState.CANCELLED)
    assert await world.records.update_job(job, JobState.ACTIVE) == "cancelled"
    ended = await world.records.job(cred.slot, jid)
    assert ended is not None and ended.state is JobState.CANCELLED


async def test_a_key_reads_its_own_request_and_never_another_teams(world: World) -> None:
    design, other = await world.key("design"), await world.key("other")
    admission = await world.gate.admit(design, Api.MODEL, MODEL, "", Lookup("fox"))
    rid = admission.record.request_id
    principal, record, job = await world.gate.load(design, rid)
    assert principal.team_id == "design"
    assert record is not None and record.role is Role.OWNER and job is not None
    assert job.job_id == record.job_id
    _, foreign, foreign_job = await world.gate.load(other, rid)
    assert foreign is None and foreign_job is None


async def test_a_revoked_key_is_refused_at_admission(world: World) -> None:
    cred = await world.key("design")
    await world.teams.revoke_key(cred.key_id)
    with pytest.raises(Unauthorized) as refused:
        await world.submit(cred)
    assert refused.value.detail == "revoked_key"


async def test_a_submit_over_the_concurrency_limit_waits_in_the_queue_until_a_slot_frees(
    world: World,
) -> None:
    cred = await world.key("design")
    await world.redis.hset(world.layout.limits(cred.slot), "max_concurrent", "1")
    _, running = await world.submit(cred, "one")
    outcome, queued = await world.submit(cred, "two")
    assert outcome is Outcome.QUEUED
    assert (await world.queues.dispatch(cred.slot, 5)).started == []
    job = await world.records.job(cred.slot, running)
    assert job is not None
    await world.records.update_job(job, JobState.SUCCEEDED)
    assert (await world.queues.dispatch(cred.slot, 5)).started == [queued]
