"""A worker of ``serve --workers N``: what it shares with its siblings besides Redis.

The supervisor gives every worker one private directory. Each worker serves its own registry
there on a unix socket named after its process id; the worker a scrape of ``/metrics`` reaches
answers with its own and every sibling's series added up (:mod:`gateway.observability.aggregate`),
so one scrape counts every request whichever worker served it. A sibling that is restarting is
left out of that one scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from gateway.observability import aggregate
from gateway.observability.metrics import Metrics

log = structlog.get_logger(__name__)
SIBLING_TIMEOUT = 5.0  # a sibling's event loop may be busy; a scrape waits that long for it
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Worker:
    """Which worker this process is, the directory it meets its siblings in, and whether its
    Redis is the embedded one its supervisor runs (which reaches it as a URL, as any other)."""

    index: int
    peers_dir: Path
    embedded_redis: bool = False

    @property
    def socket_path(self) -> Path:
        return self.peers_dir / f"{os.getpid()}.sock"

    def siblings(self) -> list[Path]:
        return sorted(p for p in self.peers_dir.glob("*.sock") if p != self.socket_path)

    async def scrape(self, metrics: Metrics) -> bytes:
        """This worker's series and its siblings', added up."""
        texts = await asyncio.gather(*(_fetch(path) for path in self.siblings()))
        own = metrics.render().decode()
        return aggregate.render([own, *(text for text in texts if text is not None)])


async def _fetch(path: Path) -> str | None:
    """A sibling's own series, or None if it does not answer (it just stopped or started)."""
    try:
        connector = aiohttp.UnixConnector(path=str(path))
        timeout = aiohttp.ClientTimeout(total=SIBLING_TIMEOUT)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get("http://worker/metrics") as response,
        ):
            response.raise_for_status()
            return await response.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.info("worker_sibling_unanswered", socket=path.name, error_type=type(exc).__name__)
        return None


def sibling_listener(
    worker: Worker, metrics: Metrics
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` serving this worker's own series to its siblings."""

    async def own(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def listening(_: web.Application) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_get("/metrics", own)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.UnixSite(runner, str(worker.socket_path)).start()
        yield
        await runner.cleanup()
        with contextlib.suppress(OSError):
            worker.socket_path.unlink()

    return listening
