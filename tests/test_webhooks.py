"""Serverless webhooks sent by the gateway: per follower, retried, never into our own network."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.common.errors import BadRequest
from gateway.jobs.webhooks import PolicyResolver, WebhookPolicy, WebhookTargetForbidden
from tests.conftest import (
    ADMIN_TOKEN,
    Gateway,
    Simulator,
    assert_error_shape,
    on_single_and_cluster,
)


@dataclass
class Receiver:
    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    fail_first: set[str] = field(default_factory=set)

    def for_request(self, rid: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["request_id"] == rid]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        mark = request.headers["X-Gateway-Delivery"]
        state.marks.append(mark)
        if body["request_id"] in state.fail_first:
            state.fail_first.discard(body["request_id"])
            return web.Response(status=500)
        state.calls.append(body)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    state.url = str(server.make_url("/hook"))
    yield state
    await server.close()


async def deployment(gw: Gateway) -> str:
    _, deployments, _ = await gw.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    return str(deployments[0]["id"])


async def wait_until(predicate: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never became true")


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:8080/hook",
        "http://api.localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:169.254.169.254]/hook",  # IPv4-mapped
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of the metadata address
        "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 of it
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://0x7f.0.0.1/hook",
        "http://127.1/hook",
        "http://0177.0.0.1/hook",
        "http://169.254.169.254./hook",
        "http://LOCALHOST./hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "not a url",
    ],
)
async def test_webhooks_into_the_gateways_own_network_are_refused_by_default(
    gateway: Gateway, simulator: Simulator, target: str
) -> None:
    key = await gateway.new_team("design", deployments=["*"])
    dep = await deployment(gateway)
    status, body, _ = await gateway.request(
        "POST",
        f"/prod/v1/deployments/{dep}/inference?webhook={quote(target, safe='')}",
        key=key,
        json={},
    )
    assert status == 400, target
    assert_error_shape(body, 400001)
    assert await simulator.count("serverless.inference") == 0


@on_single_and_cluster
async def test_every_coalesced_follower_gets_its_own_callbacks(
    gateway_factory: Any, simulator: Simulator, receiver: Receiver
) -> None:
    await simulator.configure(queue_seconds=0.4, run_seconds=0.4)
    gw: Gateway = await gateway_factory(webhook_allow_private=True)
    key = await gw.new_team("design", deployments=["*"])
    dep = await deployment(gw)
    path = f"/prod/v1/deployments/{dep}/inference"
    hook = quote(receiver.url, safe="")
    body = {"overrides": {"6": {"inputs": {"text": "x"}}}}
    answers = await asyncio.gather(
        gw.request("POST", f"{path}?webhook={hook}", key=key, json=body),
        gw.request(
            "POST",
            f"{path}?webhook={hook}&webhook_intermediate_status=true",
            key=key,
            json=body,
        ),
        gw.request(
            "POST",
            path,
            key=key,
            json={**body, "webhook": receiver.url, "webhook_intermediate_status": False},
        ),
        gw.request("POST", path, key=key, json=body),  # no webhook
    )
    assert sorted(a[2]["X-Gateway-Cache"] for a in answers) == ["coalesced"] * 3 + ["miss"]
    rids = [a[1]["request_id"] for a in answers]
    await wait_until(lambda: all(
        any(c["status"] == "succeeded" for c in receiver.for_request(r)) for r in rids[:3]
    ))  # fmt: skip
    await asyncio.sleep(0.2)
    assert receiver.for_request(rids[3]) == []
    for rid in rids[:3]:
        final = [c for c in receiver.for_request(rid) if c["status"] == "succeeded"]
        assert len(final) == 1
        assert final[0]["deployment_id"] == dep and final[0]["outputs"]
    intermediate = [c["status"] for c in receiver.for_request(rids[1])]
    assert "in_progress" in intermediate and intermediate[-1] == "succeeded"
    assert [c["status"] for c in receiver.for_request(rids[0])] == ["succeeded"]
    assert f"{rids[0]}:succeeded" in receiver.marks
    assert await simulator.count("serverless.inference") == 1


@on_single_and_cluster
async def test_a_failing_receiver_is_retried_until_it_answers(
    gateway_factory: Any, simulator: Simulator, receiver: Receiver
) -> None:
    gw: Gateway = await gateway_factory(webhook_allow_private=True, webhook_backoff_seconds=0.05)
    key = await gw.new_team("design", deployments=["*"])
    dep = await deployment(gw)
    hook = quote(receiver.url, safe="")
    _, sub, _ = await gw.request(
        "POST", f"/prod/v2/deployments/{dep}/inference?webhook={hook}", key=key, json={}
    )
    receiver.fail_first.add(sub["request_id"])
    await wait_until(lambda: receiver.for_request(sub["request_id"]) != [])
    assert receiver.marks.count(f"{sub['request_id']}:succeeded") == 2  # one 500, one retry


async def test_a_cache_hit_with_a_webhook_is_called_back_at_once(
    gateway_factory: Any, simulator: Simulator, receiver: Receiver
) -> None:
    gw: Gateway = await gateway_factory(webhook_allowed_hosts="127.0.0.1")
    key = await gw.new_team("design", deployments=["*"])
    dep = await deployment(gw)
    path = f"/prod/v1/deployments/{dep}/inference"
    _, first, _ = await gw.request("POST", path, key=key, json={"overrides": {}})
    for _ in range(200):
        _, state, _ = await gw.request(
            "GET", f"/prod/v1/deployments/{dep}/requests/{first['request_id']}/status", key=key
        )
        if state["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    status, hit, headers = await gw.request(
        "POST", f"{path}?webhook={quote(receiver.url, safe='')}", key=key, json={"overrides": {}}
    )
    assert status == 200 and headers["X-Gateway-Cache"] == "hit"
    await wait_until(lambda: receiver.for_request(hit["request_id"]) != [])
    assert receiver.for_request(hit["request_id"])[0]["status"] == "succeeded"


async def test_an_alert_webhook_into_the_gateways_network_is_refused(gateway: Gateway) -> None:
    await gateway.new_team("design")
    for target in ("http://169.254.169.254/latest", "http://127.1/x", "http://[::1]/x"):
        status, body = await gateway.admin(
            "PUT", "/admin/v1/teams/design/limits", {"alert_webhook": target}
        )
        assert status == 400, target
        assert_error_shape(body, 400001)


def resolving_to(*addresses: str) -> Any:
    """A stand-in for the event loop's getaddrinfo answering with ``addresses``."""

    async def getaddrinfo(host: str, port: Any, **_: Any) -> list[Any]:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, 0, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in addresses
        ]

    return getaddrinfo


@pytest.mark.parametrize(
    "answer",
    [
        ("169.254.169.254",),
        ("93.184.216.34", "10.0.0.5"),  # one private address among public ones is enough
        ("127.0.0.1",),
        ("64:ff9b::a9fe:a9fe",),
        ("::ffff:10.1.2.3",),
        ("::7f00:1",),  # IPv4-compatible ::127.0.0.1
        ("::808:808",),  # ::/96 is refused whatever it embeds
    ],
)
async def test_a_name_resolving_into_the_gateways_network_is_refused_before_delivery(
    monkeypatch: pytest.MonkeyPatch, answer: tuple[str, ...]
) -> None:
    """Names are checked by the resolver the delivery connects with (metadata.google.internal
    resolves to 169.254.169.254 on GCP)."""
    policy = WebhookPolicy(allow_private=False, allowed_hosts=frozenset({"hooks.internal"}))
    resolver = PolicyResolver(policy)
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", resolving_to(*answer))
    url = "http://metadata.google.internal/computeMetadata/v1/"
    assert policy.check_url(url) == url  # a name passes the first check...
    with pytest.raises(WebhookTargetForbidden):
        await resolver.resolve("metadata.google.internal", 80)  # ...not the lookup it uses
    await resolver.resolve("hooks.internal", 80)  # unless an operator allowed it
    monkeypatch.setattr(loop, "getaddrinfo", resolving_to("93.184.216.34"))
    assert [r["host"] for r in await resolver.resolve("metadata.google.internal", 80)] == [
        "93.184.216.34"
    ]
    await resolver.close()


@pytest.mark.parametrize("target", ["http://[::7f00:1]/x", "http://[::127.0.0.1]/x"])
async def test_ipv4_compatible_ipv6_literals_are_refused(target: str) -> None:
    policy = WebhookPolicy(allow_private=False, allowed_hosts=frozenset())
    with pytest.raises(BadRequest):
        policy.check_url(target)


async def test_a_rebinding_dns_answer_never_reaches_the_gateways_network(
    gateway_factory: Any,
    simulator: Simulator,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receiver's name answers with a public address, then with loopback: a check made
    on one lookup and a connection made on another would deliver into the gateway's network."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers = ["93.184.216.34", "127.0.0.1"]
    asked: list[str] = []

    async def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example.com":
            return await real(host, port, *args, **kwargs)
        address = answers[min(len(asked), len(answers) - 1)]
        asked.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    gw: Gateway = await gateway_factory(
        webhook_timeout_seconds=0.3, webhook_max_attempts=3, webhook_backoff_seconds=0.05
    )
    key = await gw.new_team("design", deployments=["*"])
    dep = await deployment(gw)
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    hook = quote(f"http://rebind.example.com:{port}/hook", safe="")
    status, sub, _ = await gw.request(
        "POST", f"/prod/v1/deployments/{dep}/inference?webhook={hook}", key=key, json={}
    )
    assert status == 200, sub
    await wait_until(lambda: "127.0.0.1" in asked)
    await asyncio.sleep(0.3)
    assert receiver.calls == [] and receiver.marks == []


async def test_a_receiver_redirect_is_never_followed(
    gateway_factory: Any, simulator: Simulator, receiver: Receiver
) -> None:
    """A public receiver could otherwise bounce deliveries into the gateway's network."""
    bounced: list[str] = []

    async def bounce(request: web.Request) -> web.Response:
        bounced.append(request.headers["X-Gateway-Delivery"])
        raise web.HTTPTemporaryRedirect(receiver.url)

    app = web.Application()
    app.router.add_post("/hook", bounce)
    server = TestServer(app)
    await server.start_server()
    try:
        gw: Gateway = await gateway_factory(
            webhook_allow_private=True, webhook_max_attempts=1, webhook_backoff_seconds=0.05
        )
        key = await gw.new_team("design", deployments=["*"])
        dep = await deployment(gw)
        hook = quote(str(server.make_url("/hook")), safe="")
        _, sub, _ = await gw.request(
            "POST", f"/prod/v1/deployments/{dep}/inference?webhook={hook}", key=key, json={}
        )
        path = f"/prod/v1/deployments/{dep}/requests/{sub['request_id']}/status"
        await wait_until(lambda: bounced != [])
        await asyncio.sleep(0.2)
        assert (await gw.request("GET", path, key=key))[0] == 200
    finally:
        await server.close()
    assert bounced == [f"{sub['request_id']}:succeeded"]  # one attempt, not retried after 307
    assert receiver.calls == [] and receiver.marks == []
