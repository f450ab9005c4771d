"""How many jobs may run: the account-wide cap, and word of a concurrency slot freed up.

A team's own concurrency slots are taken atomically at admission and by the dispatch script;
this module holds what lies outside one team's shard: the account-wide cap
(``GATEWAY_GLOBAL_MAX_CONCURRENT_JOBS``), one sorted set of account slots shared by all teams,
and :class:`Vacancies`, which wakes this replica's dispatcher when a job here ends.
"""

from __future__ import annotations

import asyncio

from gateway.jobs.queues import TeamQueues
from gateway.jobs.records import Lifetimes
from gateway.store.contracts import AccountSlotArgs, AccountSlotOp
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts


class Vacancies:
    """Rung whenever a job on this replica gives up its slot, so a queued job starts now rather
    than at the dispatcher's next interval. Its own object, so what frees slots (capacity,
    withdrawals) and what fills them (the dispatcher, through the sender, which takes account
    slots) need not know each other."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()

    def freed(self, shard: str) -> None:
        """A slot of ``shard``'s team freed up on this replica."""
        self._rung.set()

    async def wait(self, stopping: asyncio.Event, at_most: float) -> None:
        """Wait for the next ring (earlier ones are forgotten), ``stopping``, or ``at_most``
        seconds."""
        self._rung.clear()
        rung = asyncio.ensure_future(self._rung.wait())
        stopper = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({rung, stopper}, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
        rung.cancel()
        stopper.cancel()


class AccountCapacity:
    """The account-wide cap: a job that finds it full waits at the head of its team's queue
    instead of going upstream. With no cap (0), every take succeeds and Redis is not asked."""

    def __init__(
        self,
        scripts: Scripts,
        layout: Layout,
        queues: TeamQueues,
        lifetimes: Lifetimes,
        cap: int,
        vacancies: Vacancies,
    ) -> None:
        self._scripts = scripts
        self._layout = layout
        self._queues = queues
        self._lifetimes = lifetimes
        self._cap = cap
        self._vacancies = vacancies

    async def take(self, shard: str, jid: str, raw: bytes) -> bool:
        """An account slot for a job about to be sent; False if it went back to the queue."""
        if self._cap <= 0:
            return True
        if await self._slot(AccountSlotOp.ACQUIRE, shard, jid, self._lifetimes.submit_deadline):
            return True
        await self._queues.requeue(shard, jid, raw)
        return False

    async def extend(self, shard: str, jid: str) -> None:
        """RunComfy accepted the job: it holds its account slot as long as it may run."""
        if self._cap > 0:
            await self._slot(AccountSlotOp.EXTEND, shard, jid, self._lifetimes.job_lifetime)

    async def release(self, shard: str, jid: str) -> None:
        """The job ended or was refused: free its account slot and let a queued job go."""
        if self._cap > 0:
            await self._slot(AccountSlotOp.RELEASE, shard, jid, 0)
        self._vacancies.freed(shard)

    async def _slot(self, op: AccountSlotOp, shard: str, jid: str, seconds: float) -> bool:
        """Acquire, extend or release the job's place under the cap for ``seconds``; whether it
        holds one afterwards."""
        reply = await self._scripts.run(
            AccountSlotArgs(
                account_running=self._layout.account_running(),
                op=op,
                member=f"{shard}|{jid}",
                cap=self._cap,
                seconds=seconds,
            )
        )
        return reply.held
