"""Per-team limits, budgets and usage: what admins set and read, and how refusals look.

The checks and charges themselves run inside the admission script (``store/admit.lua``), one
atomic step against Redis's clock, so any number of replicas admit exactly what the limits
allow. This module holds the rest: the limits record, the calendar periods (the gateway knows
the time zone, Redis knows the time), the errors a refusal becomes, the IETF RateLimit
headers, usage reports and the unreconciled ledger.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from gateway.access.teams import TeamService
from gateway.common.errors import (
    AccessDenied,
    BudgetExhausted,
    NotFound,
    QueueFull,
    QuotaRefused,
    RateLimitExceeded,
    RequestTooExpensive,
)
from gateway.common.records import record
from gateway.money.amounts import micro_to_decimal, micro_to_usd, usd_to_micro
from gateway.observability.metrics import Metrics
from gateway.store.client import Store
from gateway.store.contracts import (
    LimitRefused,
    RateLimitInfo,
    ReplaceHashArgs,
    Resolution,
    ResolveUnreconciledArgs,
)
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts

PeriodKind = Literal["day", "week", "month"]
PERIOD_LETTER: dict[str, str] = {"day": "d", "week": "w", "month": "m"}
PERIOD_NAME = {v: k for k, v in PERIOD_LETTER.items()}
DEFAULT_PERIOD: PeriodKind = "month"
BudgetPeriod = Annotated[
    PeriodKind,
    BeforeValidator(lambda value: DEFAULT_PERIOD if value is None else value),
    WithJsonSchema(
        {
            "enum": ["day", "week", "month", None],
            "default": DEFAULT_PERIOD,
            "description": "The budget's period; null (or leaving it out) clears it: month.",
        }
    ),
]
"""A budget period that ``null`` clears back to the default, as the other limits clear."""


# --- periods ---------------------------------------------------------------------------------


@record
class Period:
    kind: str  # d, w or m
    id: str
    start: float
    end: float


class Calendar:
    """Calendar periods in the configured time zone; Redis's clock picks the current one.

    The gateway passes the previous, current and next period of each kind, computed from its
    own clock, and the script keeps the one that contains Redis's time: replicas whose clocks
    drift still agree, and a period resets at its end with no process running at the boundary.
    """

    def __init__(self, zone: ZoneInfo, clock_offset: float = 0.0) -> None:
        self.zone = zone
        self.clock_offset = clock_offset
        self._cache: tuple[int, str] = (-1, "")

    def now(self) -> float:
        return time.time() + self.clock_offset

    def _midnight(self, day: date) -> float:
        return datetime(day.year, day.month, day.day, tzinfo=self.zone).timestamp()

    def periods(self, at: float) -> list[Period]:
        # from the whole second: fromtimestamp rounds to the microsecond, and an instant within
        # half a microsecond of midnight would otherwise be dated the next day (midnights fall
        # on whole seconds in every zone)
        today = datetime.fromtimestamp(math.floor(at), self.zone).date()
        out: list[Period] = []
        for delta in (-1, 0, 1):
            d = today + timedelta(days=delta)
            out.append(
                Period("d", d.isoformat(), self._midnight(d), self._midnight(d + timedelta(1)))
            )
        monday = today - timedelta(days=today.weekday())
        for delta in (-7, 0, 7):
            w = monday + timedelta(days=delta)
            year, week, _ = w.isocalendar()
            out.append(
                Period(
                    "w", f"{year}-W{week:02d}", self._midnight(w), self._midnight(w + timedelta(7))
                )
            )
        first = today.replace(day=1)
        months = [(first - timedelta(days=1)).replace(day=1), first]
        months.append((first + timedelta(days=32)).replace(day=1))
        months.append((months[2] + timedelta(days=32)).replace(day=1))
        for m, nxt in itertools.pairwise(months):
            out.append(Period("m", f"{m:%Y-%m}", self._midnight(m), self._midnight(nxt)))
        return out

    def spec(self) -> str:
        """The candidates for admission scripts, recomputed at most once a minute."""
        now = self.now()
        minute = int(now // 60)
        if self._cache[0] != minute:
            text = ";".join(f"{p.kind},{p.id},{p.start:.0f},{p.end:.0f}" for p in self.periods(now))
            self._cache = (minute, text)
        return self._cache[1]

    def current(self, kind: str, at: float | None = None) -> Period:
        at = self.now() if at is None else at
        for p in self.periods(at):
            if p.kind == kind and p.start <= at < p.end:
                return p
        raise AssertionError("periods always cover now")  # pragma: no cover

    def day_ids(self, first: date, last: date) -> list[str]:
        days = (last - first).days
        return [(first + timedelta(days=i)).isoformat() for i in range(days + 1)]


# --- limits ----------------------------------------------------------------------------------

Usd = Decimal


_MICRO_FIELDS = {"budget_usd": "budget_micro", "max_request_usd": "max_request_micro"}
_PLAIN = ("rate_per_minute", "rate_burst", "daily_requests")


class KeyLimits(BaseModel):
    """Narrower limits for one key of the team (each applies on top of the team's)."""

    model_config = ConfigDict(extra="forbid")
    # At least one submit per ~2 years: the GCRA state's expiry (interval x burst, in ms) must
    # stay an integer Redis accepts (a rate of 1e-300 made every submit of the team a 500).
    rate_per_minute: float | None = Field(default=None, ge=1e-6, le=1_000_000)
    rate_burst: int | None = Field(default=None, ge=1, le=1_000_000)
    # Counted exactly in Redis and Lua (floats, exact below 2**53): a limit of 2**64 was stored
    # as given and read back as 1.8e19, and every read of the team's limits was a 500.
    daily_requests: int | None = Field(default=None, ge=0, le=1_000_000_000_000)
    budget_usd: Usd | None = Field(default=None, ge=0, max_digits=18, decimal_places=6)
    max_request_usd: Usd | None = Field(default=None, ge=0, max_digits=18, decimal_places=6)


class Limits(KeyLimits):
    """A team's limits; an absent limit does not apply. Models default to all, serverless
    deployments to none."""

    budget_period: BudgetPeriod = DEFAULT_PERIOD
    max_concurrent: int | None = Field(default=None, ge=0, le=100_000)
    max_queue: int | None = Field(default=None, ge=0, le=1_000_000)
    models: list[str] | None = Field(default=None, max_length=10_000)
    deployments: list[str] = Field(default_factory=list, max_length=10_000)
    alert_webhook: str | None = Field(default=None, max_length=2048)
    keys: dict[str, KeyLimits] = Field(default_factory=dict)

    def job_bound(self) -> list[str]:
        """Limits set here that need a job's life in the team's slot (not in the shared
        cache scope)."""
        names = [n for n in ("budget_usd", "max_request_usd") if getattr(self, n) is not None]
        names += [n for n in ("max_concurrent", "max_queue") if getattr(self, n) is not None]
        for kid, limits in self.keys.items():
            names += [
                f"keys.{kid}.{n}"
                for n in ("budget_usd", "max_request_usd")
                if getattr(limits, n) is not None
            ]
        return names

    def to_hash(self) -> dict[str, str]:
        """The Redis hash the admission script reads."""
        out: dict[str, str] = {"budget_period": PERIOD_LETTER[self.budget_period]}

        def put(prefix: str, limits: KeyLimits) -> None:
            for name in _PLAIN:
                value = getattr(limits, name)
                if value is not None:
                    out[prefix + name] = repr(value)
            for name, stored in _MICRO_FIELDS.items():
                value = getattr(limits, name)
                if value is not None:
                    out[prefix + stored] = str(usd_to_micro(value))

        put("", self)
        for kid, limits in self.keys.items():
            put(f"key:{kid}:", limits)
        for name in ("max_concurrent", "max_queue"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        if self.models is not None:
            out["models"] = orjson.dumps(self.models).decode()
        out["deployments"] = orjson.dumps(self.deployments).decode()
        if self.alert_webhook:
            out["alert_webhook"] = self.alert_webhook
        return out

    @classmethod
    def from_hash(cls, raw: dict[str, str], slot: str) -> Limits:
        def read(prefix: str) -> dict[str, Any]:
            values: dict[str, Any] = {}
            for name in _PLAIN:
                if prefix + name in raw:
                    values[name] = float(raw[prefix + name])
            for name, stored in _MICRO_FIELDS.items():
                if prefix + stored in raw:
                    values[name] = micro_to_decimal(int(raw[prefix + stored]))
            return values

        values = read("")
        kids = {k.split(":")[1] for k in raw if k.startswith("key:")}
        values["keys"] = {slot + kid: KeyLimits(**read(f"key:{kid}:")) for kid in sorted(kids)}
        values["budget_period"] = PERIOD_NAME.get(raw.get("budget_period", "m"), "month")
        for name in ("max_concurrent", "max_queue"):
            if name in raw:
                values[name] = int(raw[name])
        if "models" in raw:
            values["models"] = orjson.loads(raw["models"])
        if "deployments" in raw:
            values["deployments"] = orjson.loads(raw["deployments"])
        if raw.get("alert_webhook"):
            values["alert_webhook"] = raw["alert_webhook"]
        return cls.model_validate(values)

    def public(self) -> dict[str, Any]:
        """JSON for the admin API: money as numbers of USD, integers as integers."""
        data = self.model_dump(mode="json")

        def tidy(d: dict[str, Any]) -> None:
            for name in ("budget_usd", "max_request_usd"):
                if d.get(name) is not None:
                    d[name] = float(d[name])
            if d.get("rate_burst") is not None:
                d["rate_burst"] = int(d["rate_burst"])
            if d.get("daily_requests") is not None:
                d["daily_requests"] = int(d["daily_requests"])

        tidy(data)
        for k in data["keys"].values():
            tidy(k)
        return data


# --- refusals and RateLimit headers ----------------------------------------------------------


@record
class RateLimitState:
    """The tightest submit limit as the admission script saw it."""

    name: str
    quota: int
    window: int
    remaining: int
    reset: float

    @classmethod
    def from_info(cls, info: RateLimitInfo | None) -> RateLimitState | None:
        if info is None:
            return None
        return cls(info.name, info.quota, info.window, info.remaining, info.reset)

    def headers(self) -> dict[str, str]:
        """IETF draft-ietf-httpapi-ratelimit-headers: the policy and what is left of it."""
        reset = max(0, int(-(-self.reset // 1)))
        return {
            "RateLimit-Policy": f'"{self.name}";q={self.quota};w={max(1, self.window)}',
            "RateLimit": f'"{self.name}";r={max(0, self.remaining)};t={reset}',
        }


def _usd(micro: str) -> float:
    return micro_to_usd(int(float(micro)))


@record
class _Refused:
    """What the message of every kind of refusal draws on."""

    limit: str
    wait: int  # whole seconds until the limit lets the next submit in
    whose: str
    estimate_micro: int
    target: str
    detail: dict[str, Any]
    headers: dict[str, str]


def _rate(r: _Refused) -> QuotaRefused:
    r.headers["Retry-After"] = str(r.wait)
    r.detail.update(limit_per_minute=float(r.limit), retry_after_seconds=r.wait)
    return RateLimitExceeded(
        f"Submit rate limit exceeded: {r.whose} limit is {float(r.limit):g} submits per minute. "
        f"Retry in {r.wait} s.",
        r.detail,
        r.headers,
    )


def _daily(r: _Refused) -> QuotaRefused:
    r.headers["Retry-After"] = str(r.wait)
    r.detail.update(limit_per_day=int(float(r.limit)), retry_after_seconds=r.wait)
    return RateLimitExceeded(
        f"Daily request limit reached: {r.whose} limit is {int(float(r.limit))} submits per day. "
        f"It resets in {r.wait} s.",
        r.detail,
        r.headers,
    )


def _queue_full(r: _Refused) -> QuotaRefused:
    r.headers["Retry-After"] = "10"
    r.detail.update(max_queue=int(float(r.limit)))
    return QueueFull(
        f"Concurrency limit reached and the team's queue is full ({int(float(r.limit))} "
        "waiting submits). Retry later.",
        r.detail,
        r.headers,
    )


def _budget(r: _Refused) -> QuotaRefused:
    estimate = micro_to_usd(r.estimate_micro)
    r.detail.update(budget_usd=_usd(r.limit), estimated_cost_usd=estimate, resets_in=r.wait)
    return BudgetExhausted(
        f"Budget exhausted: {r.whose} budget of ${_usd(r.limit):g} for this period cannot cover "
        f"this request's estimated ${estimate:g}.",
        r.detail,
        r.headers,
    )


def _max_request(r: _Refused) -> QuotaRefused:
    estimate = micro_to_usd(r.estimate_micro)
    r.detail.update(max_request_usd=_usd(r.limit), estimated_cost_usd=estimate)
    return RequestTooExpensive(
        f"Request too expensive: its estimated cost ${estimate:g} exceeds "
        f"{r.whose} per-request limit of ${_usd(r.limit):g}.",
        r.detail,
        r.headers,
    )


def _access(r: _Refused) -> QuotaRefused:
    r.detail.update(target=r.target)
    return AccessDenied(
        f"Access denied: {r.target!r} is not on your team's list of allowed models and "
        "deployments.",
        r.detail,
        r.headers,
    )


_REFUSALS: dict[str, Callable[[_Refused], QuotaRefused]] = {
    "rate": _rate,
    "daily": _daily,
    "queue_full": _queue_full,
    "budget": _budget,
    "max_request": _max_request,
}


def refusal(refused: LimitRefused, target: str, estimate_micro: int) -> QuotaRefused:
    """The error of a gate script's refusal (any other kind is the access list's)."""
    state = RateLimitState.from_info(refused.rate_limit)
    scope = refused.scope
    return _REFUSALS.get(refused.kind, _access)(
        _Refused(
            limit=refused.limit,
            wait=max(1, int(-(-float(refused.retry_after) // 1))),
            whose="your team's" if scope == "team" else "this API key's",
            estimate_micro=estimate_micro,
            target=target,
            detail={"limit": refused.kind, "scope": scope, "team_id": refused.team},
            headers=state.headers() if state else {},
        )
    )


@record
class BudgetAlert:
    team_id: str
    level: int
    period: str
    committed_micro: int
    budget_micro: int

    def payload(self) -> dict[str, Any]:
        return {
            "type": "budget_alert",
            "team_id": self.team_id,
            "threshold_percent": self.level,
            "period": self.period,
            "budget_usd": micro_to_usd(self.budget_micro),
            "committed_usd": micro_to_usd(self.committed_micro),
        }


# --- admin: limits, usage, unreconciled ------------------------------------------------------


@record
class QuotaConfig:
    default_queue_depth: int
    usage_retention: int
    poll_rate: float
    poll_burst: int
    global_max_concurrent: int


def _pairs(raw: dict[Any, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()}


class QuotaService:
    """Limits, usage and the unreconciled ledger of teams, for admins and metrics."""

    def __init__(
        self,
        redis: Store,
        scripts: Scripts,
        layout: Layout,
        calendar: Calendar,
        config: QuotaConfig,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout
        self.calendar = calendar
        self.config = config

    async def limits(self, slot: str) -> Limits:
        return Limits.from_hash(_pairs(await self._redis.hgetall(self._layout.limits(slot))), slot)

    async def set_limits(self, slot: str, limits: Limits) -> Limits:
        """Replace a team's limits at once; every replica applies them on the next request."""
        flat = [item for pair in limits.to_hash().items() for item in pair]
        await self._scripts.run(
            ReplaceHashArgs(hash_key=self._layout.limits(slot), fields=tuple(flat))
        )
        return await self.limits(slot)

    async def budget(self, slot: str, limits: Limits | None = None) -> dict[str, Any]:
        """The current budget period: budget, settled, reserved, remaining."""
        limits = limits or await self.limits(slot)
        period = self.calendar.current(PERIOD_LETTER[limits.budget_period])
        raw = _pairs(await self._redis.hgetall(self._layout.spend(slot, period.id)))
        settled, reserved = int(raw.get("settled", 0)), int(raw.get("reserved", 0))
        budget = usd_to_micro(limits.budget_usd) if limits.budget_usd is not None else None
        return {
            "period": period.id,
            "period_kind": limits.budget_period,
            "resets_at": datetime.fromtimestamp(period.end, self.calendar.zone).isoformat(),
            "budget_usd": None if budget is None else micro_to_usd(budget),
            "settled_usd": micro_to_usd(settled),
            "reserved_usd": micro_to_usd(reserved),
            "remaining_usd": None if budget is None else micro_to_usd(budget - settled - reserved),
            "alerted_percent": int(raw.get("alerted", 0)),
        }

    async def usage(self, slot: str, first: date, last: date) -> dict[str, Any]:
        """Requests, outcomes, spend and savings per day and per model over [first, last]."""
        if last < first or (last - first).days > 366:
            raise NotFound("No usage for that range.", detail="range")
        days = self.calendar.day_ids(first, last)
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self._layout.usage(slot, day))
            pipe.zcard(self._layout.queue(slot))
            pipe.zcount(self._layout.running(slot), f"({self.calendar.now()}", "+inf")
            pipe.hlen(self._layout.unreconciled(slot))
            *raws, queued, running, unreconciled = await pipe.execute()
        totals: dict[str, int] = {}
        models: dict[str, dict[str, int]] = {}
        keys: dict[str, int] = {}
        per_day = []
        for day, raw in zip(days, raws, strict=True):
            counters = {k: int(v) for k, v in _pairs(raw).items()}
            plain = {k: v for k, v in counters.items() if not k.startswith(("m:", "key:"))}
            for name, value in counters.items():
                if name.startswith("m:"):
                    model, _, counter = name[2:].rpartition(":")
                    bucket = models.setdefault(model, {})
                    bucket[counter] = bucket.get(counter, 0) + value
                elif name.startswith("key:"):  # key:<kid>:requests, what daily key limits count
                    key_id = slot + name.split(":")[1]
                    keys[key_id] = keys.get(key_id, 0) + value
                else:
                    totals[name] = totals.get(name, 0) + value
            per_day.append({"day": day, **_present(plain)})
        return {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "timezone": str(self.calendar.zone),
            "totals": _present(totals),
            "by_day": per_day,
            "by_model": {m: _present(c) for m, c in sorted(models.items())},
            "requests_by_key": dict(sorted(keys.items())),
            "running": int(running),
            "queued": int(queued),
            "unreconciled": int(unreconciled),
        }

    async def export(self, teams: TeamService, metrics: Metrics) -> None:
        """Set every team's budget, spend, queue and running gauges; drop deleted teams'."""
        slots = await teams.slots()
        now = self.calendar.now()
        exported = []
        for team, slot in sorted(slots.items()):
            if metrics.labels.team(team) != team:  # not learnt yet: exported next round
                continue
            exported.append(team)
            limits = await self.limits(slot)
            budget = await self.budget(slot, limits)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self._layout.queue(slot))
                pipe.zcount(self._layout.running(slot), f"({now}", "+inf")
                queued, running = await pipe.execute()
            metrics.team_spend.labels(team).set(budget["settled_usd"])
            metrics.team_reserved.labels(team).set(budget["reserved_usd"])
            metrics.team_queue.labels(team).set(int(queued))
            metrics.team_running.labels(team).set(int(running))
            if budget["budget_usd"] is not None:
                metrics.team_budget.labels(team).set(budget["budget_usd"])
                metrics.team_budget_remaining.labels(team).set(budget["remaining_usd"])
            else:
                for gauge in (metrics.team_budget, metrics.team_budget_remaining):
                    with contextlib.suppress(KeyError):
                        gauge.remove(team)
        metrics.keep_team_gauges(exported)

    async def unreconciled(self, slot: str) -> list[dict[str, Any]]:
        raw = _pairs(await self._redis.hgetall(self._layout.unreconciled(slot)))
        entries = []
        for jid, value in raw.items():
            entry = orjson.loads(value)
            entries.append(
                {
                    "job_id": jid,
                    "request_id": entry.get("request_id", ""),
                    "api": entry.get("api", ""),
                    "target": entry.get("target", ""),
                    "created_at": entry.get("created_at", ""),
                    "reserved_usd": micro_to_usd(int(entry.get("reserved", 0))),
                }
            )
        return sorted(entries, key=lambda e: str(e["created_at"]))

    async def resolve(
        self, slot: str, job_id: str, charged: bool, cost_usd: Decimal | None
    ) -> dict[str, Any]:
        """Settle an unreconciled submit: RunComfy charged it (cost, else the reservation) or
        did not (refund)."""
        resolution = Resolution.CHARGED if charged else Resolution.REFUNDED
        reply = await self._scripts.run(
            ResolveUnreconciledArgs(
                unreconciled=self._layout.unreconciled(slot),
                job_id=job_id,
                resolution=resolution,
                cost_micro=None if cost_usd is None else usd_to_micro(cost_usd),
                usage_retention=self.config.usage_retention,
            )
        )
        if not reply.found:
            raise NotFound(f"No unreconciled job {job_id!r}.")
        return {
            "job_id": job_id,
            "outcome": resolution.value,
            "reserved_usd": micro_to_usd(reply.reserved_micro),
            "settled_usd": micro_to_usd(reply.settled_micro),
        }


def _present(counters: dict[str, int]) -> dict[str, Any]:
    """Counters as the usage API shows them: money in USD, plus the cache hit rate."""
    out: dict[str, Any] = {}
    for name, value in sorted(counters.items()):
        if name in ("spend", "saved"):
            out[f"{name}_usd"] = micro_to_usd(value)
        else:
            out[name] = value
    hits = counters.get("hit", 0)
    requests = hits + counters.get("miss", 0) + counters.get("coalesced", 0)
    requests += counters.get("queued", 0)
    out["hit_rate"] = round(hits / requests, 4) if requests else 0.0
    return out
