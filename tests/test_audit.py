"""The audit log: one record per admin change, with its author, and never a secret."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from structlog.testing import capture_logs

from gateway.store.client import connect
from tests.conftest import (
    ADMIN_TOKEN,
    NANO,
    SIM_TOKEN,
    Gateway,
    Simulator,
    assert_error_shape,
    on_single_and_cluster,
)

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
READ_ONLY_POSTS = {("POST", "/admin/v1/pricing/estimate")}  # a trial estimate changes nothing


async def audit(gw: Gateway, query: str = "") -> list[dict[str, Any]]:
    status, body = await gw.admin("GET", f"/admin/v1/audit{query}")
    assert status == 200, body
    entries: list[dict[str, Any]] = body["entries"]
    return entries


def write_routes(gw: Gateway) -> set[tuple[str, str]]:
    """Every route that changes something: admin writes and deployment management."""
    routes = set()
    for route in gw.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        admin = path.startswith("/admin/") or path.startswith("/prod/v2/deployments")
        if admin and route.method in WRITE_METHODS and not path.endswith("/inference"):
            routes.add((route.method, path))
    return routes - READ_ONLY_POSTS


@on_single_and_cluster
async def test_every_admin_change_is_recorded_once_with_before_and_after(
    gateway_factory: Any, simulator: Simulator
) -> None:
    """Walks every write route; the last check fails when a new one is added unaudited."""
    gateway: Gateway = await gateway_factory(upstream_submit_timeout=0.3)
    seen: set[tuple[str, str]] = set()

    async def change(
        method: str, route: str, path: str, payload: Any = None, expected: int = 200
    ) -> tuple[Any, dict[str, Any]]:
        before = await audit(gateway, "?limit=1000")
        status, body, _ = await gateway.request(method, path, key=ADMIN_TOKEN, json=payload)
        assert status == expected, (path, body)
        after = await audit(gateway, "?limit=1000")
        assert len(after) == len(before) + 1, path  # exactly one record per change
        entry = after[0]
        assert entry["actor"] == "bootstrap" and entry["token_id"] == "bootstrap"
        assert entry["role"] == "admin" and entry["at"] and entry["correlation_id"]
        seen.add((method, route))
        return body, entry

    team, entry = await change("POST", "/admin/v1/teams", "/admin/v1/teams", {"team_id": "d"}, 201)
    assert (entry["action"], entry["target"]) == ("team.create", "team/d")
    assert entry["before"] is None and entry["after"] == team

    key, entry = await change(
        "POST", "/admin/v1/teams/{team_id}/keys", "/admin/v1/teams/d/keys", {"name": "ci"}, 201
    )
    kid = key["key_id"]
    assert (entry["action"], entry["target"]) == ("key.create", f"team/d/key/{kid}")
    assert entry["before"] is None
    assert entry["after"] == {k: v for k, v in key.items() if k != "key"}

    new, entry = await change(
        "POST", "/admin/v1/keys/{key_id}/rotate", f"/admin/v1/keys/{kid}/rotate", {}, 201
    )
    assert (entry["action"], entry["target"]) == ("key.rotate", f"team/d/key/{kid}")
    assert entry["before"]["replaced_by"] is None and entry["before"]["expires_at"] is None
    assert entry["after"]["old"]["replaced_by"] == new["key_id"]
    assert entry["after"]["old"]["expires_at"] is not None
    assert entry["after"]["new"] == {k: v for k, v in new.items() if k not in ("key", "replaces")}

    revoked, entry = await change("DELETE", "/admin/v1/keys/{key_id}", f"/admin/v1/keys/{kid}")
    assert entry["action"] == "key.revoke" and entry["before"]["revoked_at"] is None
    assert entry["after"] == revoked and revoked["revoked_at"]

    policy = {"default": "inflight", "keys": {new["key_id"]: "off"}, "models": {NANO: "off"}}
    put, entry = await change(
        "PUT", "/admin/v1/teams/{team_id}/dedup-policy", "/admin/v1/teams/d/dedup-policy", policy
    )
    assert (entry["action"], entry["target"]) == ("dedup_policy.replace", "team/d/dedup-policy")
    assert entry["before"] == {"default": None, "keys": {}, "models": {}}
    assert entry["after"] == put == policy

    limits = {"budget_usd": 1, "alert_webhook": "https://hooks.example.com/services/T0/B0/sEcReT"}
    _, entry = await change(
        "PUT", "/admin/v1/teams/{team_id}/limits", "/admin/v1/teams/d/limits", limits
    )
    assert (entry["action"], entry["target"]) == ("limits.replace", "team/d/limits")
    assert entry["before"]["budget_usd"] is None and entry["after"]["budget_usd"] == 1
    assert entry["after"]["alert_webhook"].startswith("https://hooks.example.com/…#sha256:")
    assert "sEcReT" not in str(entry)

    await simulator.fault(route="model.submit", action="delay", delay=0.8, after=True)
    status, _, _ = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=new["key"], json={"prompt": "lost"}
    )
    assert status == 504
    _, ledger = await gateway.admin("GET", "/admin/v1/teams/d/unreconciled")
    [job] = ledger["jobs"]
    resolved, entry = await change(
        "POST",
        "/admin/v1/teams/{team_id}/unreconciled/{job_id}",
        f"/admin/v1/teams/d/unreconciled/{job['job_id']}",
        {"outcome": "refunded"},
    )
    assert (entry["action"], entry["target"]) == (
        "unreconciled.resolve",
        f"team/d/unreconciled/{job['job_id']}",
    )
    assert entry["before"] == job
    assert entry["after"] == {k: v for k, v in resolved.items() if k != "team_id"}

    price = {"unit_price_usd": 0.2, "price_unit": "output", "rules": []}
    _, entry = await change(
        "PUT", "/admin/v1/pricing/models/{model_id}", f"/admin/v1/pricing/models/{NANO}", price
    )
    assert (entry["action"], entry["target"]) == ("pricing.set_model", f"pricing/model/{NANO}")
    assert entry["before"] is None and entry["after"] == price
    _, entry = await change(
        "DELETE", "/admin/v1/pricing/models/{model_id}", f"/admin/v1/pricing/models/{NANO}"
    )
    assert entry["action"] == "pricing.clear_model"
    assert entry["before"] == price and entry["after"] is None
    rate = {"usd_per_second": 0.0005, "estimated_seconds": 40.0}
    _, entry = await change(
        "PUT",
        "/admin/v1/pricing/deployments/{deployment_id}",
        "/admin/v1/pricing/deployments/dep-1",
        rate,
    )
    assert (entry["action"], entry["target"]) == (
        "pricing.set_deployment",
        "pricing/deployment/dep-1",
    )
    assert entry["before"] is None and entry["after"] == rate
    _, entry = await change(
        "DELETE",
        "/admin/v1/pricing/deployments/{deployment_id}",
        "/admin/v1/pricing/deployments/dep-1",
    )
    assert entry["action"] == "pricing.clear_deployment" and entry["before"] == rate

    _, entry = await change(
        "DELETE", "/admin/v1/teams/{team_id}/cache", f"/admin/v1/teams/d/cache?model={NANO}"
    )
    assert (entry["action"], entry["target"]) == ("cache.purge", f"team/d/cache/model/{NANO}")
    assert entry["before"] is None and entry["after"] == {"purged": 0}
    _, entry = await change(
        "DELETE", "/admin/v1/teams/{team_id}/cache/{cache_key}", "/admin/v1/teams/d/cache/abc"
    )
    assert entry["target"] == "team/d/cache/entry/abc"
    _, entry = await change("DELETE", "/admin/v1/cache/{target}", f"/admin/v1/cache/{NANO}")
    assert entry["target"] == f"cache/model/{NANO}"

    created, entry = await change(
        "POST", "/admin/v1/admins", "/admin/v1/admins", {"name": "vic", "role": "viewer"}, 201
    )
    tid = created["token_id"]
    assert (entry["action"], entry["target"]) == ("admin_token.create", f"admin/{tid}")
    assert entry["before"] is None
    assert entry["after"] == {k: v for k, v in created.items() if k != "token"}
    gone, entry = await change("DELETE", "/admin/v1/admins/{token_id}", f"/admin/v1/admins/{tid}")
    assert entry["action"] == "admin_token.revoke"
    assert entry["before"]["active"] is True and entry["after"] == gone

    _, deployments, _ = await gateway.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    dep = deployments[0]
    fresh = {"name": "new", "workflow_id": "w", "workflow_version": "1", "hardware": ["AMPERE_24"]}
    made, entry = await change("POST", "/prod/v2/deployments", "/prod/v2/deployments", fresh)
    assert (entry["action"], entry["target"]) == ("deployment.create", f"deployment/{made['id']}")
    assert entry["before"] is None and entry["after"] == made
    renamed, entry = await change(
        "PATCH",
        "/prod/v2/deployments/{deployment_id}",
        f"/prod/v2/deployments/{dep['id']}",
        {"name": "renamed"},
    )
    assert (entry["action"], entry["target"]) == ("deployment.update", f"deployment/{dep['id']}")
    assert entry["before"]["name"] == dep["name"] and entry["after"] == renamed
    _, entry = await change(
        "DELETE", "/prod/v2/deployments/{deployment_id}", f"/prod/v2/deployments/{dep['id']}"
    )
    assert entry["action"] == "deployment.delete" and entry["before"]["name"] == "renamed"
    assert entry["after"] is None

    _, entry = await change("DELETE", "/admin/v1/teams/{team_id}", "/admin/v1/teams/d")
    assert (entry["action"], entry["target"], entry["after"]) == ("team.delete", "team/d", None)
    assert entry["before"]["team_id"] == "d"
    assert {k["key_id"] for k in entry["before"]["keys"]} == {kid, new["key_id"]}

    assert seen == write_routes(gateway)


async def test_refused_changes_leave_no_record(gateway: Gateway) -> None:
    await gateway.new_team("d")
    before = await audit(gateway)
    for method, path, payload in (
        ("POST", "/admin/v1/teams", {"team_id": "d"}),  # 409
        ("POST", "/admin/v1/teams", {"team_id": "Bad Id"}),  # 422
        ("DELETE", "/admin/v1/teams/nope", None),  # 404
        ("DELETE", "/admin/v1/keys/zzzzzzzzzzzzzzzz", None),  # 404
        ("PATCH", "/prod/v2/deployments/no-such-deployment", {"name": "x"}),  # 404
    ):
        status, _, _ = await gateway.request(method, path, key=ADMIN_TOKEN, json=payload)
        assert status >= 400, path
    status, _, _ = await gateway.request("POST", "/admin/v1/teams", json={"team_id": "x"})
    assert status == 401
    assert await audit(gateway) == before


async def test_the_audit_log_and_the_logs_never_hold_a_key_or_a_token(
    gateway: Gateway, redis_url: str, namespace: str
) -> None:
    with capture_logs() as events:
        key = await gateway.new_team("d")
        key_id = key[4:20]
        _, rotated = await gateway.admin("POST", f"/admin/v1/keys/{key_id}/rotate", {})
        _, admin = await gateway.admin("POST", "/admin/v1/admins", {"name": "a", "role": "admin"})
        status, _, _ = await gateway.request(
            "POST", "/admin/v1/teams", key=admin["token"], json={"team_id": "e"}
        )
        assert status == 201
    assert [e["action"] for e in events if e["event"] == "admin_action"] == [
        "team.create",
        "key.create",
        "key.rotate",
        "admin_token.create",
        "team.create",
    ]
    secrets = [ADMIN_TOKEN, SIM_TOKEN]
    for secret in (key, rotated["key"], admin["token"]):
        secrets += [secret, secret.rsplit("_", 1)[1]]
    client = connect(redis_url)
    try:
        stored = str(await client.xrange(f"{namespace}:v1:{{audit}}:log"))
    finally:
        await client.aclose()
    assert "team.create" in stored
    for secret in secrets:
        assert secret not in stored
        assert secret not in str(events)


async def test_the_audit_log_is_filtered_and_paged_newest_first(gateway: Gateway) -> None:
    status, alice, _ = await gateway.request(
        "POST", "/admin/v1/admins", key=ADMIN_TOKEN, json={"name": "alice", "role": "admin"}
    )
    assert status == 201
    for team in ("a", "b", "ab"):
        await gateway.request("POST", "/admin/v1/teams", key=alice["token"], json={"team_id": team})
        await gateway.admin("POST", f"/admin/v1/teams/{team}/keys", {})
    everything = await audit(gateway)
    assert len(everything) == 7
    ids = [tuple(int(part) for part in e["id"].split("-")) for e in everything]
    assert ids == sorted(ids, reverse=True)
    by_alice = await audit(gateway, "?actor=alice")
    assert [e["target"] for e in by_alice] == ["team/ab", "team/b", "team/a"]
    assert await audit(gateway, f"?actor={alice['token_id']}") == by_alice
    assert len(await audit(gateway, "?action=key.create")) == 3
    assert {e["target"] for e in await audit(gateway, "?team=a")} == {"team/a"} | {
        e["target"] for e in everything if e["target"].startswith("team/a/")
    }
    assert len(await audit(gateway, "?target=team/a")) == 4  # a prefix: team a and ab
    later = quote((datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert await audit(gateway, f"?since={later}") == []
    earlier = quote((datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert len(await audit(gateway, f"?since={earlier}")) == 7
    before_1970 = quote("0475-02-22T06:47:43+21:39")  # found by schemathesis: was a 500
    assert len(await audit(gateway, f"?since={before_1970}")) == 7
    for first in ("0-0", "00-000"):  # nothing is older (schemathesis: "(0-0" was a 500)
        status, page = await gateway.admin("GET", f"/admin/v1/audit?cursor={first}")
        assert (status, page) == (200, {"entries": [], "next_cursor": None})
    status, page = await gateway.admin("GET", f"/admin/v1/audit?cursor={2**64 - 1}-{2**64 - 1}")
    assert status == 200 and len(page["entries"]) == 7

    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = await gateway.admin("GET", f"/admin/v1/audit?limit=3{cursor}")
        assert status == 200 and len(page["entries"]) <= 3
        pages += page["entries"]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert pages == everything

    bad_cursors = (
        "?cursor=abc",
        "?cursor=1-2%0A",  # a newline
        "?cursor=%D9%A3-1",  # an Arabic-Indic 3
        "?cursor=99999999999999999999-0",  # beyond 64 bits (found by schemathesis: was a 500)
    )
    for bad in ("?limit=0", "?limit=1001", "?limit=x", "?since=yesterday", *bad_cursors):
        status, body = await gateway.admin("GET", f"/admin/v1/audit{bad}")
        assert status == 400, bad
        assert_error_shape(body, 400001)


async def test_records_are_ordered_by_redis_across_replicas(gateway_factory: Any) -> None:
    first: Gateway = await gateway_factory()
    second: Gateway = await gateway_factory()
    await asyncio.gather(
        *(
            replica.admin("POST", "/admin/v1/teams", {"team_id": f"t{i}"})
            for i, replica in enumerate([first, second] * 5)
        )
    )
    one, two = await audit(first), await audit(second)
    assert one == two and len(one) == 10
    assert len({e["id"] for e in one}) == 10
