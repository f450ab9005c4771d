"""Upstream calls: retry rules, error mapping, and keeping the gateway's faults its own."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.common.errors import (
    GatewayError,
    SubmitOutcomeUnknown,
    UpstreamBadGateway,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.upstream.client import map_client_exception, never_reached_upstream
from tests.conftest import (
    ADMIN_TOKEN,
    NANO,
    SIM_TOKEN,
    Gateway,
    Simulator,
    assert_error_shape,
    free_port,
    redis_text,
    start_simulator,
)


def _all_subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of any aiohttp client exception, whatever its constructor wants."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, "boom")
    return exc


def test_every_aiohttp_client_exception_maps_to_a_specific_gateway_error() -> None:
    for cls in sorted(_all_subclasses(aiohttp.ClientError) | {aiohttp.ClientError}, key=str):
        for submit in (False, True):
            error = map_client_exception(_instance(cls), submit=submit)
            assert type(error) is not GatewayError, cls
            assert error.status in (502, 503, 504), cls
            if submit and not never_reached_upstream(_instance(cls)):
                assert isinstance(error, SubmitOutcomeUnknown), cls
    assert isinstance(map_client_exception(TimeoutError()), UpstreamTimeout)
    assert isinstance(map_client_exception(ConnectionResetError()), UpstreamBadGateway)
    with pytest.raises(TypeError):
        map_client_exception(ValueError("not an upstream failure"))


async def test_connection_refused_means_never_reached(http: aiohttp.ClientSession) -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as info:
        await http.get(f"http://127.0.0.1:{free_port()}/")
    assert never_reached_upstream(info.value)
    assert isinstance(map_client_exception(info.value, submit=True), UpstreamUnavailable)


async def _wait_completed(gw: Gateway, key: str, rid: str) -> list[int]:
    """Poll status like a client until completed; returns every HTTP status seen."""
    seen: list[int] = []
    for _ in range(300):
        status, body, _ = await gw.request("GET", f"/v1/requests/{rid}/status", key=key)
        seen.append(status)
        if status == 200 and body["status"] == "completed":
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"never completed; statuses seen: {sorted(set(seen))}")


async def test_runcomfys_transient_errors_during_a_job_never_reach_polling_clients(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await simulator.fault(route="model.status", action="status", status=503, times=3)
    await simulator.fault(route="model.status", action="status", status=500, times=2)
    _, sub, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    seen = await _wait_completed(gateway, key, sub["request_id"])
    assert set(seen) == {200}
    assert await simulator.count("model.status") >= 6  # the poller retried through them


async def test_a_slow_status_answer_delays_the_job_but_fails_nobody(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(upstream_read_timeout=0.2, upstream_retries=0)
    key = await gw.new_team("design")
    await simulator.fault(route="model.status", action="delay", delay=0.5, times=2)
    _, sub, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    seen = await _wait_completed(gw, key, sub["request_id"])
    assert set(seen) == {200}


async def test_a_job_runcomfy_no_longer_knows_ends_with_a_clear_502(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await simulator.fault(route="model.status", action="status", status=404, times=None)
    _, sub, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    rid = sub["request_id"]
    for _ in range(200):
        status, body, _ = await gateway.request("GET", f"/v1/requests/{rid}/status", key=key)
        if status != 200:
            break
        await asyncio.sleep(0.02)
    assert status == 502
    assert_error_shape(body, 502001)
    assert body["detail"]["request_id"] == rid


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"action": "status", "status": 500}, "HTTP 500"),
        ({"action": "drop"}, "ServerDisconnectedError"),
        ({"action": "invalid_json"}, "invalid JSON"),
    ],
)
async def test_a_submit_that_reached_runcomfy_is_never_retried_and_reported_unknown(
    gateway: Gateway, simulator: Simulator, fault: dict[str, Any], reason: str
) -> None:
    key = await gateway.new_team("design")
    await simulator.fault(route="model.submit", times=None, **fault)
    status, body, _ = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}
    )
    assert status == 504, body
    assert_error_shape(body, 504002)
    assert reason in body["detail"]["reason"]
    assert await simulator.count("model.submit") == 1
    rid = body["detail"]["request_id"]
    _, unknown = await gateway.admin("GET", "/admin/v1/teams/design/unknown-submits")
    assert [r["request_id"] for r in unknown["requests"]] == [rid]
    status, again, _ = await gateway.request("GET", f"/v1/requests/{rid}/status", key=key)
    assert status == 504 and again["error_code"] == 504002


async def test_a_submit_that_times_out_is_not_retried(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(upstream_submit_timeout=0.3)
    key = await gw.new_team("design")
    await simulator.fault(route="model.submit", action="delay", delay=1.0, times=None)
    status, body, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    assert status == 504
    assert_error_shape(body, 504002)
    await asyncio.sleep(0.8)
    assert await simulator.count("model.submit") == 1


async def test_a_submit_is_retried_when_runcomfy_refused_the_connection(
    gateway_factory: Any,
) -> None:
    port = free_port()
    gw: Gateway = await gateway_factory(
        upstream=f"http://127.0.0.1:{port}", upstream_retries=10, upstream_backoff_base=0.05
    )
    key = await gw.new_team("design")

    async def start_late() -> Any:
        await asyncio.sleep(0.15)
        return await start_simulator(port=port)

    late = asyncio.create_task(start_late())
    status, body, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    server = await late
    try:
        assert status == 200, body
        async with gw.http.get(str(server.make_url("/_sim/calls"))) as resp:
            counts = (await resp.json())["counts"]
        assert counts["model.submit"] == 1
    finally:
        await server.close()


async def test_runcomfy_unreachable_is_503_and_the_request_id_is_forgotten(
    gateway_factory: Any,
) -> None:
    gw: Gateway = await gateway_factory(upstream=f"http://127.0.0.1:{free_port()}")
    key = await gw.new_team("design")
    status, body, headers = await gw.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}
    )
    assert status == 503
    assert_error_shape(body, 503001)
    assert "Retry-After" in headers
    _, unknown = await gw.admin("GET", "/admin/v1/teams/design/unknown-submits")
    assert unknown["requests"] == []


async def test_runcomfy_rejecting_the_gateways_token_is_a_502_not_the_teams_401(
    gateway_factory: Any, simulator: Simulator
) -> None:
    from pydantic import SecretStr

    gw: Gateway = await gateway_factory(upstream_token=SecretStr("a-wrong-upstream-token"))
    key = await gw.new_team("design")
    for method, path in (("POST", f"/v1/models/{NANO}"), ("GET", f"/v1/models/{NANO}")):
        status, body, _ = await gw.request(method, path, key=key, json={"prompt": "x"})
        assert status == 502, body
        assert_error_shape(body, 502002)
        assert "a-wrong-upstream-token" not in str(body)
        assert "your API key" in body["error_message"]


async def test_the_gateway_accounts_empty_balance_is_a_503_not_the_teams_402(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await simulator.configure(balance_usd=0)
    status, body, _ = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}
    )
    assert status == 503
    assert_error_shape(body, 503002)


async def test_runcomfy_rate_limiting_the_gateway_is_a_429_with_retry_after(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await simulator.fault(route="model.submit", action="status", status=429)
    status, body, headers = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}
    )
    assert status == 429
    assert_error_shape(body, 429001)
    assert headers["Retry-After"]


def echoing_upstream() -> web.Application:
    """A RunComfy stand-in that repeats the token it was sent in everything it answers."""

    async def handle(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        path, method = request.path, request.method
        body: dict[str, Any] = {"request_id": "up-1", "echo": token}
        status = 200
        if path == "/v1/models":
            body = {"models": [{"model_id": token}], "total": 1, "limit": 1, "offset": 0}
        elif path == "/v1/models/categories":
            body = {"categories": [token]}
        elif path.endswith("/status"):
            body = {"request_id": "up-1", "status": "completed", "note": token}
        elif path.endswith("/result"):
            # JSON-escaped, the token is no byte string of the answer, only of what it means.
            escaped = "".join(f"\\u{ord(c):04x}" for c in token)
            text = (
                '{"request_id": "up-1", "status": "succeeded", "output": {"image": '
                f'"https://a.runcomfy.net/{token}.png", "{escaped}": "{escaped}"}}}}'
            )
            return web.Response(text=text, content_type="application/json")
        elif method == "GET" and path.endswith("/missing"):
            status, body = 404, {"error_code": 404001, "error_message": token, "detail": token}
        elif method == "GET" and path.startswith("/v1/models/"):
            body = {"model_id": path.removeprefix("/v1/models/"), "description": token}
        elif path.endswith("/bad"):
            status, body = 422, {"error_code": 422001, "error_message": token, "detail": [token]}
        elif path.endswith("/boom"):
            return web.Response(status=500, text=f"upstream trace with {token}")
        elif path.endswith("/garbage"):
            return web.Response(status=200, text=f"<html>{token}")
        elif path == "/prod/v2/deployments":
            status, body = 403, {"error_code": 403001, "error_message": f"{token} is not allowed"}
        elif path == "/prod/v2/balance":
            body = {"balance_usd": 1.0, "currency": token}
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def test_the_upstream_token_never_reaches_a_client_or_a_log_line(
    replicas: Any, http: aiohttp.ClientSession, redis_url: str, namespace: str
) -> None:
    """Even a RunComfy that echoed the gateway's token in answers, errors and asset URLs."""
    echo = TestServer(echoing_upstream())
    await echo.start_server()
    try:
        upstream = str(echo.make_url("")).rstrip("/")
        gw = await replicas.start(
            "gw",
            GATEWAY_UPSTREAM_MODEL_API_URL=upstream,
            GATEWAY_UPSTREAM_SERVERLESS_URL=upstream,
            GATEWAY_LOG_LEVEL="debug",
            GATEWAY_UPSTREAM_RETRIES="0",
            GATEWAY_POLL_INTERVAL_SECONDS="0.05",
        )
        seen: list[str] = []

        async def call(method: str, path: str, key: str, body: Any = None) -> Any:
            headers = {"Authorization": f"Bearer {key}"}
            async with http.request(method, gw.url + path, json=body, headers=headers) as resp:
                text = await resp.text()
                seen.append(f"{resp.status} {dict(resp.headers)} {text}")
                return await resp.json(content_type=None) if text else None

        await call("POST", "/admin/v1/teams", ADMIN_TOKEN, {"team_id": "design"})
        key = (await call("POST", "/admin/v1/teams/design/keys", ADMIN_TOKEN, {}))["key"]
        sub = await call("POST", "/v1/models/acme/ok", key, {"prompt": "x"})
        rid = sub["request_id"]
        for _ in range(100):
            if (await call("GET", f"/v1/requests/{rid}/status", key))["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        await call("GET", f"/v1/requests/{rid}/result?include_cost=true", key)
        for model in ("bad", "boom", "garbage"):
            await call("POST", f"/v1/models/acme/{model}", key, {"prompt": model})
        for path in ("/v1/models", "/v1/models/categories", "/v1/models/acme/missing"):
            await call("GET", path, key)
        await call("GET", "/prod/v2/deployments", ADMIN_TOKEN)
        await call("GET", "/prod/v2/balance", ADMIN_TOKEN)
        await call("GET", "/admin/v1/audit", ADMIN_TOKEN)
        oversized = f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}{'x' * 9000}"
        reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
        writer.write(oversized.encode() + b"\r\n\r\n")
        seen.append((await reader.read()).decode(errors="replace"))
        writer.close()
        await writer.wait_closed()
    finally:
        await echo.close()
    await replicas.stop_all()
    answers, log = "\n".join(seen), gw.log_text()
    assert "completed" in answers and "succeeded" in answers  # the traffic did flow
    assert "upstream_error_response" in log and "Error handling request" in log
    assert SIM_TOKEN not in answers
    for secret in (SIM_TOKEN, ADMIN_TOKEN, key):
        assert secret not in log
    stored = await redis_text(redis_url, namespace)
    assert "a.runcomfy.net" in stored and SIM_TOKEN not in stored


async def test_a_failing_runcomfy_opens_the_circuit_breaker_which_fails_fast_then_recovers(
    gateway_factory: Any, simulator: Simulator
) -> None:
    from tests.test_metrics import scrape, value

    gw: Gateway = await gateway_factory(
        upstream_retries=0, upstream_breaker_failures=3, upstream_breaker_open_seconds=1.0
    )
    key = await gw.new_team("design", budget_usd=10)
    await simulator.fault(route="catalog.get", action="status", status=503, times=None)
    catalog = f"/v1/models/{NANO}"
    for _ in range(3):
        status, body, _ = await gw.request("GET", catalog, key=key)
        assert status == 502, body
    calls = await simulator.calls()

    status, body, headers = await gw.request("GET", catalog, key=key)
    assert status == 503
    assert_error_shape(body, 503001)
    assert headers["Retry-After"] == "1"
    status, body, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    assert status == 503, body
    assert_error_shape(body, 503001)
    assert await simulator.calls() == calls  # failing fast: nothing reached RunComfy
    series = await scrape(gw)
    assert value(series, "gateway_upstream_circuit_state", upstream="model_api") == 2
    assert value(series, "gateway_upstream_circuit_opened_total", upstream="model_api") == 1
    _, usage = await gw.admin("GET", "/admin/v1/teams/design/usage")
    assert usage["budget"]["reserved_usd"] == 0  # the refused submit was refunded

    await asyncio.sleep(1.1)  # open time over: the next call probes, and fails: open again
    status, _, _ = await gw.request("GET", catalog, key=key)
    assert status == 502
    status, _, _ = await gw.request("GET", catalog, key=key)
    assert status == 503

    await simulator.fault_clear()
    await asyncio.sleep(1.1)
    status, body, _ = await gw.request("GET", catalog, key=key)  # the probe succeeds
    assert status == 200, body
    status, body, _ = await gw.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    assert status == 200, body
    series = await scrape(gw)
    assert value(series, "gateway_upstream_circuit_state", upstream="model_api") == 0
    assert value(series, "gateway_upstream_circuit_opened_total", upstream="model_api") == 2
    assert value(series, "gateway_upstream_circuit_state", upstream="serverless") == 0


async def test_runcomfys_retry_after_is_waited_out_between_retries_and_a_long_one_passed_on(
    gateway_factory: Any, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    gw: Gateway = await gateway_factory(upstream_retries=2, upstream_backoff_base=0.01)
    key = await gw.new_team("design")

    async def catalog_calls() -> list[datetime]:
        async with http.get(f"{simulator.url}/_sim/calls") as resp:
            calls = (await resp.json())["calls"]
        return [datetime.fromisoformat(c["at"]) for c in calls if c["route"] == "catalog.get"]

    await simulator.fault(
        route="catalog.get", action="status", status=503, headers={"Retry-After": "1"}
    )
    status, body, _ = await gw.request("GET", f"/v1/models/{NANO}", key=key)
    assert status == 200, body
    first, second = await catalog_calls()
    assert (second - first).total_seconds() >= 0.9  # a floor the backoff (0.01 s) is not

    await simulator.fault(
        route="catalog.get", action="status", status=503, headers={"Retry-After": "120"}
    )
    status, body, _ = await gw.request("GET", f"/v1/models/{NANO}", key=key)
    assert status == 502  # RunComfy's own 503, as a gateway answers an upstream failure
    assert_error_shape(body)
    assert len(await catalog_calls()) == 3  # answered at once, not retried into a 2-minute wait
