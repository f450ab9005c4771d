"""Each team's queue of jobs waiting for a concurrency slot, and the hint that finds them.

A job the team's slots cannot take at admission waits in the team's queue (a sorted set in its
shard); the dispatch script starts queued jobs as slots free up. Which teams have queued jobs is
a hint in one sorted set shared by all replicas, so each replica's dispatcher visits only those,
and a periodic rescan repairs the hint (:meth:`TeamQueues.queue_lengths`).
"""

from __future__ import annotations

import time
from typing import Any

from gateway.money.quotas import Calendar
from gateway.store.client import Store
from gateway.store.contracts import (
    DispatchArgs,
    Dispatched,
    QueueBodyArgs,
    RequeueArgs,
    ZremIfOlderArgs,
)
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts


class TeamQueues:
    """The teams' job queues and the shared hint of which teams have queued jobs."""

    def __init__(
        self,
        redis: Store,
        scripts: Scripts,
        layout: Layout,
        calendar: Calendar,
        submit_deadline: float,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout
        self._calendar = calendar
        self._submit_deadline = submit_deadline

    async def dispatch(self, shard: str, most: int) -> Dispatched:
        """Start queued jobs of a team whose slots are free."""
        return await self._scripts.run(
            DispatchArgs(
                team_limits=self._layout.limits(shard),
                running_jobs=self._layout.running(shard),
                queued_jobs=self._layout.queue(shard),
                job_prefix=self._layout.job_prefix(shard),
                submit_deadline=self._submit_deadline,
                most=most,
            )
        )

    async def store_queued_body(self, shard: str, jid: str, raw: bytes) -> bool:
        """Store the body of a queued job admitted without it; False if it no longer waits."""
        reply = await self._scripts.run(
            QueueBodyArgs(job_record=self._layout.job(shard, jid), body=raw)
        )
        return reply.stored

    async def requeue(self, shard: str, jid: str, raw: bytes) -> bool:
        """Put a job about to be sent back at the head of its team's queue, with its body."""
        reply = await self._scripts.run(
            RequeueArgs(
                job_record=self._layout.job(shard, jid),
                running_jobs=self._layout.running(shard),
                queued_jobs=self._layout.queue(shard),
                job_id=jid,
                body=raw,
            )
        )
        return reply.requeued

    async def mark_waiting(self, shard: str) -> None:
        """Tell every replica's dispatcher that this team has queued jobs."""
        await self._redis.zadd(self._layout.queue_waiting(), {shard: time.time()})

    async def waiting_shards(self) -> list[tuple[str, float]]:
        """The teams marked as having queued jobs, each with when it was last marked."""
        members: Any = await self._redis.zrange(
            self._layout.queue_waiting(), 0, -1, withscores=True
        )
        return [(str(m), float(score)) for m, score in members]

    async def unmark_waiting(self, shard: str, seen: float) -> None:
        """Forget a team's queue, unless someone queued a job after ``seen``."""
        await self._scripts.run(
            ZremIfOlderArgs(sorted_set=self._layout.queue_waiting(), member=shard, seen_score=seen)
        )

    async def queue_lengths(self, shards: list[str]) -> list[tuple[int, int]]:
        """(queued jobs, expired running slots) of each team."""
        now = self._calendar.now()
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zcard(self._layout.queue(shard))
                pipe.zcount(self._layout.running(shard), "-inf", now)
            counts = [int(n) for n in await pipe.execute()]
        return list(zip(counts[::2], counts[1::2], strict=True))
