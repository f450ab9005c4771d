"""Team requests under gateway ids: admission with dedup, submits, and answers from Redis.

Submits go through one admission script (hit, coalesce or claim). Only the owner of a new job
calls RunComfy; status, result and cancel are answered from the job's state in Redis, which one
poller per job keeps current (:mod:`gateway.jobs.poller`), so N clients polling one job cost
RunComfy the same as one. Answers carry the gateway's ids and URLs; asset URLs are left untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote

import orjson
import structlog

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal
from gateway.common.errors import (
    GatewayError,
    NotFound,
    QuotaRefused,
    StoreUnavailable,
    SubmitOutcomeUnknown,
    UpstreamBadGateway,
    UpstreamClientError,
)
from gateway.jobs.dedup import CacheControl, DedupService
from gateway.jobs.records import (
    LIVE,
    Admission,
    Charge,
    Job,
    JobState,
    Lookup,
    Outcome,
    RequestRecord,
    RequestRecords,
    Role,
    new_id,
)
from gateway.jobs.webhooks import Webhooks
from gateway.money.quotas import BudgetAlert
from gateway.observability.metrics import Metrics
from gateway.store.client import STORE_FAILURES, through_outage
from gateway.store.contracts import AccountSlotOp
from gateway.upstream.apis import Api
from gateway.upstream.client import UpstreamClient
from gateway.upstream.urls import URL_FIELDS, model_request_urls, serverless_request_urls

log = structlog.get_logger(__name__)

FOLLOWER_WAIT_STEP = (0.01, 0.1)  # first and largest pause while a coalesced submit waits
RECORD_WITHIN = 10.0  # seconds a submit's outcome is retried into a Redis that went away
WITHDRAW_WITHIN = 60.0  # seconds an interrupted admission is looked for, to take it back
WITHDRAW_PAUSE = 0.1  # seconds between two withdrawals (more while Redis keeps failing)


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


def upstream_path(api: Api, target: str, version: str, upstream_id: str, leaf: str) -> str:
    """Where a job's status, result or cancel lives at RunComfy."""
    rid = quote(upstream_id, safe="")
    if api is Api.MODEL:
        return f"/v1/requests/{rid}/{leaf}"
    return f"/prod/{version}/deployments/{quote(target, safe='')}/requests/{rid}/{leaf}"


@dataclass(frozen=True, slots=True)
class SubmitAnswer:
    principal: TeamPrincipal
    record: RequestRecord
    outcome: Outcome
    identity: str
    body: dict[str, Any]
    headers: dict[str, str]


class Estimator(Protocol):
    """Prices a request before it runs (see :mod:`gateway.money.pricing`)."""

    async def charge(self, api: Api, target: str, body: dict[str, Any]) -> tuple[int, int]:
        """(estimated micro-dollars, serverless micro-dollars per second or 0)."""
        ...

    def cached(self, api: Api, target: str) -> bool:
        """Whether pricing ``target`` needs no catalog read now."""
        ...


class Alerts(Protocol):
    async def budget_alert(self, alert: BudgetAlert) -> None: ...


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval: float
    heal_after: float


class ProxyService:
    def __init__(
        self,
        records: RequestRecords,
        dedup: DedupService,
        model_api: UpstreamClient,
        serverless: UpstreamClient,
        polling: PollSettings,
        webhooks: Webhooks,
        metrics: Metrics,
        estimator: Estimator,
        alerts: Alerts,
        global_cap: int = 0,
    ) -> None:
        self._estimator = estimator
        self._alerts = alerts
        self._global_cap = global_cap
        self.slot_freed: Callable[[str], None] = lambda slot: None
        self._metrics = metrics
        self._webhooks = webhooks
        self._records = records
        self._dedup = dedup
        self._model_api = model_api
        self._serverless = serverless
        self._polling = polling
        self._withdrawals: asyncio.Queue[tuple[str, str, str, float]] = asyncio.Queue()
        self._withdrawer: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop background work (withdrawals of interrupted admissions still waiting)."""
        if self._withdrawer is not None:
            self._withdrawer.cancel()
            await asyncio.wait({self._withdrawer}, timeout=5.0)

    def upstream(self, api: Api) -> UpstreamClient:
        return self._model_api if api is Api.MODEL else self._serverless

    @staticmethod
    def urls(base: str, record: RequestRecord) -> dict[str, str]:
        if record.api is Api.MODEL:
            return model_request_urls(base, record.request_id)
        return serverless_request_urls(base, record.version, record.target, record.request_id)

    # --- submit -----------------------------------------------------------------------------

    def needs_catalog(self, api: Api, target: str) -> bool:
        """Whether a submit to ``target`` would read RunComfy's catalog (schema or price) now:
        the caller must then be verified first, or unverified callers could make the gateway
        call RunComfy with its token for any model id they like."""
        if api is not Api.MODEL:
            return False
        return not (self._dedup.schema_cached(target) and self._estimator.cached(api, target))

    async def submit(
        self,
        cred: KeyCredential,
        api: Api,
        target: str,
        version: str,
        raw: bytes,
        body: dict[str, Any],
        control: CacheControl,
        base: str,
        webhook: tuple[str, bool] | None = None,
    ) -> SubmitAnswer:
        try:
            lookup = await self._dedup.lookup_for(api, target, body, control)
        except UpstreamClientError as exc:
            if exc.status != 404:
                raise
            # RunComfy has no such model: its own 404, never submitted; the key is verified and
            # the submit rate charged, but no daily submit, usage row or cache outcome counted.
            await self._records.charge_refused_submit(cred, target)
            raise
        if webhook is not None:
            lookup = replace(lookup, webhook=webhook[0], webhook_intermediate=webhook[1])
        estimate, rate = await self._estimator.charge(api, target, body)
        rid, jid = new_id(), new_id()
        try:
            admission = await self._records.admit(
                cred, api, target, version, lookup, Charge(estimate, rate, raw), ids=(rid, jid)
            )
        except QuotaRefused as exc:
            self._refused(exc)
            raise
        except STORE_FAILURES:
            # The script may have run and only its answer been lost with the connection.
            self._withdraw_later(self._records.scope_shard(cred.slot), jid, rid)
            raise
        try:
            return await self._after_admission(admission, api, target, lookup, raw, base, webhook)
        except STORE_FAILURES:
            if admission.outcome in (Outcome.MISS, Outcome.QUEUED):
                self._withdraw_later(admission.principal.slot, jid, rid)
            raise

    async def _after_admission(
        self,
        admission: Admission,
        api: Api,
        target: str,
        lookup: Lookup,
        raw: bytes,
        base: str,
        webhook: tuple[str, bool] | None,
    ) -> SubmitAnswer:
        if admission.alert is not None:
            await self._alerts.budget_alert(admission.alert)
        if admission.outcome is Outcome.HIT and webhook is not None:
            job = await self._records.job(admission.principal.slot, admission.record.job_id)
            if job is not None:
                result = orjson.loads(job.get("result_body", "{}"))
                await self._webhooks.enqueue(
                    admission.record.request_id, target, webhook[0], job.state.value, result
                )
        record, slot = admission.record, admission.principal.slot
        outcome = admission.outcome
        # Counted once RunComfy took the job (or may have): a submit it refused (no job) is
        # no miss or coalesced request in the metrics, as it is in no usage row.
        try:
            if outcome is Outcome.MISS:
                if await self._take_global_slot(slot, record.job_id, raw):
                    try:
                        await self._send(self._job_of(admission, lookup.identity), raw)
                    except STORE_FAILURES:  # sent or not, _send decided; never withdraw it
                        raise StoreUnavailable(detail={"request_id": record.request_id}) from None
                else:
                    outcome = Outcome.QUEUED
            elif outcome is Outcome.COALESCED:
                await self._await_owner(admission)
        except (SubmitOutcomeUnknown, StoreUnavailable):
            self._count(admission, api, target)
            raise
        self._count(admission, api, target)
        if admission.outcome is Outcome.QUEUED and not Charge(raw=raw).inline:
            # A large body goes to Redis only now that its job waits in the queue.
            await self._records.store_queued_body(slot, record.job_id, raw)
        if outcome is Outcome.QUEUED:
            await self._records.mark_waiting(slot)
        urls = self.urls(base, record)
        answer: dict[str, Any] = {"request_id": record.request_id, **urls}
        headers = admission.rate_limit.headers() if admission.rate_limit else {}
        if outcome is Outcome.QUEUED:
            headers["X-Gateway-Queue-Position"] = str(max(1, admission.queue_position))
        return SubmitAnswer(admission.principal, record, outcome, lookup.identity, answer, headers)

    def _refused(self, exc: QuotaRefused) -> None:
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        team = self._metrics.labels.team(str(detail.get("team_id", "")))
        self._metrics.quota_refusals.labels(team, str(detail.get("limit", "other"))).inc()

    async def _take_global_slot(self, slot: str, jid: str, raw: bytes) -> bool:
        """The account-wide cap: a job that finds it full waits at the head of its team's
        queue instead of going upstream."""
        if self._global_cap <= 0:
            return True
        deadline = self._records.lifetimes.submit_deadline
        if await self._records.account_slot(
            AccountSlotOp.ACQUIRE, slot, jid, self._global_cap, deadline
        ):
            return True
        await self._records.requeue(slot, jid, raw)
        return False

    async def release_global_slot(self, slot: str, jid: str) -> None:
        if self._global_cap > 0:
            await self._records.account_slot(AccountSlotOp.RELEASE, slot, jid, self._global_cap, 0)
        self.slot_freed(slot)

    @staticmethod
    def _job_of(admission: Admission, identity: str) -> Job:
        record = admission.record
        return Job(
            record.job_id,
            admission.principal.slot,
            {
                "target": record.target,
                "hash": identity,
                "api": record.api.value,
                "version": record.version,
                "owner": record.request_id,
                "team": record.team_id,
                "state": JobState.SUBMITTING.value,
            },
        )

    def _count(self, admission: Admission, api: Api, target: str) -> None:
        metrics = self._metrics
        team = metrics.labels.team(admission.principal.team_id)
        model = metrics.labels.model(target, serverless=api is Api.SERVERLESS)
        outcome = admission.outcome
        metrics.child(metrics.cache_requests, team, model, outcome.value).inc()
        if outcome in (Outcome.HIT, Outcome.COALESCED):
            metrics.child(metrics.calls_avoided, model).inc()
        if admission.saved_micro > 0:
            metrics.cost_saved.add(admission.saved_micro, team, model)

    async def send_queued(self, slot: str, jid: str) -> None:
        """Send a job that waited in its team's queue; its owner is not waiting on the line,
        so the outcome is only recorded."""
        try:
            job = await through_outage(lambda: self._records.job(slot, jid), RECORD_WITHIN)
            if job is None or job.state is not JobState.SUBMITTING:
                return
            raw = job.get("body").encode()
            if not await self._take_global_slot(slot, jid, raw):
                await self._records.mark_waiting(slot)
                return
            await self._send(job, raw)
        except GatewayError as exc:
            log.warning("queued_submit_failed", job=jid, error_code=exc.error_code)
        except STORE_FAILURES as exc:  # not sent: its slot expires, then it is settled
            log.warning("queued_submit_store_error", job=jid, error_type=type(exc).__name__)

    async def _send(self, job: Job, raw: bytes) -> None:
        """The owner's submit to RunComfy; its outcome becomes the job's state."""
        slot, api, target = job.slot, job.api, job.get("target")
        rid, team, version = job.get("owner"), job.get("team"), job.get("version")
        if api is Api.MODEL:
            path = f"/v1/models/{quote(target, safe='/')}"
        else:
            path = f"/prod/{version}/deployments/{quote(target, safe='')}/inference"
        try:
            reply = await self.upstream(api).call("POST", path, data=raw, idempotent=False)
            upstream_id = reply.body.get("request_id") if isinstance(reply.body, dict) else None
            if not isinstance(upstream_id, str) or not upstream_id:
                raise SubmitOutcomeUnknown(detail="RunComfy's answer had no request_id")
        except SubmitOutcomeUnknown as exc:
            log.error(
                "submit_outcome_unknown",
                gateway_request_id=rid,
                team=team,
                target=target,
                reason=str(exc.detail),
            )
            reason = str(exc.detail)
            exc.detail = {"request_id": rid, "reason": exc.detail}

            async def record_unknown() -> None:
                await self._records.update_job(job, JobState.UNKNOWN, reason=reason)
                await self._records.mark_unknown(slot, rid)
                await self.release_global_slot(slot, job.job_id)

            # Unrecorded, the job stays `submitting` until its slot expires, then becomes
            # unknown all the same (dispatcher.py): the client's answer is right either way.
            await self._record(record_unknown, "unknown", rid, suppress=True)
            raise
        except GatewayError as exc:
            # RunComfy refused it or was never reached: nothing to pay, and followers get the
            # same answer.
            error_status, error_body = exc.status, orjson.dumps(exc.body()).decode()

            async def record_rejected() -> None:
                await self._records.update_job(
                    job,
                    JobState.REJECTED,
                    settle_micro=0,
                    error_status=error_status,
                    error_body=error_body,
                )
                await self.release_global_slot(slot, job.job_id)

            await self._record(record_rejected, "rejected", rid, suppress=True)
            raise
        structlog.contextvars.bind_contextvars(upstream_request_id=upstream_id)
        status_body = self._queued(upstream_id)

        async def record_accepted() -> None:
            # Issued together, so the pipelined connection sends both in one round trip;
            # Redis runs them in this order.
            await asyncio.gather(
                self._records.update_job(
                    job,
                    JobState.ACTIVE,
                    upstream_id=upstream_id,
                    upstream_status="in_queue",
                    status_body=orjson.dumps(status_body).decode(),
                    last_poll_ts=time.time(),
                ),
                self._records.schedule(slot, job.job_id, self._polling.interval),
            )

        try:
            await self._record(record_accepted, "accepted", rid)
        except STORE_FAILURES:
            # The job runs and is paid for, but could not be recorded: say so, loudly. Its record
            # stays `submitting` until its slot expires; then it is listed as unknown for
            # reconciliation, so the client must not resubmit: outcome unknown, not "retry".
            log.error(
                "submit_unrecorded",
                gateway_request_id=rid,
                upstream_request_id=upstream_id,
                team=team,
                target=target,
            )
            raise SubmitOutcomeUnknown(
                "RunComfy accepted the job but the gateway could not record it (its state store "
                "is unavailable); it will be listed for reconciliation. Do not resubmit.",
                detail={"request_id": rid, "reason": "state store unavailable"},
            ) from None
        if self._global_cap > 0:
            lifetime = self._records.lifetimes.job_lifetime
            await self._records.account_slot(
                AccountSlotOp.EXTEND, slot, job.job_id, self._global_cap, lifetime
            )

    @staticmethod
    async def _record(
        step: Callable[[], Awaitable[None]], outcome: str, rid: str, *, suppress: bool = False
    ) -> None:
        """Write a submit's outcome, retrying through a Redis outage for ``RECORD_WITHIN`` s.
        Unlike admission, these writes may run twice: a job's state set again is unchanged."""
        try:
            await through_outage(step, RECORD_WITHIN)
        except STORE_FAILURES as exc:
            log.error(
                "submit_outcome_not_recorded",
                outcome=outcome,
                gateway_request_id=rid,
                error_type=type(exc).__name__,
            )
            if not suppress:
                raise

    def _withdraw_later(self, slot: str, jid: str, rid: str) -> None:
        self._withdrawals.put_nowait((slot, jid, rid, time.monotonic() + WITHDRAW_WITHIN))
        if self._withdrawer is None or self._withdrawer.done():
            self._withdrawer = asyncio.create_task(self._withdraw_all(), name="withdrawals")

    async def _withdraw_all(self) -> None:
        """The client was answered 503 (nothing sent), but its admission may have run with only
        its answer lost. Take back each such job nobody will send, so it neither holds a
        reservation and a concurrency slot nor makes identical submits follow a phantom.

        One at a time, after a pause, backing off while Redis fails: admissions fail when Redis
        is overloaded or away, and a burst of retries would only make that worse."""
        pause = WITHDRAW_PAUSE
        while True:
            slot, jid, rid, deadline = await self._withdrawals.get()
            while True:
                await asyncio.sleep(pause)
                if time.monotonic() > deadline:
                    log.error("admission_not_withdrawn", job=jid, gateway_request_id=rid)
                    break
                try:
                    await self._take_back(slot, jid, rid)
                    pause = WITHDRAW_PAUSE
                    break
                except STORE_FAILURES:
                    pause = min(2.0, pause * 2)
                except Exception as exc:  # a bug must not stop the withdrawals that follow
                    log.error("withdrawal_failed", job=jid, error_type=type(exc).__name__)
                    break

    async def _take_back(self, slot: str, jid: str, rid: str) -> None:
        job = await self._records.job(slot, jid)
        if job is None or job.get("owner") != rid:
            return  # the admission never ran (or made a hit or a follower: nothing to undo)
        attached: int | None = None
        if job.state is JobState.QUEUED:
            # Identical submits that followed it were answered `in_queue`: keep it for them.
            expect, attached = JobState.QUEUED, 1
        elif job.state is JobState.SUBMITTING and job.get("queued") != "1":
            # A miss only this process would have sent. Its followers are still waiting for the
            # owner's outcome, and get this one: 503, resend.
            expect = JobState.SUBMITTING
        else:
            return  # dispatched from the queue meanwhile, or ended: its sender records it
        error = StoreUnavailable()
        previous = await self._records.update_job(
            job,
            JobState.REJECTED,
            settle_micro=0,
            expect=expect,
            expect_attached=attached,
            error_status=error.status,
            error_body=orjson.dumps(error.body()).decode(),
            reason="admission interrupted",
        )
        if previous == expect:
            log.warning("admission_withdrawn", job=jid, gateway_request_id=rid)
            self.slot_freed(slot)
        elif previous == "followed":  # the lost request stops counting as one that waits
            owner = await self._records.request(slot, rid)
            if owner is not None:
                await self._records.detach(owner, slot)

    async def _await_owner(self, admission: Admission) -> None:
        """A follower answers once the owner's submit is settled, with the same outcome."""
        record, slot = admission.record, admission.principal.slot
        pause, cap = FOLLOWER_WAIT_STEP
        deadline = time.monotonic() + self._records.lifetimes.submit_deadline
        while True:
            try:
                job = await self._records.job(slot, record.job_id)
            except STORE_FAILURES:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(cap)  # the owner's outcome is on its way; wait for Redis
                continue
            state = job.state if job else JobState.UNKNOWN
            if state is not JobState.SUBMITTING:
                break
            if time.monotonic() > deadline:
                state = JobState.UNKNOWN
                break
            await asyncio.sleep(pause)
            pause = min(cap, pause * 2)
        if state is JobState.REJECTED and job is not None:
            raise UpstreamClientError(
                int(job.get("error_status", "502")), orjson.loads(job.get("error_body", "{}"))
            )
        if state is JobState.UNKNOWN:
            raise SubmitOutcomeUnknown(detail={"request_id": record.request_id})

    # --- status, result, cancel -------------------------------------------------------------

    async def _resolve(
        self, cred: KeyCredential, rid: str, api: Api, deployment_id: str | None
    ) -> tuple[TeamPrincipal, RequestRecord, Job]:
        principal, record, job = await self._records.load(cred, rid)
        if record is None or record.api is not api:
            raise NotFound(f"Request {rid} not found.")
        if deployment_id is not None and record.target != deployment_id:
            raise NotFound(f"Request {rid} not found.")
        if job is None or (job.state is JobState.REJECTED and job.get("queued") != "1"):
            raise NotFound(f"Request {rid} not found.")
        structlog.contextvars.bind_contextvars(upstream_request_id=job.get("upstream_id") or None)
        if job.state is JobState.UNKNOWN:
            detail = {"request_id": rid, "reason": job.get("reason", "unknown")}
            if job.get("upstream_id"):
                raise UpstreamBadGateway("RunComfy lost track of this job.", detail=detail)
            raise SubmitOutcomeUnknown(detail=detail)
        return principal, record, job

    @staticmethod
    def _queued(rid: str) -> dict[str, Any]:
        """RunComfy's status of a job just accepted, until the poller's first answer."""
        return {
            "request_id": rid,
            "status": "in_queue",
            "queue_position": 0,
            "status_url": "",
            "result_url": "",
        }

    async def _heal(self, job: Job) -> None:
        """Reschedule a job in flight whose poller has gone quiet (e.g. its schedule was lost)."""
        if job.state is JobState.ACTIVE:
            last = float(job.get("last_poll_ts", "0") or 0)
            if time.time() - last > self._polling.heal_after:
                await self._records.schedule(job.slot, job.job_id, 0, only_if_absent=True)

    async def status(
        self, cred: KeyCredential, rid: str, api: Api, base: str, deployment_id: str | None = None
    ) -> tuple[TeamPrincipal, dict[str, Any]]:
        principal, record, job = await self._resolve(cred, rid, api, deployment_id)
        urls = self.urls(base, record)
        short = {"status_url": urls["status_url"], "result_url": urls["result_url"]}
        if record.detached:
            return principal, {"request_id": rid, "status": "cancelled", **short}
        if job.state in (JobState.SUBMITTING, JobState.QUEUED):
            body = self._queued(rid)
            body["queue_position"] = int(job.get("queue_position", "0") or 0)
            return principal, rewrite(body, rid, urls)
        if job.state is JobState.REJECTED:  # RunComfy refused it after it left the queue
            return principal, {"request_id": rid, "status": "failed", **short}
        await self._heal(job)
        body = rewrite(orjson.loads(job.get("status_body", "{}")), rid, urls)
        return principal, body

    async def result(
        self,
        cred: KeyCredential,
        rid: str,
        api: Api,
        base: str,
        include_cost: bool,
        deployment_id: str | None = None,
    ) -> tuple[TeamPrincipal, dict[str, Any]]:
        principal, record, job = await self._resolve(cred, rid, api, deployment_id)
        if record.detached:
            return principal, {
                "request_id": rid,
                "status": "cancelled",
                "created_at": record.created_at,
            }
        if not job.terminal:
            await self._heal(job)
            return principal, {
                "request_id": rid,
                "status": job.get("upstream_status", "in_queue") or "in_queue",
                "created_at": job.get("created_at"),
            }
        if job.state is JobState.REJECTED:
            return principal, {
                "request_id": rid,
                "status": "failed",
                "created_at": record.created_at,
                "error": orjson.loads(job.get("error_body", "{}")),
            }
        body: dict[str, Any] = rewrite(
            orjson.loads(job.get("result_body", "{}")), rid, self.urls(base, record)
        )
        if "cost" in body:
            if not include_cost:
                del body["cost"]
            elif record.role is not Role.OWNER:
                body["cost"] = 0  # a job is paid once, by the request that started it
        return principal, body

    async def cancel(
        self, cred: KeyCredential, rid: str, api: Api, deployment_id: str | None = None
    ) -> tuple[TeamPrincipal, int, dict[str, Any]]:
        principal, record, job = await self._resolve(cred, rid, api, deployment_id)
        verdict, terminal_state = await self._records.detach(record, principal.slot)
        if verdict in ("already", "detached"):
            return principal, 202, self._cancel_answer(api, rid, cancelled=True)
        if verdict == "submitting":
            raise SubmitOutcomeUnknown(
                "The request is still being submitted; retry the cancel in a moment.",
                detail={"request_id": rid},
            )
        if verdict != "last":
            state = "completed" if verdict == "terminal" else "in_progress"
            if terminal_state == JobState.CANCELLED:
                state = "cancelled"
            return principal, 202, self._cancel_answer(api, rid, cancelled=False, state=state)
        if terminal_state == JobState.QUEUED:
            return principal, *await self._cancel_queued(record, job, principal.slot)
        return principal, *await self._cancel_upstream(record, job, principal.slot)

    async def _cancel_queued(
        self, record: RequestRecord, job: Job, slot: str
    ) -> tuple[int, dict[str, Any]]:
        """The job never left the gateway: cancel it here, refund it, ask RunComfy nothing."""
        rid = record.request_id
        final = {"request_id": rid, "status": "cancelled"}
        previous = await self._records.update_job(
            job,
            JobState.CANCELLED,
            settle_micro=0,
            expect=JobState.QUEUED,
            upstream_status="cancelled",
            status_body=orjson.dumps(final).decode(),
            result_body=orjson.dumps({**final, "created_at": job.get("created_at")}).decode(),
        )
        if previous != JobState.QUEUED:  # the dispatcher sent it meanwhile
            await self._records.reattach(record, slot)
            raise SubmitOutcomeUnknown(
                "The request is being submitted; retry the cancel in a moment.",
                detail={"request_id": rid},
            )
        return 202, self._cancel_answer(record.api, rid, cancelled=True)

    async def _cancel_upstream(
        self, record: RequestRecord, job: Job, slot: str
    ) -> tuple[int, dict[str, Any]]:
        """The last follower is leaving: ask RunComfy, and follow its verdict."""
        rid = record.request_id
        path = upstream_path(
            record.api, record.target, job.get("version"), job.get("upstream_id"), "cancel"
        )
        try:
            reply = await self.upstream(record.api).call("POST", path, idempotent=True)
        except GatewayError:
            await self._records.reattach(record, slot)
            raise
        body = reply.body if isinstance(reply.body, dict) else {}
        confirmed = body.get("outcome") == "cancelled" or body.get("status") in (
            "cancellation_requested",
            "cancelled",
        )
        if not confirmed:
            await self._records.reattach(record, slot)
            return reply.status, rewrite(body, rid, {})
        final = {"request_id": job.get("upstream_id"), "status": "cancelled"}
        result = {**final, "created_at": job.get("created_at")}
        previous = await self._records.update_job(
            job,
            JobState.CANCELLED,
            settle_micro=0,
            upstream_status="cancelled",
            status_body=orjson.dumps(final).decode(),
            result_body=orjson.dumps(result).decode(),
        )
        await self._records.unschedule(slot, job.job_id)
        if previous in LIVE:
            await self.release_global_slot(slot, job.job_id)
            await self._webhooks.job_changed(job, "cancelled", result, final=True)
        return reply.status, rewrite(body, rid, {})

    @staticmethod
    def _cancel_answer(
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
