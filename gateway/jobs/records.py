"""Gateway request ids and the upstream jobs they follow.

A **job** is one real RunComfy job. A **request** is what one client sees: a gateway request id
owned by one team, following one job as its owner (it started the job), a follower (it coalesced
onto a job in flight) or a hit (it was answered from a completed job). Both live in the team's
hash slot, so admission, lookups and state changes are single scripts in one Redis Cluster slot.

A job is written *before* its submit leaves the gateway, so nothing reaches RunComfy unrecorded.
Requests are looked up with the caller's slot: another team's id is not merely forbidden but
unaddressable, and answers 404 exactly like an unknown id.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.access.credentials import KeyCredential
from gateway.access.teams import TeamPrincipal, unauthorized_reason
from gateway.common.clock import now_iso
from gateway.common.errors import PollRateExceeded
from gateway.jobs.job import NO_CHANGE, Job, JobChange, JobState
from gateway.money.quotas import BudgetAlert, Calendar, QuotaConfig, RateLimitState, refusal
from gateway.store.client import Store
from gateway.store.commands import Commands, RedisPyCommands
from gateway.store.layout import UNKNOWN_SUBMITS_CAP, Layout
from gateway.store.scripts import Scripts, pairs
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


class Outcome(StrEnum):
    HIT = "hit"
    COALESCED = "coalesced"
    MISS = "miss"
    QUEUED = "queued"  # a miss waiting for one of the team's concurrency slots


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


def _raise_unless_admitted(reply: list[Any], target: str, estimate_micro: int) -> None:
    """The gate scripts' shared reply: {0, reason} is a refused key, {2, ...} a refused limit."""
    if int(reply[0]) == 0:
        raise unauthorized_reason(str(reply[1]))
    if int(reply[0]) == 2:
        raise refusal(list(reply), target, estimate_micro)


@dataclass(frozen=True, slots=True)
class Dispatched:
    """One dispatch pass over a team: jobs to send now, slots that expired mid-submit, jobs
    still queued, and queued jobs whose body never arrived (their admitting replica died)."""

    started: list[str]
    expired: list[str]
    left: int
    orphaned: list[str]


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
    shared: bool = False  # the cache scope: one shared slot for all teams' requests and jobs


SHARED_SLOT = "shared"  # never a team's slot: those are 8 characters


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
        reply = await self._scripts.refuse_submit(
            keys=[self._layout.key(cred.slot, cred.kid), self._layout.limits(cred.slot)],
            args=[
                cred.digest,
                self._layout.team_prefix(cred.slot),
                self.calendar.spec(),
                cred.kid,
                self.quota.usage_retention,
            ],
        )
        _raise_unless_admitted(reply, target, 0)
        return str(reply[1])

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
        shared_limit: RateLimitState | None = None
        life = self.lifetimes
        slot, scope, team, policy = cred.slot, "team", "", life.default_policy
        if life.shared:
            # Two slots, two steps: the key and policy in the team's, the rest in the shared one.
            verdict = await self._scripts.team_policy(
                keys=[
                    self._layout.key(cred.slot, cred.kid),
                    self._layout.policy(cred.slot),
                    self._layout.limits(cred.slot),
                ],
                args=[
                    cred.digest,
                    cred.key_id,
                    target,
                    life.default_policy,
                    api.value,
                    self._layout.team_prefix(cred.slot),
                    self.calendar.spec(),
                    cred.kid,
                    self.quota.usage_retention,
                ],
            )
            _raise_unless_admitted(verdict, target, charge.estimate_micro)
            team, policy = str(verdict[1]), str(verdict[2])
            shared_limit = RateLimitState.from_reply(list(verdict[3:8]))
            slot, scope = SHARED_SLOT, "shared"
        request_key = self._layout.request(slot, rid)
        # In the shared scope the key and policy were read already; every key must share a slot.
        key_rec = request_key if life.shared else self._layout.key(slot, cred.kid)
        policy_key = request_key if life.shared else self._layout.policy(slot)
        reply = await self._scripts.admit(
            keys=[
                key_rec,
                request_key,
                policy_key,
                self._layout.dedup(slot, lookup.identity),
                self._layout.job(slot, jid),
                self._layout.inflight(slot, lookup.identity),
                self._layout.limits(slot),
                self._layout.running(slot),
                self._layout.queue(slot),
                self._layout.queue_seq(slot),
            ],
            args=[
                cred.digest,
                cred.key_id,
                api.value,
                target,
                lookup.identity,
                int(lookup.allow_lookup),
                int(lookup.allow_store),
                -1 if lookup.max_age is None else lookup.max_age,
                life.job_lifetime,
                life.request_ttl,
                self._layout.job_prefix(slot),
                jid,
                created_at,
                str(policy),
                rid,
                life.submit_deadline,
                version,
                lookup.webhook,
                int(lookup.webhook_intermediate),
                scope,
                str(team),
                self._layout.team_prefix(slot),
                self.calendar.spec(),
                charge.estimate_micro,
                charge.rate_micro,
                charge.raw if charge.inline else "",
                self.quota.default_queue_depth,
                self.quota.usage_retention,
                cred.kid,
                0 if charge.inline else 1,
                int(lookup.pinned),
            ],
        )
        _raise_unless_admitted(reply, target, charge.estimate_micro)
        team, outcome, job_id, policy = (str(v) for v in reply[1:5])
        # principal.slot is where this request and its job live: the team's, or the shared one
        principal = TeamPrincipal(team_id=team, slot=slot, key_id=cred.key_id)
        outcome_ = Outcome(outcome)
        record = RequestRecord(
            request_id=rid,
            team_id=team,
            key_id=cred.key_id,
            api=api,
            target=target,
            version=version,
            job_id=job_id,
            role={Outcome.HIT: Role.HIT, Outcome.COALESCED: Role.FOLLOWER}.get(
                outcome_, Role.OWNER
            ),
            created_at=created_at,
            detached=False,
        )
        alert = None
        if int(reply[12]) > 0:
            alert = BudgetAlert(
                team, int(reply[12]), str(reply[13]), int(reply[14]), int(reply[15])
            )
        return Admission(
            principal,
            record,
            outcome_,
            policy,
            saved_micro=int(float(reply[5])),
            queue_position=int(reply[6]),
            rate_limit=shared_limit or RateLimitState.from_reply(list(reply[7:12])),
            alert=alert,
        )

    async def load(
        self, cred: KeyCredential, rid: str
    ) -> tuple[TeamPrincipal, RequestRecord | None, Job | None]:
        """Verify the key and read the caller's request ``rid`` and its job, in one round trip
        (two in the shared scope: the key in the team's slot, the request in the shared one)."""
        if not REQUEST_ID_RE.fullmatch(rid):
            rid = ""  # still verify the key: a bad key must get 401, not 404
        slot, scope, team = cred.slot, "team", ""
        if self.lifetimes.shared:
            ok, team = await self._scripts.authenticate(
                keys=[self._layout.key(cred.slot, cred.kid)], args=[cred.digest]
            )
            if int(ok) != 1:
                raise unauthorized_reason(str(team))
            slot, scope = SHARED_SLOT, "shared"
        request_key = self._layout.request(slot, rid)
        key_rec = request_key if scope == "shared" else self._layout.key(slot, cred.kid)
        reply = await self._scripts.load_request(
            keys=[key_rec, request_key, self._layout.queue(slot)],
            args=[
                cred.digest,
                self._layout.job_prefix(slot),
                scope,
                str(team),
                cred.kid,
                self.quota.poll_rate,
                self.quota.poll_burst,
                self._layout.team_prefix(slot),
            ],
        )
        status = int(reply[0])
        if status == 0:
            raise unauthorized_reason(str(reply[1]))
        if status == 3:
            wait = max(1, int(-(-float(reply[1]) // 1)))
            raise PollRateExceeded(
                f"Too many status and result calls with this API key: the limit is "
                f"{self.quota.poll_rate:g} per second. Retry in {wait} s.",
                detail={"limit": "poll_rate", "retry_after_seconds": wait},
                extra_headers={"Retry-After": str(wait)},
            )
        principal = TeamPrincipal(team_id=str(reply[1]), slot=slot, key_id=cred.key_id)
        if status == 2 or not rid:
            return principal, None, None
        n = int(reply[2])
        record = RequestRecord.from_hash(rid, pairs(reply[3 : 3 + n]))
        job_fields = pairs(reply[3 + n :])
        job = Job.from_fields(record.job_id, slot, job_fields) if job_fields else None
        return principal, record, job

    async def request(self, slot: str, rid: str) -> RequestRecord | None:
        """A request record by id, with no key check (for the gateway's own bookkeeping)."""
        fields = await self._commands.hgetall(self._layout.request(slot, rid))
        return RequestRecord.from_hash(rid, fields) if fields else None

    async def job(self, slot: str, jid: str) -> Job | None:
        fields = await self._commands.hgetall(self._layout.job(slot, jid))
        return Job.from_fields(jid, slot, fields) if fields else None

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
        slot, target, identity = job.shard, job.target, job.identity
        args: list[str | float | int] = [
            job.job_id,
            state.value,
            self.lifetimes.request_ttl,
            self.lifetimes.cache_ttl,
            target,
            identity,
            "" if settle_micro is None else settle_micro,
            "" if expect is None else expect.value,
            self.quota.usage_retention,
            "" if expect_attached is None else expect_attached,
        ]
        for name, value in change.to_fields().items():
            args += [name, value]
        reply = await self._scripts.job_update(
            keys=[
                self._layout.job(slot, job.job_id),
                self._layout.dedup(slot, identity),
                self._layout.cache_index(slot, target),
                self._layout.cache_targets(slot),
                self._layout.inflight(slot, identity),
                self._layout.running(slot),
                self._layout.queue(slot),
                self._layout.unreconciled(slot),
                self._layout.limits(slot),
            ],
            args=args,
        )
        alert = None
        if len(reply) > 1 and int(reply[1]) > 0:
            period = str(reply[2]).rsplit(":spend:", 1)[-1]
            alert = BudgetAlert(job.team, int(reply[1]), period, int(reply[3]), int(reply[4]))
        return JobUpdate(str(reply[0]), alert)

    # --- the team queue and the account-wide cap ------------------------------------------

    async def dispatch(self, slot: str, most: int) -> Dispatched:
        """Start queued jobs of a team whose slots are free."""
        started, expired, left, orphaned = await self._scripts.dispatch(
            keys=[self._layout.limits(slot), self._layout.running(slot), self._layout.queue(slot)],
            args=[self._layout.job_prefix(slot), self.lifetimes.submit_deadline, most],
        )
        return Dispatched(
            [str(j) for j in started],
            [str(j) for j in expired],
            int(left),
            [str(j) for j in orphaned],
        )

    async def store_queued_body(self, slot: str, jid: str, raw: bytes) -> bool:
        """Store the body of a queued job admitted without it; False if it no longer waits."""
        stored = await self._scripts.queue_body(keys=[self._layout.job(slot, jid)], args=[raw])
        return int(stored) == 1

    async def requeue(self, slot: str, jid: str, raw: bytes) -> bool:
        reply = await self._scripts.requeue(
            keys=[
                self._layout.job(slot, jid),
                self._layout.running(slot),
                self._layout.queue(slot),
            ],
            args=[jid, raw],
        )
        return int(reply) == 1

    async def mark_waiting(self, slot: str) -> None:
        """Tell every replica's dispatcher that this team has queued jobs."""
        await self._redis.zadd(self._layout.queue_waiting(), {slot: time.time()})

    async def waiting_slots(self) -> list[tuple[str, float]]:
        members: Any = await self._redis.zrange(
            self._layout.queue_waiting(), 0, -1, withscores=True
        )
        return [(str(m), float(score)) for m, score in members]

    async def unmark_waiting(self, slot: str, seen: float) -> None:
        """Forget a team's queue, unless someone queued a job after ``seen``."""
        await self._scripts.zrem_if_older(keys=[self._layout.queue_waiting()], args=[slot, seen])

    async def queue_lengths(self, slots: list[str]) -> list[tuple[int, int]]:
        """(queued jobs, expired running slots) of each team."""
        now = self.calendar.now()
        async with self._redis.pipeline(transaction=False) as pipe:
            for slot in slots:
                pipe.zcard(self._layout.queue(slot))
                pipe.zcount(self._layout.running(slot), "-inf", now)
            counts = [int(n) for n in await pipe.execute()]
        return list(zip(counts[::2], counts[1::2], strict=True))

    async def global_slot(self, op: str, slot: str, jid: str, cap: int, seconds: float) -> bool:
        reply = await self._scripts.global_slot(
            keys=[self._layout.global_running()], args=[op, f"{slot}|{jid}", cap, seconds]
        )
        return int(reply) == 1

    async def detach(self, record: RequestRecord, slot: str) -> tuple[str, str]:
        reply = await self._scripts.detach(
            keys=[
                self._layout.job(slot, record.job_id),
                self._layout.request(slot, record.request_id),
            ]
        )
        return str(reply[0]), str(reply[1]) if len(reply) > 1 else ""

    async def reattach(self, record: RequestRecord, slot: str) -> None:
        await self._scripts.reattach(
            keys=[
                self._layout.job(slot, record.job_id),
                self._layout.request(slot, record.request_id),
            ]
        )

    async def mark_unknown(self, slot: str, rid: str) -> None:
        """Keep a submit of unknown outcome findable by operators for reconciliation."""
        key = self._layout.unknown_submits(slot)
        # In order but not atomic: each step is harmless alone (the next call trims and sets
        # the TTL again); MULTI is avoided for the cluster client (see test_cluster.py).
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {rid: time.time()})
            pipe.zremrangebyrank(key, 0, -UNKNOWN_SUBMITS_CAP - 1)
            pipe.expire(key, self.lifetimes.request_ttl)
            await pipe.execute()

    def scope_slot(self, team_slot: str) -> str:
        """Where a team's requests and jobs live."""
        return SHARED_SLOT if self.lifetimes.shared else team_slot

    async def unknown_submits(self, team_slot: str, team_id: str) -> list[RequestRecord]:
        """Submits of unknown outcome of one team, newest first."""
        slot = self.scope_slot(team_slot)
        newest = await self._redis.zrevrange(self._layout.unknown_submits(slot), 0, 999)
        rids = [str(r) for r in newest]
        async with self._redis.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.hgetall(self._layout.request(slot, rid))
            records: list[dict[str, str]] = await pipe.execute()
        return [
            RequestRecord.from_hash(rid, rec)
            for rid, rec in zip(rids, records, strict=True)
            if rec and rec.get("team") == team_id
        ]

    # --- polling schedule -------------------------------------------------------------------

    async def schedule(
        self, slot: str, jid: str, delay: float, *, only_if_absent: bool = False
    ) -> None:
        await self._scripts.poll_schedule(
            keys=[self._layout.poll_due()],
            args=[f"{slot}|{jid}", delay, "NX" if only_if_absent else "ANY"],
        )

    async def due_summary(self) -> tuple[int, float | None]:
        """How many jobs are in flight, and the earliest due time among them."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._layout.poll_due())
            pipe.zrange(self._layout.poll_due(), 0, 0, withscores=True)
            count, first = await pipe.execute()
        return int(count), (float(first[0][1]) if first else None)

    async def unschedule(self, slot: str, jid: str) -> None:
        await self._commands.zrem(self._layout.poll_due(), f"{slot}|{jid}")

    async def clear_field(self, slot: str, jid: str, name: str) -> None:
        """Drop one field of a job (HDEL creates nothing if the job expired meanwhile)."""
        await self._commands.hdel(self._layout.job(slot, jid), name)

    async def claim_due(self, lease: float, batch: int) -> list[tuple[str, str]]:
        members = await self._scripts.poll_claim(
            keys=[self._layout.poll_due()], args=[lease, batch]
        )
        claimed = []
        for member in members:
            slot, _, jid = str(member).partition("|")
            claimed.append((slot, jid))
        return claimed
