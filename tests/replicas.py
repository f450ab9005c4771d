"""Replica processes for tests: several real ``serve`` processes sharing one Redis."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ADMIN_TOKEN, SIM_TOKEN, Simulator, free_port

CACHE = "X-Gateway-Cache"
READY_WITHIN = 20.0  # seconds a replica may take to start (imports, Redis, catalog)
POLL_ROUTES = ("model.status", "model.result")


@dataclass
class Replica:
    """One running ``serve`` process; its stdout and stderr go to ``log``."""

    name: str
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def problems(self, last: int = 20) -> str:
        """The replica's latest warning and error log lines, for assertion messages."""
        lines = [line for line in self.log_text().splitlines() if _is_problem(line)]
        return f"--- {self.name} ({self.log}):\n" + "\n".join(lines[-last:])


def _is_problem(line: str) -> bool:
    """A warning or worse (a JSON log line), or a line of a traceback."""
    try:
        event = json.loads(line)
    except ValueError:
        return "Traceback" in line
    return isinstance(event, dict) and event.get("level") in ("warning", "error", "critical")


def problems(replicas: list[Replica]) -> str:
    return "\n".join(replica.problems() for replica in replicas)


@dataclass
class Replicas:
    """Starts replicas sharing one Redis namespace and the simulator; kills them at teardown."""

    simulator: Simulator
    redis_url: str
    namespace: str
    tmp: Path
    http: aiohttp.ClientSession
    running: list[Replica] = field(default_factory=list)

    def env(self, settings: dict[str, str]) -> dict[str, str]:
        return {
            **os.environ,
            "GATEWAY_UPSTREAM_MODEL_API_URL": self.simulator.url,
            "GATEWAY_UPSTREAM_SERVERLESS_URL": self.simulator.url,
            "GATEWAY_UPSTREAM_TOKEN": SIM_TOKEN,
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_REDIS_NAMESPACE": self.namespace,
            "GATEWAY_DATA_DIR": str(self.tmp),
            "GATEWAY_CATALOG_CACHE_SECONDS": "0",
            "GATEWAY_UPSTREAM_BACKOFF_BASE": "0.01",
            "GATEWAY_UPSTREAM_READ_TIMEOUT": "5",
            "GATEWAY_UPSTREAM_SUBMIT_TIMEOUT": "5",
            "GATEWAY_SHUTDOWN_GRACE_SECONDS": "1",
            # 60-100 clients poll one key every 50 ms here: far above the default poll limit
            "GATEWAY_POLL_RATE_PER_SECOND": "0",
            # Hundreds of clients on 2 shared cores can starve a replica's event loop for
            # seconds; these tests count admissions, so a slow Redis answer must not become a 503.
            "GATEWAY_REDIS_TIMEOUT_SECONDS": "30",
            **settings,
        }

    async def start(self, name: str, **settings: str) -> Replica:
        """Start one replica and wait until its ``/readyz`` answers 200."""
        port = free_port()
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "--port", str(port),
                env=self.env(settings), stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        replica = Replica(name, f"http://127.0.0.1:{port}", process, log)
        self.running.append(replica)
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"{name} exited early:\n{replica.log_text()}")
            try:
                async with self.http.get(f"{replica.url}/readyz") as resp:
                    if resp.status == 200:
                        return replica
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name} not ready in {READY_WITHIN} s:\n{replica.log_text()}")

    async def start_many(self, count: int, **settings: str) -> list[Replica]:
        return list(
            await asyncio.gather(*(self.start(f"gw{i + 1}", **settings) for i in range(count)))
        )

    async def stop_all(self) -> None:
        for replica in self.running:
            if replica.process.returncode is None:
                replica.process.kill()
            await replica.process.wait()


def client_pool() -> aiohttp.ClientSession:
    """One client session with room for hundreds of concurrent clients."""
    connector = aiohttp.TCPConnector(limit=800)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


Answer = tuple[int, Any, str]


async def call(
    http: aiohttp.ClientSession,
    replica: Replica,
    method: str,
    path: str,
    *,
    key: str,
    json: Any = None,
) -> Answer:
    """One request as a client sends it; returns status, parsed body and ``X-Gateway-Cache``."""
    headers = {"Authorization": f"Bearer {key}"}
    async with http.request(method, replica.url + path, json=json, headers=headers) as resp:
        body: Any = await resp.json(content_type=None)
        return resp.status, body, resp.headers.get(CACHE, "")
