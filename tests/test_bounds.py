"""Bounds on what a client may send: body size, header size, JSON nesting.

Each limit is refused cleanly (a 4xx, never a 500 or a hung connection), before anything
reaches RunComfy; JSON bodies are refused in RunComfy's error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.web.appkeys import LARGE_BODIES
from tests.conftest import ADMIN_TOKEN, NANO, Gateway, Simulator, assert_error_shape

LIMIT = 4096
DEPLOYMENT = "/prod/v2/deployments"


async def body_routes(gw: Gateway) -> list[tuple[str, str, str]]:
    """(method, path, credential) of every kind of route that reads a JSON body."""
    key = await gw.new_team("design", deployments=["*"])
    _, listed, _ = await gw.request("GET", DEPLOYMENT, key=ADMIN_TOKEN)
    dep = listed[0]["id"]
    return [
        ("POST", f"/v1/models/{NANO}", key),
        ("POST", f"/prod/v1/deployments/{dep}/inference", key),
        ("POST", f"/prod/v2/deployments/{dep}/inference", key),
        ("POST", "/admin/v1/teams", ADMIN_TOKEN),
        ("PUT", "/admin/v1/teams/design/limits", ADMIN_TOKEN),
        ("POST", "/admin/v1/pricing/estimate", ADMIN_TOKEN),
        ("POST", DEPLOYMENT, ADMIN_TOKEN),
        ("PATCH", f"{DEPLOYMENT}/{dep}", ADMIN_TOKEN),
    ]


def padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    head = b'{"prompt": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_body_over_the_limit_is_413_in_runcomfys_shape_on_every_route(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(max_body_bytes=LIMIT)
    routes = await body_routes(gw)
    before = await simulator.calls()
    for method, path, cred in routes:
        body = padded(LIMIT + 1)
        for data in (body, chunks(body)):  # with Content-Length, and chunked without one
            headers = {"Authorization": f"Bearer {cred}", "Content-Type": "application/json"}
            async with gw.http.request(method, gw.url + path, data=data, headers=headers) as resp:
                assert resp.status == 413, (method, path, await resp.text())
                assert resp.headers["Content-Type"].startswith("application/json")
                assert_error_shape(await resp.json(), 413001)
    after = await simulator.calls()
    sent = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert sent == {}, sent


async def test_a_body_of_exactly_the_limit_is_accepted(gateway_factory: Any) -> None:
    gw: Gateway = await gateway_factory(max_body_bytes=LIMIT)
    key = await gw.new_team("design")
    path = f"/v1/models/{NANO}"
    for data in (padded(LIMIT), chunks(padded(LIMIT))):
        status, body, _ = await gw.request(
            "POST", path, key=key, data=data, headers={"Content-Type": "application/json"}
        )
        assert status == 200, body


async def test_a_compressed_body_is_bounded_by_its_decompressed_size(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(max_body_bytes=LIMIT)
    key = await gw.new_team("design")
    bomb = gzip.compress(padded(LIMIT * 256))
    assert len(bomb) < LIMIT
    status, body, _ = await gw.request(
        "POST", f"/v1/models/{NANO}", key=key, data=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert status == 413, body
    assert_error_shape(body, 413001)
    assert await simulator.count("model.submit") == 0


async def test_an_oversized_body_is_refused_unread_whoever_sends_it(
    gateway_factory: Any, simulator: Simulator
) -> None:
    """A declared size over the limit is a 413 before the body is read or the key looked up:
    an unknown caller cannot make the gateway read megabytes to learn its key is wrong."""
    gw: Gateway = await gateway_factory(max_body_bytes=LIMIT)
    forged = "rcg_aaaaaaaabbbbbbbb_" + "x" * 40
    status, body, _ = await gw.request(
        "POST", f"/v1/models/{NANO}", key=forged, data=padded(LIMIT * 2)
    )
    assert status == 413
    assert_error_shape(body, 413001)
    assert await simulator.count("model.submit") == 0


async def raw_exchange(url: str, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; whatever comes back before the server closes."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5.0):  # a hung connection fails the test, never the suite
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()  # closed now, not when the loop may already be gone


def status_of(response: bytes) -> int:
    assert response.startswith((b"HTTP/1.0 ", b"HTTP/1.1 ")), response[:200]
    return int(response.split(b" ", 2)[1])


async def test_a_client_still_sending_its_over_limit_body_reads_its_413(
    gateway_factory: Any, simulator: Simulator
) -> None:
    """Most clients write the whole body, then read. The gateway stops reading at the limit and
    answers; closing at once would reset the connection under the bytes still arriving, and the
    client would get a reset instead of its 413: the small rest is read and discarded first."""
    gw: Gateway = await gateway_factory(max_body_bytes=LIMIT)
    key = await gw.new_team("design")
    body = padded(4 * LIMIT)
    head = (
        f"POST /v1/models/{NANO} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    parts = urlsplit(gw.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + b"%x\r\n%s\r\n" % (2 * LIMIT, body[: 2 * LIMIT]))
        await asyncio.sleep(0.3)  # past the limit: the gateway has answered 413 by now
        for start in range(2 * LIMIT, len(body), LIMIT):  # and the client is still sending
            writer.write(b"%x\r\n%s\r\n" % (LIMIT, body[start : start + LIMIT]))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5.0):
            answer = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert status_of(answer) == 413
    assert await simulator.count("model.submit") == 0


@pytest.mark.parametrize(
    ("what", "request_bytes"),
    [
        (
            "header value",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        ),
        (
            "authorization header",
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + b"rcg_"
            + b"b" * 9000
            + b"\r\n\r\n",
        ),
        ("request line", b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "header count",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: 1\r\n" % i for i in range(200))
            + b"\r\n",
        ),
    ],
)
async def test_oversized_headers_are_a_clean_4xx_and_the_gateway_keeps_serving(
    gateway: Gateway, what: str, request_bytes: bytes
) -> None:
    response = await raw_exchange(gateway.url, request_bytes)
    assert 400 <= status_of(response) < 500, (what, response[:300])
    status, body, _ = await gateway.request("GET", "/healthz")
    assert status == 200, body


async def test_headers_within_the_limits_are_served(gateway: Gateway) -> None:
    status, _, _ = await gateway.request("GET", "/healthz", headers={"X-Big": "a" * 7000})
    assert status == 200


async def test_the_header_limits_are_the_configured_ones(gateway_factory: Any) -> None:
    gw: Gateway = await gateway_factory(max_header_bytes=2048, max_headers=32)
    status, _, _ = await gw.request("GET", "/healthz", headers={"X-Big": "a" * 1900})
    assert status == 200
    too_long = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2100 + b"\r\n\r\n"
    assert status_of(await raw_exchange(gw.url, too_long)) == 400
    headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(40))
    too_many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    assert status_of(await raw_exchange(gw.url, too_many)) == 400


def nested(depth: int) -> bytes:
    return b'{"prompt": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [128, 300, 600, 1100, 100_000])
async def test_deeply_nested_json_is_a_400_in_runcomfys_shape_on_every_route(
    gateway: Gateway, simulator: Simulator, depth: int
) -> None:
    routes = await body_routes(gateway)
    before = await simulator.calls()
    for method, path, cred in routes:
        if path.startswith(DEPLOYMENT):
            continue  # passed to RunComfy as sent: its body is RunComfy's to parse
        status, body, _ = await gateway.request(method, path, key=cred, data=nested(depth))
        assert status == 400, (method, path, body)
        assert_error_shape(body, 400001)
        assert "nested" in body["error_message"] or "depth" in str(body["detail"])
    after = await simulator.calls()
    assert {k: v for k, v in after.items() if "submit" in k or "inference" in k} == {
        k: v for k, v in before.items() if "submit" in k or "inference" in k
    }


async def test_json_nested_up_to_the_limit_is_accepted(gateway: Gateway) -> None:
    """128 levels: the body object and 127 arrays in it."""
    key = await gateway.new_team("design")
    status, body, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, data=nested(127))
    assert status in (200, 422), body  # the simulator may refuse the extra input; never a 500


@pytest.mark.slow
async def test_a_flood_of_malformed_requests_writes_a_bounded_json_log(
    replicas: Any, http: aiohttp.ClientSession
) -> None:
    """aiohttp logs every malformed request with a traceback: each is one JSON line, and past
    the log's budget they are counted in /metrics instead of written."""
    gw = await replicas.start("gw", GATEWAY_LOG_FORMAT="json")
    host, port = urlsplit(gw.url).hostname, urlsplit(gw.url).port
    floods = 300
    started = time.monotonic()
    for _ in range(floods):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")
        await reader.read()
        writer.close()
        await writer.wait_closed()
    elapsed = time.monotonic() - started
    async with http.get(f"{gw.url}/metrics") as resp:
        dropped = next(
            sample.value
            for family in text_string_to_metric_families(await resp.text())
            for sample in family.samples
            if sample.name == "gateway_log_records_dropped_total"
        )
    events = [json.loads(line) for line in gw.log_text().splitlines() if line.strip()]
    written = [e for e in events if e.get("logger", "").startswith("aiohttp")]
    assert all(e["event"].startswith("Error handling request") for e in written), written[:3]
    assert len(written) + dropped == floods
    assert len(written) <= 100 + 20 * elapsed + 1  # the budget: a burst, then 20 a second


# --- bodies are read only for a caller who may send them ----------------------------------------


async def partial_exchange(url: str, head: bytes, body_part: bytes) -> bytes:
    """Send request headers declaring a large body and only the start of that body; the answer
    must come without the rest (the gateway closes the connection after it)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + body_part)
        await writer.drain()
        async with asyncio.timeout(5.0):  # the body timeout is 60 s: an answer now read nothing
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def declared(method: str, path: str, size: int, auth: str = "", extra: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", f"Content-Length: {size}"]
    lines += ["Content-Type: application/json"] + ([f"Authorization: {auth}"] if auth else [])
    lines += [extra] if extra else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("path", "auth", "status"),
    [
        ("/no/such/route", "", 404),
        (f"/v1/models/{NANO}", "", 401),
        (f"/v1/models/{NANO}", "Bearer not-a-key", 401),
        (f"/v1/models/{NANO}", "Basic dXNlcjpwYXNz", 401),
        ("/admin/v1/teams", "Bearer rca_short", 401),
    ],
)
async def test_unknown_routes_and_malformed_credentials_are_answered_without_reading_the_body(
    gateway: Gateway, simulator: Simulator, path: str, auth: str, status: int
) -> None:
    answer = await partial_exchange(
        gateway.url, declared("POST", path, 50_000_000, auth), b'{"prompt": "' + b"x" * 1000
    )
    assert status_of(answer) == status
    assert b"Connection: close" in answer  # not drained: the rest is never read
    assert await simulator.count("model.submit") == 0


async def test_a_forged_key_is_checked_in_redis_before_a_large_body_is_read(
    gateway: Gateway, simulator: Simulator
) -> None:
    forged = "rcg_aaaaaaaabbbbbbbb_" + "x" * 40
    head = declared("POST", f"/v1/models/{NANO}", 50_000_000, f"Bearer {forged}")
    answer = await partial_exchange(gateway.url, head, b'{"prompt": "' + b"x" * 200_000)
    assert status_of(answer) == 401
    assert await simulator.count("model.submit") == 0


async def test_a_large_body_of_a_real_key_is_read_after_its_key_is_checked(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    status, body, headers = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, data=chunks(padded(3_000_000), 65536),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 200, body
    assert headers["X-Gateway-Cache"] == "miss"
    assert await simulator.count("model.submit") == 1


async def test_compressed_bodies_inflate_against_their_own_smaller_bound(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(max_inflated_body_bytes=1_000_000)
    key = await gw.new_team("design")
    path = f"/v1/models/{NANO}"
    for encoding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        status, body, _ = await gw.request(
            "POST", path, key=key, data=compress(padded(2_000_000)), headers=headers
        )
        assert status == 413, body
        assert_error_shape(body, 413001)
        status, body, _ = await gw.request(
            "POST", path, key=key, data=compress(padded(500_000 + len(encoding))),
            headers=headers,
        )  # fmt: skip
        assert status == 200, body
    assert await simulator.count("model.submit") == 2


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip", "x-custom"])
async def test_an_unsupported_content_encoding_is_a_clear_415(
    gateway: Gateway, simulator: Simulator, encoding: str
) -> None:
    answer = await partial_exchange(
        gateway.url,
        declared("POST", f"/v1/models/{NANO}", 10_000_000, extra=f"Content-Encoding: {encoding}"),
        b"\x00" * 1000,
    )
    assert status_of(answer) == 415
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert_error_shape(body, 415001)
    assert "Brotli" not in body["error_message"]
    assert await simulator.count("model.submit") == 0


async def test_large_bodies_wait_for_a_turn_and_get_503_when_none_comes_in_time(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(max_large_bodies=1, client_body_timeout_seconds=1.0)
    key = await gw.new_team("design")
    path = f"/v1/models/{NANO}"
    headers = {"Content-Type": "application/json"}
    turns = gw.app[LARGE_BODIES]
    await turns.acquire()  # another large body is being read and parsed
    try:
        status, body, answer_headers = await gw.request(
            "POST", path, key=key, data=padded(200_000), headers=headers
        )
        assert status == 503, body
        assert_error_shape(body, 503004)
        assert answer_headers["Retry-After"] == "1"
        small = await gw.request("POST", path, key=key, json={"prompt": "small"}, headers=headers)
        assert small[0] == 200  # small bodies need no turn
    finally:
        turns.release()
    status, body, _ = await gw.request("POST", path, key=key, data=padded(200_000), headers=headers)
    assert status == 200, body
