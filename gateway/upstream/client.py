"""The HTTP client for RunComfy: pooled sessions, timeouts, retries and error mapping.

Retry rules exist so that no generation is ever paid for twice:
- idempotent calls (GET, cancel) are retried with full-jitter exponential backoff after a
  connection failure, a timeout or a 502/503/504;
- a submit is retried only when it provably never reached RunComfy (the connection was never
  established: refused, DNS failure, TLS failure, connect timeout). After any response, a reset or
  a read timeout it is never retried, and the caller learns that its outcome is unknown.

Each client has a circuit breaker (:mod:`gateway.upstream.breaker`): attempts that cannot connect,
time out, are cut off or get a 5xx count as failures; enough of them in a row and calls fail fast
with 503 503001 (nothing sent) until a probe call succeeds.

RunComfy's answers are sorted into the team's errors (bad input, unknown model or id: passed on
with RunComfy's own body) and the gateway's (RunComfy rejecting the gateway's token, the gateway
account's balance, RunComfy failing): the latter become 502/503/504 so that no team mistakes them
for a problem with its own key or balance.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import random
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import aiohttp
import orjson
import structlog

from gateway import __version__
from gateway.common.errors import (
    GatewayError,
    SubmitOutcomeUnknown,
    UpstreamAccountError,
    UpstreamAuthRejected,
    UpstreamBadGateway,
    UpstreamClientError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.common.records import record
from gateway.observability.logs import MIN_SECRET_LENGTH, REDACTED
from gateway.observability.metrics import Metrics
from gateway.upstream.breaker import BreakerConfig, BreakerState, CircuitBreaker

log = structlog.get_logger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
STREAM_BODIES_OVER = 256 * 1024
RETRY_AFTER_CAP = 10.0  # longest Retry-After waited out inside one call; longer ones are answered
ACCOUNT_ERROR_CODES = frozenset({400002})  # InsufficientResources: the gateway account's balance
AUTH_ERROR_CODES = frozenset({400004})  # UserAccountError: the gateway's token is bad or expired
BACKOFF_CAP = 2.0
REDACTED_TOKEN = REDACTED.encode()


class UpstreamName(StrEnum):
    MODEL_API = "model_api"
    SERVERLESS = "serverless"


@record
class UpstreamConfig:
    name: UpstreamName
    base_url: str
    token: str
    connect_timeout: float
    read_timeout: float
    submit_timeout: float
    retries: int
    backoff_base: float
    max_connections: int
    breaker: BreakerConfig


@record
class UpstreamReply:
    """A successful (2xx) answer from RunComfy."""

    status: int
    body: Any


def never_reached_upstream(exc: BaseException) -> bool:
    """Whether the request provably never reached RunComfy's HTTP server."""
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def map_client_exception(exc: BaseException, *, submit: bool = False) -> GatewayError:
    """The most specific gateway error for a failed upstream call."""
    if submit and not never_reached_upstream(exc):
        return SubmitOutcomeUnknown(detail=type(exc).__name__)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return UpstreamUnavailable(detail=type(exc).__name__)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError):
        return UpstreamTimeout(detail=type(exc).__name__)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return UpstreamBadGateway(detail=type(exc).__name__)
    raise TypeError(f"not an upstream failure: {type(exc).__name__}")


def error_for_response(status: int, body: Any, retry_after: str | None) -> GatewayError:
    """The gateway error for a non-2xx (or error-carrying) RunComfy answer."""
    code = body.get("error_code") if isinstance(body, dict) else None
    if status in (401, 403) or code in AUTH_ERROR_CODES:
        return UpstreamAuthRejected(detail=f"RunComfy answered HTTP {status}")
    if status == 402 or code in ACCOUNT_ERROR_CODES:
        return UpstreamAccountError(detail=f"RunComfy answered HTTP {status}")
    if status == 429:
        return UpstreamRateLimited(retry_after)
    if 400 <= status < 500:
        if isinstance(body, dict) and "error_code" in body and "error_message" in body:
            shaped = {
                "error_code": body["error_code"],
                "error_message": body["error_message"],
                "detail": body.get("detail", ""),
            }
        else:
            shaped = {
                "error_code": 400001 if status != 404 else 404001,
                "error_message": "RunComfy refused the request.",
                "detail": body if isinstance(body, dict | list | str) else "",
            }
        return UpstreamClientError(status, shaped)
    return UpstreamBadGateway(detail=f"RunComfy answered HTTP {status}")


def call_kind(method: str, path: str) -> str:
    """A bounded name for an upstream call, for metrics (never the raw path)."""
    for leaf in ("status", "result", "cancel"):
        if path.endswith("/" + leaf):
            return leaf
    if method == "POST" and (path.startswith("/v1/models/") or path.endswith("/inference")):
        return "submit"
    if path.startswith("/v1/models"):
        return "catalog"
    return "management"


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return "connect"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "disconnect"


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date), None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def scrub_strings(value: Any, secret: str, replacement: str) -> Any:
    """``value`` with ``secret`` replaced in every string and object key, at any depth."""
    if isinstance(value, str):
        return value.replace(secret, replacement) if secret in value else value
    if isinstance(value, list):
        return [scrub_strings(item, secret, replacement) for item in value]
    if isinstance(value, dict):
        return {
            scrub_strings(k, secret, replacement): scrub_strings(v, secret, replacement)
            for k, v in value.items()
        }
    return value


def _backoff(attempt: int, base: float) -> float:
    return random.uniform(0, min(BACKOFF_CAP, base * 2**attempt))


class UpstreamClient:
    """One pooled session to one RunComfy base URL."""

    def __init__(self, config: UpstreamConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self._token = config.token.encode() if len(config.token) >= MIN_SECRET_LENGTH else b""
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self.breaker = CircuitBreaker(config.breaker, self._breaker_changed)
        if metrics is not None:
            metrics.upstream_circuit.labels(config.name.value).set(BreakerState.CLOSED)
        self._read_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
        )
        self._submit_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.submit_timeout
        )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections, ttl_dns_cache=300, keepalive_timeout=15
        )
        self._session = aiohttp.ClientSession(
            base_url=None,
            connector=connector,
            headers={
                "Authorization": f"Bearer {self.config.token}",
                "Accept": "application/json",
                "User-Agent": f"runcomfy-gateway/{__version__}",
            },
            json_serialize=lambda v: orjson.dumps(v).decode(),
            auto_decompress=True,
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("upstream client used before start()")
        return self._session

    def url(self, path: str) -> str:
        return self.config.base_url + path

    async def _once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        client_timeout: aiohttp.ClientTimeout,
    ) -> tuple[int, bytes, str | None]:
        headers = {"Content-Type": "application/json"} if data is not None else None
        # Large bodies (inline base64 inputs) are streamed from a buffer, not written at once.
        payload = io.BytesIO(data) if data is not None and len(data) > STREAM_BODIES_OVER else data
        async with self.session.request(
            method,
            self.url(path),
            params=params,
            data=payload,
            headers=headers,
            timeout=client_timeout,
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            if self._token and self._token in body:
                # RunComfy should never send the token back; if it did, neither a client nor
                # Redis nor a log line gets it from here.
                body = body.replace(self._token, REDACTED_TOKEN)
            return resp.status, body, resp.headers.get("Retry-After")

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        idempotent: bool,
    ) -> UpstreamReply:
        """Call RunComfy and return its 2xx JSON answer, or raise the right gateway error."""
        submit = not idempotent
        client_timeout = self._submit_timeout if submit else self._read_timeout
        kind = call_kind(method, path)
        attempt = 0
        while True:
            probe = self.breaker.admit()  # raises CircuitOpen: nothing is sent
            started = time.perf_counter()
            try:
                status, raw, retry_after = await self._once(
                    method, path, params=params, data=data, client_timeout=client_timeout
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.breaker.failed(probe)
                self._observe(kind, started, _error_kind(exc))
                retry = never_reached_upstream(exc) if submit else True
                if retry and attempt < self.config.retries:
                    self._log_retry(kind, attempt, type(exc).__name__)
                    await asyncio.sleep(_backoff(attempt, self.config.backoff_base))
                    attempt += 1
                    continue
                error = map_client_exception(exc, submit=submit)
                log.warning(
                    "upstream_failed",
                    upstream=self.config.name.value,
                    path_kind=method,
                    error=type(exc).__name__,
                    attempts=attempt + 1,
                    gateway_error=error.error_code,
                )
                raise error from None
            except BaseException:
                self.breaker.abandoned(probe)
                raise
            if status >= 500:
                self.breaker.failed(probe)
            else:
                self.breaker.succeeded(probe)
            self._observe(kind, started, f"{status // 100}xx" if status >= 400 else None)
            if idempotent and status in RETRYABLE_STATUSES and attempt < self.config.retries:
                # RunComfy's Retry-After is a floor under the backoff; one longer than a call
                # should wait is passed on to the caller instead (with the error it came with).
                wait = _backoff(attempt, self.config.backoff_base)
                asked = retry_after_seconds(retry_after)
                if asked is None or asked <= RETRY_AFTER_CAP:
                    self._log_retry(kind, attempt, f"HTTP {status}")
                    await asyncio.sleep(max(wait, asked or 0.0))
                    attempt += 1
                    continue
            return self._reply(status, raw, retry_after, submit=submit)

    def _breaker_changed(self, state: BreakerState) -> None:
        upstream = self.config.name.value
        if self._metrics is not None:
            self._metrics.upstream_circuit.labels(upstream).set(state)
            if state is BreakerState.OPEN:
                self._metrics.upstream_circuit_opened.labels(upstream).inc()
        log.warning("upstream_circuit", upstream=upstream, state=state.name.lower())

    def _observe(self, kind: str, started: float, error: str | None) -> None:
        if self._metrics is None:
            return
        upstream = self.config.name.value
        self._metrics.observe_upstream(upstream, kind, time.perf_counter() - started)
        if error is not None:
            self._metrics.upstream_errors.labels(upstream, kind, error).inc()

    def _log_retry(self, kind: str, attempt: int, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.upstream_retries.labels(self.config.name.value, kind).inc()
        log.info(
            "upstream_retry", upstream=self.config.name.value, attempt=attempt + 1, reason=reason
        )

    def _reply(
        self, status: int, raw: bytes, retry_after: str | None, *, submit: bool
    ) -> UpstreamReply:
        try:
            body: Any = orjson.loads(raw) if raw else None
            if self._token and b"\\" in raw:
                # An escaped token (\u0075pstream...) decodes into the answer: scrub that too.
                body = scrub_strings(body, self._token.decode(), REDACTED)
        except RecursionError:
            raise UpstreamBadGateway(detail="RunComfy's answer is nested too deeply") from None
        except orjson.JSONDecodeError:
            if 200 <= status < 300:
                if submit:  # accepted or not, nobody can tell from garbage
                    raise SubmitOutcomeUnknown(
                        detail="RunComfy answered with invalid JSON"
                    ) from None
                raise UpstreamBadGateway(detail="RunComfy answered with invalid JSON") from None
            body = None
        has_error = isinstance(body, dict) and body.get("error_code") is not None
        if 200 <= status < 300 and not has_error:
            return UpstreamReply(status, body)
        if submit and status >= 500:
            # A 5xx may come from a proxy in front of a backend that did accept the job.
            raise SubmitOutcomeUnknown(detail=f"RunComfy answered HTTP {status}")
        error = error_for_response(status if status >= 300 else 400, body, retry_after)
        if error.status >= 500 or error.status == 429:
            log.error(
                "upstream_error_response",
                upstream=self.config.name.value,
                upstream_status=status,
                gateway_error=error.error_code,
            )
        raise error
