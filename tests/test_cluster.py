"""Redis Cluster: URLs, the slot discipline itself, outages, and a cluster that is misaddressed.

The gateway's flows on a cluster are the suite's own tests, run once more against a real local
cluster in the slow tier (``on_single_and_cluster``); this module covers what only a cluster has,
and its smoke test keeps a main flow on the cluster in the fast tier.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from pydantic import ValidationError
from redis.crc import key_slot

from gateway.common.errors import StoreUnavailable
from gateway.settings import Settings
from gateway.store.client import (
    ClusterUnreachable,
    NotAClusterUrl,
    ObservedRedisCluster,
    connect,
    warn_if_evicting,
)
from gateway.store.embedded import EmbeddedCluster
from gateway.web.app import create_app
from tests.conftest import NANO, Gateway, Simulator, assert_error_shape, free_port, make_settings
from tests.slots import SlotWatch

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)
async def test_smoke_a_job_its_hit_and_the_books_on_the_cluster(
    gateway: Gateway, simulator: Simulator
) -> None:
    """A budgeted team's job runs to its result, the identical request is a free hit, and the
    usage adds up; every command and script of it keeps to its slot (the ``redis_url`` fixture
    watches the primaries and fails the test otherwise)."""
    key = await gateway.new_team("design", budget_usd=5, daily_requests=10)
    submit = f"/v1/models/{NANO}"
    status, sub, headers = await gateway.request("POST", submit, key=key, json={"prompt": "fox"})
    assert (status, headers["X-Gateway-Cache"]) == (200, "miss"), sub
    for _ in range(300):
        _, body, _ = await gateway.request(
            "GET", f"/v1/requests/{sub['request_id']}/status", key=key
        )
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"the job never completed: {body}")
    status, result, _ = await gateway.request(
        "GET", f"/v1/requests/{sub['request_id']}/result?include_cost=true", key=key
    )
    assert status == 200 and result["status"] == "succeeded", result
    status, hit, headers = await gateway.request("POST", submit, key=key, json={"prompt": "fox"})
    assert (status, headers["X-Gateway-Cache"]) == (200, "hit"), hit
    status, usage = await gateway.admin("GET", "/admin/v1/teams/design/usage")
    assert status == 200, usage
    assert usage["budget"]["settled_usd"] == result["cost"] and usage["budget"]["reserved_usd"] == 0
    assert await simulator.count("model.submit") == 1


def test_a_cluster_url_lists_seed_nodes_and_options_for_all_of_them() -> None:
    client: Any = connect(
        "rediss+cluster://user:p%40ss@10.0.0.1:7000,node-b:7001,[::1]?ssl_cert_reqs=none"
    )
    assert isinstance(client, ObservedRedisCluster)
    seeds = sorted((n.host, int(n.port)) for n in client.nodes_manager.startup_nodes.values())
    assert seeds == [("10.0.0.1", 7000), ("::1", 6379), ("node-b", 7001)]
    kwargs = client.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("user", "p@ss")
    assert kwargs["decode_responses"] is True and kwargs["socket_timeout"] == 2.0
    assert kwargs["connection_class"].__name__ == "SSLConnection"
    assert kwargs["ssl_cert_reqs"] == "none"

    for bad, reason in (
        ("redis+cluster://a:7000/2", "only database 0"),
        ("redis+cluster://", "host:port"),
        ("cluster://a:7000", "scheme must be one of"),
    ):
        with pytest.raises(ValidationError, match=reason):
            Settings(redis_url=bad)
    assert Settings(redis_url="redis+cluster://a:7000,b:7000").redis_url


async def test_an_unreachable_cluster_is_a_store_outage_not_a_bug() -> None:
    client = connect(f"redis+cluster://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailable) as unreachable:
        await client.ping()
    assert isinstance(unreachable.value.__cause__, ClusterUnreachable)
    await client.aclose()


def test_no_redis_transactions_in_the_gateway() -> None:
    """redis-py's cluster client runs MULTI pipelines by starting a thread and an event loop for
    every queued command; atomic steps are Lua scripts instead, which both clients run alike."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "gateway").rglob("*.py")
        if re.search(r"transaction\s*=\s*True|\.multi\(\)|\.watch\(", path.read_text())
    ]
    assert offenders == []


async def test_the_slot_check_catches_a_script_naming_a_key_of_another_slot_on_its_node(
    redis_cluster_url: str, namespace: str
) -> None:
    client: Any = connect(redis_cluster_url)
    await client.initialize()
    node = client.get_primaries()[0]
    here, there = [
        tag for tag in range(100) if client.get_node_from_key(f"{namespace}:{{{tag}}}") is node
    ][:2]  # two slots of the same node: the server lets a script reach from one to the other
    assert key_slot(f"{{{here}}}".encode()) != key_slot(f"{{{there}}}".encode())
    sneaky = client.register_script(
        "local other = string.gsub(KEYS[1], '{[^}]*}', '{' .. ARGV[1] .. '}')\n"
        "return redis.call('GET', other)"
    )
    async with SlotWatch(redis_cluster_url, namespace) as watch:
        assert await sneaky(keys=[f"{namespace}:{{{here}}}:k"], args=[there]) is None
        await client.set(f"{namespace}:{{{here}}}:k", "one key: fine")
    await client.aclose()
    assert watch.scripts_seen() >= 1  # its first call may also meet NOSCRIPT
    (violation,) = watch.violations()
    assert "stepped out of its slots" in violation
    assert f'"GET" "{namespace}:{{{there}}}:k"' in violation


async def test_a_plain_url_to_a_cluster_node_stops_the_gateway_at_start(
    redis_cluster_url: str, namespace: str, simulator: Simulator, tmp_path: Path
) -> None:
    seed = redis_cluster_url.split("//", 1)[1].split(",")[0]
    app = create_app(make_settings(f"redis://{seed}/0", namespace, simulator.url, tmp_path))
    server = TestServer(app)
    with pytest.raises(NotAClusterUrl, match="redis\\+cluster://"):
        await server.start_server()
    await server.close()


async def _until(gw: Gateway, check: Any, what: str, within: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not {what} within {within} s")
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_cluster_outage_is_a_503_readiness_sees_a_lost_primary_and_it_recovers(
    tmp_path: Path, simulator: Simulator, gateway_factory: Any
) -> None:
    with EmbeddedCluster(tmp_path / "cluster", persistent=True) as cluster:
        gw: Gateway = await gateway_factory(redis_url=cluster.url)
        key = await gw.new_team("design")
        submit = f"/v1/models/{NANO}"
        status, sub, _ = await gw.request("POST", submit, key=key, json={"prompt": "one"})
        assert status == 200, sub
        _, ready, _ = await gw.request("GET", "/readyz")
        assert ready["redis"] == "ok"

        cluster.nodes[-1].stop()  # a third of the slots is gone

        async def primary_lost() -> bool:
            _, body, _ = await gw.request("GET", "/readyz")
            return str(body["redis"]).startswith("unavailable")

        await _until(gw, primary_lost, "reported by /readyz")
        for node in cluster.nodes[:-1]:
            node.stop()
        before = await simulator.count("model.submit")
        for method, path in (
            ("POST", submit),
            ("GET", f"/v1/requests/{sub['request_id']}/status"),
            ("GET", "/admin/v1/teams"),
        ):
            if path.startswith("/admin"):
                status, body = await gw.admin(method, path)
            else:
                status, body, _ = await gw.request(method, path, key=key, json={"prompt": "two"})
            assert status == 503, (path, body)
            assert_error_shape(body, 503003)
        assert await simulator.count("model.submit") == before
        status, _, _ = await gw.request("GET", "/readyz")
        assert status == 200  # a shared store's outage must not take every replica out

        for node in cluster.nodes:
            node.start()

        async def submitted() -> bool:
            status, _, _ = await gw.request(
                "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "three"}
            )
            return status == 200

        await _until(gw, submitted, "submitting again")
        status, body, _ = await gw.request(
            "GET", f"/v1/requests/{sub['request_id']}/status", key=key
        )
        assert status == 200, body  # each primary's AOF kept its slots' records


async def test_the_eviction_policy_is_read_from_every_primary(redis_cluster_url: str) -> None:
    client: Any = connect(redis_cluster_url)
    assert await warn_if_evicting(client) == "noeviction"
    assert len(client.get_primaries()) == 3
    await client.aclose()
