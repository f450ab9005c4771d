"""Contracts of the admission scripts: a submit (admit, team_policy, refuse_submit) and a
status or result call (load_request). They share the refusal replies of the key and the gate."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, ClassVar

from gateway.common.records import record
from gateway.store.contracts.base import ScriptArgs, key, pairs
from gateway.store.contracts.keys import KeyRefusal, KeyRefused


class GateStatus(IntEnum):
    """The first element of an admission script's reply."""

    KEY_REFUSED = 0
    ADMITTED = 1
    LIMIT_REFUSED = 2


# Plain dict lookups on the hot path: calling an enum class on a value costs ~20x more.
_GATE_STATUSES = {int(status): status for status in GateStatus}


class Scope(StrEnum):
    """Where a submit's request and job live: the team's shard, or the shared one."""

    TEAM = "team"
    SHARED = "shared"


class Outcome(StrEnum):
    HIT = "hit"
    COALESCED = "coalesced"
    MISS = "miss"
    QUEUED = "queued"  # a miss waiting for one of the team's concurrency slots


_OUTCOMES = {outcome.value: outcome for outcome in Outcome}


@record
class RateLimitInfo:
    """The tightest limit a submit met (for the RateLimit headers): five reply elements."""

    name: str
    quota: int
    window: int
    remaining: int
    reset: float

    @classmethod
    def parse(cls, raw: Any) -> RateLimitInfo | None:
        name, quota, window, remaining, reset = raw
        if not name:
            return None
        return cls(str(name), int(float(quota)), int(float(window)), int(remaining), float(reset))


@record
class LimitRefused:
    """A ``{2, kind, scope, limit, retry after, rate-limit info (5), team}`` reply."""

    kind: str  # access | rate | daily | max_request | budget | queue_full
    scope: str  # team | key
    limit: str
    retry_after: str  # seconds
    rate_limit: RateLimitInfo | None
    team: str

    @classmethod
    def parse(cls, raw: Any) -> LimitRefused:
        _, kind, scope, limit, retry_after, *rate_limit, team = raw
        return cls(
            str(kind),
            str(scope),
            str(limit),
            str(retry_after),
            RateLimitInfo.parse(rate_limit),
            str(team),
        )


Refused = KeyRefused | LimitRefused


def _refused(raw: Any) -> Refused | None:
    status = _GATE_STATUSES[int(raw[0])]
    if status is GateStatus.KEY_REFUSED:
        return KeyRefused(KeyRefusal(str(raw[1])))
    if status is GateStatus.LIMIT_REFUSED:
        return LimitRefused.parse(raw)
    return None


@record
class Admitted:
    """An admitted submit: what it became, and the tightest limit and budget alert it met."""

    team: str
    outcome: Outcome
    job_id: str
    policy: str
    saved_micro: int  # a hit: what the cached job cost; coalesced: the owner's estimate
    queue_position: int
    rate_limit: RateLimitInfo | None
    alert_level: int  # 0: no budget alert
    budget_period: str
    committed_micro: int
    budget_micro: int

    @classmethod
    def parse(cls, raw: Any) -> Refused | Admitted:
        refused = _refused(raw)
        if refused is not None:
            return refused
        _, team, outcome, job_id, policy, saved, position, *rest = raw
        rate_limit, (level, period, committed, budget) = rest[:5], rest[5:]
        return cls(
            team=str(team),
            outcome=_OUTCOMES[str(outcome)],
            job_id=str(job_id),
            policy=str(policy),
            saved_micro=int(float(saved)),
            queue_position=int(position),
            rate_limit=RateLimitInfo.parse(rate_limit),
            alert_level=int(level),
            budget_period=str(period),
            committed_micro=int(committed),
            budget_micro=int(budget),
        )


@record(kw_only=True)
class AdmitArgs(ScriptArgs[Refused | Admitted]):
    script: ClassVar[str] = "admit"
    key_record: str = key()
    request_record: str = key()
    policy_hash: str = key()
    cached_result: str = key()
    job_record: str = key()
    inflight_job: str = key()
    team_limits: str = key()
    running_jobs: str = key()
    queued_jobs: str = key()
    queue_seq: str = key()
    key_digest: str
    key_id: str
    api: str
    target: str
    identity: str
    allow_lookup: bool
    allow_store: bool
    max_age: float  # seconds; -1: any
    job_lifetime: int
    request_ttl: int
    job_prefix: str
    job_id: str
    created_at: str
    default_policy: str
    request_id: str
    submit_deadline: float
    version: str
    webhook: str
    webhook_intermediate: bool
    scope: Scope
    shared_team: str
    team_prefix: str
    period_spec: str
    estimate_micro: int
    rate_micro: int
    body: bytes | str
    default_queue_depth: int
    usage_retention: int
    kid: str
    body_pending: bool
    pinned: bool

    def parse_reply(self, raw: Any) -> Refused | Admitted:
        return Admitted.parse(raw)


@record
class TeamAdmitted:
    """The team-shard half of a shared-scope admission passed."""

    team: str
    policy: str
    rate_limit: RateLimitInfo | None

    @classmethod
    def parse(cls, raw: Any) -> Refused | TeamAdmitted:
        refused = _refused(raw)
        if refused is not None:
            return refused
        _, team, policy, *rate_limit = raw
        return cls(str(team), str(policy), RateLimitInfo.parse(rate_limit))


@record(kw_only=True)
class TeamPolicyArgs(ScriptArgs[Refused | TeamAdmitted]):
    script: ClassVar[str] = "team_policy"
    key_record: str = key()
    policy_hash: str = key()
    team_limits: str = key()
    key_digest: str
    key_id: str
    target: str
    default_policy: str
    api: str
    team_prefix: str
    period_spec: str
    kid: str
    usage_retention: int

    def parse_reply(self, raw: Any) -> Refused | TeamAdmitted:
        return TeamAdmitted.parse(raw)


@record
class RateCharged:
    """A refused submit was charged to the submit rate."""

    team: str

    @classmethod
    def parse(cls, raw: Any) -> Refused | RateCharged:
        refused = _refused(raw)
        if refused is not None:
            return refused
        _, team = raw
        return cls(str(team))


@record(kw_only=True)
class RefuseSubmitArgs(ScriptArgs[Refused | RateCharged]):
    script: ClassVar[str] = "refuse_submit"
    key_record: str = key()
    team_limits: str = key()
    key_digest: str
    team_prefix: str
    period_spec: str
    kid: str
    usage_retention: int

    def parse_reply(self, raw: Any) -> Refused | RateCharged:
        return RateCharged.parse(raw)


class LoadStatus(IntEnum):
    KEY_REFUSED = 0
    FOUND = 1
    UNKNOWN_REQUEST = 2
    POLL_TOO_FAST = 3


_LOAD_STATUSES = {int(status): status for status in LoadStatus}


@record
class PollTooFast:
    wait_seconds: float


@record
class LoadedRequest:
    """The caller's request and its job (``job`` empty when the request is unknown)."""

    team: str
    request: dict[str, str]  # empty: no such request of the team
    job: dict[str, str]  # with 'queue_position' while queued

    @classmethod
    def parse(cls, raw: Any) -> KeyRefused | PollTooFast | LoadedRequest:
        status = _LOAD_STATUSES[int(raw[0])]
        if status is LoadStatus.KEY_REFUSED:
            return KeyRefused(KeyRefusal(str(raw[1])))
        if status is LoadStatus.POLL_TOO_FAST:
            return PollTooFast(float(raw[1]))
        if status is LoadStatus.UNKNOWN_REQUEST:
            return cls(str(raw[1]), {}, {})
        _, team, n, *rest = raw
        return cls(str(team), pairs(rest[: int(n)]), pairs(rest[int(n) :]))


@record(kw_only=True)
class LoadRequestArgs(ScriptArgs[KeyRefused | PollTooFast | LoadedRequest]):
    script: ClassVar[str] = "load_request"
    key_record: str = key()
    request_record: str = key()
    queued_jobs: str = key()
    key_digest: str
    job_prefix: str
    scope: Scope
    shared_team: str
    kid: str
    poll_rate: float  # polls per second allowed per key (0: no limit)
    poll_burst: int
    team_prefix: str
    omitted: str = ""  # a job field the answer does not use: a status needs no result

    def parse_reply(self, raw: Any) -> KeyRefused | PollTooFast | LoadedRequest:
        return LoadedRequest.parse(raw)
