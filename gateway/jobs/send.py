"""The one submit of a job to RunComfy, and its outcome recorded as the job's state.

Only the owner of a new job (or the dispatcher, for a job that waited in its team's queue)
sends it. Whatever RunComfy answers becomes the job's state, which followers and pollers read:
accepted (``active``, then polled), refused (``rejected``: nothing to pay) or unknown (sent, no
usable answer: kept for reconciliation, never resent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
import structlog

from gateway.common.background import own_log_context
from gateway.common.errors import GatewayError, StoreUnavailable, SubmitOutcomeUnknown
from gateway.jobs.answers import queued_status, submit_path
from gateway.jobs.capacity import AccountCapacity
from gateway.jobs.job import Job, JobChange, JobState
from gateway.jobs.queues import TeamQueues
from gateway.jobs.records import RequestRecords
from gateway.jobs.schedule import PollSchedule
from gateway.store.client import through_outage
from gateway.upstream.apis import Api
from gateway.upstream.client import UpstreamClient

log = structlog.get_logger(__name__)

RECORD_WITHIN = 10.0  # seconds a submit's outcome is retried into a Redis that went away


class SendDecided(StoreUnavailable):
    """Redis failed after the send decided the submit's outcome: answered 503 like any store
    failure, but never withdrawn (a job RunComfy may be running is settled by its sender)."""


class Sender:
    """Sends a job once and records what came of it."""

    def __init__(
        self,
        records: RequestRecords,
        queues: TeamQueues,
        schedule: PollSchedule,
        upstreams: Mapping[Api, UpstreamClient],
        capacity: AccountCapacity,
        poll_interval: float,
    ) -> None:
        self._records = records
        self._queues = queues
        self._schedule = schedule
        self._upstreams = upstreams
        self._capacity = capacity
        self._poll_interval = poll_interval

    async def send_owned(self, job: Job, raw: bytes) -> bool:
        """The owner's submit, its client on the line; False if the account-wide cap sent the
        job back to its team's queue. Once sent, a Redis failure is 503 and nothing is undone:
        sent or not, the outcome was decided here."""
        if not await self._capacity.take(job.shard, job.job_id, raw):
            return False
        try:
            await self._send(job, raw)
        except StoreUnavailable as exc:
            raise SendDecided(detail={"request_id": job.owner}) from exc
        return True

    async def send_queued(self, shard: str, jid: str) -> None:
        """Send a job that waited in its team's queue; its owner is not waiting on the line,
        so the outcome is only recorded; its lines name this job alone."""
        with own_log_context(job=jid):
            await self._send_queued(shard, jid)

    async def _send_queued(self, shard: str, jid: str) -> None:
        try:
            job = await through_outage(lambda: self._records.job(shard, jid), RECORD_WITHIN)
            if job is None or job.state is not JobState.SUBMITTING:
                return
            raw = job.body or b""
            if not await self._capacity.take(shard, jid, raw):
                await self._queues.mark_waiting(shard)
                return
            await self._send(job, raw)
        except StoreUnavailable as exc:  # not sent: its slot expires, then it is settled
            log.warning("queued_submit_store_error", job=jid, error_type=type(exc).__name__)
        except GatewayError as exc:
            log.warning("queued_submit_failed", job=jid, error_code=exc.error_code)

    async def _send(self, job: Job, raw: bytes) -> None:
        """Submit to RunComfy; its outcome becomes the job's state."""
        try:
            upstream_id = await self._post(job, raw)
        except SubmitOutcomeUnknown as exc:
            await self._unknown(job, exc)
            raise
        except GatewayError as exc:
            await self._rejected(job, exc)
            raise
        structlog.contextvars.bind_contextvars(upstream_request_id=upstream_id)
        await self._accepted(job, upstream_id)
        await self._capacity.extend(job.shard, job.job_id)

    async def _post(self, job: Job, raw: bytes) -> str:
        path = submit_path(job.api, job.target, job.version)
        reply = await self._upstreams[job.api].call("POST", path, data=raw, idempotent=False)
        upstream_id = reply.body.get("request_id") if isinstance(reply.body, dict) else None
        if not isinstance(upstream_id, str) or not upstream_id:
            raise SubmitOutcomeUnknown(detail="RunComfy's answer had no request_id")
        return upstream_id

    async def _unknown(self, job: Job, exc: SubmitOutcomeUnknown) -> None:
        """Sent, no usable answer: the job is listed for reconciliation, never resent."""
        rid, reason = job.owner, str(exc.detail)
        log.error(
            "submit_outcome_unknown",
            gateway_request_id=rid,
            team=job.team,
            target=job.target,
            reason=reason,
        )
        exc.detail = {"request_id": rid, "reason": exc.detail}

        async def record_unknown() -> None:
            await self._records.update_job(job, JobState.UNKNOWN, change=JobChange(reason=reason))
            await self._records.mark_unknown(job.shard, rid)
            await self._capacity.release(job.shard, job.job_id)

        # Unrecorded, the job stays `submitting` until its slot expires, then becomes
        # unknown all the same (dispatcher.py): the client's answer is right either way.
        await self._record(record_unknown, "unknown", rid, suppress=True)

    async def _rejected(self, job: Job, exc: GatewayError) -> None:
        """RunComfy refused it or was never reached: nothing to pay, and followers get the
        same answer."""
        change = JobChange(error_status=exc.status, error_body=orjson.dumps(exc.body()).decode())

        async def record_rejected() -> None:
            await self._records.update_job(job, JobState.REJECTED, settle_micro=0, change=change)
            await self._capacity.release(job.shard, job.job_id)

        await self._record(record_rejected, "rejected", job.owner, suppress=True)

    async def _accepted(self, job: Job, upstream_id: str) -> None:
        rid = job.owner
        change = JobChange(
            upstream_id=upstream_id,
            upstream_status="in_queue",
            status_body=orjson.dumps(queued_status(upstream_id)).decode(),
            last_poll_ts=time.time(),
        )

        async def record_accepted() -> None:
            # Issued together, so the pipelined connection sends both in one round trip;
            # Redis runs them in this order.
            await asyncio.gather(
                self._records.update_job(job, JobState.ACTIVE, change=change),
                self._schedule.schedule(job.shard, job.job_id, self._poll_interval),
            )

        try:
            await self._record(record_accepted, "accepted", rid)
        except StoreUnavailable:
            # The job runs and is paid for, but could not be recorded: say so, loudly. Its record
            # stays `submitting` until its slot expires; then it is listed as unknown for
            # reconciliation, so the client must not resubmit: outcome unknown, not "retry".
            log.error(
                "submit_unrecorded",
                gateway_request_id=rid,
                upstream_request_id=upstream_id,
                team=job.team,
                target=job.target,
            )
            raise SubmitOutcomeUnknown(
                "RunComfy accepted the job but the gateway could not record it (its state store "
                "is unavailable); it will be listed for reconciliation. Do not resubmit.",
                detail={"request_id": rid, "reason": "state store unavailable"},
            ) from None

    @staticmethod
    async def _record(
        step: Callable[[], Awaitable[None]], outcome: str, rid: str, *, suppress: bool = False
    ) -> None:
        """Write a submit's outcome, retrying through a Redis outage for ``RECORD_WITHIN`` s.
        Unlike admission, these writes may run twice: a job's state set again is unchanged."""
        try:
            await through_outage(step, RECORD_WITHIN)
        except StoreUnavailable as exc:
            log.error(
                "submit_outcome_not_recorded",
                outcome=outcome,
                gateway_request_id=rid,
                error_type=type(exc).__name__,
            )
            if not suppress:
                raise
