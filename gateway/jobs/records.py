"""Gateway request ids and the upstream jobs they follow.

A **job** is one real RunComfy job. A **request** is what one client sees: a gateway request id
owned by one team, following one job as its owner (it started the job), a follower (it coalesced
onto a job in flight) or a hit (it was answered from a completed job). Both live in the team's
shard (a Redis Cluster hash tag), so admission, lookups and state changes are single scripts in
one Redis Cluster hash slot.

A job is written *before* its submit leaves the gateway, so nothing reaches RunComfy unrecorded.
Requests are looked up with the caller's shard: another team's id is not merely forbidden but
unaddressable, and answers 404 exactly like an unknown id.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal, unauthorized_reason
from gateway.common.clock import now_iso
from gateway.common.errors import PollRateExceeded
from gateway.jobs.job import NO_CHANGE, Job, JobChange, JobState
from gateway.money.quotas import BudgetAlert, Calendar, QuotaConfig, RateLimitState, refusal
from gateway.store.client import Store
from gateway.store.commands import Commands, RedisPyCommands
from gateway.store.contracts import (
    AccountSlotArgs,
    AccountSlotOp,
    AdmitArgs,
    Admitted,
    AuthenticateArgs,
    DetachArgs,
    DispatchArgs,
    Dispatched,
    JobUpdateArgs,
    KeyRefused,
    LimitRefused,
    LoadRequestArgs,
    PollClaimArgs,
    PollScheduleArgs,
    PollTooFast,
    QueueBodyArgs,
    ReattachArgs,
    RefuseSubmitArgs,
    RequeueArgs,
    ScheduleMode,
    Scope,
    TeamAdmitted,
    TeamPolicyArgs,
    ZremIfOlderArgs,
)
from gateway.store.contracts import (
    Outcome as Outcome,
)
from gateway.store.layout import UNKNOWN_SUBMITS_CAP, Layout
from gateway.store.scripts import Scripts
from gateway.upstream.apis import Api

REQUEST_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class Role(StrEnum):
    OWNER = "owner"
    FOLLOWER = "follower"
    HIT = "hit"


# Bodies up to this go with every admission; larger ones only when their job is queued.
INLINE_BODY_BYTES = 64 * 1024
# Plain dict lookups for the hot path: calling an enum class on a value costs ~20x more.
_APIS = {api.value: api for api in Api}
_ROLES = {role.value: role for role in Role}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    team_id: str
    key_id: str
    api: Api
    target: str  # model id or deployment id
    version: str  # serverless API version of the creating call (v1/v2); "" for the Model API
    job_id: str
    role: Role
    created_at: str
    detached: bool

    @classmethod
    def from_hash(cls, request_id: str, fields: dict[str, str]) -> RequestRecord:
        return cls(
            request_id=request_id,
            team_id=fields["team"],
            key_id=fields.get("key_id", ""),
            api=_APIS[fields["api"]],
            target=fields["target"],
            version=fields.get("version", ""),
            job_id=fields.get("job", ""),
            role=_ROLES[fields.get("role", "owner")],
            created_at=fields.get("created_at", ""),
            detached=fields.get("detached") == "1",
        )


@dataclass(frozen=True, slots=True)
class Admission:
    principal: TeamPrincipal
    record: RequestRecord
    outcome: Outcome
    policy: str
    saved_micro: int = 0  # a hit: what the cached job cost; coalesced: the owner's estimate
    queue_position: int = 0
    rate_limit: RateLimitState | None = None
    alert: BudgetAlert | None = None


T = TypeVar("T")


def _admitted(reply: KeyRefused | LimitRefused | T, target: str, estimate_micro: int) -> T:
    """The gate scripts' shared refusals: a refused key is 401, a refused limit 429 (or 402,
    403, 413: :func:`refusal`)."""
    if isinstance(reply, KeyRefused):
        raise unauthorized_reason(reply.reason)
    if isinstance(reply, LimitRefused):
        raise refusal(reply, target, estimate_micro)
    return reply


@dataclass(frozen=True, slots=True)
class Charge:
    """What a new job would cost, for the budget checks at admission."""

    estimate_micro: int = 0
    rate_micro: int = 0  # serverless: micro-dollars per second, to settle to the measured run
    raw: bytes = b""  # the body, kept with the job while it waits in the queue

    @property
    def inline(self) -> bool:
        """Whether the body goes with the admission (small), or only if its job is queued
        (:meth:`RequestRecords.store_queued_body`): no large body travels to Redis for nothing."""
        return len(self.raw) <= INLINE_BODY_BYTES


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a submit may reuse, from the dedup policy and the caller's cache controls."""

    identity: str
    pinned: bool = False  # the request pins its seeds (gateway.jobs.seeds): ``seeded`` may cache it
    allow_lookup: bool = True
    allow_store: bool = True
    max_age: float | None = None
    webhook: str = ""
    webhook_intermediate: bool = False


@dataclass(frozen=True, slots=True)
class JobUpdate:
    previous: str
    alert: BudgetAlert | None = None


@dataclass(frozen=True, slots=True)
class Lifetimes:
    request_ttl: int
    job_lifetime: int
    cache_ttl: int
    submit_deadline: float
    default_policy: str
    shared: bool = False  # the cache scope: one shared shard for all teams' requests and jobs


SHARED_SHARD = "shared"  # never a team's shard: those are 8 characters


_OUTCOME_ROLES = {Outcome.HIT: Role.HIT, Outcome.COALESCED: Role.FOLLOWER}


def _admission(
    principal: TeamPrincipal,
    record: RequestRecord,
    admitted: Admitted,
    shared_limit: RateLimitState | None,
) -> Admission:
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
        rate_limit=shared_limit or RateLimitState.from_info(admitted.rate_limit),
        alert=alert,
    )


def new_id() -> str:
    return str(uuid.uuid4())


class RequestRecords:
    """Admission, lookups and state changes of requests and jobs."""

    def __init__(
        self,
        redis: Store,
        scripts: Scripts,
        layout: Layout,
        lifetimes: Lifetimes,
        calendar: Calendar,
        quota: QuotaConfig,
        commands: Commands | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._commands = commands or RedisPyCommands(redis)
        self._layout = layout
        self.lifetimes = lifetimes
        self.calendar = calendar
        self.quota = quota

    async def charge_refused_submit(self, cred: KeyCredential, target: str) -> str:
        """Verify the key of a submit refused before admission and charge it to the submit rate
        only; returns the team. Raises 401, or 429 when over the rate."""
        reply = await self._scripts.run(
            RefuseSubmitArgs(
                key_record=self._layout.key(cred.slot, cred.kid),
                team_limits=self._layout.limits(cred.slot),
                key_digest=cred.digest,
                team_prefix=self._layout.team_prefix(cred.slot),
                period_spec=self.calendar.spec(),
                kid=cred.kid,
                usage_retention=self.quota.usage_retention,
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
        created_at = now_iso()
        charge = charge or Charge()
        life, layout = self.lifetimes, self._layout
        shard, scope, team, policy = cred.slot, Scope.TEAM, "", life.default_policy
        shared_limit: RateLimitState | None = None
        if life.shared:
            # Two shards, two steps: the key and policy in the team's, the rest in the shared one.
            team_half = await self._admit_in_team_shard(cred, api, target, charge)
            team, policy = team_half.team, team_half.policy
            shared_limit = RateLimitState.from_info(team_half.rate_limit)
            shard, scope = SHARED_SHARD, Scope.SHARED
        request_key = layout.request(shard, rid)
        # In the shared scope the key and policy were read already; every key must share a shard.
        reply = await self._scripts.run(
            AdmitArgs(
                key_record=request_key if life.shared else layout.key(shard, cred.kid),
                request_record=request_key,
                policy_hash=request_key if life.shared else layout.policy(shard),
                cached_result=layout.dedup(shard, lookup.identity),
                job_record=layout.job(shard, jid),
                inflight_job=layout.inflight(shard, lookup.identity),
                team_limits=layout.limits(shard),
                running_jobs=layout.running(shard),
                queued_jobs=layout.queue(shard),
                queue_seq=layout.queue_seq(shard),
                key_digest=cred.digest,
                key_id=cred.key_id,
                api=api.value,
                target=target,
                identity=lookup.identity,
                allow_lookup=lookup.allow_lookup,
                allow_store=lookup.allow_store,
                max_age=-1 if lookup.max_age is None else lookup.max_age,
                job_lifetime=life.job_lifetime,
                request_ttl=life.request_ttl,
                job_prefix=layout.job_prefix(shard),
                job_id=jid,
                created_at=created_at,
                default_policy=str(policy),
                request_id=rid,
                submit_deadline=life.submit_deadline,
                version=version,
                webhook=lookup.webhook,
                webhook_intermediate=lookup.webhook_intermediate,
                scope=scope,
                shared_team=str(team),
                team_prefix=layout.team_prefix(shard),
                period_spec=self.calendar.spec(),
                estimate_micro=charge.estimate_micro,
                rate_micro=charge.rate_micro,
                body=charge.raw if charge.inline else "",
                default_queue_depth=self.quota.default_queue_depth,
                usage_retention=self.quota.usage_retention,
                kid=cred.kid,
                body_pending=not charge.inline,
                pinned=lookup.pinned,
            )
        )
        admitted = _admitted(reply, target, charge.estimate_micro)
        record = RequestRecord(
            request_id=rid,
            team_id=admitted.team,
            key_id=cred.key_id,
            api=api,
            target=target,
            version=version,
            job_id=admitted.job_id,
            role=_OUTCOME_ROLES.get(admitted.outcome, Role.OWNER),
            created_at=created_at,
            detached=False,
        )
        # principal.slot is where this request and its job live: the team's shard, or the shared one
        principal = TeamPrincipal(team_id=admitted.team, slot=shard, key_id=cred.key_id)
        return _admission(principal, record, admitted, shared_limit)

    async def _admit_in_team_shard(
        self, cred: KeyCredential, api: Api, target: str, charge: Charge
    ) -> TeamAdmitted:
        """The shared scope's first step: verify the key, charge the outcome-free limits and
        resolve the policy in the team's shard."""
        shard, layout = cred.slot, self._layout
        reply = await self._scripts.run(
            TeamPolicyArgs(
                key_record=layout.key(shard, cred.kid),
                policy_hash=layout.policy(shard),
                team_limits=layout.limits(shard),
                key_digest=cred.digest,
                key_id=cred.key_id,
                target=target,
                default_policy=self.lifetimes.default_policy,
                api=api.value,
                team_prefix=layout.team_prefix(shard),
                period_spec=self.calendar.spec(),
                kid=cred.kid,
                usage_retention=self.quota.usage_retention,
            )
        )
        return _admitted(reply, target, charge.estimate_micro)

    async def load(
        self, cred: KeyCredential, rid: str
    ) -> tuple[TeamPrincipal, RequestRecord | None, Job | None]:
        """Verify the key and read the caller's request ``rid`` and its job, in one round trip
        (two in the shared scope: the key in the team's shard, the request in the shared one)."""
        if not REQUEST_ID_RE.fullmatch(rid):
            rid = ""  # still verify the key: a bad key must get 401, not 404
        shard, scope, team = cred.slot, Scope.TEAM, ""
        if self.lifetimes.shared:
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
                poll_rate=self.quota.poll_rate,
                poll_burst=self.quota.poll_burst,
                team_prefix=self._layout.team_prefix(shard),
            )
        )
        if isinstance(reply, KeyRefused):
            raise unauthorized_reason(reply.reason)
        if isinstance(reply, PollTooFast):
            wait = max(1, int(-(-reply.wait_seconds // 1)))
            raise PollRateExceeded(
                f"Too many status and result calls with this API key: the limit is "
                f"{self.quota.poll_rate:g} per second. Retry in {wait} s.",
                detail={"limit": "poll_rate", "retry_after_seconds": wait},
                extra_headers={"Retry-After": str(wait)},
            )
        principal = TeamPrincipal(team_id=reply.team, slot=shard, key_id=cred.key_id)
        if not reply.request or not rid:
            return principal, None, None
        record = RequestRecord.from_hash(rid, reply.request)
        job = Job.from_fields(record.job_id, shard, reply.job) if reply.job else None
        return principal, record, job

    async def request(self, shard: str, rid: str) -> RequestRecord | None:
        """A request record by id, with no key check (for the gateway's own bookkeeping)."""
        fields = await self._commands.hgetall(self._layout.request(shard, rid))
        return RequestRecord.from_hash(rid, fields) if fields else None

    async def job(self, shard: str, jid: str) -> Job | None:
        fields = await self._commands.hgetall(self._layout.job(shard, jid))
        return Job.from_fields(jid, shard, fields) if fields else None

    async def update_job(
        self,
        job: Job,
        state: JobState,
        *,
        settle_micro: int | None = None,
        expect: JobState | None = None,
        expect_attached: int | None = None,
        change: JobChange = NO_CHANGE,
    ) -> str:
        """Move a job on; returns its previous state. Terminal states are never left.

        Ending a job settles its reservation to ``settle_micro`` (an unknown outcome keeps it
        reserved in the unreconciled ledger). With ``expect``, nothing changes unless the job
        was in that state; with ``expect_attached``, unless exactly that many requests follow
        it (else the previous state returned is ``followed``).
        """
        update = await self.update_job_full(
            job,
            state,
            settle_micro=settle_micro,
            expect=expect,
            expect_attached=expect_attached,
            change=change,
        )
        return update.previous

    async def update_job_full(
        self,
        job: Job,
        state: JobState,
        *,
        settle_micro: int | None = None,
        expect: JobState | None = None,
        expect_attached: int | None = None,
        change: JobChange = NO_CHANGE,
    ) -> JobUpdate:
        shard, target, identity = job.shard, job.target, job.identity
        layout = self._layout
        reply = await self._scripts.run(
            JobUpdateArgs(
                job_record=layout.job(shard, job.job_id),
                cached_result=layout.dedup(shard, identity),
                target_index=layout.cache_index(shard, target),
                cached_targets=layout.cache_targets(shard),
                inflight_job=layout.inflight(shard, identity),
                running_jobs=layout.running(shard),
                queued_jobs=layout.queue(shard),
                unreconciled=layout.unreconciled(shard),
                team_limits=layout.limits(shard),
                job_id=job.job_id,
                new_state=state.value,
                record_ttl=self.lifetimes.request_ttl,
                cache_ttl=self.lifetimes.cache_ttl,
                target=target,
                identity=identity,
                settled_micro=settle_micro,
                expect_state=None if expect is None else expect.value,
                usage_retention=self.quota.usage_retention,
                expect_attached=expect_attached,
                fields=tuple(item for pair in change.to_fields().items() for item in pair),
            )
        )
        alert = None
        if reply.alert_level > 0:
            period = reply.spend_record.rsplit(":spend:", 1)[-1]
            alert = BudgetAlert(
                job.team,
                reply.alert_level,
                period,
                reply.committed_micro,
                reply.budget_micro,
            )
        return JobUpdate(reply.previous, alert)

    # --- the team queue and the account-wide cap ------------------------------------------

    async def dispatch(self, shard: str, most: int) -> Dispatched:
        """Start queued jobs of a team whose slots are free."""
        return await self._scripts.run(
            DispatchArgs(
                team_limits=self._layout.limits(shard),
                running_jobs=self._layout.running(shard),
                queued_jobs=self._layout.queue(shard),
                job_prefix=self._layout.job_prefix(shard),
                submit_deadline=self.lifetimes.submit_deadline,
                most=most,
            )
        )

    async def store_queued_body(self, shard: str, jid: str, raw: bytes) -> bool:
        """Store the body of a queued job admitted without it; False if it no longer waits."""
        reply = await self._scripts.run(
            QueueBodyArgs(job_record=self._layout.job(shard, jid), body=raw)
        )
        return reply.stored

    async def requeue(self, shard: str, jid: str, raw: bytes) -> bool:
        reply = await self._scripts.run(
            RequeueArgs(
                job_record=self._layout.job(shard, jid),
                running_jobs=self._layout.running(shard),
                queued_jobs=self._layout.queue(shard),
                job_id=jid,
                body=raw,
            )
        )
        return reply.requeued

    async def mark_waiting(self, shard: str) -> None:
        """Tell every replica's dispatcher that this team has queued jobs."""
        await self._redis.zadd(self._layout.queue_waiting(), {shard: time.time()})

    async def waiting_shards(self) -> list[tuple[str, float]]:
        members: Any = await self._redis.zrange(
            self._layout.queue_waiting(), 0, -1, withscores=True
        )
        return [(str(m), float(score)) for m, score in members]

    async def unmark_waiting(self, shard: str, seen: float) -> None:
        """Forget a team's queue, unless someone queued a job after ``seen``."""
        await self._scripts.run(
            ZremIfOlderArgs(sorted_set=self._layout.queue_waiting(), member=shard, seen_score=seen)
        )

    async def queue_lengths(self, shards: list[str]) -> list[tuple[int, int]]:
        """(queued jobs, expired running slots) of each team."""
        now = self.calendar.now()
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zcard(self._layout.queue(shard))
                pipe.zcount(self._layout.running(shard), "-inf", now)
            counts = [int(n) for n in await pipe.execute()]
        return list(zip(counts[::2], counts[1::2], strict=True))

    async def account_slot(
        self, op: AccountSlotOp, shard: str, jid: str, cap: int, seconds: float
    ) -> bool:
        """Acquire, extend or release the job's place under the account-wide cap; whether it
        holds one afterwards."""
        reply = await self._scripts.run(
            AccountSlotArgs(
                account_running=self._layout.account_running(),
                op=op,
                member=f"{shard}|{jid}",
                cap=cap,
                seconds=seconds,
            )
        )
        return reply.held

    async def detach(self, record: RequestRecord, shard: str) -> tuple[str, str]:
        reply = await self._scripts.run(
            DetachArgs(
                job_record=self._layout.job(shard, record.job_id),
                request_record=self._layout.request(shard, record.request_id),
            )
        )
        return reply.verdict.value, reply.state

    async def reattach(self, record: RequestRecord, shard: str) -> None:
        await self._scripts.run(
            ReattachArgs(
                job_record=self._layout.job(shard, record.job_id),
                request_record=self._layout.request(shard, record.request_id),
            )
        )

    async def mark_unknown(self, shard: str, rid: str) -> None:
        """Keep a submit of unknown outcome findable by operators for reconciliation."""
        key = self._layout.unknown_submits(shard)
        # In order but not atomic: each step is harmless alone (the next call trims and sets
        # the TTL again); MULTI is avoided for the cluster client (see test_cluster.py).
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {rid: time.time()})
            pipe.zremrangebyrank(key, 0, -UNKNOWN_SUBMITS_CAP - 1)
            pipe.expire(key, self.lifetimes.request_ttl)
            await pipe.execute()

    def scope_shard(self, team_shard: str) -> str:
        """Where a team's requests and jobs live."""
        return SHARED_SHARD if self.lifetimes.shared else team_shard

    async def unknown_submits(self, team_shard: str, team_id: str) -> list[RequestRecord]:
        """Submits of unknown outcome of one team, newest first."""
        shard = self.scope_shard(team_shard)
        newest = await self._redis.zrevrange(self._layout.unknown_submits(shard), 0, 999)
        rids = [str(r) for r in newest]
        async with self._redis.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.hgetall(self._layout.request(shard, rid))
            records: list[dict[str, str]] = await pipe.execute()
        return [
            RequestRecord.from_hash(rid, rec)
            for rid, rec in zip(rids, records, strict=True)
            if rec and rec.get("team") == team_id
        ]

    # --- polling schedule -------------------------------------------------------------------

    async def schedule(
        self, shard: str, jid: str, delay: float, *, only_if_absent: bool = False
    ) -> None:
        await self._scripts.run(
            PollScheduleArgs(
                due_set=self._layout.poll_due(),
                member=f"{shard}|{jid}",
                delay_seconds=delay,
                mode=ScheduleMode.ONLY_IF_ABSENT if only_if_absent else ScheduleMode.ANY,
            )
        )

    async def due_summary(self) -> tuple[int, float | None]:
        """How many jobs are in flight, and the earliest due time among them."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._layout.poll_due())
            pipe.zrange(self._layout.poll_due(), 0, 0, withscores=True)
            count, first = await pipe.execute()
        return int(count), (float(first[0][1]) if first else None)

    async def unschedule(self, shard: str, jid: str) -> None:
        await self._commands.zrem(self._layout.poll_due(), f"{shard}|{jid}")

    async def clear_field(self, shard: str, jid: str, name: str) -> None:
        """Drop one field of a job (HDEL creates nothing if the job expired meanwhile)."""
        await self._commands.hdel(self._layout.job(shard, jid), name)

    async def claim_due(self, lease: float, batch: int) -> list[tuple[str, str]]:
        reply = await self._scripts.run(
            PollClaimArgs(due_set=self._layout.poll_due(), lease_seconds=lease, batch_size=batch)
        )
        claimed = []
        for member in reply.members:
            shard, _, jid = member.partition("|")
            claimed.append((shard, jid))
        return claimed
