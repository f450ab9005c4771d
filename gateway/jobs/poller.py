"""One poller per upstream job, across all replicas.

Every replica runs this loop. A job in flight sits in one due-time sorted set; claiming it moves
its score to a lease expiry, so exactly one replica polls it at a time, and a replica that dies
mid-poll leaves it due again when the lease lapses. The poller writes what RunComfy says into
the job's record, where every gateway id following the job reads it: clients polling every 2 s
(runcomfy-cli), 3 s (runcomfy-mcp) or ``/result`` every 5 s (ComfyUI) cost RunComfy nothing.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from gateway.common.background import own_log_context, sleep_unless
from gateway.common.errors import CircuitOpen, GatewayError, StoreUnavailable, UpstreamClientError
from gateway.common.records import record
from gateway.jobs.answers import job_path
from gateway.jobs.capacity import AccountCapacity
from gateway.jobs.job import LIVE, Job, JobChange, JobField, JobState
from gateway.jobs.notices import Alerts
from gateway.jobs.records import RequestRecords
from gateway.jobs.schedule import PollSchedule
from gateway.jobs.webhooks import Webhooks
from gateway.money.amounts import FinishedJob, Outcome, micro_to_usd, settle
from gateway.money.quotas import BudgetAlert
from gateway.observability.metrics import Metrics
from gateway.store.client import through_outage
from gateway.upstream.apis import Api
from gateway.upstream.client import UpstreamClient

log = structlog.get_logger(__name__)

FINAL_WORDS = frozenset({"completed", "succeeded", "failed", "cancelled", "canceled"})
RESULT_STATES = {
    "succeeded": JobState.SUCCEEDED,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "canceled": JobState.CANCELLED,
}
MAX_CONSECUTIVE_ERRORS = 20
END_EFFECTS_WITHIN = 10.0  # seconds a job's end effects are retried through a Redis blip
GAUGE_INTERVAL = 5.0
MAX_TICK = 0.05  # seconds between claims (less for short poll intervals)


def settle_micro(job: Job, final: JobState, reported: Any, now: float) -> int:
    """What a finished job cost, by :func:`gateway.money.amounts.settle`. A serverless run
    began at the first in_progress the poller saw, or else after the last poll that still saw
    it queued: an upper bound of its length."""
    began = job.started_ts or job.last_poll_ts
    return settle(
        FinishedJob(
            serverless=job.api is Api.SERVERLESS,
            outcome=Outcome(final.value),
            estimate_micro=job.estimate_micro,
            rate_micro=job.rate_micro,
            ran_seconds=now - began if began else None,
            reported=reported,
        )
    )


def start_offsets(count: int, spread: float) -> list[float]:
    """When each of ``count`` polls starts, in seconds from now: evenly over ``spread``."""
    gap = max(0.0, spread) / count if count else 0.0
    return [i * gap for i in range(count)]


@record
class PollerConfig:
    interval: float
    max_interval: float
    lease: float
    batch: int  # the most jobs one claim takes, so the most polls started per tick
    concurrency: int

    @property
    def tick(self) -> float:
        """How often the poller claims: a job waits at most two ticks past its due time (the
        claim, then its place in the claim's spread)."""
        return min(MAX_TICK, self.interval / 4)


class Poller:
    def __init__(
        self,
        records: RequestRecords,
        schedule: PollSchedule,
        upstreams: Mapping[Api, UpstreamClient],
        config: PollerConfig,
        webhooks: Webhooks,
        metrics: Metrics,
        alerts: Alerts,
        capacity: AccountCapacity,
    ) -> None:
        self._alerts = alerts
        self._capacity = capacity
        self._metrics = metrics
        self._webhooks = webhooks
        self._records = records
        self._schedule = schedule
        self._upstreams = upstreams
        self._config = config
        self._polls = asyncio.Semaphore(config.concurrency)
        self._tasks: dict[asyncio.Task[None], tuple[str, str]] = {}
        self._unstarted: collections.deque[tuple[str, str]] = collections.deque()  # claimed

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim due jobs and poll them until ``stopping`` is set.

        One claim per tick, its polls started spread over the tick: polls started together
        would queue their steps (reads, upstream calls, settlements) in one burst ahead of every
        request this event loop serves. Jobs due in a burst (submitted together, a dead
        replica's lapsed leases, after an outage) are caught up at up to ``batch`` per tick.

        A stop event rather than task cancellation ends the loop, because redis-py can swallow a
        cancellation that arrives mid-command, which would leave a cancelled loop running.
        """
        loop = asyncio.get_running_loop()
        next_gauge = 0.0
        while not stopping.is_set():
            tick_end = loop.time() + self._config.tick
            try:
                if time.monotonic() >= next_gauge:
                    await self._gauge()
                    next_gauge = time.monotonic() + GAUGE_INTERVAL
                claimed = await self._schedule.claim_due(self._config.lease, self._config.batch)
            except StoreUnavailable:
                await sleep_unless(stopping, 1.0)
                continue
            await self._start_spread(claimed, tick_end, stopping)
            if loop.time() < tick_end:
                await sleep_unless(stopping, tick_end - loop.time())

    async def _start_spread(
        self, claimed: list[tuple[str, str]], until: float, stopping: asyncio.Event
    ) -> None:
        """Start the polls of ``claimed`` evenly between now and ``until`` (each after a turn
        of the loop at least); on stop, keep the unstarted ones for :meth:`stop` to hand back."""
        loop = asyncio.get_running_loop()
        self._unstarted = collections.deque(claimed)
        begin = loop.time()
        for offset in start_offsets(len(claimed), until - begin):
            await asyncio.sleep(max(0.0, begin + offset - loop.time()))
            if stopping.is_set():
                return
            await self._polls.acquire()
            shard, jid = self._unstarted.popleft()
            task = asyncio.create_task(self._guarded(shard, jid))
            self._tasks[task] = (shard, jid)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def stop(self) -> None:
        """Abandon polls in flight and hand their jobs (and the claimed ones not started yet)
        back, so another replica polls them now instead of after the lease (a crashed
        replica's jobs wait for the lease)."""
        abandoned = list(self._tasks.items())
        for task, _ in abandoned:
            task.cancel()
        if abandoned:
            await asyncio.wait([task for task, _ in abandoned], timeout=5.0)
        for shard, jid in [job for _, job in abandoned] + list(self._unstarted):
            try:
                await self._schedule.schedule(shard, jid, 0)
            except StoreUnavailable:
                break
        self._unstarted.clear()

    async def _guarded(self, shard: str, jid: str) -> None:
        try:
            await self.poll_once(shard, jid)
        except StoreUnavailable as exc:
            log.warning("poll_store_error", job=jid, error_type=type(exc).__name__)
        except Exception as exc:
            log.error("poll_failed", job=jid, error_type=type(exc).__name__)
        finally:
            self._polls.release()

    async def poll_once(self, shard: str, jid: str) -> None:
        """Ask RunComfy about one job and record the answer; its lines name this job alone."""
        with own_log_context(job=jid):
            await self._poll(shard, jid)

    async def _poll(self, shard: str, jid: str) -> None:
        job = await self._records.job(shard, jid)
        if job is not None and job.upstream_id:
            structlog.contextvars.bind_contextvars(upstream_request_id=job.upstream_id)
        if job is not None and job.terminal and job.effects_pending:
            # The poll that ended it was cut off before it was done: do the rest now.
            body = orjson.loads(job.result_body or "{}")
            await self._end_effects(job, job.state, job.settled_micro, body, None, time.time())
            return
        if job is None or job.terminal:
            await self._schedule.unschedule(shard, jid)
            return
        if self._records.expired(job):
            lapsed = JobChange(reason="job lifetime exceeded")
            await self._records.update_job(job, JobState.UNKNOWN, change=lapsed)
            await self._schedule.unschedule(shard, jid)
            await self._freed(job)
            return
        await self._ask(job)

    async def _ask(self, job: Job) -> None:
        """RunComfy's status of ``job``, and its result once the status is final."""
        now = time.time()
        upstream = self._upstreams[job.api]
        try:
            status = await upstream.call("GET", job_path(job, "status"), idempotent=True)
            word = (
                str(status.body.get("status", "")).lower() if isinstance(status.body, dict) else ""
            )
            if word not in FINAL_WORDS:
                await self._running(job, status.body, word, now)
                return
            params = {"include_cost": "true"} if job.api is Api.MODEL else None
            result = await upstream.call(
                "GET", job_path(job, "result"), params=params, idempotent=True
            )
        except StoreUnavailable:
            raise  # Redis, not RunComfy: nothing to count against the job
        except GatewayError as exc:
            await self._backoff(job, exc)
            return
        await self._ended(job, status.body, word, result.body, now)

    async def _running(self, job: Job, status: Any, word: str, now: float) -> None:
        """Still queued or running upstream: record what RunComfy said, ask again later."""
        if word != (job.upstream_status or "") and job.api is Api.SERVERLESS:
            await self._webhooks.job_changed(job, word, {}, final=False)
        began = word == "in_progress" and job.started_ts is None
        change = JobChange(
            status_body=orjson.dumps(status).decode(),
            upstream_status=word,
            last_poll_ts=now,
            poll_errors=0,
            started_ts=now if began else job.started_ts,  # serverless runs are billed from here
        )
        await asyncio.gather(  # one round trip on the pipelined connection
            self._records.update_job(job, JobState.ACTIVE, change=change),
            self._schedule.schedule(job.shard, job.job_id, self._config.interval),
        )

    async def _ended(self, job: Job, status: Any, word: str, result: Any, now: float) -> None:
        """RunComfy says the job ended: settle it from its result, then do what follows."""
        body = result if isinstance(result, dict) else {}
        final: JobState | None = RESULT_STATES.get(str(body.get("status", "")).lower())
        if final is None:  # result lags status: try again shortly
            await self._schedule.schedule(job.shard, job.job_id, self._config.interval)
            return
        settled = settle_micro(job, final, body.get("cost"), now)
        change = JobChange(
            status_body=orjson.dumps(status).decode(),
            result_body=orjson.dumps(body).decode(),
            upstream_status=word,
            last_poll_ts=now,
            cost=micro_to_usd(settled),
            effects_pending=True,
        )
        update = await self._records.update_job_full(
            job, final, settle_micro=settled, change=change
        )
        if update.previous not in LIVE:  # ended already (a cancel, another poller)
            await self._schedule.unschedule(job.shard, job.job_id)
            return
        await self._end_effects(job, final, settled, body, update.alert, now)

    async def _end_effects(
        self,
        job: Job,
        final: JobState,
        settled: int,
        body: dict[str, Any],
        alert: BudgetAlert | None,
        now: float,
    ) -> None:
        """What follows the end of a job: free its slot, call the webhooks, stop polling it.

        The job was marked ``effects_pending`` in the same write that ended it, and the mark is
        dropped only when all of this is done: a Redis blip is retried here, and if this replica
        is cut off (or dies), the job is still scheduled, so its next poll finds the mark and
        does it all again (webhooks are at least once).
        """

        async def effects() -> None:
            if alert is not None:
                await self._alerts.budget_alert(alert)
            await self._freed(job)
            if job.api is Api.SERVERLESS:
                await self._webhooks.job_changed(job, final.value, body, final=True)
            pending = JobField.EFFECTS_PENDING
            await self._records.clear_field(job.shard, job.job_id, pending)
            await self._schedule.unschedule(job.shard, job.job_id)

        await through_outage(effects, END_EFFECTS_WITHIN)
        self._observe_end(job, final, settled, now)
        log.info("job_finished", job=job.job_id, state=final.value, target=job.target)

    async def _freed(self, job: Job) -> None:
        """The job holds no concurrency slot any more: let a queued one go."""
        await self._capacity.release(job.shard, job.job_id)

    def _observe_end(self, job: Job, final: JobState, cost_micro: int, now: float) -> None:
        labels = self._metrics.labels
        model = labels.model(job.target, serverless=job.api is Api.SERVERLESS)
        team = labels.team(job.team)
        started = job.created_ts or now
        self._metrics.job_duration.labels(model, final.value).observe(max(0.0, now - started))
        if cost_micro > 0:
            self._metrics.cost_spent.add(cost_micro, team, model)
        if final is JobState.SUCCEEDED and job.store:
            self._metrics.cache_stores.labels(model).inc()

    async def _gauge(self) -> None:
        """Jobs in flight and how overdue the oldest poll is, as this replica sees them."""
        count, oldest = await self._schedule.due_summary()
        self._metrics.jobs_in_flight.set(count)
        self._metrics.poller_lag.set(max(0.0, time.time() - oldest) if oldest else 0.0)

    async def _backoff(self, job: Job, exc: GatewayError) -> None:
        if isinstance(exc, CircuitOpen):
            # Not sent, so not an error of this job: counting it would end healthy jobs as
            # "lost" during a long RunComfy outage. Ask again when the breaker lets a probe out.
            delay = max(self._config.interval, float(exc.retry_after))
            await self._schedule.schedule(job.shard, job.job_id, delay)
            return
        errors = job.poll_errors + 1
        if errors >= MAX_CONSECUTIVE_ERRORS or (
            isinstance(exc, UpstreamClientError) and exc.status == 404
        ):
            log.error("poll_gave_up", job=job.job_id, errors=errors, error_code=exc.error_code)
            lost = JobChange(reason="upstream lost the job")
            await self._records.update_job(job, JobState.UNKNOWN, change=lost)
            await self._schedule.unschedule(job.shard, job.job_id)
            await self._freed(job)
            return
        await self._records.update_job(job, JobState.ACTIVE, change=JobChange(poll_errors=errors))
        delay = min(self._config.max_interval, self._config.interval * 2**errors)
        await self._schedule.schedule(job.shard, job.job_id, delay)
