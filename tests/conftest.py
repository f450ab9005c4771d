"""Shared fixtures: a real Redis, a real simulator and real gateways over real HTTP.

Redis is the embedded ``redis-server`` the package ships (or ``GATEWAY_REDIS_URL`` when set);
every test gets its own key namespace, so tests never see each other's data and never flush a
Redis they do not own. Tests marked with ``on_single_and_cluster`` run twice: once more against
a real Redis Cluster of three primaries started from the same binary (or
``GATEWAY_TEST_CLUSTER_URL``, a ``redis+cluster://`` URL, when set).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from multidict import CIMultiDictProxy
from pydantic import SecretStr
from structlog.testing import capture_logs

from gateway.commands import main
from gateway.settings import Settings
from gateway.simulator import SimulatorConfig, create_simulator_app
from gateway.store.client import connect
from gateway.store.embedded import EmbeddedCluster, EmbeddedRedis
from gateway.web.app import create_app
from tests import fault_report

ADMIN_TOKEN = "test-admin-token-0123456789"
SIM_TOKEN = "sim-upstream-token-abcdefghijkl"
NANO = "google/nano-banana/pro/text-to-image"


# click 8.1 mixes stderr into stdout unless told not to; 8.2 and later always keep them apart
_SEPARATE_STDERR: dict[str, Any] = (
    {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
)


def _invoke(args: tuple[str, ...], env: dict[str, str] | None) -> tuple[int, str, str]:
    result = CliRunner(**_SEPARATE_STDERR).invoke(main, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not a command's refusal
    return result.exit_code, result.stdout, result.stderr


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``runcomfy-gateway ARGS`` run in this process as a shell would run it (exit code, stdout,
    stderr). It runs in a thread, since admin commands run an event loop of their own; the log
    events of in-process gateways meanwhile are captured so they stay out of its stdout."""
    with capture_logs():
        return await asyncio.to_thread(_invoke, args, env)


def free_port() -> int:
    """A loopback port nothing listens on (for refused connections and fixed-port servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "fault_report_dir",
        "where fault tests write the rows of the fault table in docs/guarantees.md",
        default=fault_report.DEFAULT_DIR,
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Forget the fault rows of an earlier run (once, in the process that runs the session)."""
    if hasattr(session.config, "workerinput"):
        return
    directory = fault_report.report_dir(
        session.config.rootpath, str(session.config.getini("fault_report_dir"))
    )
    for old in directory.glob("*.json"):
        old.unlink()


@dataclass
class FaultReport:
    """A fault test's rows of the fault table in docs/guarantees.md: as measured, then compared."""

    directory: Path
    test: str
    rows: list[fault_report.FaultRow] = field(default_factory=list)

    def record(self, key: str, *, injected: str, traffic: str, lost: dict[str, int]) -> None:
        """Write a row (even when the test then fails on what it lost)."""
        row = fault_report.FaultRow(key, injected, traffic, lost, self.test)
        fault_report.write(self.directory, row)
        self.rows.append(row)

    def assert_readme_agrees(self) -> None:
        """docs/guarantees.md must say what this run measured."""
        assert self.rows, "record() the rows first"
        for row in self.rows:
            problem = fault_report.check_readme(row)
            assert problem is None, problem


@pytest.fixture
def faults_table(request: pytest.FixtureRequest) -> FaultReport:
    config = request.config
    directory = fault_report.report_dir(config.rootpath, str(config.getini("fault_report_dir")))
    return FaultReport(directory, request.node.originalname)


@pytest.fixture(scope="session")
def single_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Redis for the whole session."""
    external = os.environ.get("GATEWAY_REDIS_URL")
    if external:
        yield external
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Redis Cluster (three primaries) for the whole session, started on first use."""
    external = os.environ.get("GATEWAY_TEST_CLUSTER_URL")
    if external:
        yield external
        return
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster.url


@pytest.fixture
async def redis_url(
    request: pytest.FixtureRequest, single_redis_url: str, namespace: str
) -> AsyncIterator[str]:
    """The test's Redis: the single server, or the cluster for the ``cluster`` parameter. On the
    cluster, every command and script of the test must keep to one hash slot (tests/slots.py)."""
    if getattr(request, "param", "single") != "cluster":
        yield single_redis_url
        return
    from tests.slots import SlotWatch

    url = str(request.getfixturevalue("redis_cluster_url"))
    async with SlotWatch(url, namespace) as watch:
        yield url
    assert watch.scripts_seen() > 0, "the slot check saw no script of the test"
    assert not watch.violations(), "\n".join(watch.violations()[:20])


on_single_and_cluster = pytest.mark.parametrize(
    "redis_url",
    ["single", pytest.param("cluster", marks=[pytest.mark.cluster, pytest.mark.slow])],
    indirect=True,
)
"""Run a test against the single Redis and, in the slow tier, against the Redis Cluster (the fast
tier's cluster smoke tests are in tests/test_cluster.py)."""


@dataclass
class Simulator:
    """A running RunComfy simulator and its control API."""

    url: str
    session: aiohttp.ClientSession

    async def calls(self) -> dict[str, int]:
        async with self.session.get(f"{self.url}/_sim/calls") as resp:
            data: dict[str, Any] = await resp.json()
        return dict(data["counts"])

    async def count(self, route: str) -> int:
        return (await self.calls()).get(route, 0)

    async def fault(self, **rule: Any) -> None:
        async with self.session.post(f"{self.url}/_sim/faults", json=rule) as resp:
            assert resp.status < 300, await resp.text()

    async def fault_clear(self) -> None:
        async with self.session.delete(f"{self.url}/_sim/faults") as resp:
            assert resp.status < 300, await resp.text()

    async def faults_left(self) -> list[dict[str, Any]]:
        """The armed rules not used up yet."""
        async with self.session.get(f"{self.url}/_sim/faults") as resp:
            data: dict[str, Any] = await resp.json()
        return list(data["faults"])

    async def ledger(self) -> dict[str, Any]:
        """What RunComfy charged: ``charged_micro`` and every job (see the control API)."""
        async with self.session.get(f"{self.url}/_sim/ledger") as resp:
            data: dict[str, Any] = await resp.json()
        return data

    async def configure(self, **values: Any) -> None:
        async with self.session.post(f"{self.url}/_sim/config", json=values) as resp:
            assert resp.status < 300, await resp.text()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def start_simulator(
    config: SimulatorConfig | None = None, port: int | None = None
) -> TestServer:
    server = TestServer(
        create_simulator_app(
            config or SimulatorConfig(token=SIM_TOKEN, queue_seconds=0.2, run_seconds=0.3)
        ),
        port=port,
    )
    await server.start_server()
    return server


@pytest.fixture
async def simulator(http: aiohttp.ClientSession) -> AsyncIterator[Simulator]:
    server = await start_simulator()
    yield Simulator(url=str(server.make_url("")).rstrip("/"), session=http)
    await server.close()


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


def make_settings(
    redis_url: str, namespace: str, upstream: str, tmp: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "upstream_model_api_url": upstream,
        "upstream_serverless_url": upstream,
        "upstream_token": SecretStr(SIM_TOKEN),
        "admin_token": SecretStr(ADMIN_TOKEN),
        "redis_url": redis_url,
        "redis_namespace": namespace,
        "data_dir": tmp,
        "upstream_backoff_base": 0.01,
        "upstream_read_timeout": 5.0,
        "upstream_submit_timeout": 5.0,
        "catalog_cache_seconds": 0,
        "poll_interval_seconds": 0.05,
        "poll_lease_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class GatewayClient:
    """A gateway reached over real HTTP, with helpers that act as its users would."""

    url: str
    http: aiohttp.ClientSession
    keys: dict[str, str] = field(default_factory=dict, kw_only=True)

    async def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json: Any = None,
        data: bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        async with self.http.request(
            method, self.url + path, json=json, data=data, headers=all_headers
        ) as resp:
            body = await resp.read()
            try:
                parsed: Any = await resp.json(content_type=None) if body else None
            except ValueError:
                parsed = body.decode(errors="replace")
            return resp.status, parsed, resp.headers

    async def admin(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, body, _ = await self.request(method, path, key=ADMIN_TOKEN, json=json)
        return status, body

    async def new_team(self, team_id: str, **limits: Any) -> str:
        """Create a team and one key for it, with ``limits`` if given; returns the key."""
        status, body = await self.admin("POST", "/admin/v1/teams", {"team_id": team_id})
        assert status == 201, body
        status, body = await self.admin("POST", f"/admin/v1/teams/{team_id}/keys", {})
        assert status == 201, body
        key: str = body["key"]
        self.keys[team_id] = key
        if limits:
            await self.set_limits(team_id, **limits)
        return key

    async def set_limits(self, team_id: str, **limits: Any) -> dict[str, Any]:
        status, body = await self.admin("PUT", f"/admin/v1/teams/{team_id}/limits", limits)
        assert status == 200, body
        return dict(body)


@dataclass
class Gateway(GatewayClient):
    """A gateway replica served from this process (its app is at hand)."""

    app: web.Application
    server: TestServer


@pytest.fixture
async def gateway_factory(
    redis_url: str,
    namespace: str,
    simulator: Simulator,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> AsyncIterator[Any]:
    """Start gateway replicas sharing one Redis namespace and one simulator."""
    servers: list[TestServer] = []

    async def make(upstream: str | None = None, **overrides: Any) -> Gateway:
        url = overrides.pop("redis_url", redis_url)
        clock_offset = float(overrides.pop("clock_offset_seconds", 0.0))
        settings = make_settings(url, namespace, upstream or simulator.url, tmp_path, **overrides)
        app = create_app(settings, clock_offset_seconds=clock_offset)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return Gateway(url=str(server.make_url("")).rstrip("/"), http=http, app=app, server=server)

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def gateway(gateway_factory: Any) -> Gateway:
    gw: Gateway = await gateway_factory()
    return gw


def assert_error_shape(body: Any, code: int | None = None) -> None:
    """RunComfy's error shape, exactly, with no trace of a traceback or a secret."""
    assert isinstance(body, dict), body
    assert set(body) == {"error_code", "error_message", "detail"}, body
    assert isinstance(body["error_code"], int)
    assert isinstance(body["error_message"], str) and body["error_message"]
    if code is not None:
        assert body["error_code"] == code, body
    text = str(body)
    assert "Traceback" not in text
    assert SIM_TOKEN not in text
    assert ADMIN_TOKEN not in text


@pytest.fixture
async def replicas(
    simulator: Simulator,
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> AsyncIterator[Any]:
    """Real ``serve`` processes sharing the test's Redis namespace (see tests/replicas.py)."""
    from tests.replicas import Replicas

    group = Replicas(simulator, redis_url, namespace, tmp_path, http)
    try:
        yield group
    finally:
        await group.stop_all()


async def redis_text(redis_url: str, namespace: str) -> str:
    """Every key name and value of the test's namespace as text, read type by type (a DUMP
    payload may be compressed, so a secret could hide in it)."""
    client = connect(redis_url)
    parts: list[str] = []
    try:
        async for name in client.scan_iter(match=f"{namespace}:*", count=1000):
            kind = str(await client.type(name))
            value: Any
            if kind == "string":
                value = await client.get(name)
            elif kind == "hash":
                value = await client.hgetall(name)
            elif kind == "set":
                value = await client.smembers(name)
            elif kind == "zset":
                value = await client.zrange(name, 0, -1, withscores=True)
            elif kind == "list":
                value = await client.lrange(name, 0, -1)
            else:
                assert kind == "stream", kind
                value = await client.xrange(name)
            parts.append(f"{name} {value}")
    finally:
        await client.aclose()
    return "\n".join(parts)
