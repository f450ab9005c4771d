"""Submits under gateway ids: admission with dedup, then the outcome the client is answered.

Every submit goes through one admission script, which hits a cached result, follows a job in
flight (coalesces), queues the job behind the team's concurrency limit or makes the caller the
owner of a new job. Only the owner calls RunComfy (:mod:`gateway.jobs.send`); a follower
answers once the owner's outcome is known, with the same outcome. A Redis failure mid-admission
is answered 503, and the admission taken back if it ran (:mod:`gateway.jobs.withdrawals`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, Protocol

import orjson

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal
from gateway.common.errors import (
    QuotaRefused,
    StoreUnavailable,
    SubmitOutcomeUnknown,
    UpstreamClientError,
)
from gateway.common.records import record
from gateway.jobs.answers import request_urls
from gateway.jobs.dedup import CacheControl, DedupService
from gateway.jobs.gate import Admission, Charge, Gate, Lookup, Outcome
from gateway.jobs.job import Job, JobState
from gateway.jobs.notices import AdmissionNotices
from gateway.jobs.queues import TeamQueues
from gateway.jobs.records import RequestRecord, RequestRecords, new_id
from gateway.jobs.send import SendDecided, Sender
from gateway.jobs.withdrawals import Withdrawals
from gateway.upstream.apis import Api

FOLLOWER_WAIT_STEP = (0.01, 0.1)  # first and largest pause while a coalesced submit waits


@record
class SubmitAnswer:
    """What a submit is answered: the request, its outcome, RunComfy's body and headers."""

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


class SubmitService:
    """Admits a submit and sees it to the outcome its client is answered with."""

    def __init__(
        self,
        gate: Gate,
        records: RequestRecords,
        queues: TeamQueues,
        dedup: DedupService,
        estimator: Estimator,
        sender: Sender,
        withdrawals: Withdrawals,
        notices: AdmissionNotices,
    ) -> None:
        self._gate = gate
        self._records = records
        self._queues = queues
        self._dedup = dedup
        self._estimator = estimator
        self._sender = sender
        self._withdrawals = withdrawals
        self._notices = notices

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
        lookup = await self._lookup(cred, api, target, body, control)
        if webhook is not None:
            lookup = replace(lookup, webhook=webhook[0], webhook_intermediate=webhook[1])
        estimate, rate = await self._estimator.charge(api, target, body)
        rid, jid = new_id(), new_id()
        try:
            admission = await self._gate.admit(
                cred, api, target, version, lookup, Charge(estimate, rate, raw), ids=(rid, jid)
            )
        except QuotaRefused as exc:
            self._notices.refused(exc)
            raise
        except StoreUnavailable:
            # The script may have run and only its answer been lost with the connection.
            self._withdrawals.later(self._records.scope_shard(cred.slot), jid, rid)
            raise
        try:
            return await self._after_admission(admission, api, target, lookup, raw, base, webhook)
        except SendDecided:
            raise  # sent or not, the send decided: never withdraw it
        except StoreUnavailable:
            if admission.outcome in (Outcome.MISS, Outcome.QUEUED):
                self._withdrawals.later(admission.principal.slot, jid, rid)
            raise

    async def _lookup(
        self,
        cred: KeyCredential,
        api: Api,
        target: str,
        body: dict[str, Any],
        control: CacheControl,
    ) -> Lookup:
        try:
            return await self._dedup.lookup_for(api, target, body, control)
        except UpstreamClientError as exc:
            if exc.status != 404:
                raise
            # RunComfy has no such model: its own 404, never submitted; the key is verified and
            # the submit rate charged, but no daily submit, usage row or cache outcome counted.
            await self._gate.charge_refused_submit(cred, target)
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
        await self._notices.admitted(admission, target, webhook[0] if webhook else None)
        # Counted once RunComfy took the job (or may have): a submit it refused (no job) is
        # no miss or coalesced request in the metrics, as it is in no usage row.
        try:
            outcome = await self._start(admission, lookup.identity, raw)
        except (SubmitOutcomeUnknown, StoreUnavailable):
            self._notices.counted(admission, api, target)
            raise
        self._notices.counted(admission, api, target)
        shard, jid = admission.principal.slot, admission.record.job_id
        if admission.outcome is Outcome.QUEUED and not Charge(raw=raw).inline:
            # A large body goes to Redis only now that its job waits in the queue.
            await self._queues.store_queued_body(shard, jid, raw)
        if outcome is Outcome.QUEUED:
            await self._queues.mark_waiting(shard)
        return self._answer(admission, outcome, lookup.identity, base)

    async def _start(self, admission: Admission, identity: str, raw: bytes) -> Outcome:
        """Send a new job, or wait for the owner of the job followed; the outcome answered."""
        if admission.outcome is Outcome.MISS:
            job = self._job_of(admission, identity)
            return Outcome.MISS if await self._sender.send_owned(job, raw) else Outcome.QUEUED
        if admission.outcome is Outcome.COALESCED:
            await self._await_owner(admission)
        return admission.outcome

    @staticmethod
    def _answer(admission: Admission, outcome: Outcome, identity: str, base: str) -> SubmitAnswer:
        record = admission.record
        answer: dict[str, Any] = {"request_id": record.request_id, **request_urls(base, record)}
        headers = admission.rate_limit.headers() if admission.rate_limit else {}
        if outcome is Outcome.QUEUED:
            headers["X-Gateway-Queue-Position"] = str(max(1, admission.queue_position))
        return SubmitAnswer(admission.principal, record, outcome, identity, answer, headers)

    @staticmethod
    def _job_of(admission: Admission, identity: str) -> Job:
        """The job a miss just recorded, as far as sending it needs."""
        record = admission.record
        return Job(
            job_id=record.job_id,
            shard=admission.principal.slot,
            state=JobState.SUBMITTING,
            api=record.api,
            target=record.target,
            identity=identity,
            version=record.version,
            owner=record.request_id,
            team=record.team_id,
        )

    async def _await_owner(self, admission: Admission) -> None:
        """A follower answers once the owner's submit is settled, with the same outcome."""
        record, shard = admission.record, admission.principal.slot
        pause, cap = FOLLOWER_WAIT_STEP
        deadline = time.monotonic() + self._records.lifetimes.submit_deadline
        while True:
            try:
                job = await self._records.job(shard, record.job_id)
            except StoreUnavailable:
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
            error_body = orjson.loads(job.error_body or "{}")
            raise UpstreamClientError(job.error_status or 502, error_body)
        if state is JobState.UNKNOWN:
            raise SubmitOutcomeUnknown(detail={"request_id": record.request_id})
