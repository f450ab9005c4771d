"""The application factory: wires settings, Redis, upstream clients, services and routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web

from gateway.common.background import background, sleep_unless
from gateway.common.errors import StoreUnavailable
from gateway.observability.metrics import Metrics
from gateway.settings import Settings
from gateway.store.client import (
    NotAClusterUrl,
    connect,
    ping,
    refuse_cluster_node,
    warn_if_evicting,
)
from gateway.store.commands import commands_for
from gateway.store.embedded import EmbeddedRedis, EmbeddedRedisError
from gateway.store.failures import described
from gateway.store.pipelined import PipelinedRedis
from gateway.store.scripts import Scripts
from gateway.upstream.breaker import BreakerConfig
from gateway.upstream.client import UpstreamClient, UpstreamConfig, UpstreamName
from gateway.web.appkeys import (
    ADMINS,
    AUDIT,
    CATALOG,
    CLOCK_OFFSET,
    COMMANDS,
    DEDUP,
    EMBEDDED_REDIS,
    LARGE_BODIES,
    LIFECYCLE,
    METRICS,
    METRICS_URL,
    MODEL_API,
    PRICING,
    PROXY,
    QUOTAS,
    RECORDS,
    REDIS,
    SCRIPTS,
    SERVERLESS,
    SERVICES,
    SETTINGS,
    TEAMS,
    WEBHOOKS,
    WORKER,
    Lifecycle,
)
from gateway.web.console import setup_console
from gateway.web.middlewares.bodies import setup_bodies
from gateway.web.middlewares.errors import setup_errors
from gateway.web.middlewares.request_context import setup_request_context
from gateway.web.operations import setup_routes
from gateway.web.routes.ops import create_metrics_app
from gateway.web.services import Resources, Services, build_services

log = structlog.get_logger(__name__)
REDIS_PROBE_INTERVAL = 2.0
TEAM_GAUGE_INTERVAL = 5.0


class MetricsListenerError(Exception):
    """The separate metrics listener (``GATEWAY_METRICS_PORT``) could not listen."""


async def metrics_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """``/metrics`` and the probes on ``GATEWAY_METRICS_PORT``. Started first and stopped last,
    so Prometheus sees the whole start-up and drain."""
    settings = app[SETTINGS]
    host, port = settings.metrics_listen_host, settings.metrics_port
    worker = app.get(WORKER)  # workers share the port, each answering for all
    runner = web.AppRunner(
        create_metrics_app(app[METRICS], app[LIFECYCLE], worker),
        access_log=None,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=worker is not None).start()
    except OSError as exc:
        await runner.cleanup()  # cleanup contexts do not run for a context that failed to start
        reason = exc.strerror or str(exc)
        raise MetricsListenerError(
            f"GATEWAY_METRICS_PORT: cannot listen on {host}:{port} for /metrics ({reason})"
        ) from exc
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    app[METRICS_URL] = f"http://{shown}:{bound_port}"
    log.info("metrics_listener_started", host=bound_host, port=bound_port)
    yield
    await runner.cleanup()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to ``GATEWAY_REDIS_URL``, or start the embedded Redis when it is unset."""
    settings = app[SETTINGS]
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(settings.data_dir, server=settings.redis_server)
        await asyncio.get_running_loop().run_in_executor(None, embedded.start)
        url = embedded.url
        app[EMBEDDED_REDIS] = embedded
        log.info(
            "embedded_redis_started", data_dir=str(settings.data_dir.resolve()), **_server(embedded)
        )
    redis = connect(
        url, observer=app[METRICS].observe_redis, timeout=settings.redis_timeout_seconds
    )
    app[REDIS] = redis
    lifecycle = app[LIFECYCLE]
    try:
        await ping(redis)
        lifecycle.redis_ok = True
        await refuse_cluster_node(redis)
        await warn_if_evicting(redis)
    except StoreUnavailable as exc:
        # Start anyway: requests that need Redis get a clear 503 until it is back.
        failure = described(exc)
        lifecycle.redis_ok, lifecycle.redis_error = False, failure["error_type"]
        log.error("redis_unavailable_at_start", **failure)
    except NotAClusterUrl:
        await redis.aclose()  # cleanup contexts do not run for a context that failed to start
        raise
    pipelined = None
    if PipelinedRedis.supports(url):
        pipelined = PipelinedRedis(
            url, call_timeout=settings.redis_timeout_seconds, observer=app[METRICS].observe_redis
        )
    clock_offset = app[CLOCK_OFFSET]
    app[SCRIPTS] = Scripts.register(redis, pipelined, clock_offset=clock_offset)
    app[COMMANDS] = commands_for(redis, pipelined)
    worker = app.get(WORKER)  # a worker's embedded Redis is its supervisor's
    supervised = worker is not None and worker.embedded_redis
    lifecycle.extra["redis_mode"] = "embedded" if embedded or supervised else "external"
    yield
    if pipelined is not None:
        await pipelined.close()
    await redis.aclose()
    if embedded is not None:
        await asyncio.get_running_loop().run_in_executor(None, embedded.stop)


async def redis_probe_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keep /readyz's view of Redis current without failing readiness on it, and restart the
    embedded Redis if it died (its AOF brings every team, key and job back)."""
    lifecycle, redis, metrics = app[LIFECYCLE], app[REDIS], app[METRICS]
    teams = app[SERVICES].teams
    mode = lifecycle.extra.get("redis_mode", "external")
    embedded = app.get(EMBEDDED_REDIS)

    async def probe(stopping: asyncio.Event) -> None:
        while True:
            if embedded is not None and not embedded.running:
                await _restart_embedded(embedded)
            try:
                started = time.perf_counter()
                await ping(redis)
                metrics.redis_ping.observe(time.perf_counter() - started)
                metrics.set_teams(await teams.team_ids())
                if not lifecycle.redis_ok:
                    log.info("redis_recovered")
                lifecycle.redis_ok, lifecycle.redis_error = True, ""
            except StoreUnavailable as exc:
                failure = described(exc)
                if lifecycle.redis_ok:
                    log.error("redis_lost", error_type=failure["error_type"])
                lifecycle.redis_ok, lifecycle.redis_error = False, failure["error_type"]
            metrics.redis_up.labels(mode).set(1 if lifecycle.redis_ok else 0)
            if await sleep_unless(stopping, REDIS_PROBE_INTERVAL):
                return

    async with background(probe, "redis-probe"):
        yield


def _server(embedded: EmbeddedRedis) -> dict[str, str]:
    """Which server the embedded Redis runs, for its log lines."""
    info = embedded.info
    if info is None:
        return {}
    return {"server": info.name, "version": info.version, "binary": str(info.binary)}


async def _restart_embedded(embedded: EmbeddedRedis) -> None:
    log.error("embedded_redis_died", data_dir=str(embedded.data_dir.resolve()))
    try:
        await asyncio.get_running_loop().run_in_executor(None, embedded.start)
        log.info("embedded_redis_restarted", **_server(embedded))
    except EmbeddedRedisError as exc:
        log.error("embedded_redis_restart_failed", error=str(exc))


def upstream_config(settings: Settings, name: UpstreamName, base_url: str) -> UpstreamConfig:
    """How the client of one RunComfy API connects, retries and breaks."""
    return UpstreamConfig(
        name=name,
        base_url=base_url,
        token=settings.upstream_token.get_secret_value(),
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        submit_timeout=settings.upstream_submit_timeout,
        retries=settings.upstream_retries,
        backoff_base=settings.upstream_backoff_base,
        max_connections=settings.upstream_max_connections,
        breaker=BreakerConfig(
            failures=settings.upstream_breaker_failures,
            open_seconds=settings.upstream_breaker_open_seconds,
        ),
    )


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """One pooled client session per RunComfy API."""
    settings = app[SETTINGS]
    metrics = app[METRICS]
    model_api = UpstreamClient(
        upstream_config(settings, UpstreamName.MODEL_API, settings.upstream_model_api_url),
        metrics,
    )
    serverless = UpstreamClient(
        upstream_config(settings, UpstreamName.SERVERLESS, settings.upstream_serverless_url),
        metrics,
    )
    await model_api.start()
    await serverless.start()
    app[MODEL_API], app[SERVERLESS] = model_api, serverless
    if not settings.upstream_configured:
        log.warning(
            "upstream_token_missing",
            advice="without GATEWAY_UPSTREAM_TOKEN RunComfy refuses every request the gateway "
            "passes on: set it to the RunComfy API token of the gateway's account (or try the "
            "gateway with RunComfy simulated: `runcomfy-gateway demo`)",
        )
    yield
    await model_api.close()
    await serverless.close()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the services on the resources opened so far (nothing to close: they own none)."""
    services = build_services(
        Resources(
            settings=app[SETTINGS],
            metrics=app[METRICS],
            redis=app[REDIS],
            scripts=app[SCRIPTS],
            commands=app[COMMANDS],
            model_api=app[MODEL_API],
            serverless=app[SERVERLESS],
            clock_offset=app[CLOCK_OFFSET],
        )
    )
    app[SERVICES] = services
    _publish(app, services)
    yield


def _publish(app: web.Application, services: Services) -> None:
    """The keys the routes read the services by."""
    app[TEAMS], app[ADMINS], app[AUDIT] = services.teams, services.admins, services.audit
    app[QUOTAS], app[RECORDS], app[WEBHOOKS] = services.quotas, services.records, services.webhooks
    app[CATALOG], app[PRICING], app[DEDUP] = services.catalog, services.pricing, services.dedup
    app[PROXY] = services.proxy


async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """This replica's share of the background work on jobs: polling RunComfy for jobs in
    flight (unless its role is ``api``), starting queued jobs, delivering webhooks, taking back
    interrupted admissions, and the team gauges."""
    services = app[SERVICES]
    polls = app[SETTINGS].role != "api"
    loops = [
        (services.withdrawals.run, "withdrawals"),
        *([(services.poller.run, "poller")] if polls else []),
        (services.webhooks.run, "webhooks"),
        (services.dispatcher.run, "dispatcher"),
        (_team_gauges(app), "team-gauges"),
    ]
    if not polls:
        log.info("poller_elsewhere", hint="this replica never polls RunComfy: run a poller")
    async with contextlib.AsyncExitStack() as running:
        for loop, name in loops:
            await running.enter_async_context(background(loop, name))
        yield
    if polls:
        await services.poller.stop()


def _team_gauges(
    app: web.Application,
) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """Budget, spend, queue and running gauges of every team, read from Redis: each replica
    exports the same values, so dashboards take max() across replicas."""

    services = app[SERVICES]

    async def loop(stopping: asyncio.Event) -> None:
        while True:
            try:
                await services.quotas.export(services.teams, app[METRICS])
            except StoreUnavailable as exc:
                log.warning("team_gauges_failed", error_type=described(exc)["error_type"])
            if await sleep_unless(stopping, TEAM_GAUGE_INTERVAL):
                return

    return loop


async def lifecycle_ctx(app: web.Application) -> AsyncIterator[None]:
    app[LIFECYCLE].started = True
    log.info("gateway_started")
    if not app[SETTINGS].public_url:
        log.warning(
            "public_url_unset",
            advice="set GATEWAY_PUBLIC_URL to the URL clients reach the gateway at; until then "
            "the URLs in answers follow each request's Host and X-Forwarded-Host/Proto headers",
        )
    if not app[SETTINGS].admin_token.get_secret_value():
        log.warning(
            "admin_token_unset",
            advice="without GATEWAY_ADMIN_TOKEN the admin API (/admin/v1/, deployment management "
            "and `runcomfy-gateway admin`) accepts named admin tokens (rca_...) only, and only an "
            "admin can create those: with none, nobody can create teams or keys. Set "
            "GATEWAY_ADMIN_TOKEN to a long random secret, e.g. from "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, and restart",
        )
    yield
    log.info("gateway_stopped")


async def freeze_startup_objects(app: web.Application) -> None:
    """Move everything built at startup (modules, settings, scripts, routes) out of the garbage
    collector's view: a full collection then walks only what requests create, instead of
    pausing every request in flight for all of it (seen as a p99 several times the p50).
    For the serving process only (``serve`` adds it): frozen objects are never collected, which
    a process creating many apps, like the test suite, must not have."""
    gc.collect()
    gc.freeze()


async def _on_shutdown(app: web.Application) -> None:
    """Runs once the listener is closed: /readyz turns 503 while in-flight requests finish."""
    app[LIFECYCLE].draining = True
    log.info("gateway_draining")


def create_app(settings: Settings, *, clock_offset_seconds: float = 0.0) -> web.Application:
    """Build the gateway application from its settings. ``clock_offset_seconds`` is for tests
    only: it shifts Redis's clock as the scripts and the quota calendar see it (a replica
    "tomorrow" next to one "today")."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # The HTTP parser's own limits, set explicitly: a longer line or more headers is refused
        # with a plain 400 before any handler runs (aiohttp's defaults, should they change).
        handler_args={
            "max_line_size": settings.max_header_bytes,
            "max_field_size": settings.max_header_bytes,
            "max_headers": settings.max_headers,
            # A body a route did not read (an unknown route, a refused caller) is not drained:
            # the connection is closed after the answer.
            "lingering_time": 0,
            # Compressed bodies are inflated by the route that reads them, against their own
            # bound (middlewares/bodies.py), never by the server ahead of the route.
            "auto_decompress": False,
        },
    )
    app[SETTINGS] = settings
    app[CLOCK_OFFSET] = clock_offset_seconds
    app[LIFECYCLE] = Lifecycle()
    app[METRICS] = Metrics()
    app[LARGE_BODIES] = asyncio.Semaphore(settings.max_large_bodies)
    # Outermost first: the access log must see every answer; the body middleware must see the
    # rendered answer (to close a connection whose body was left unread) and renders its own
    # refusals; every handler's errors are rendered by the error middleware. Bodies are read
    # only by the routes that need them, once they know who asks (middlewares/bodies.py).
    setup_request_context(app)
    setup_bodies(app)
    setup_errors(app)
    separate_metrics = settings.metrics_port is not None
    if separate_metrics:
        app.cleanup_ctx.append(metrics_listener_ctx)
    app.cleanup_ctx.extend(
        [redis_ctx, upstream_ctx, services_ctx, redis_probe_ctx, jobs_ctx, lifecycle_ctx]
    )
    app.on_shutdown.append(_on_shutdown)
    setup_routes(app, with_metrics=not separate_metrics)
    if settings.console:
        setup_console(app)
    return app
