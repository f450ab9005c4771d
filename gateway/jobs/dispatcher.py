"""Starts queued submits when their team's concurrency slots free up, on any replica.

A submit over its team's concurrency limit is not refused: it waits in the team's queue (a
sorted set in the team's shard, its body kept with the job), answering ``in_queue`` with its
``queue_position``. Every replica runs this loop: for each team marked as having a queue, the
``dispatch`` script releases expired slots and moves as many queued jobs to ``submitting`` as
the limit allows, atomically, so two replicas never start the same job or overshoot the limit.
A job ending on this replica wakes the loop at once; jobs ending elsewhere are seen within
``GATEWAY_DISPATCH_INTERVAL_SECONDS``. The "teams with a queue" set is a hint: a periodic scan
of all teams repairs it, so a replica that dies between queueing and marking loses nothing.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import structlog

from gateway.access.teams import TeamService
from gateway.common.background import own_log_context
from gateway.common.errors import StoreUnavailable
from gateway.jobs.capacity import Vacancies
from gateway.jobs.job import JobChange, JobState
from gateway.jobs.queues import TeamQueues
from gateway.jobs.records import RequestRecords
from gateway.jobs.send import Sender

log = structlog.get_logger(__name__)

BATCH = 32  # jobs started per team per pass
RESCAN_EVERY = 10.0  # seconds between full scans of every team's queue


class Dispatcher:
    def __init__(
        self,
        records: RequestRecords,
        queues: TeamQueues,
        sender: Sender,
        teams: TeamService,
        vacancies: Vacancies,
        interval: float,
    ) -> None:
        self._records = records
        self._queues = queues
        self._sender = sender
        self._teams = teams
        self._vacancies = vacancies
        self._interval = interval
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        next_scan = 0.0
        while not stopping.is_set():
            try:
                if time.monotonic() >= next_scan:
                    await self._rescan()
                    next_scan = time.monotonic() + RESCAN_EVERY
                await self.pass_once()
            except StoreUnavailable as exc:
                log.warning("dispatch_store_error", error_type=type(exc).__name__)
            await self._vacancies.wait(stopping, self._interval)
        if self._sending:
            await asyncio.wait(self._sending, timeout=5.0)

    async def pass_once(self) -> int:
        """One pass over the teams with queued jobs; returns how many jobs were started."""
        started_total = 0
        for shard, marked in await self._queues.waiting_shards():
            passed = await self._queues.dispatch(shard, BATCH)
            for jid in passed.expired:
                with own_log_context(job=jid):
                    await self._abandoned(shard, jid)
            for jid in passed.orphaned:
                with own_log_context(job=jid):
                    await self._orphaned(shard, jid)
            started, left = passed.started, passed.left
            for jid in started:  # each send opens its job's own log context
                task = asyncio.create_task(self._sender.send_queued(shard, jid))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            started_total += len(started)
            if left == 0:
                await self._queues.unmark_waiting(shard, marked)
        return started_total

    async def _abandoned(self, shard: str, jid: str) -> None:
        """A slot expired while its job was still being submitted: the replica sending it
        died, so whether RunComfy started it is unknown; keep it for reconciliation."""
        job = await self._records.job(shard, jid)
        if job is None or job.state is not JobState.SUBMITTING:
            return
        previous = await self._records.update_job(
            job,
            JobState.UNKNOWN,
            expect=JobState.SUBMITTING,
            change=JobChange(reason="submit abandoned"),
        )
        if previous == JobState.SUBMITTING:
            await self._records.mark_unknown(shard, job.owner)
            log.error("submit_abandoned", job=jid, team=job.team)

    async def _orphaned(self, shard: str, jid: str) -> None:
        """A queued job whose body never reached Redis (the replica that admitted it died
        before storing it): nothing was sent, so it is refused and its reservation refunded."""
        job = await self._records.job(shard, jid)
        if job is None or job.state is not JobState.QUEUED:
            return
        error = StoreUnavailable(detail="the request body was never stored; resend it")
        previous = await self._records.update_job(
            job,
            JobState.REJECTED,
            settle_micro=0,
            expect=JobState.QUEUED,
            change=JobChange(
                error_status=error.status,
                error_body=orjson.dumps(error.body()).decode(),
                reason="body never stored",
            ),
        )
        if previous == JobState.QUEUED:
            log.error("queued_body_missing", job=jid, team=job.team)

    async def _rescan(self) -> None:
        """Repair the hint: mark every team that has queued jobs, or slots that expired (a
        replica died mid-submit), so the next pass settles them."""
        shards = sorted(set((await self._teams.slots()).values()))
        counts = await self._queues.queue_lengths(shards)
        for shard, (queued, expired) in zip(shards, counts, strict=True):
            if queued or expired:
                await self._queues.mark_waiting(shard)
