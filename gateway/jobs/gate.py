"""The key-checked way in to requests and jobs: admitting a submit, and reading one's own request.

Every script here verifies the client's key before anything else, in the same round trip as the
work it guards: an admission hits, follows or claims a job (and takes the team's concurrency slot,
budget and rate) atomically; a load reads the caller's request and its job, charged to the poll
rate. What the gateway does with the records afterwards, with no key in sight, is
:class:`gateway.jobs.records.RequestRecords`.
"""

from __future__ import annotations

from typing import TypeVar

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal, unauthorized_reason
from gateway.common.clock import now_iso
from gateway.common.errors import PollRateExceeded
from gateway.common.records import record
from gateway.jobs.job import Job
from gateway.jobs.records import (
    REQUEST_ID_RE,
    SHARED_SHARD,
    Lifetimes,
    RequestRecord,
    Role,
    new_id,
)
from gateway.money.quotas import BudgetAlert, Calendar, QuotaConfig, RateLimitState, refusal
from gateway.store.contracts import (
    AdmitArgs,
    Admitted,
    AuthenticateArgs,
    KeyRefused,
    LimitRefused,
    LoadRequestArgs,
    PollTooFast,
    RefuseSubmitArgs,
    Scope,
    TeamPolicyArgs,
)
from gateway.store.contracts import (
    Outcome as Outcome,
)
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts
from gateway.upstream.apis import Api

# Bodies up to this go with every admission; larger ones only when their job is queued.
INLINE_BODY_BYTES = 64 * 1024


@record
class Charge:
    """What a new job would cost, for the budget checks at admission."""

    estimate_micro: int = 0
    rate_micro: int = 0  # serverless: micro-dollars per second, to settle to the measured run
    raw: bytes = b""  # the body, kept with the job while it waits in the queue

    @property
    def inline(self) -> bool:
        """Whether the body goes with the admission (small), or only if its job is queued
        (:meth:`gateway.jobs.queues.TeamQueues.store_queued_body`): no large body travels to
        Redis for nothing."""
        return len(self.raw) <= INLINE_BODY_BYTES


@record
class Lookup:
    """What a submit may reuse, from the dedup policy and the caller's cache controls."""

    identity: str
    pinned: bool = False  # the request pins its seeds (gateway.jobs.seeds): ``seeded`` may cache it
    allow_lookup: bool = True
    allow_store: bool = True
    max_age: float | None = None
    webhook: str = ""
    webhook_intermediate: bool = False


@record
class Admission:
    principal: TeamPrincipal
    record: RequestRecord
    outcome: Outcome
    policy: str
    saved_micro: int = 0  # a hit: what the cached job cost; coalesced: the owner's estimate
    queue_position: int = 0
    rate_limit: RateLimitState | None = None
    alert: BudgetAlert | None = None


@record
class _Submit:
    """One submit being admitted, with the ids its request and job will have."""

    cred: KeyCredential
    api: Api
    target: str
    version: str
    lookup: Lookup
    charge: Charge
    request_id: str
    job_id: str
    created_at: str


@record
class _Placement:
    """Where a submit is admitted: its team's shard, or (cache scope ``shared``) the shared one,
    whose admission the team's shard has already half done (key, policy, outcome-free limits)."""

    shard: str
    scope: Scope
    team: str = ""  # known before admission only in the shared scope
    policy: str = ""
    shared_limit: RateLimitState | None = None


T = TypeVar("T")

_OUTCOME_ROLES = {Outcome.HIT: Role.HIT, Outcome.COALESCED: Role.FOLLOWER}


def _admitted(reply: KeyRefused | LimitRefused | T, target: str, estimate_micro: int) -> T:
    """The gate scripts' shared refusals: a refused key is 401, a refused limit 429 (or 402,
    403, 413: :func:`refusal`)."""
    if isinstance(reply, KeyRefused):
        raise unauthorized_reason(reply.reason)
    if isinstance(reply, LimitRefused):
        raise refusal(reply, target, estimate_micro)
    return reply


def _admission(submit: _Submit, place: _Placement, admitted: Admitted) -> Admission:
    """The admit script's reply, as the submit sees it."""
    record = RequestRecord(
        request_id=submit.request_id,
        team_id=admitted.team,
        key_id=submit.cred.key_id,
        api=submit.api,
        target=submit.target,
        version=submit.version,
        job_id=admitted.job_id,
        role=_OUTCOME_ROLES.get(admitted.outcome, Role.OWNER),
        created_at=submit.created_at,
        detached=False,
    )
    # principal.slot is where this request and its job live: the team's shard, or the shared one
    principal = TeamPrincipal(team_id=admitted.team, slot=place.shard, key_id=submit.cred.key_id)
    alert = None
    if admitted.alert_level > 0:
        alert = BudgetAlert(
            admitted.team,
            admitted.alert_level,
            admitted.budget_period,
            admitted.committed_micro,
            admitted.budget_micro,
        )
    return Admission(
        principal,
        record,
        admitted.outcome,
        admitted.policy,
        saved_micro=admitted.saved_micro,
        queue_position=admitted.queue_position,
        rate_limit=place.shared_limit or RateLimitState.from_info(admitted.rate_limit),
        alert=alert,
    )


class Gate:
    """Admission of submits and the caller's own lookups, each behind its key check."""

    def __init__(
        self,
        scripts: Scripts,
        layout: Layout,
        lifetimes: Lifetimes,
        calendar: Calendar,
        quota: QuotaConfig,
    ) -> None:
        self._scripts = scripts
        self._layout = layout
        self._lifetimes = lifetimes
        self._calendar = calendar
        self._quota = quota

    async def charge_refused_submit(self, cred: KeyCredential, target: str) -> str:
        """Verify the key of a submit refused before admission and charge it to the submit rate
        only; returns the team. Raises 401, or 429 when over the rate."""
        reply = await self._scripts.run(
            RefuseSubmitArgs(
                key_record=self._layout.key(cred.slot, cred.kid),
                team_limits=self._layout.limits(cred.slot),
                key_digest=cred.digest,
                team_prefix=self._layout.team_prefix(cred.slot),
                period_spec=self._calendar.spec(),
                kid=cred.kid,
                usage_retention=self._quota.usage_retention,
            )
        )
        return _admitted(reply, target, 0).team

    async def admit(
        self,
        cred: KeyCredential,
        api: Api,
        target: str,
        version: str,
        lookup: Lookup,
        charge: Charge | None = None,
        ids: tuple[str, str] | None = None,
    ) -> Admission:
        """Verify the key and hit, follow or claim a job, atomically. ``ids``: the new request's
        and job's ids, so a caller can find them if the answer is lost."""
        rid, jid = ids or (new_id(), new_id())
        charge = charge or Charge()
        submit = _Submit(cred, api, target, version, lookup, charge, rid, jid, now_iso())
        place = await self._placement(submit)
        reply = await self._scripts.run(self._admit_args(submit, place))
        return _admission(submit, place, _admitted(reply, target, charge.estimate_micro))

    async def _placement(self, submit: _Submit) -> _Placement:
        """The team's shard; in the shared scope, the shared shard, after the first of two
        steps: verify the key, charge the outcome-free limits and resolve the policy in the
        team's shard."""
        cred, layout = submit.cred, self._layout
        if not self._lifetimes.shared:
            return _Placement(cred.slot, Scope.TEAM, policy=self._lifetimes.default_policy)
        shard = cred.slot
        reply = await self._scripts.run(
            TeamPolicyArgs(
                key_record=layout.key(shard, cred.kid),
                policy_hash=layout.policy(shard),
                team_limits=layout.limits(shard),
                key_digest=cred.digest,
                key_id=cred.key_id,
                target=submit.target,
                default_policy=self._lifetimes.default_policy,
                api=submit.api.value,
                team_prefix=layout.team_prefix(shard),
                period_spec=self._calendar.spec(),
                kid=cred.kid,
                usage_retention=self._quota.usage_retention,
            )
        )
        team_half = _admitted(reply, submit.target, submit.charge.estimate_micro)
        return _Placement(
            SHARED_SHARD,
            Scope.SHARED,
            team=team_half.team,
            policy=team_half.policy,
            shared_limit=RateLimitState.from_info(team_half.rate_limit),
        )

    def _admit_args(self, submit: _Submit, place: _Placement) -> AdmitArgs:
        """The admit script's arguments. In the shared scope the key and policy were read
        already, and every key must share a shard: the request's record stands in for them."""
        life, layout, shard = self._lifetimes, self._layout, place.shard
        cred, lookup, charge = submit.cred, submit.lookup, submit.charge
        shared = place.scope is Scope.SHARED
        request_key = layout.request(shard, submit.request_id)
        return AdmitArgs(
            key_record=request_key if shared else layout.key(shard, cred.kid),
            request_record=request_key,
            policy_hash=request_key if shared else layout.policy(shard),
            cached_result=layout.dedup(shard, lookup.identity),
            job_record=layout.job(shard, submit.job_id),
            inflight_job=layout.inflight(shard, lookup.identity),
            team_limits=layout.limits(shard),
            running_jobs=layout.running(shard),
            queued_jobs=layout.queue(shard),
            queue_seq=layout.queue_seq(shard),
            key_digest=cred.digest,
            key_id=cred.key_id,
            api=submit.api.value,
            target=submit.target,
            identity=lookup.identity,
            allow_lookup=lookup.allow_lookup,
            allow_store=lookup.allow_store,
            max_age=-1 if lookup.max_age is None else lookup.max_age,
            job_lifetime=life.job_lifetime,
            request_ttl=life.request_ttl,
            job_prefix=layout.job_prefix(shard),
            job_id=submit.job_id,
            created_at=submit.created_at,
            default_policy=place.policy,
            request_id=submit.request_id,
            submit_deadline=life.submit_deadline,
            version=submit.version,
            webhook=lookup.webhook,
            webhook_intermediate=lookup.webhook_intermediate,
            scope=place.scope,
            shared_team=place.team,
            team_prefix=layout.team_prefix(shard),
            period_spec=self._calendar.spec(),
            estimate_micro=charge.estimate_micro,
            rate_micro=charge.rate_micro,
            body=charge.raw if charge.inline else "",
            default_queue_depth=self._quota.default_queue_depth,
            usage_retention=self._quota.usage_retention,
            kid=cred.kid,
            body_pending=not charge.inline,
            pinned=lookup.pinned,
        )

    async def load(
        self, cred: KeyCredential, rid: str, omitted: str = ""
    ) -> tuple[TeamPrincipal, RequestRecord | None, Job | None]:
        """Verify the key and read the caller's request ``rid`` and its job, in one round trip
        (two in the shared scope: the key in the team's shard, the request in the shared one),
        without the job field ``omitted`` (its default then)."""
        if not REQUEST_ID_RE.fullmatch(rid):
            rid = ""  # still verify the key: a bad key must get 401, not 404
        shard, scope, team = cred.slot, Scope.TEAM, ""
        if self._lifetimes.shared:
            verdict = await self._scripts.run(
                AuthenticateArgs(
                    key_record=self._layout.key(shard, cred.kid), key_digest=cred.digest
                )
            )
            if isinstance(verdict, KeyRefused):
                raise unauthorized_reason(verdict.reason)
            shard, scope, team = SHARED_SHARD, Scope.SHARED, verdict.team_id
        request_key = self._layout.request(shard, rid)
        reply = await self._scripts.run(
            LoadRequestArgs(
                key_record=request_key
                if scope is Scope.SHARED
                else self._layout.key(shard, cred.kid),
                request_record=request_key,
                queued_jobs=self._layout.queue(shard),
                key_digest=cred.digest,
                job_prefix=self._layout.job_prefix(shard),
                scope=scope,
                shared_team=team,
                kid=cred.kid,
                poll_rate=self._quota.poll_rate,
                poll_burst=self._quota.poll_burst,
                team_prefix=self._layout.team_prefix(shard),
                omitted=omitted,
            )
        )
        if isinstance(reply, KeyRefused):
            raise unauthorized_reason(reply.reason)
        if isinstance(reply, PollTooFast):
            wait = max(1, int(-(-reply.wait_seconds // 1)))
            raise PollRateExceeded(
                f"Too many status and result calls with this API key: the limit is "
                f"{self._quota.poll_rate:g} per second. Retry in {wait} s.",
                detail={"limit": "poll_rate", "retry_after_seconds": wait},
                extra_headers={"Retry-After": str(wait)},
            )
        principal = TeamPrincipal(team_id=reply.team, slot=shard, key_id=cred.key_id)
        if not reply.request or not rid:
            return principal, None, None
        record = RequestRecord.from_hash(rid, reply.request)
        job = Job.from_fields(record.job_id, shard, reply.job) if reply.job else None
        return principal, record, job
