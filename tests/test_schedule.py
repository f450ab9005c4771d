"""The poll schedule on the real Redis: a job in flight is polled by one replica at a time, and
once unscheduled by none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.jobs.schedule import PollSchedule
from gateway.store.client import connect
from gateway.store.commands import RedisPyCommands
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts

SHARD = "abcdefgh"  # a team's shard: 8 characters


@pytest.fixture
async def schedule(redis_url: str, namespace: str) -> AsyncIterator[PollSchedule]:
    redis = connect(redis_url)
    yield PollSchedule(redis, Scripts.register(redis), Layout(namespace), RedisPyCommands(redis))
    await redis.aclose()


async def test_a_due_job_is_claimed_by_one_replica_until_its_lease_lapses(
    schedule: PollSchedule,
) -> None:
    await schedule.schedule(SHARD, "job-1", 0)
    await schedule.schedule(SHARD, "job-2", 60)
    assert await schedule.claim_due(lease=30, batch=10) == [(SHARD, "job-1")]
    assert await schedule.claim_due(lease=30, batch=10) == []
    count, earliest = await schedule.due_summary()
    assert count == 2 and earliest is not None


async def test_a_scheduled_job_keeps_its_time_when_asked_only_if_absent(
    schedule: PollSchedule,
) -> None:
    await schedule.schedule(SHARD, "job-1", 60)
    await schedule.schedule(SHARD, "job-1", 0, only_if_absent=True)
    assert await schedule.claim_due(lease=30, batch=10) == []


async def test_an_unscheduled_job_is_polled_no_more(schedule: PollSchedule) -> None:
    await schedule.schedule(SHARD, "job-1", 0)
    await schedule.unschedule(SHARD, "job-1")
    assert await schedule.claim_due(lease=30, batch=10) == []
    assert await schedule.due_summary() == (0, None)
