"""Contracts of the scripts that move jobs on: state changes, the team queue, the account-wide
cap, and the due sets of the poller and the webhook worker."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from gateway.common.records import record
from gateway.store.contracts.base import Done, ScriptArgs, key, rest


@record
class JobUpdated:
    """The job's previous state ('gone': it expired; 'followed': more requests follow it than
    expected), and the budget alert its end crossed (``alert_level`` 0: none)."""

    previous: str
    alert_level: int = 0
    spend_record: str = ""  # the team's spend record of the job's budget period
    committed_micro: int = 0
    budget_micro: int = 0

    @classmethod
    def parse(cls, raw: Any) -> JobUpdated:
        if len(raw) == 1:
            return cls(str(raw[0]))
        previous, level, spend_record, committed, budget = raw
        return cls(str(previous), int(level), str(spend_record), int(committed), int(budget))


@record(kw_only=True)
class JobUpdateArgs(ScriptArgs[JobUpdated]):
    script: ClassVar[str] = "job_update"
    job_record: str = key()
    cached_result: str = key()
    target_index: str = key()
    cached_targets: str = key()
    inflight_job: str = key()
    running_jobs: str = key()
    queued_jobs: str = key()
    unreconciled: str = key()
    team_limits: str = key()
    job_id: str
    new_state: str
    record_ttl: int
    cache_ttl: int
    target: str
    identity: str
    settled_micro: int | None
    expect_state: str | None
    usage_retention: int
    expect_attached: int | None
    fields: tuple[str | float | int, ...] = rest()

    def parse_reply(self, raw: Any) -> JobUpdated:
        return JobUpdated.parse(raw)


class DetachVerdict(StrEnum):
    ALREADY = "already"  # the request was detached before
    GONE = "gone"  # the job expired
    TERMINAL = "terminal"  # the job ended (state given)
    RUNNING = "running"  # too late: RunComfy runs it
    SUBMITTING = "submitting"  # on its way to RunComfy
    DETACHED = "detached"  # others still follow the job
    LAST = "last"  # the last follower left: cancel the job (state given)


@record
class Detached:
    verdict: DetachVerdict
    state: str  # the job's, for TERMINAL and LAST; else ''

    @classmethod
    def parse(cls, raw: Any) -> Detached:
        return cls(DetachVerdict(str(raw[0])), str(raw[1]) if len(raw) > 1 else "")


@record(kw_only=True)
class DetachArgs(ScriptArgs[Detached]):
    script: ClassVar[str] = "detach"
    job_record: str = key()
    request_record: str = key()

    def parse_reply(self, raw: Any) -> Detached:
        return Detached.parse(raw)


@record
class Reattached:
    reattached: bool  # False: the request was not detached

    @classmethod
    def parse(cls, raw: Any) -> Reattached:
        return cls(int(raw) == 1)


@record(kw_only=True)
class ReattachArgs(ScriptArgs[Reattached]):
    script: ClassVar[str] = "reattach"
    job_record: str = key()
    request_record: str = key()

    def parse_reply(self, raw: Any) -> Reattached:
        return Reattached.parse(raw)


@record
class BodyStored:
    stored: bool  # False: the job no longer waits for its body

    @classmethod
    def parse(cls, raw: Any) -> BodyStored:
        return cls(int(raw) == 1)


@record(kw_only=True)
class QueueBodyArgs(ScriptArgs[BodyStored]):
    script: ClassVar[str] = "queue_body"
    job_record: str = key()
    body: bytes

    def parse_reply(self, raw: Any) -> BodyStored:
        return BodyStored.parse(raw)


@record
class Requeued:
    requeued: bool  # False: the job had moved on

    @classmethod
    def parse(cls, raw: Any) -> Requeued:
        return cls(int(raw) == 1)


@record(kw_only=True)
class RequeueArgs(ScriptArgs[Requeued]):
    script: ClassVar[str] = "requeue"
    job_record: str = key()
    running_jobs: str = key()
    queued_jobs: str = key()
    job_id: str
    body: bytes

    def parse_reply(self, raw: Any) -> Requeued:
        return Requeued.parse(raw)


@record
class Dispatched:
    """One dispatch pass over a team: jobs to send now, slots that expired mid-submit, jobs
    still queued, and queued jobs whose body never arrived (their admitting replica died)."""

    started: list[str]
    expired: list[str]
    left: int
    orphaned: list[str]

    @classmethod
    def parse(cls, raw: Any) -> Dispatched:
        started, expired, left, orphaned = raw
        return cls(
            [str(j) for j in started],
            [str(j) for j in expired],
            int(left),
            [str(j) for j in orphaned],
        )


@record(kw_only=True)
class DispatchArgs(ScriptArgs[Dispatched]):
    script: ClassVar[str] = "dispatch"
    team_limits: str = key()
    running_jobs: str = key()
    queued_jobs: str = key()
    job_prefix: str
    submit_deadline: float
    most: int

    def parse_reply(self, raw: Any) -> Dispatched:
        return Dispatched.parse(raw)


class AccountSlotOp(StrEnum):
    ACQUIRE = "acquire"
    EXTEND = "extend"
    RELEASE = "release"


@record
class AccountSlotHeld:
    held: bool  # whether the member holds an account slot afterwards

    @classmethod
    def parse(cls, raw: Any) -> AccountSlotHeld:
        return cls(int(raw) == 1)


@record(kw_only=True)
class AccountSlotArgs(ScriptArgs[AccountSlotHeld]):
    script: ClassVar[str] = "account_slot"
    account_running: str = key()
    op: AccountSlotOp
    member: str  # "<shard>|<job id>"
    cap: int
    seconds: float

    def parse_reply(self, raw: Any) -> AccountSlotHeld:
        return AccountSlotHeld.parse(raw)


@record
class Removed:
    removed: bool

    @classmethod
    def parse(cls, raw: Any) -> Removed:
        return cls(int(raw) == 1)


@record(kw_only=True)
class ZremIfOlderArgs(ScriptArgs[Removed]):
    script: ClassVar[str] = "zrem_if_older"
    sorted_set: str = key()
    member: str
    seen_score: float

    def parse_reply(self, raw: Any) -> Removed:
        return Removed.parse(raw)


@record
class Claimed:
    members: list[str]

    @classmethod
    def parse(cls, raw: Any) -> Claimed:
        return cls([str(m) for m in raw])


@record(kw_only=True)
class PollClaimArgs(ScriptArgs[Claimed]):
    script: ClassVar[str] = "poll_claim"
    due_set: str = key()
    lease_seconds: float
    batch_size: int

    def parse_reply(self, raw: Any) -> Claimed:
        return Claimed.parse(raw)


class ScheduleMode(StrEnum):
    ONLY_IF_ABSENT = "NX"  # heals a job that lost its schedule
    ANY = "ANY"


@record
class Scheduled:
    added: int

    @classmethod
    def parse(cls, raw: Any) -> Scheduled:
        return cls(int(raw))


@record(kw_only=True)
class PollScheduleArgs(ScriptArgs[Scheduled]):
    script: ClassVar[str] = "poll_schedule"
    due_set: str = key()
    member: str
    delay_seconds: float
    mode: ScheduleMode

    def parse_reply(self, raw: Any) -> Scheduled:
        return Scheduled.parse(raw)


@record(kw_only=True)
class DeliveryEnqueueArgs(ScriptArgs[Done]):
    script: ClassVar[str] = "delivery_enqueue"
    delivery_record: str = key()
    due_deliveries: str = key()
    delivery_id: str
    due_at: float
    record_ttl: int
    fields: tuple[str | int, ...] = rest()

    def parse_reply(self, raw: Any) -> Done:
        return Done.parse(raw)
