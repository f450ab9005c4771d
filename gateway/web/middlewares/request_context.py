"""Correlation id and the one access-log line per request (with the admin actor, if any).

Outermost, so its log line sees the final status of every response, errors included.
``X-Request-Id`` is a correlation id for tracing (echoed back); it is unrelated to RunComfy's
``request_id``, which is logged separately as ``gateway_request_id``.
"""

from __future__ import annotations

import re
import time
from os import urandom

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.observability.logs import info_enabled
from gateway.observability.metrics import status_class, upstream_seconds
from gateway.web.appkeys import (
    ADMIN_ACTOR,
    CORRELATION_ID,
    GATEWAY_REQUEST_ID,
    METRICS,
    TARGET,
    TEAM_ID,
)

log = structlog.get_logger("gateway.access")
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def route_name(request: web.Request) -> str:
    """The matched route template (never the raw path, which may hold ids)."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get("X-Request-Id", "")
    correlation_id = (
        supplied if supplied and _CORRELATION_RE.fullmatch(supplied) else urandom(16).hex()
    )
    request[CORRELATION_ID] = correlation_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    started = time.perf_counter()
    upstream_seconds.set(0.0)
    status, cache = 500, "none"
    try:
        response = await handler(request)
        status = response.status
        cache = response.headers.get("X-Gateway-Cache", "none")
        response.headers["X-Request-Id"] = correlation_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = route_name(request)
        count, duration, overhead = request.app[METRICS].request_series(
            route, request.method, status_class(status), cache
        )
        count.inc()
        duration.observe(elapsed)
        overhead.observe(max(0.0, elapsed - upstream_seconds.get()))
        if info_enabled():
            _access_log(request, route, status, cache, elapsed)


def _access_log(request: web.Request, route: str, status: int, cache: str, elapsed: float) -> None:
    log.info(
        "request",
        method=request.method,
        route=route,
        status=status,
        cache=cache,
        latency_ms=round(elapsed * 1000, 3),
        upstream_ms=round(upstream_seconds.get() * 1000, 3),
        team=request.get(TEAM_ID),
        model=request.get(TARGET),
        gateway_request_id=request.get(GATEWAY_REQUEST_ID),
        actor=actor.name if (actor := request.get(ADMIN_ACTOR)) else None,
    )


def setup_request_context(app: web.Application) -> None:
    app.middlewares.append(request_context_middleware)
