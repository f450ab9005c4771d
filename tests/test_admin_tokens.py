"""Named admin tokens: roles, revocation on every replica, and the bootstrap token beside them."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.web.operations import operations
from gateway.web.spec import Auth
from tests.conftest import (
    ADMIN_TOKEN,
    NANO,
    Gateway,
    Simulator,
    assert_error_shape,
    on_single_and_cluster,
    redis_text,
)


async def new_admin(gw: Gateway, name: str, role: str, by: str = ADMIN_TOKEN) -> dict[str, Any]:
    """Create a named admin token (as ``by``); returns the creation answer with the token."""
    status, body, _ = await gw.request(
        "POST", "/admin/v1/admins", key=by, json={"name": name, "role": role}
    )
    assert status == 201, body
    return dict(body)


async def first_deployment(gw: Gateway) -> str:
    status, body, _ = await gw.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    assert status == 200, body
    return str(body[0]["id"])


async def test_an_admin_token_is_shown_once_and_only_its_hash_is_stored(
    gateway: Gateway, redis_url: str, namespace: str
) -> None:
    created = await new_admin(gateway, "alice", "admin")
    token = created["token"]
    assert token.startswith("rca_") and created["prefix"] == token.rsplit("_", 1)[0]
    assert created["role"] == "admin" and created["created_by"] == "bootstrap"
    status, listing, _ = await gateway.request("GET", "/admin/v1/admins", key=token)
    assert status == 200
    (info,) = listing["admins"]
    assert info["token_id"] == created["token_id"] and info["active"] is True
    assert "token" not in info and token not in str(listing)
    stored = await redis_text(redis_url, namespace)
    assert token not in stored and token.rsplit("_", 1)[1] not in stored


async def test_whoami_names_the_actor_of_either_kind_of_admin_token(gateway: Gateway) -> None:
    viewer = await new_admin(gateway, "vic", "viewer")
    status, me, _ = await gateway.request("GET", "/admin/v1/whoami", key=ADMIN_TOKEN)
    assert status == 200 and me == {"name": "bootstrap", "role": "admin", "token_id": "bootstrap"}
    status, me, _ = await gateway.request("GET", "/admin/v1/whoami", key=viewer["token"])
    assert me == {"name": "vic", "role": "viewer", "token_id": viewer["token_id"]}


async def test_a_viewer_reads_everything_and_changes_nothing(
    gateway: Gateway, simulator: Simulator
) -> None:
    await gateway.new_team("design")
    viewer = (await new_admin(gateway, "vic", "viewer"))["token"]
    dep = await first_deployment(gateway)
    _, keys = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    key_id = keys["keys"][0]["key_id"]
    for path in (
        "/admin/v1/teams",
        "/admin/v1/teams/design",
        "/admin/v1/teams/design/keys",
        f"/admin/v1/keys/{key_id}",
        "/admin/v1/teams/design/dedup-policy",
        "/admin/v1/teams/design/unknown-submits",
        "/admin/v1/admins",
        "/admin/v1/audit",
        "/admin/v1/teams/design/limits",
        "/admin/v1/teams/design/usage",
        "/admin/v1/teams/design/unreconciled",
        "/admin/v1/pricing",
        "/prod/v2/deployments",
        f"/prod/v2/deployments/{dep}",
        "/prod/v2/balance",
        f"/v1/models/{NANO}",
    ):
        status, body, _ = await gateway.request("GET", path, key=viewer)
        assert status == 200, (path, body)
    status, body, _ = await gateway.request(
        "POST", "/admin/v1/pricing/estimate", key=viewer, json={"model_id": NANO}
    )
    assert status == 200, body  # a trial estimate changes nothing
    before = await simulator.calls()
    _, audit_before = await gateway.admin("GET", "/admin/v1/audit")
    for method, path, payload in (
        ("POST", "/admin/v1/teams", {"team_id": "ml"}),
        ("DELETE", "/admin/v1/teams/design", None),
        ("POST", "/admin/v1/teams/design/keys", {}),
        ("DELETE", f"/admin/v1/keys/{key_id}", None),
        ("POST", f"/admin/v1/keys/{key_id}/rotate", {}),
        ("PUT", "/admin/v1/teams/design/dedup-policy", {"default": "off"}),
        ("DELETE", "/admin/v1/teams/design/cache", None),
        ("DELETE", f"/admin/v1/cache/{NANO}", None),
        ("POST", "/admin/v1/admins", {"name": "eve", "role": "admin"}),
        ("PUT", "/admin/v1/teams/design/limits", {"budget_usd": 1}),
        ("POST", "/admin/v1/teams/design/unreconciled/x", {"outcome": "charged"}),
        ("PUT", f"/admin/v1/pricing/models/{NANO}", {"unit_price_usd": 1}),
        ("DELETE", f"/admin/v1/pricing/models/{NANO}", None),
        ("PUT", "/admin/v1/pricing/deployments/d1", {"usd_per_second": 1, "estimated_seconds": 1}),
        ("DELETE", "/admin/v1/pricing/deployments/d1", None),
        ("POST", "/prod/v2/deployments", {"name": "mine"}),
        ("PATCH", f"/prod/v2/deployments/{dep}", {"name": "renamed"}),
        ("DELETE", f"/prod/v2/deployments/{dep}", None),
    ):
        status, body, _ = await gateway.request(method, path, key=viewer, json=payload)
        assert status == 403, (method, path, body)
        assert_error_shape(body, 403001)
        assert body["detail"] == "admin_role_required"
    assert await simulator.calls() == before  # no deployment call left the gateway
    _, audit_after = await gateway.admin("GET", "/admin/v1/audit")
    assert audit_after == audit_before
    _, team = await gateway.admin("GET", "/admin/v1/teams/design")
    assert team["active_keys"] == 1


async def test_an_admin_token_changes_things_under_its_own_name(gateway: Gateway) -> None:
    alice = await new_admin(gateway, "alice", "admin")
    status, body, _ = await gateway.request(
        "POST", "/admin/v1/teams", key=alice["token"], json={"team_id": "ml"}
    )
    assert status == 201, body
    bob = await new_admin(gateway, "bob", "viewer", by=alice["token"])
    assert bob["created_by"] == "alice"
    _, audit = await gateway.admin("GET", "/admin/v1/audit?actor=alice")
    assert [(e["action"], e["token_id"]) for e in audit["entries"]] == [
        ("admin_token.create", alice["token_id"]),
        ("team.create", alice["token_id"]),
    ]


@on_single_and_cluster
async def test_a_revoked_admin_token_is_refused_at_once_on_every_replica(
    gateway_factory: Any,
) -> None:
    first: Gateway = await gateway_factory()
    second: Gateway = await gateway_factory()
    alice = await new_admin(first, "alice", "admin")
    for replica in (first, second):
        status, _, _ = await replica.request("GET", "/admin/v1/teams", key=alice["token"])
        assert status == 200
    status, revoked = await second.admin("DELETE", f"/admin/v1/admins/{alice['token_id']}")
    assert status == 200 and revoked["active"] is False
    assert revoked["revoked_at"] and revoked["revoked_by"] == "bootstrap"
    for replica in (first, second):
        for method, path in (("GET", "/admin/v1/teams"), ("POST", "/admin/v1/teams")):
            status, body, _ = await replica.request(method, path, key=alice["token"], json={})
            assert status == 401, (method, path)
            assert_error_shape(body, 401001)
            assert body["detail"] == "revoked_admin_token"
    _, again = await first.admin("DELETE", f"/admin/v1/admins/{alice['token_id']}")
    assert again["revoked_at"] == revoked["revoked_at"]  # idempotent


async def test_a_wrong_unknown_or_malformed_admin_token_is_401_and_a_team_key_403(
    gateway: Gateway,
) -> None:
    alice = (await new_admin(gateway, "alice", "admin"))["token"]
    key = await gateway.new_team("design")
    tampered = alice[:-1] + ("A" if alice[-1] != "A" else "B")
    unknown = "rca_" + "z" * 12 + "_" + "x" * 40
    for token in (tampered, unknown, "rca_short", None):
        status, body, headers = await gateway.request("GET", "/admin/v1/teams", key=token)
        assert status == 401, token
        assert_error_shape(body, 401001)
        assert "Bearer" in headers["WWW-Authenticate"]
    status, body, _ = await gateway.request("GET", "/admin/v1/teams", key=key)
    assert status == 403
    assert_error_shape(body, 403001)


async def test_admin_tokens_cannot_run_jobs(gateway: Gateway, simulator: Simulator) -> None:
    for role in ("admin", "viewer"):
        token = (await new_admin(gateway, f"ops-{role}", role))["token"]
        status, body, _ = await gateway.request(
            "POST", f"/v1/models/{NANO}", key=token, json={"prompt": "x"}
        )
        assert status == 403
        assert_error_shape(body, 403001)
    assert await simulator.count("model.submit") == 0


async def test_names_are_unique_among_active_tokens_and_bootstrap_is_reserved(
    gateway: Gateway,
) -> None:
    alice = await new_admin(gateway, "alice", "viewer")
    status, body, _ = await gateway.request(
        "POST", "/admin/v1/admins", key=ADMIN_TOKEN, json={"name": "alice", "role": "admin"}
    )
    assert status == 409
    assert_error_shape(body, 409001)
    for payload in (
        {"name": "bootstrap", "role": "admin"},
        {"name": "Bootstrap"},
        {"name": "has space"},
        {"name": "alice\n"},  # would pass for a second "alice" in the audit log
        {"name": "alice2", "role": "root"},
        {"role": "admin"},
    ):
        status, body, _ = await gateway.request(
            "POST", "/admin/v1/admins", key=ADMIN_TOKEN, json=payload
        )
        assert status == 422, payload
        assert_error_shape(body, 422001)
    await gateway.admin("DELETE", f"/admin/v1/admins/{alice['token_id']}")
    again = await new_admin(gateway, "alice", "admin")
    assert again["token_id"] != alice["token_id"]
    _, listing = await gateway.admin("GET", "/admin/v1/admins")
    assert [(a["name"], a["active"]) for a in listing["admins"]] == [
        ("alice", False),
        ("alice", True),
    ]
    for bad in ("zzzzzzzzzzzz", "short", "../x"):
        status, body = await gateway.admin("DELETE", f"/admin/v1/admins/{bad}")
        assert status == 404
        assert_error_shape(body, 404001)


@on_single_and_cluster
async def test_without_the_bootstrap_token_the_last_admin_cannot_be_revoked(
    gateway_factory: Any,
) -> None:
    with_bootstrap: Gateway = await gateway_factory()
    alice = await new_admin(with_bootstrap, "alice", "admin")
    vic = await new_admin(with_bootstrap, "vic", "viewer")
    without: Gateway = await gateway_factory(admin_token=SecretStr(""))
    status, body, _ = await without.request("GET", "/admin/v1/teams", key=ADMIN_TOKEN)
    assert status == 401  # the bootstrap token is off on this replica
    assert_error_shape(body, 401001)

    async def revoke(gw: Gateway, token_id: str) -> tuple[int, Any]:
        status, body, _ = await gw.request(
            "DELETE", f"/admin/v1/admins/{token_id}", key=alice["token"]
        )
        return status, body

    assert (await revoke(without, vic["token_id"]))[0] == 200  # viewers do not count
    status, body = await revoke(without, alice["token_id"])
    assert status == 409 and body["detail"] == "last_admin"
    assert_error_shape(body, 409001)
    bob = await new_admin(without, "bob", "admin", by=alice["token"])
    assert (await revoke(without, alice["token_id"]))[0] == 200  # bob remains
    status, body, _ = await without.request(
        "DELETE", f"/admin/v1/admins/{bob['token_id']}", key=bob["token"]
    )
    assert status == 409 and body["detail"] == "last_admin"
    # While GATEWAY_ADMIN_TOKEN is set, bootstrap still works, so the last one may go.
    status, _ = await with_bootstrap.admin("DELETE", f"/admin/v1/admins/{bob['token_id']}")
    assert status == 200


async def test_deployments_are_managed_by_named_admins(gateway: Gateway) -> None:
    alice = (await new_admin(gateway, "alice", "admin"))["token"]
    dep = await first_deployment(gateway)
    status, body, _ = await gateway.request(
        "PATCH", f"/prod/v2/deployments/{dep}", key=alice, json={"name": "renamed"}
    )
    assert status == 200 and body["name"] == "renamed"
    status, body, _ = await gateway.request("GET", "/prod/v2/balance", key=alice)
    assert status == 200 and body["currency"] == "USD"


async def test_a_viewer_sees_where_a_teams_alert_webhook_points_but_not_its_secret(
    gateway: Gateway,
) -> None:
    await gateway.new_team("design")
    secret_url = "https://hooks.example.com/services/T000/B000/s3cr3tpath"
    await gateway.set_limits("design", alert_webhook=secret_url)
    viewer = (await new_admin(gateway, "vic", "viewer"))["token"]
    status, seen, _ = await gateway.request("GET", "/admin/v1/teams/design/limits", key=viewer)
    assert status == 200
    assert seen["alert_webhook"].startswith("https://hooks.example.com/")
    assert "s3cr3t" not in str(seen)
    _, full, _ = await gateway.request("GET", "/admin/v1/teams/design/limits", key=ADMIN_TOKEN)
    assert full["alert_webhook"] == secret_url


async def test_every_admin_route_refuses_missing_wrong_and_team_credentials_and_viewers_changes(
    gateway: Gateway, simulator: Simulator
) -> None:
    """Walks every admin route of the OpenAPI table (admin API, deployment management): no
    token, a wrong or malformed one, a revoked one is 401; a team key is 403; a viewer on a
    change is 403. Nothing changes and nothing reaches RunComfy."""
    key = await gateway.new_team("design")
    viewer = await new_admin(gateway, "vic", "viewer")
    revoked = await new_admin(gateway, "gone", "admin")
    await gateway.admin("DELETE", f"/admin/v1/admins/{revoked['token_id']}")
    _, keys = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    values = {
        "team_id": "design",
        "key_id": keys["keys"][0]["key_id"],
        "token_id": viewer["token_id"],
        "deployment_id": await first_deployment(gateway),
        "model_id": NANO,
        "target": NANO,
        "cache_key": "0" * 64,
        "job_id": "job",
    }
    wrong = viewer["token"][:-1] + ("A" if viewer["token"][-1] != "A" else "B")
    refusals: list[tuple[str | None, int]] = [
        (None, 401),
        ("wrong-token", 401),
        (wrong, 401),
        (revoked["token"], 401),
        (ADMIN_TOKEN + "x", 401),
        (key, 403),
    ]
    calls_before = await simulator.calls()
    _, audit_before = await gateway.admin("GET", "/admin/v1/audit?limit=1000")
    admin_ops = [op for op in operations() if op.auth in (Auth.VIEWER, Auth.ADMIN)]
    assert len(admin_ops) > 30
    for op in admin_ops:
        path = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], op.path)
        tried = refusals + ([(viewer["token"], 403)] if op.auth is Auth.ADMIN else [])
        for cred, expected in tried:
            status, body, headers = await gateway.request(
                op.method, path, key=cred, json={} if op.body else None
            )
            assert status == expected, (op.method, path, cred, body)
            assert_error_shape(body, 401001 if expected == 401 else 403001)
            if expected == 401:
                assert headers["WWW-Authenticate"].startswith("Bearer")
    assert await simulator.calls() == calls_before
    _, audit_after = await gateway.admin("GET", "/admin/v1/audit?limit=1000")
    assert audit_after["entries"] == audit_before["entries"]
    status, _, _ = await gateway.request("GET", "/v1/requests/x/status", key=key)
    assert status == 404  # the team's key still works: nothing was revoked or deleted


async def test_named_admin_tokens_are_compared_in_constant_time(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored digest against the presented one, with hmac.compare_digest."""
    alice = await new_admin(gateway, "alice", "admin")
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    status, _, _ = await gateway.request("GET", "/admin/v1/whoami", key=alice["token"])
    assert status == 200
    digest = hashlib.sha256(alice["token"].encode()).hexdigest()
    assert (digest, digest) in compared
