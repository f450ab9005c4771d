"""The job record: one RunComfy job as the gateway keeps it, in a Redis hash in its shard.

The hash is written by the Lua scripts (admission, dispatch, job_update) and by the Python
changes below; :class:`JobField` names every field Python reads or writes, so the two sides share
one spelling. :meth:`Job.from_fields` is the one place a hash is read, :meth:`JobChange.to_fields`
the one place Python's changes are rendered back, in the value formats the scripts expect
(integers as digits, times as seconds, flags as ``"1"``). A field an older version did not write
loads as its default, so jobs admitted before an upgrade still settle.
"""

from __future__ import annotations

from dataclasses import fields
from enum import StrEnum
from typing import Final

from gateway.common.records import record
from gateway.upstream.apis import Api


class JobState(StrEnum):
    QUEUED = "queued"  # waiting in the team's queue for a concurrency slot
    SUBMITTING = "submitting"  # recorded, on its way to RunComfy
    ACTIVE = "active"  # RunComfy accepted it; upstream_status says in_queue or in_progress
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # RunComfy refused the submit (the team's input, or the account)
    UNKNOWN = "unknown"  # sent, but no usable answer came back: needs reconciliation


TERMINAL = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED, JobState.UNKNOWN}
)
LIVE = frozenset({JobState.QUEUED, JobState.SUBMITTING, JobState.ACTIVE})
# Plain dict lookups for the hot path: calling an enum class on a value costs ~20x more.
_STATES = {state.value: state for state in JobState}
_APIS = {api.value: api for api in Api}


class JobField:
    """The job hash's fields that Python reads or writes (the scripts keep more of their own:
    reservations, spend records, counters). Plain strings, not an enum: a job is read on every
    status call, and an enum member costs a slow attribute lookup each time."""

    STATE: Final = "state"
    API: Final = "api"
    TARGET: Final = "target"
    IDENTITY: Final = "hash"  # the request identity dedup keys on
    VERSION: Final = "version"
    OWNER: Final = "owner"  # the gateway request id that started the job
    TEAM: Final = "team"
    CREATED_AT: Final = "created_at"
    CREATED_TS: Final = "created_ts"
    EXPIRES_TS: Final = "expires_ts"
    STORE: Final = "store"  # "1": its result is cached when it succeeds
    QUEUED: Final = "queued"  # "1": it waited in the team's queue
    BODY: Final = "body"  # the submit body, kept while it waits in the queue
    ESTIMATE: Final = "estimate"
    RATE_MICRO: Final = "rate_micro"
    SETTLED: Final = "settled"
    UPSTREAM_ID: Final = "upstream_id"
    UPSTREAM_STATUS: Final = "upstream_status"
    STATUS_BODY: Final = "status_body"
    RESULT_BODY: Final = "result_body"
    ERROR_STATUS: Final = "error_status"
    ERROR_BODY: Final = "error_body"
    REASON: Final = "reason"
    LAST_POLL_TS: Final = "last_poll_ts"
    STARTED_TS: Final = "started_ts"
    POLL_ERRORS: Final = "poll_errors"
    COST: Final = "cost"
    EFFECTS_PENDING: Final = "effects_pending"  # ended, its webhooks and slot release maybe not
    QUEUE_POSITION: Final = "queue_position"  # added by load_request.lua, never stored


def _int(value: str | None, default: int = 0) -> int:
    if not value:
        return default
    try:
        return int(value)
    except ValueError:  # a Lua number rendered as a float ("1.5e+14")
        return int(float(value))


@record
class Job:
    """A job as read from its hash; fields the hash lacks are None (or 0, False, "")."""

    job_id: str
    shard: str  # the Redis Cluster hash tag the job lives under: its team's, or the shared one
    state: JobState
    api: Api
    target: str = ""
    identity: str = ""
    version: str = ""
    owner: str = ""
    team: str = ""
    created_at: str = ""
    created_ts: float | None = None
    expires_ts: float | None = None
    store: bool = False
    queued: bool = False
    body: bytes | None = None
    estimate_micro: int = 0
    rate_micro: int = 0
    settled_micro: int = 0
    upstream_id: str | None = None
    upstream_status: str | None = None
    status_body: str | None = None  # RunComfy's last status answer, as JSON text
    result_body: str | None = None  # RunComfy's result answer, as JSON text
    error_status: int | None = None  # a refused submit: RunComfy's (or the gateway's) status
    error_body: str | None = None
    reason: str | None = None  # why it ended unknown or rejected
    last_poll_ts: float | None = None
    started_ts: float | None = None  # the first in_progress the poller saw (serverless billing)
    poll_errors: int = 0
    effects_pending: bool = False
    queue_position: int = 0

    @classmethod
    def from_fields(cls, job_id: str, shard: str, raw: dict[str, str]) -> Job:
        """The job of a Redis hash (``HGETALL``); raises KeyError if it has no state or api.

        Optional text is ``get(...) or None`` and floats are read inline, not through helper
        functions: a job is read on every status call, and a call costs more than the read."""
        get = raw.get
        body = get(JobField.BODY)
        return cls(
            job_id=job_id,
            shard=shard,
            state=_STATES[raw[JobField.STATE]],
            api=_APIS[raw[JobField.API]],
            target=get(JobField.TARGET, ""),
            identity=get(JobField.IDENTITY, ""),
            version=get(JobField.VERSION, ""),
            owner=get(JobField.OWNER, ""),
            team=get(JobField.TEAM, ""),
            created_at=get(JobField.CREATED_AT, ""),
            created_ts=float(v) if (v := get(JobField.CREATED_TS)) else None,
            expires_ts=float(v) if (v := get(JobField.EXPIRES_TS)) else None,
            store=get(JobField.STORE) == "1",
            queued=get(JobField.QUEUED) == "1",
            body=None if body is None else body.encode(),
            estimate_micro=_int(get(JobField.ESTIMATE)),
            rate_micro=_int(get(JobField.RATE_MICRO)),
            settled_micro=_int(get(JobField.SETTLED)),
            upstream_id=get(JobField.UPSTREAM_ID) or None,
            upstream_status=get(JobField.UPSTREAM_STATUS) or None,
            status_body=get(JobField.STATUS_BODY) or None,
            result_body=get(JobField.RESULT_BODY) or None,
            error_status=_int(get(JobField.ERROR_STATUS)) or None,
            error_body=get(JobField.ERROR_BODY) or None,
            reason=get(JobField.REASON) or None,
            last_poll_ts=float(v) if (v := get(JobField.LAST_POLL_TS)) else None,
            started_ts=float(v) if (v := get(JobField.STARTED_TS)) else None,
            poll_errors=_int(get(JobField.POLL_ERRORS)),
            effects_pending=bool(get(JobField.EFFECTS_PENDING)),
            queue_position=_int(get(JobField.QUEUE_POSITION)),
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@record
class JobChange:
    """Fields a state change writes along with the new state; None leaves a field as it is."""

    upstream_id: str | None = None
    upstream_status: str | None = None
    status_body: str | None = None
    result_body: str | None = None
    error_status: int | None = None
    error_body: str | None = None
    reason: str | None = None
    last_poll_ts: float | None = None
    started_ts: float | None = None
    poll_errors: int | None = None
    cost: float | None = None  # USD, for operators reading the hash
    effects_pending: bool = False

    def to_fields(self) -> dict[str, str | int | float]:
        """Field name and value pairs for the ``job_update`` script, in its order."""
        out: dict[str, str | int | float] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None or value is False:
                continue
            out[spec.name] = 1 if value is True else value  # named as in JobField
        return out


NO_CHANGE = JobChange()
