"""What ``serve`` and ``demo`` do around the application: the listening sockets, the line that
says where the gateway listens, the claim on the data directory, and the hint about an older
version's ``./data``.

The sockets are bound and the data directory claimed before anything starts (Redis, the
simulator), so a taken port or a data directory in use is one clear line and a non-zero exit
instead of a traceback after the embedded Redis came up.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from gateway.store.commands import PipelinedCommands
from gateway.web.appkeys import COMMANDS, EMBEDDED_REDIS, SETTINGS

log = structlog.get_logger(__name__)
BACKLOG = 128  # aiohttp's default
OLD_DATA_DIR = Path("data")
"""Where versions before the per-user data directory kept it: relative to where they started."""


class CannotStart(Exception):
    """The gateway cannot start as told; the message says why and what to do."""


class ListenError(CannotStart):
    """It cannot listen where it was told to."""


class DataDirInUse(CannotStart):
    """Another live gateway (or demo) runs the embedded Redis of this data directory."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _explain(exc: OSError, host: str, port: int, ports: str, hosts: str) -> str:
    where = _where(host, port)
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (by another gateway, demo or "
            f"simulator?). Stop it, or choose another port with {ports}."
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges). "
            f"Choose another port with {ports}."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {where}: {host} is not an address of this machine. Choose "
            f"another with {hosts} (127.0.0.1 locally, 0.0.0.0 on every interface)."
        )
    return f"cannot listen on {where}: {exc.strerror or exc}."


def listen(
    host: str,
    port: int,
    ports: str = "--port or GATEWAY_PORT",
    hosts: str = "--host or GATEWAY_HOST",
) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to (like asyncio's
    ``create_server``), or :class:`ListenError` saying what is wrong and, with the ``ports``
    and ``hosts`` options of the command, what to do."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {_where(host, port)}: unknown host ({exc.strerror}). Choose "
            f"another with {hosts} (127.0.0.1 locally, 0.0.0.0 on every interface)."
        ) from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    for family, _, _, _, address in infos:
        if (family, str(address[0])) in seen:
            continue
        seen.add((family, str(address[0])))
        try:
            sockets.append(_listening(family, address, reuse_port=False))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6 and len(infos) > 1:
                continue  # "localhost" on a machine without IPv6: its IPv4 address is enough
            for bound in sockets:
                bound.close()
            raise ListenError(_explain(exc, str(address[0]), port, ports, hosts)) from None
    if not sockets:
        raise ListenError(f"cannot listen on {_where(host, port)}: no usable address.")
    return sockets


def _listening(family: int, address: Any, *, reuse_port: bool) -> socket.socket:
    """A non-blocking socket listening on ``address``."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


KERNEL_BALANCES = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
"""Linux shares the connections to a port among the sockets listening on it with
``SO_REUSEPORT`` (by a hash of each connection's addresses); elsewhere the option lets the last
socket take them all."""


def listen_for_workers(
    host: str,
    port: int,
    workers: int,
    ports: str = "--port or GATEWAY_PORT",
    hosts: str = "--host or GATEWAY_HOST",
) -> list[list[socket.socket]]:
    """The listening sockets of each of ``workers`` processes on ``host``:``port``.

    On Linux every worker gets sockets of its own, bound with ``SO_REUSEPORT``, so the kernel
    spreads connections evenly; with one socket shared by all, the worker that wakes first
    accepts every connection waiting (an event loop accepts until none is left), and clients
    that keep their connections (load balancers, benchmarks) stay on few workers. The port is
    first bound without the option, as :func:`listen` does: a port some other program holds,
    even with ``SO_REUSEPORT``, is refused in one line instead of shared with it, and port 0
    becomes one real port for all. Elsewhere the workers share one set of sockets.
    """
    first = listen(host, port, ports, hosts)
    if not KERNEL_BALANCES:
        return [first] * workers
    addresses = [(sock.family, sock.getsockname()) for sock in first]
    for sock in first:
        sock.close()
    every: list[list[socket.socket]] = [[] for _ in range(workers)]
    try:
        for group in every:
            for family, address in addresses:
                group.append(_listening(family, address, reuse_port=True))
    except OSError as exc:
        for sock in (sock for group in every for sock in group):
            sock.close()
        raise ListenError(_explain(exc, host, addresses[0][1][1], ports, hosts)) from None
    return every


def urls(sockets: list[socket.socket]) -> list[str]:
    """The ``http://`` URLs the sockets listen on (their real ports, also for port 0)."""
    found = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        found.append(f"http://{_where(host, port)}")
    return found


def redis_path(url: str, pipelined: bool) -> tuple[str, str]:
    """Which client carries the gateway's Redis calls, and why: its own pipelined one (one
    connection per process, calls batched per event-loop turn) or redis-py, which the TLS,
    Cluster and Sentinel URLs need."""
    if pipelined:
        return "pipelined", "plain redis:// or unix:// URL"
    scheme = urlsplit(url).scheme
    kind = "Cluster" if "+cluster" in scheme else "Sentinel" if "+sentinel" in scheme else ""
    if scheme.startswith("rediss"):
        kind = f"TLS {kind}".strip()
    return "redis-py", f"{kind or scheme} URL"


def log_listening(
    sockets: list[socket.socket],
) -> Callable[[web.Application], Awaitable[None]]:
    """An ``on_startup`` hook, added last, so the line comes once everything has started:
    from then on, connections waiting on the sockets are answered. It says which Redis client
    serves, as the benchmarks of one and the other differ."""

    async def announce(app: web.Application) -> None:
        embedded = app.get(EMBEDDED_REDIS)
        url = embedded.url if embedded is not None else app[SETTINGS].redis_url
        path, why = redis_path(url, isinstance(app[COMMANDS], PipelinedCommands))
        log.info("gateway_listening", urls=urls(sockets), redis_path=path, redis_path_why=why)

    return announce


def _holds_redis_data(directory: Path) -> bool:
    return (directory / "appendonlydir").is_dir() or (directory / "dump.rdb").is_file()


def warn_about_old_data(data_dir: Path, old: Path = OLD_DATA_DIR) -> None:
    """When ``data_dir`` holds no Redis data yet but ``./data`` (an older version's default)
    does, say how to move it: nothing is moved without the user's word."""
    if data_dir.resolve() == old.resolve():
        return
    if _holds_redis_data(data_dir) or not _holds_redis_data(old):
        return
    new, previous = shlex.quote(str(data_dir.resolve())), shlex.quote(str(old.resolve()))
    aside = shlex.quote(str(data_dir.resolve()) + ".empty")
    log.warning(
        "old_data_dir_found",
        old_data_dir=str(old.resolve()),
        data_dir=str(data_dir.resolve()),
        advice="an earlier version kept its teams, keys and jobs in old_data_dir, relative to "
        "where it was started; this one keeps them in data_dir (GATEWAY_DATA_DIR). To keep "
        f"them, stop it (Ctrl-C) and run: mv {new} {aside} && mv {previous} {new}",
    )


LOCK_FILE = "gateway.lock"


def claim_data_dir(data_dir: Path) -> IO[str] | None:
    """Hold ``data_dir``'s lock for the life of the process, or :class:`DataDirInUse`.

    Without it a second gateway on the same directory (easy now that it is the same wherever
    they are started) would take the first one's embedded Redis for a crashed gateway's
    leftover and stop it. The lock goes with the process, whatever way it ends; the embedded
    Redis does not inherit it, so a leftover of a crashed gateway is still replaced. None where
    there are no ``flock`` locks (Windows, which has no embedded Redis either).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise DataDirInUse(
            f"the data directory {data_dir.resolve()} is in use by another gateway or demo "
            f"(process {holder}). Stop it, or give this one its own with GATEWAY_DATA_DIR "
            "(demo: --data-dir), or share one Redis with GATEWAY_REDIS_URL."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
