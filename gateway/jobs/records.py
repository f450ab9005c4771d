"""Gateway request ids and the upstream jobs they follow.

A **job** is one real RunComfy job. A **request** is what one client sees: a gateway request id
owned by one team, following one job as its owner (it started the job), a follower (it coalesced
onto a job in flight) or a hit (it was answered from a completed job). Both live in the team's
shard (a Redis Cluster hash tag), so admission, lookups and state changes are single scripts in
one Redis Cluster hash slot.

This module holds the records and what the gateway itself does with them (read, move a job on,
detach a request); a client's own way in, behind its key, is :mod:`gateway.jobs.gate`. The
team queues are :mod:`gateway.jobs.queues`, the poll schedule :mod:`gateway.jobs.schedule`.

A job is written *before* its submit leaves the gateway, so nothing reaches RunComfy unrecorded.
Requests are looked up with the caller's shard: another team's id is not merely forbidden but
unaddressable, and answers 404 exactly like an unknown id.
"""

from __future__ import annotations

import os
import re
import time
from enum import StrEnum

from gateway.common.records import record
from gateway.jobs.job import NO_CHANGE, Job, JobChange, JobState
from gateway.money.quotas import BudgetAlert, Calendar, QuotaConfig
from gateway.store.client import Store
from gateway.store.commands import Commands, RedisPyCommands
from gateway.store.contracts import DetachArgs, JobUpdateArgs, ReattachArgs
from gateway.store.layout import UNKNOWN_SUBMITS_CAP, Layout
from gateway.store.scripts import Scripts
from gateway.upstream.apis import Api

REQUEST_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class Role(StrEnum):
    OWNER = "owner"
    FOLLOWER = "follower"
    HIT = "hit"


# Plain dict lookups for the hot path: calling an enum class on a value costs ~20x more.
_APIS = {api.value: api for api in Api}
_ROLES = {role.value: role for role in Role}


@record
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


@record
class JobUpdate:
    previous: str
    alert: BudgetAlert | None = None


@record
class Lifetimes:
    request_ttl: int
    job_lifetime: int
    cache_ttl: int
    submit_deadline: float
    default_policy: str
    shared: bool = False  # the cache scope: one shared shard for all teams' requests and jobs


SHARED_SHARD = "shared"  # never a team's shard: those are 8 characters


def new_id() -> str:
    """A random UUID (version 4) as RunComfy writes its request ids, made from the same 16
    random bytes as ``str(uuid.uuid4())`` without the ``UUID`` object (a third of the time;
    every submit makes two)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class RequestRecords:
    """Lookups and state changes of requests and jobs, for the gateway's own bookkeeping."""

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

    def expired(self, job: Job) -> bool:
        """Whether the job has outlived its lifetime (on the quota calendar's clock)."""
        return self.calendar.now() > (job.expires_ts or 0.0)

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

    async def clear_field(self, shard: str, jid: str, name: str) -> None:
        """Drop one field of a job (HDEL creates nothing if the job expired meanwhile)."""
        await self._commands.hdel(self._layout.job(shard, jid), name)
