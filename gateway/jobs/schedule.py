"""When each job in flight is polled next: one sorted set shared by every replica.

A member is ``shard|job id`` scored by when it is due. A replica's poller claims due members
for a lease (the claim script sets their score to the lease's end, so no other replica polls
them meanwhile) and schedules each again after polling, or drops it once the job has ended.
"""

from __future__ import annotations

from gateway.store.client import Store
from gateway.store.commands import Commands
from gateway.store.contracts import PollClaimArgs, PollScheduleArgs, ScheduleMode
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts


class PollSchedule:
    """The poll schedule of the jobs in flight."""

    def __init__(self, redis: Store, scripts: Scripts, layout: Layout, commands: Commands) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout
        self._commands = commands

    async def schedule(
        self, shard: str, jid: str, delay: float, *, only_if_absent: bool = False
    ) -> None:
        """Poll the job ``delay`` seconds from now (``only_if_absent``: unless scheduled)."""
        await self._scripts.run(
            PollScheduleArgs(
                due_set=self._layout.poll_due(),
                member=f"{shard}|{jid}",
                delay_seconds=delay,
                mode=ScheduleMode.ONLY_IF_ABSENT if only_if_absent else ScheduleMode.ANY,
            )
        )

    async def unschedule(self, shard: str, jid: str) -> None:
        """Poll the job no more: it ended, or was lost."""
        await self._commands.zrem(self._layout.poll_due(), f"{shard}|{jid}")

    async def claim_due(self, lease: float, batch: int) -> list[tuple[str, str]]:
        """Up to ``batch`` due jobs as (shard, job id), each leased to this replica."""
        reply = await self._scripts.run(
            PollClaimArgs(due_set=self._layout.poll_due(), lease_seconds=lease, batch_size=batch)
        )
        claimed = []
        for member in reply.members:
            shard, _, jid = member.partition("|")
            claimed.append((shard, jid))
        return claimed

    async def due_summary(self) -> tuple[int, float | None]:
        """How many jobs are in flight, and the earliest due time among them."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._layout.poll_due())
            pipe.zrange(self._layout.poll_due(), 0, 0, withscores=True)
            count, first = await pipe.execute()
        return int(count), (float(first[0][1]) if first else None)
