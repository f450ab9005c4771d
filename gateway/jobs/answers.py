"""Status and result of a gateway request, answered from its job's record in Redis.

One poller per job keeps the record current (:mod:`gateway.jobs.poller`), so N clients polling
one job cost RunComfy the same as one. Answers have RunComfy's shapes and carry the gateway's
ids and URLs; asset URLs are left untouched. The shapes are plain functions (the cancel and the
submit answers use them too); :class:`AnswerService` finds the caller's request and heals a job
whose poller has gone quiet.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import orjson
import structlog

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal
from gateway.common.errors import NotFound, SubmitOutcomeUnknown, UpstreamBadGateway
from gateway.jobs.gate import Gate
from gateway.jobs.job import Job, JobField, JobState
from gateway.jobs.records import RequestRecord, Role
from gateway.jobs.schedule import PollSchedule
from gateway.upstream.apis import Api
from gateway.upstream.urls import URL_FIELDS, model_request_urls, serverless_request_urls

# --- RunComfy's shapes ------------------------------------------------------------------------


def rewrite(body: Any, rid: str, urls: dict[str, str]) -> Any:
    """RunComfy's answer with the gateway's id and URLs; other fields exactly as they were."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    if "request_id" in out:
        out["request_id"] = rid
    for field in URL_FIELDS:
        if field in out and field in urls:
            out[field] = urls[field]
    return out


def submit_path(api: Api, target: str, version: str) -> str:
    """Where a submit to ``target`` goes at RunComfy."""
    if api is Api.MODEL:
        return f"/v1/models/{quote(target, safe='/')}"
    return f"/prod/{version}/deployments/{quote(target, safe='')}/inference"


def upstream_path(api: Api, target: str, version: str, upstream_id: str, leaf: str) -> str:
    """Where a job's status, result or cancel lives at RunComfy."""
    rid = quote(upstream_id, safe="")
    if api is Api.MODEL:
        return f"/v1/requests/{rid}/{leaf}"
    return f"/prod/{version}/deployments/{quote(target, safe='')}/requests/{rid}/{leaf}"


def job_path(job: Job, leaf: str) -> str:
    """Where ``job``'s status, result or cancel lives at RunComfy."""
    return upstream_path(job.api, job.target, job.version, job.upstream_id or "", leaf)


def request_urls(base: str, record: RequestRecord) -> dict[str, str]:
    """The gateway's status, result and cancel URLs of a request."""
    if record.api is Api.MODEL:
        return model_request_urls(base, record.request_id)
    return serverless_request_urls(base, record.version, record.target, record.request_id)


def queued_status(rid: str) -> dict[str, Any]:
    """RunComfy's status of a job just accepted, until the poller's first answer."""
    return {
        "request_id": rid,
        "status": "in_queue",
        "queue_position": 0,
        "status_url": "",
        "result_url": "",
    }


def status_answer(record: RequestRecord, job: Job, urls: dict[str, str]) -> Any:
    """RunComfy's status answer: as the poller last saw it, or as the gateway knows it."""
    rid = record.request_id
    short = {"status_url": urls["status_url"], "result_url": urls["result_url"]}
    if record.detached:
        return {"request_id": rid, "status": "cancelled", **short}
    if job.state in (JobState.SUBMITTING, JobState.QUEUED):
        body = queued_status(rid)
        body["queue_position"] = job.queue_position
        return rewrite(body, rid, urls)
    if job.state is JobState.REJECTED:  # RunComfy refused it after it left the queue
        return {"request_id": rid, "status": "failed", **short}
    return rewrite(orjson.loads(job.status_body or "{}"), rid, urls)


def result_answer(
    record: RequestRecord, job: Job, urls: dict[str, str], include_cost: bool
) -> dict[str, Any]:
    """RunComfy's result answer; a job is paid once, so only its owner sees a cost."""
    rid = record.request_id
    if record.detached:
        return {"request_id": rid, "status": "cancelled", "created_at": record.created_at}
    if not job.terminal:
        status = job.upstream_status or "in_queue"
        return {"request_id": rid, "status": status, "created_at": job.created_at}
    if job.state is JobState.REJECTED:
        return {
            "request_id": rid,
            "status": "failed",
            "created_at": record.created_at,
            "error": orjson.loads(job.error_body or "{}"),
        }
    body: dict[str, Any] = rewrite(orjson.loads(job.result_body or "{}"), rid, urls)
    if "cost" in body:
        if not include_cost:
            del body["cost"]
        elif record.role is not Role.OWNER:
            body["cost"] = 0  # a job is paid once, by the request that started it
    return body


def cancel_answer(
    api: Api, rid: str, *, cancelled: bool, state: str = "cancelled"
) -> dict[str, Any]:
    if api is Api.SERVERLESS:
        return {
            "request_id": rid,
            "status": "cancellation_requested" if cancelled else "not_cancellable",
        }
    return {
        "request_id": rid,
        "status": "cancelled" if cancelled else state,
        "outcome": "cancelled" if cancelled else "not_cancellable",
    }


# --- finding the caller's request -------------------------------------------------------------


async def resolve(
    gate: Gate,
    cred: KeyCredential,
    rid: str,
    api: Api,
    deployment_id: str | None,
    omitted: str = "",
) -> tuple[TeamPrincipal, RequestRecord, Job]:
    """The caller's request ``rid`` and its job (without the field ``omitted``, which the
    answer does not use); 404 for anything the caller may not see."""
    principal, record, job = await gate.load(cred, rid, omitted)
    if record is None or record.api is not api:
        raise NotFound(f"Request {rid} not found.")
    if deployment_id is not None and record.target != deployment_id:
        raise NotFound(f"Request {rid} not found.")
    if job is None or (job.state is JobState.REJECTED and not job.queued):
        raise NotFound(f"Request {rid} not found.")
    structlog.contextvars.bind_contextvars(upstream_request_id=job.upstream_id)
    if job.state is JobState.UNKNOWN:
        detail = {"request_id": rid, "reason": job.reason or "unknown"}
        if job.upstream_id:
            raise UpstreamBadGateway("RunComfy lost track of this job.", detail=detail)
        raise SubmitOutcomeUnknown(detail=detail)
    return principal, record, job


class AnswerService:
    """Status and result calls."""

    def __init__(self, gate: Gate, schedule: PollSchedule, heal_after: float) -> None:
        self._gate = gate
        self._schedule = schedule
        self._heal_after = heal_after

    async def status(
        self, cred: KeyCredential, rid: str, api: Api, base: str, deployment_id: str | None = None
    ) -> tuple[TeamPrincipal, dict[str, Any]]:
        principal, record, job = await resolve(
            self._gate, cred, rid, api, deployment_id, omitted=JobField.RESULT_BODY
        )
        await self._heal(record, job)
        return principal, status_answer(record, job, request_urls(base, record))

    async def result(
        self,
        cred: KeyCredential,
        rid: str,
        api: Api,
        base: str,
        include_cost: bool,
        deployment_id: str | None = None,
    ) -> tuple[TeamPrincipal, dict[str, Any]]:
        principal, record, job = await resolve(
            self._gate, cred, rid, api, deployment_id, omitted=JobField.STATUS_BODY
        )
        await self._heal(record, job)
        return principal, result_answer(record, job, request_urls(base, record), include_cost)

    async def _heal(self, record: RequestRecord, job: Job) -> None:
        """Reschedule a job in flight whose poller has gone quiet (e.g. its schedule was lost)."""
        if record.detached or job.state is not JobState.ACTIVE:
            return
        if time.time() - (job.last_poll_ts or 0.0) > self._heal_after:
            await self._schedule.schedule(job.shard, job.job_id, 0, only_if_absent=True)
