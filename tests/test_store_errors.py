"""A Redis outage is one error, ``StoreUnavailable`` (503 503003), raised where the store is
called, on either connection; a TimeoutError or OSError from anything else is never answered
as a Redis outage."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis import exceptions as rexc
from structlog.testing import capture_logs

from gateway.common.errors import StoreUnavailable
from gateway.store.client import Store, connect
from gateway.store.commands import Commands, PipelinedCommands, RedisPyCommands, commands_for
from gateway.store.embedded import EmbeddedRedis
from gateway.store.failures import described
from gateway.store.pipelined import PipelinedRedis, PipelinedScript
from gateway.web.app import create_app
from tests.conftest import (
    NANO,
    Gateway,
    Simulator,
    assert_error_shape,
    free_port,
    make_settings,
)

PASSWORD = "sekrit-store-password"


async def _redis_errors(gw: Gateway) -> float:
    async with gw.http.get(f"{gw.url}/metrics") as resp:
        text = await resp.text()
    match = re.search(r"^gateway_redis_errors_total (\S+)$", text, re.M)
    assert match, "no gateway_redis_errors_total on /metrics"
    return float(match.group(1))


async def _budget(gw: Gateway, team: str) -> dict[str, Any]:
    status, body = await gw.admin("GET", f"/admin/v1/teams/{team}/usage")
    assert status == 200, body
    return dict(body["budget"])


async def _settled(gw: Gateway, team: str) -> dict[str, Any]:
    """The team's budget once no submit holds a reservation."""
    budget: dict[str, Any] = {}
    for _ in range(200):
        budget = await _budget(gw, team)
        if budget["reserved_usd"] == 0:
            return budget
        await asyncio.sleep(0.05)
    raise AssertionError(f"still reserved: {budget}")


# --- what a client sees ------------------------------------------------------------------------


async def test_a_store_outage_during_submit_and_status_answers_503003_and_charges_nothing(
    tmp_path: Path, simulator: Simulator, gateway_factory: Any
) -> None:
    own = EmbeddedRedis(tmp_path / "own-redis").start()  # AOF on: the restart keeps everything
    try:
        gw: Gateway = await gateway_factory(redis_url=own.url)
        key = await gw.new_team("design", budget_usd=50)
        status, sub, _ = await gw.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a"}
        )
        assert status == 200, sub
        before = await _settled(gw, "design")
        submits = await simulator.count("model.submit")
        errors = await _redis_errors(gw)
        own.stop()
        with capture_logs() as logs:
            answers = [
                await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "b"}),
                await gw.request("GET", f"/v1/requests/{sub['request_id']}/status", key=key),
            ]
        for status, body, headers in answers:
            assert status == 503, body
            assert_error_shape(body, 503003)
            assert body["error_message"] == StoreUnavailable.default_message
            assert headers["Retry-After"] == "2"
        assert await _redis_errors(gw) == errors + 2
        logged = [e for e in logs if e["event"] == "store_unavailable"]
        assert len(logged) == 2
        assert all(e["error_type"] == "ConnectionError" for e in logged), logged
        own.start()
        assert await simulator.count("model.submit") == submits  # nothing reached RunComfy
        await asyncio.sleep(0.5)  # time for an interrupted admission to be taken back, were one
        assert await _budget(gw, "design") == before
    finally:
        own.stop()


async def test_runcomfy_refusing_connections_is_an_upstream_error_not_a_redis_outage(
    gateway_factory: Any,
) -> None:
    gw: Gateway = await gateway_factory(upstream=f"http://127.0.0.1:{free_port()}")
    key = await gw.new_team("design")
    errors = await _redis_errors(gw)
    status, body, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a"})
    assert status == 503, body
    assert_error_shape(body, 503001)  # RunComfy unreachable, not the gateway's Redis
    assert await _redis_errors(gw) == errors


@pytest.fixture
async def stray_errors_gateway(
    redis_url: str, namespace: str, simulator: Simulator, tmp_path: Path, http: Any
) -> AsyncIterator[Gateway]:
    """A gateway with two extra routes whose handlers fail with a builtin ``TimeoutError`` and a
    refused connection (an ``OSError``), as a bug or a forgotten mapping would."""
    app = create_app(make_settings(redis_url, namespace, simulator.url, tmp_path))

    def failing(error: Exception) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            raise error

        return handler

    app.router.add_get("/stray/timeout", failing(TimeoutError("a file share stalled")))
    app.router.add_get("/stray/refused", failing(ConnectionRefusedError(111, "refused")))
    server = TestServer(app)
    await server.start_server()
    try:
        yield Gateway(url=str(server.make_url("")).rstrip("/"), http=http, app=app, server=server)
    finally:
        await server.close()


async def test_a_stray_timeout_or_os_error_is_a_plain_500_not_a_redis_outage(
    stray_errors_gateway: Gateway,
) -> None:
    gw = stray_errors_gateway
    errors = await _redis_errors(gw)
    for path, error_type in (
        ("/stray/timeout", "TimeoutError"),
        ("/stray/refused", "ConnectionRefusedError"),
    ):
        with capture_logs() as logs:
            status, body, _ = await gw.request("GET", path)
        assert status == 500, body
        assert_error_shape(body, 500001)
        assert [e["error_type"] for e in logs if e["event"] == "unhandled_error"] == [error_type]
    assert await _redis_errors(gw) == errors


async def test_readiness_names_the_redis_error_behind_an_outage(
    tmp_path: Path, gateway_factory: Any
) -> None:
    own = EmbeddedRedis(tmp_path / "r").start()
    try:
        gw: Gateway = await gateway_factory(redis_url=own.url)
        own.stop()
        body: Any = {}
        for _ in range(60):
            _, body, _ = await gw.request("GET", "/readyz")
            if body["redis"] != "ok":
                break
            await asyncio.sleep(0.1)
        assert body["redis"] == "unavailable: ConnectionError", body
    finally:
        own.stop()


# --- both connections, at the store seam -------------------------------------------------------

ECHO = "return ARGV[1]"


class Connections:
    """redis-py's client and the pipelined connection to one URL, and what each offers."""

    def __init__(self, url: str) -> None:
        self.redis: Store = connect(url, timeout=1.0)
        self.pipelined = PipelinedRedis(url, call_timeout=1.0, connect_timeout=1.0)

    def commands(self, path: str) -> Commands:
        return commands_for(self.redis, self.pipelined if path == "pipelined" else None)

    async def script(self, path: str) -> Any:
        if path == "pipelined":
            return await PipelinedScript(self.pipelined, ECHO)(keys=["k"], args=["v"])
        return await self.redis.register_script(ECHO)(keys=["k"], args=["v"])

    async def pipeline(self) -> Any:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall("k")
            pipe.zrem("z", "m")
            return await pipe.execute()

    async def close(self) -> None:
        await self.pipelined.close()
        await self.redis.aclose()


async def _every_call_is_store_unavailable(connections: Connections, path: str) -> None:
    commands = connections.commands(path)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: commands.hgetall("k"),
        lambda: commands.hdel("k", "f"),
        lambda: commands.zrem("z", "m"),
        lambda: connections.script(path),
    ]
    if path == "redis-py":
        calls.append(connections.pipeline)
    for call in calls:
        with pytest.raises(StoreUnavailable) as raised:
            await call()
        failure = raised.value.__cause__
        assert isinstance(failure, rexc.ConnectionError | rexc.TimeoutError), repr(failure)
        assert PASSWORD not in str(described(raised.value))


async def test_the_url_chooses_the_connection_once() -> None:
    redis = connect("redis://localhost:6379/0")
    assert isinstance(commands_for(redis, None), RedisPyCommands)
    assert isinstance(commands_for(redis, PipelinedRedis("unix:///x.sock")), PipelinedCommands)
    await redis.aclose()
    assert PipelinedRedis.supports("unix:///x.sock") and PipelinedRedis.supports("redis://h")
    for url in ("rediss://h", "redis+cluster://h:7000", "redis+sentinel://h/primary"):
        assert not PipelinedRedis.supports(url), url


@pytest.mark.parametrize("path", ["pipelined", "redis-py"])
async def test_both_connections_raise_store_unavailable_for_a_closed_port(path: str) -> None:
    connections = Connections(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    try:
        await _every_call_is_store_unavailable(connections, path)
    finally:
        await connections.close()


@pytest.mark.parametrize("path", ["pipelined", "redis-py"])
async def test_both_connections_raise_store_unavailable_when_the_server_stops(
    tmp_path: Path, path: str
) -> None:
    server = EmbeddedRedis(tmp_path / "r", persistent=False).start()
    connections = Connections(server.url)
    try:
        assert await connections.commands(path).hgetall("k") == {}  # connected and working
        assert await connections.script(path) == "v"
        server.stop()
        await _every_call_is_store_unavailable(connections, path)
    finally:
        server.stop()
        await connections.close()


async def test_a_refused_command_is_a_bug_not_an_outage(redis_url: str) -> None:
    """Redis refusing the command itself (a script error) stays a ``ResponseError``: a 500."""
    connections = Connections(redis_url)
    try:
        for script in (
            PipelinedScript(connections.pipelined, "return redis.call('NOPE')"),
            connections.redis.register_script("return redis.call('NOPE')"),
        ):
            with pytest.raises(rexc.ResponseError):
                await script()
    finally:
        await connections.close()
