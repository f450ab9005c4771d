"""``serve --workers N``: one supervisor process and N gateway workers on the same port.

The supervisor binds the port (each worker gets sockets of its own on Linux, see
:func:`gateway.web.serving.listen_for_workers`), claims the data directory and runs the embedded
Redis once; each worker is ``serve`` again, given that Redis as ``GATEWAY_REDIS_URL``, so N
workers are N replicas sharing one Redis, which the gateway already coordinates (leases for
polling and dispatch, Lua scripts for every count). Workers are spawned, not forked: each starts
from a clean interpreter, with no event loop or thread of the parent's inside.

Workers run in their own process group: Ctrl-C reaches the supervisor only, which sends each
worker a single SIGTERM (a second signal would cut a worker's drain short). A worker drains as
a single process does, within ``GATEWAY_SHUTDOWN_GRACE_SECONDS``. A worker that dies after it
was ready is restarted, after a pause that doubles while it keeps dying (up to 30 s); one that
dies before it was ready stops everything with exit code 1, as every worker runs the same
configuration and a retry would fail the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
import structlog
from aiohttp import web

from gateway.cli import launch
from gateway.cli.cpus import available_cpus
from gateway.common.background import background, sleep_unless
from gateway.settings import Settings
from gateway.store.embedded import EmbeddedRedis, EmbeddedRedisError
from gateway.web.serving import urls

log = structlog.get_logger(__name__)
TURN = 0.2  # seconds between two looks at the workers
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 30.0  # before restarting a worker that died
STABLE_AFTER = 60.0  # a worker up that long had no trouble: its next death pauses briefly again
KILL_AFTER_GRACE = 10.0  # on top of the shutdown grace, before stragglers are killed
PARENT_CHECK = 1.0  # seconds between a worker's looks at its supervisor


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told on its command line (``serve --worker``)."""

    index: int
    fds: list[int]
    ready_fd: int
    peers_dir: str
    parent: int
    embedded_redis: bool  # GATEWAY_REDIS_URL names the Redis the supervisor runs

    def argument(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))


@dataclass
class Child:
    """One worker slot: its sockets stay with the slot, across restarts of its process."""

    index: int
    sockets: list[socket.socket]
    process: subprocess.Popen[bytes] | None = None
    ready_fd: int = -1  # the read end of its pipe, until it says it is ready
    ready: bool = False
    started: float = 0.0
    deaths: int = 0  # in a row, for the pause before the next start
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Starts the workers, restarts the ones that die, drains them all on a signal."""

    settings: Settings
    children: list[Child]
    env: dict[str, str]
    peers_dir: Path
    urls: list[str]
    embedded: EmbeddedRedis | None = None
    stopping: int = 0  # the signal that asked to stop
    failure: str = ""  # why it gives up
    all_ready: bool = False  # every worker answered once: the gateway is up

    def run(self) -> int:
        """Start every worker, keep them running until SIGTERM or SIGINT, then drain them."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._stop)
        log.info("supervisor_started", workers=len(self.children), urls=self.urls, pid=os.getpid())
        for child in self.children:
            self._spawn(child)
        while not self.stopping and not self.failure:
            self._turn()
        self._drain()
        if self.failure:
            click.echo(f"cannot start: {self.failure}", err=True)
            return 1
        return 0

    def _stop(self, number: int, _: FrameType | None) -> None:
        self.stopping = self.stopping or number

    def _spawn(self, child: Child) -> None:
        read, write = os.pipe()
        spec = WorkerSpec(
            index=child.index,
            fds=[sock.fileno() for sock in child.sockets],
            ready_fd=write,
            peers_dir=str(self.peers_dir),
            parent=os.getpid(),
            embedded_redis=self.embedded is not None,
        )
        command = [sys.executable, "-m", "gateway", "serve", "--worker", spec.argument()]
        child.process = subprocess.Popen(  # noqa: S603 - this interpreter, this package
            command, env=self.env, pass_fds=(*spec.fds, write), process_group=0
        )
        os.close(write)
        child.ready_fd, child.ready, child.restart_at = read, False, None
        child.started = time.monotonic()
        log.info("worker_started", worker=child.index, worker_pid=child.process.pid)

    def _turn(self) -> None:
        """Wait a little for readiness, then look at exits, due restarts and the Redis."""
        waiting = {child.ready_fd: child for child in self.children if child.ready_fd >= 0}
        readable, _, _ = select.select(list(waiting), [], [], TURN)
        for fd in readable:
            self._on_ready(waiting[fd])
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                self._on_exit(child, now)
            if child.restart_at is not None and child.restart_at <= now and not self.stopping:
                self._spawn(child)
        if self.embedded is not None and not self.embedded.running:
            self._restart_embedded()

    def _on_ready(self, child: Child) -> None:
        said = os.read(child.ready_fd, 1)
        os.close(child.ready_fd)
        child.ready_fd = -1
        if said:  # nothing: it exited before it was ready, seen by _on_exit
            child.ready = True
            log.info("worker_ready", worker=child.index, worker_pid=self._pid(child))
            if not self.all_ready and all(other.ready for other in self.children):
                self.all_ready = True
                log.info("supervisor_ready", workers=len(self.children), urls=self.urls)

    def _on_exit(self, child: Child, now: float) -> None:
        process, child.process = child.process, None
        assert process is not None
        if child.ready_fd >= 0:
            os.close(child.ready_fd)
            child.ready_fd = -1
        code = process.returncode
        if self.stopping:
            return
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if not child.ready:
            log.error("worker_failed_to_start", worker=child.index, worker_pid=process.pid, how=how)
            self.failure = (
                f"worker {child.index} stopped before it was ready ({how}); its log above says "
                "why. Every worker would fail the same way: not restarting."
            )
            return
        child.deaths = 1 if now - child.started >= STABLE_AFTER else child.deaths + 1
        pause = min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** (child.deaths - 1))
        child.restart_at = now + pause
        log.error(
            "worker_died", worker=child.index, worker_pid=process.pid, how=how, restart_in=pause
        )

    def _restart_embedded(self) -> None:
        assert self.embedded is not None
        log.error("embedded_redis_died", data_dir=str(self.embedded.data_dir.resolve()))
        try:
            self.embedded.start()
            log.info("embedded_redis_restarted")
        except EmbeddedRedisError as exc:
            log.error("embedded_redis_restart_failed", error=str(exc))

    def _drain(self) -> None:
        """SIGTERM to every worker once; the ones still there after the grace are killed."""
        live = [child.process for child in self.children if child.process is not None]
        log.info("supervisor_draining", workers=len(live), signal=self.stopping or None)
        for process in live:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + KILL_AFTER_GRACE
        for process in live:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker_killed", worker_pid=process.pid)
                process.kill()
                process.wait()
        for child in self.children:
            for sock in child.sockets:
                sock.close()
            if child.ready_fd >= 0:
                os.close(child.ready_fd)
        if self.embedded is not None:
            self.embedded.stop()
        shutil.rmtree(self.peers_dir, ignore_errors=True)
        log.info("supervisor_stopped")

    @staticmethod
    def _pid(child: Child) -> int | None:
        return child.process.pid if child.process is not None else None


def worker_env(settings: Settings, redis_url: str, metrics_port: int | None) -> dict[str, str]:
    """The environment of every worker: the supervisor's, with the Redis it runs (or was
    given), the ports it resolved (port 0 is one port for all) and one process each."""
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_HOST": settings.host,
        "GATEWAY_PORT": str(settings.port),
        "GATEWAY_WORKERS": "1",
        "GATEWAY_ROLE": settings.role,  # --role, like --host and --port, reaches every worker
    }
    if metrics_port is not None:
        env["GATEWAY_METRICS_PORT"] = str(metrics_port)
    return env


def private_dir() -> Path:
    """The workers' meeting place: the supervisor's own, removed when it stops."""
    return Path(tempfile.mkdtemp(prefix="runcomfy-gateway-workers-"))


def worker_count(setting: int | str) -> int:
    """``GATEWAY_WORKERS`` as a number of processes (``auto``: the CPUs this one may use)."""
    if setting == "auto":
        return available_cpus()
    return int(setting)


def supervise(settings: Settings, count: int) -> int:
    """Run ``count`` workers as the module says; the exit code."""
    groups = launch.bind_workers(settings.host, settings.port, count)
    port = groups[0][0].getsockname()[1]
    metrics_port = _metrics_port(settings)
    claimed = None if settings.redis_url else launch.claim(settings.data_dir)
    launch.start_logging(settings)
    embedded, redis_url = None, settings.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(settings.data_dir, server=settings.redis_server)
        try:
            embedded.start()
        except EmbeddedRedisError as exc:
            raise click.ClickException(f"the embedded Redis did not start: {exc}") from None
        redis_url = embedded.url
        log.info("embedded_redis_started", data_dir=str(settings.data_dir.resolve()))
    code = Supervisor(
        settings=settings,
        children=[Child(index, sockets) for index, sockets in enumerate(groups)],
        env=worker_env(settings.model_copy(update={"port": port}), redis_url, metrics_port),
        peers_dir=private_dir(),
        urls=urls(groups[0]),
        embedded=embedded,
    ).run()
    del claimed  # held until the embedded Redis has stopped
    return code


def _metrics_port(settings: Settings) -> int | None:
    """The separate metrics port, checked free now (one line if not) and resolved if 0; the
    workers then listen on it together."""
    if settings.metrics_port is None:
        return None
    probe = launch.bind(
        settings.metrics_listen_host,
        settings.metrics_port,
        ports="GATEWAY_METRICS_PORT",
        hosts="GATEWAY_METRICS_HOST",
    )
    port: int = probe[0].getsockname()[1]
    for sock in probe:
        sock.close()
    return port


# The worker's side: `serve --worker SPEC`, started by the supervisor.


def serve_worker(settings: Settings, spec: WorkerSpec) -> None:
    """Serve the gateway on the sockets the supervisor passed, as worker ``spec.index``."""
    from gateway.web.appkeys import METRICS, WORKER
    from gateway.web.workers import Worker, sibling_listener

    sockets = [socket.socket(fileno=fd) for fd in spec.fds]
    launch.start_logging(settings)  # its Redis is the supervisor's: no data directory hint
    _name_in_every_line(spec.index)

    def prepare(app: web.Application) -> None:
        worker = Worker(spec.index, Path(spec.peers_dir), spec.embedded_redis)
        app[WORKER] = worker
        app.cleanup_ctx.append(sibling_listener(worker, app[METRICS]))
        app.cleanup_ctx.append(_watch_parent(spec.parent))

    async def ready(_: web.Application) -> None:
        os.write(spec.ready_fd, b"r")
        os.close(spec.ready_fd)

    launch.serve_gateway(settings, sockets, started=ready, prepare=prepare)


def _name_in_every_line(index: int) -> None:
    """Every log line of this worker says which worker and process wrote it (added first, as
    the request middleware clears the context variables of each request)."""
    pid = os.getpid()

    def name(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("worker", index)
        event.setdefault("pid", pid)
        return event

    structlog.configure(processors=[name, *structlog.get_config()["processors"]])


def _watch_parent(
    parent: int,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A worker whose supervisor is gone (killed) drains and stops, instead of serving on
    with nobody to restart or stop it."""

    async def watch(stopping: asyncio.Event) -> None:
        while not await sleep_unless(stopping, PARENT_CHECK):
            if os.getppid() != parent:
                log.error("supervisor_gone", supervisor_pid=parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    async def ctx(_: web.Application) -> AsyncIterator[None]:
        async with background(watch, "parent-watch"):
            yield

    return ctx
