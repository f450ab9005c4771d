"""Prometheus metrics, one registry per app, with label values that cannot explode.

Team and model labels carry only teams the admin created and models the catalog knows (and up
to ``MAX_DEPLOYMENTS`` serverless deployments); anything else is ``other``. Routes are route
templates, never raw paths, and no label ever holds a request id or a key. Each replica serves
its own ``/metrics``; Prometheus scrapes every replica, so no multiprocess files are needed.

Besides the ``gateway_`` families the registry carries prometheus-client's standard ``process_*``
(CPU, memory, file descriptors, start time) and ``python_*`` (version, garbage collector) ones.
No ``_created`` series are exported (about 300 of them, one per counter and histogram series):
the text format Prometheus scrapes here gives them no meaning, they are only more series.
Dollar counters add integer micro-dollars and are divided once when scraped, so a sum of
prices reads as the sum a person would write (1.65, never 1.6499999999999997).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from gateway.observability.logs import RECORD_BUDGET

# One switch for the whole process: the gateway's registry is the only one it serves.
disable_created_metrics()  # type: ignore[no-untyped-call]
MICRO = 1_000_000

REDIS_COMMANDS = frozenset(
    {"EVALSHA", "EVAL", "SCRIPT", "GET", "HGET", "HGETALL", "HKEYS", "HSETNX", "HSET", "HDEL",
     "SMEMBERS", "ZREM", "ZADD", "DEL", "PING", "CONFIG", "ZREVRANGE"}
)  # fmt: skip
UPSTREAMS = ("model_api", "serverless")
UPSTREAM_CALLS = ("submit", "status", "result", "cancel", "catalog", "management")
UPSTREAM_ERROR_KINDS = ("connect", "timeout", "disconnect", "4xx", "5xx")
QUOTA_LIMITS = ("rate", "daily", "budget", "max_request", "queue_full", "access")
BUDGET_THRESHOLDS = ("50", "80", "100")

OTHER = "other"
MAX_DEPLOYMENTS = 100
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)

upstream_seconds: contextvars.ContextVar[float] = contextvars.ContextVar(
    "upstream_seconds", default=0.0
)


class LabelGuard:
    """Maps team and model names to bounded label values."""

    def __init__(self) -> None:
        self._teams: frozenset[str] = frozenset()
        self._models: set[str] = set()
        self._deployments: set[str] = set()

    def set_teams(self, teams: Iterable[str]) -> None:
        self._teams = frozenset(teams)

    def add_model(self, model_id: str) -> None:
        self._models.add(model_id)

    def team(self, team_id: str) -> str:
        return team_id if team_id in self._teams else OTHER

    def model(self, target: str, *, serverless: bool = False) -> str:
        if not serverless:
            return target if target in self._models else OTHER
        if target not in self._deployments and len(self._deployments) < MAX_DEPLOYMENTS:
            self._deployments.add(target)
        return target if target in self._deployments else OTHER


class DroppedLogRecords(Collector):
    """Standard-library log records the process did not write (over its budget)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "gateway_log_records_dropped",
            "Standard-library log records (e.g. aiohttp's, one per malformed request) not "
            "written because they came faster than the log's budget.",
        )
        family.add_metric([], RECORD_BUDGET.dropped)
        yield family


class UsdCounter(Collector):
    """A counter of US dollars kept as integer micro-dollars per label set, divided once per
    scrape: adding float dollars would drift (0.15 added 11 times is 1.6499999999999997)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self._name = name.removesuffix("_total")
        self._documentation = documentation
        self._labelnames = labelnames
        self._micro: dict[tuple[str, ...], int] = {}

    def add(self, micro: int, *labels: str) -> None:
        """Count ``micro`` micro-dollars (a positive integer) for the label values ``labels``."""
        if micro < 0:
            raise ValueError("counters only go up")
        self._micro[labels] = self._micro.get(labels, 0) + micro

    def usd(self, *labels: str) -> float:
        return self._micro.get(labels, 0) / MICRO

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, micro in list(self._micro.items()):
            family.add_metric(list(labels), micro / MICRO)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(DroppedLogRecords())
        # The standard collectors an operator's usual dashboards and alerts expect (process CPU,
        # memory, file descriptors, restarts; Python's version and garbage collector).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.labels = LabelGuard()
        self._seeded: frozenset[str] = frozenset()
        self._gauge_teams: frozenset[str] = frozenset()
        r = self.registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.http_requests = Counter(
            "gateway_http_requests_total",
            "HTTP requests by route template, method, status class and cache outcome.",
            ["route", "method", "status_class", "cache"],
            registry=r,
        )
        self.http_duration = Histogram(
            "gateway_http_request_duration_seconds",
            "Whole request latency.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_overhead = Histogram(
            "gateway_http_overhead_seconds",
            "The gateway's own share of a request: total minus time spent waiting for RunComfy.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_request_duration_seconds",
            "Latency of each call to RunComfy (each attempt).",
            ["upstream", "call"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total",
            "Failed calls to RunComfy by kind (connect, timeout, disconnect, 4xx, 5xx).",
            ["upstream", "call", "kind"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries_total",
            "Retried calls to RunComfy.",
            ["upstream", "call"],
            registry=r,
        )
        self.upstream_circuit = Gauge(
            "gateway_upstream_circuit_state",
            "This replica's circuit breaker per upstream: 0 closed, 1 half-open (one probe "
            "call), 2 open (calls fail fast with 503).",
            ["upstream"],
            registry=r,
        )
        self.upstream_circuit_opened = Counter(
            "gateway_upstream_circuit_opened_total",
            "Times this replica's circuit breaker opened, per upstream.",
            ["upstream"],
            registry=r,
        )
        self.cache_requests = Counter(
            "gateway_cache_requests_total",
            "Submits by dedup outcome (hit, coalesced, miss, queued).",
            ["team", "model", "outcome"],
            registry=r,
        )
        self.cache_stores = Counter(
            "gateway_cache_stores_total", "Results stored for reuse.", ["model"], registry=r
        )
        self.cache_purges = Counter(
            "gateway_cache_purged_entries_total", "Cached results purged by admins.", registry=r
        )
        self.calls_avoided = Counter(
            "gateway_upstream_calls_avoided_total",
            "RunComfy submits not made thanks to hits and coalescing.",
            ["model"],
            registry=r,
        )
        self.cost_saved = UsdCounter(
            "gateway_cost_saved_usd_total",
            "What hits (the original job's cost) and coalesced submits (its estimate) would "
            "have cost.",
            ("team", "model"),
        )
        r.register(self.cost_saved)
        self.cost_spent = UsdCounter(
            "gateway_cost_usd_total",
            "RunComfy's cost of finished jobs, charged to the team that started them.",
            ("team", "model"),
        )
        r.register(self.cost_spent)
        self.quota_refusals = Counter(
            "gateway_quota_refusals_total",
            "Submits refused by a team limit, by kind (rate, daily, budget, max_request, "
            "queue_full, access).",
            ["team", "limit"],
            registry=r,
        )
        self.budget_alerts = Counter(
            "gateway_budget_alerts_total",
            "Budget thresholds (50, 80, 100 %) crossed, once per team, threshold and period.",
            ["team", "threshold"],
            registry=r,
        )
        self.team_budget = Gauge(
            "gateway_team_budget_usd",
            "The team's budget for the current period (teams with a budget).",
            ["team"],
            registry=r,
        )
        self.team_spend = Gauge(
            "gateway_team_spend_usd",
            "Settled spend of the team in the current budget period.",
            ["team"],
            registry=r,
        )
        self.team_reserved = Gauge(
            "gateway_team_reserved_usd",
            "Estimated cost of the team's jobs not yet settled, in the current period.",
            ["team"],
            registry=r,
        )
        self.team_budget_remaining = Gauge(
            "gateway_team_budget_remaining_usd",
            "Budget left in the current period after settled and reserved spend.",
            ["team"],
            registry=r,
        )
        self.team_queue = Gauge(
            "gateway_team_queued_jobs",
            "Submits waiting for a concurrency slot.",
            ["team"],
            registry=r,
        )
        self.team_running = Gauge(
            "gateway_team_running_jobs",
            "Jobs holding a team concurrency slot.",
            ["team"],
            registry=r,
        )
        self.job_duration = Histogram(
            "gateway_job_duration_seconds",
            "Submit to end of a RunComfy job, by model and final state.",
            ["model", "state"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.jobs_in_flight = Gauge(
            "gateway_jobs_in_flight", "RunComfy jobs being polled (all replicas).", registry=r
        )
        self.poller_lag = Gauge(
            "gateway_poller_lag_seconds",
            "How overdue the most overdue job poll is (0 when polling keeps up).",
            registry=r,
        )
        self.redis_up = Gauge(
            "gateway_redis_up", "1 when this replica reaches Redis.", ["mode"], registry=r
        )
        self.redis_ping = Histogram(
            "gateway_redis_ping_seconds",
            "Round trip of the Redis health probe.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "gateway_redis_errors_total", "Requests that failed on Redis.", registry=r
        )
        self.redis_commands = Histogram(
            "gateway_redis_command_duration_seconds",
            "Latency of Redis commands sent by this replica (pipelines not included).",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_command_errors = Counter(
            "gateway_redis_command_errors_total",
            "Redis commands that failed (connection, timeout or error reply).",
            ["command"],
            registry=r,
        )

        # Series that exist from the start, so rate() sees their first increment (Prometheus 2
        # cannot, for a counter born at 1). Team x model series are too many to pre-create.
        for upstream in UPSTREAMS:
            self.upstream_circuit_opened.labels(upstream)
            for call in UPSTREAM_CALLS:
                self.upstream_retries.labels(upstream, call)
                for kind in UPSTREAM_ERROR_KINDS:
                    self.upstream_errors.labels(upstream, call, kind)
        self.redis_errors.inc(0)
        for command in (*REDIS_COMMANDS, OTHER):
            self.redis_command_errors.labels(command)

    def set_teams(self, teams: Iterable[str]) -> None:
        """Learn the admin-created teams. Their refusal and budget-alert series start at 0: each
        alert fires once a period, so a series born at 1 would never show in rate()."""
        known = frozenset(teams)
        self.labels.set_teams(known)
        for team in known - self._seeded:
            for limit in QUOTA_LIMITS:
                self.quota_refusals.labels(team, limit)
            for threshold in BUDGET_THRESHOLDS:
                self.budget_alerts.labels(team, threshold)
        self._seeded |= known

    def keep_team_gauges(self, teams: Iterable[str]) -> None:
        """Drop the team gauges of teams no longer exported (deleted): a gauge left behind
        would hold its last value, and keep its alerts firing, until the replica restarts."""
        current = frozenset(teams)
        gauges = (self.team_budget, self.team_spend, self.team_reserved,
                  self.team_budget_remaining, self.team_queue, self.team_running)  # fmt: skip
        for team in self._gauge_teams - current:
            for gauge in gauges:
                with contextlib.suppress(KeyError):
                    gauge.remove(team)
        self._gauge_teams = current

    def request_series(
        self, route: str, method: str, status: str, cache: str
    ) -> tuple[Any, Any, Any]:
        """The request counter, latency and overhead children of one label set."""
        return (
            self.child(self.http_requests, route, method, status, cache),
            self.child(self.http_duration, route),
            self.child(self.http_overhead, route),
        )

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label set: ``labels()`` costs more than
        the increment. Only for counters and histograms (gauges of deleted teams are removed,
        which a cached child would outlive); label values are bounded by :class:`LabelGuard`."""
        key = (id(metric), values)
        series = self._children.get(key)
        if series is None:
            series = metric.labels(*values)
            if len(self._children) < 100_000:
                self._children[key] = series
        return series

    def observe_redis(self, command: str, seconds: float, failed: bool) -> None:
        name = command if command in REDIS_COMMANDS else OTHER
        self.child(self.redis_commands, name).observe(seconds)
        if failed:
            self.child(self.redis_command_errors, name).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_upstream(self, upstream: str, call: str, seconds: float) -> None:
        self.child(self.upstream_duration, upstream, call).observe(seconds)
        upstream_seconds.set(upstream_seconds.get() + seconds)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def now() -> float:
    return time.perf_counter()
