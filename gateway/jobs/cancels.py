"""Cancelling a gateway request: it detaches from its job, and only the last one cancels it.

Many requests may follow one job; a cancel detaches the caller's request (answered cancelled at
once), and only when no request is left is the job itself cancelled: here, if it never left the
team's queue (refunded, RunComfy never asked), else at RunComfy, whose verdict is followed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal
from gateway.common.errors import GatewayError, SubmitOutcomeUnknown
from gateway.jobs.answers import cancel_answer, resolve, rewrite, upstream_path
from gateway.jobs.capacity import AccountCapacity
from gateway.jobs.gate import Gate
from gateway.jobs.job import LIVE, Job, JobChange, JobState
from gateway.jobs.records import RequestRecord, RequestRecords
from gateway.jobs.schedule import PollSchedule
from gateway.jobs.webhooks import Webhooks
from gateway.upstream.apis import Api
from gateway.upstream.client import UpstreamClient


def _cancelled(request_id: str, created_at: str) -> JobChange:
    """A job's record once cancelled: RunComfy's cancelled status and result shapes."""
    final = {"request_id": request_id, "status": "cancelled"}
    return JobChange(
        upstream_status="cancelled",
        status_body=orjson.dumps(final).decode(),
        result_body=orjson.dumps({**final, "created_at": created_at}).decode(),
    )


class CancelService:
    """Cancel calls."""

    def __init__(
        self,
        gate: Gate,
        records: RequestRecords,
        schedule: PollSchedule,
        upstreams: Mapping[Api, UpstreamClient],
        capacity: AccountCapacity,
        webhooks: Webhooks,
    ) -> None:
        self._gate = gate
        self._records = records
        self._schedule = schedule
        self._upstreams = upstreams
        self._capacity = capacity
        self._webhooks = webhooks

    async def cancel(
        self, cred: KeyCredential, rid: str, api: Api, deployment_id: str | None = None
    ) -> tuple[TeamPrincipal, int, dict[str, Any]]:
        principal, record, job = await resolve(self._gate, cred, rid, api, deployment_id)
        verdict, terminal_state = await self._records.detach(record, principal.slot)
        if verdict in ("already", "detached"):
            return principal, 202, cancel_answer(api, rid, cancelled=True)
        if verdict == "submitting":
            raise SubmitOutcomeUnknown(
                "The request is still being submitted; retry the cancel in a moment.",
                detail={"request_id": rid},
            )
        if verdict != "last":
            state = "completed" if verdict == "terminal" else "in_progress"
            if terminal_state == JobState.CANCELLED:
                state = "cancelled"
            return principal, 202, cancel_answer(api, rid, cancelled=False, state=state)
        if terminal_state == JobState.QUEUED:
            return principal, *await self._cancel_queued(record, job)
        return principal, *await self._cancel_upstream(record, job)

    async def _cancel_queued(self, record: RequestRecord, job: Job) -> tuple[int, dict[str, Any]]:
        """The job never left the gateway: cancel it here, refund it, ask RunComfy nothing."""
        rid = record.request_id
        previous = await self._records.update_job(
            job,
            JobState.CANCELLED,
            settle_micro=0,
            expect=JobState.QUEUED,
            change=_cancelled(rid, job.created_at),
        )
        if previous != JobState.QUEUED:  # the dispatcher sent it meanwhile
            await self._records.reattach(record, job.shard)
            raise SubmitOutcomeUnknown(
                "The request is being submitted; retry the cancel in a moment.",
                detail={"request_id": rid},
            )
        return 202, cancel_answer(record.api, rid, cancelled=True)

    async def _cancel_upstream(self, record: RequestRecord, job: Job) -> tuple[int, dict[str, Any]]:
        """The last follower is leaving: ask RunComfy, and follow its verdict."""
        rid = record.request_id
        try:
            path = upstream_path(
                record.api, record.target, job.version, job.upstream_id or "", "cancel"
            )
            reply = await self._upstreams[record.api].call("POST", path, idempotent=True)
        except GatewayError:
            await self._records.reattach(record, job.shard)
            raise
        body = reply.body if isinstance(reply.body, dict) else {}
        confirmed = body.get("outcome") == "cancelled" or body.get("status") in (
            "cancellation_requested",
            "cancelled",
        )
        if not confirmed:
            await self._records.reattach(record, job.shard)
            return reply.status, rewrite(body, rid, {})
        change = _cancelled(job.upstream_id or "", job.created_at)
        previous = await self._records.update_job(
            job, JobState.CANCELLED, settle_micro=0, change=change
        )
        await self._schedule.unschedule(job.shard, job.job_id)
        if previous in LIVE:
            await self._capacity.release(job.shard, job.job_id)
            result = orjson.loads(change.result_body or "{}")
            await self._webhooks.job_changed(job, "cancelled", result, final=True)
        return reply.status, rewrite(body, rid, {})
