"""Liveness and readiness for load balancers and Kubernetes probes, and ``/metrics``.

With ``GATEWAY_METRICS_PORT`` set, ``/metrics`` moves to a listener of its own (with the probes,
so they can be asked there too) and the API port answers it with RunComfy's 404.

``/readyz`` reports a Redis outage in its body but stays 200: Redis is shared by every replica, so
failing readiness on it would pull all replicas out of the load balancer at once and turn a partial
outage (requests that need Redis get a clear 503) into a total one.
"""

from __future__ import annotations

from aiohttp import web

from gateway import __version__
from gateway.common.jsonutil import json_response
from gateway.observability.metrics import Metrics
from gateway.web.appkeys import LIFECYCLE, METRICS, WORKER, Lifecycle
from gateway.web.workers import Worker


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[LIFECYCLE]
    ready = state.started and not state.draining
    body = {
        "status": "ready" if ready else ("draining" if state.draining else "starting"),
        "redis": "ok" if state.redis_ok else f"unavailable: {state.redis_error or 'unknown'}",
        **state.extra,
    }
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; unauthenticated like /healthz (keep it off the public ingress).
    A worker of ``serve --workers N`` answers for all of them."""
    worker = request.app.get(WORKER)
    registry = request.app[METRICS]
    return web.Response(
        body=registry.render() if worker is None else await worker.scrape(registry),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def create_metrics_app(
    metrics_: Metrics, lifecycle: Lifecycle, worker: Worker | None = None
) -> web.Application:
    """The separate metrics listener's app: ``/metrics`` and the probes, sharing the gateway's
    registry and lifecycle (so ``/readyz`` turns 503 here too while the gateway drains)."""
    app = web.Application()
    app[METRICS], app[LIFECYCLE] = metrics_, lifecycle
    if worker is not None:
        app[WORKER] = worker
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
