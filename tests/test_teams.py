"""Teams, API keys and isolation between teams."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from typing import Any

from gateway.store.client import connect
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


async def submit(gw: Gateway, key: str) -> tuple[int, Any]:
    status, body, _ = await gw.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "hello"}
    )
    return status, body


async def test_a_missing_malformed_or_unknown_key_is_401_in_runcomfys_shape(
    gateway: Gateway, simulator: Simulator
) -> None:
    await gateway.new_team("design")
    forged = "rcg_aaaaaaaabbbbbbbb_" + "x" * 40
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {forged}"},
    ):
        status, body, resp_headers = await gateway.request(
            "POST", f"/v1/models/{NANO}", json={"prompt": "x"}, headers=headers
        )
        assert status == 401, headers
        assert_error_shape(body, 401001)
        assert "Bearer" in resp_headers["WWW-Authenticate"]
    assert await simulator.count("model.submit") == 0


async def test_a_key_with_a_changed_secret_is_rejected(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    status, body = await submit(gateway, tampered)
    assert status == 401
    assert_error_shape(body, 401001)


@on_single_and_cluster
async def test_a_revoked_key_fails_on_the_next_request_on_every_replica(
    gateway_factory: Any,
) -> None:
    first: Gateway = await gateway_factory()
    second: Gateway = await gateway_factory()
    key = await first.new_team("design")
    assert (await submit(second, key))[0] == 200
    _, keys = await first.admin("GET", "/admin/v1/teams/design/keys")
    key_id = keys["keys"][0]["key_id"]
    status, revoked = await first.admin("DELETE", f"/admin/v1/keys/{key_id}")
    assert status == 200
    assert revoked["active"] is False and revoked["revoked_at"]
    for replica in (first, second):
        status, body = await submit(replica, key)
        assert status == 401
        assert_error_shape(body, 401001)
        assert body["detail"] == "revoked_key"


async def test_another_teams_request_id_is_404_exactly_like_an_unknown_one(
    gateway: Gateway,
) -> None:
    design = await gateway.new_team("design")
    ops = await gateway.new_team("ops")
    _, sub = await submit(gateway, design)
    rid = sub["request_id"]
    for leaf, method in (("status", "GET"), ("result", "GET"), ("cancel", "POST")):
        status, foreign, _ = await gateway.request(method, f"/v1/requests/{rid}/{leaf}", key=ops)
        unknown_rid = "0" * len(rid)
        status2, unknown, _ = await gateway.request(
            method, f"/v1/requests/{unknown_rid}/{leaf}", key=ops
        )
        assert status == status2 == 404
        assert_error_shape(foreign, 404001)
        assert foreign["error_message"].replace(rid, "ID") == unknown["error_message"].replace(
            unknown_rid, "ID"
        )
    status, body, _ = await gateway.request("GET", f"/v1/requests/{rid}/status", key=design)
    assert status == 200 and body["request_id"] == rid


async def test_a_key_is_shown_once_and_only_its_hash_is_stored(
    gateway: Gateway, redis_url: str, namespace: str
) -> None:
    key = await gateway.new_team("design")
    status, listing = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    assert status == 200
    (info,) = listing["keys"]
    assert "key" not in info and "hash" not in info
    assert key.startswith(info["prefix"]) and info["prefix"].startswith("rcg_")
    assert key not in str(listing)
    client = connect(redis_url)
    try:
        async for name in client.scan_iter(match=f"{namespace}:*"):
            kind = await client.type(name)
            if kind == "hash":
                values = await client.hgetall(name)
                assert key not in str(values)
                assert key.rsplit("_", 1)[1] not in str(values)
    finally:
        await client.aclose()


async def test_admin_routes_need_the_admin_token(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    for creds, expected in ((None, 401), ("wrong-token", 401), (key, 403)):
        status, body, _ = await gateway.request("GET", "/admin/v1/teams", key=creds)
        assert status == expected, creds
        assert_error_shape(body)
    status, body = await gateway.admin("GET", "/admin/v1/teams")
    assert status == 200 and [t["team_id"] for t in body["teams"]] == ["design"]


async def test_admin_creates_lists_shows_and_deletes_teams(gateway: Gateway) -> None:
    status, body = await gateway.admin("POST", "/admin/v1/teams", {"team_id": "ml", "name": "ML"})
    assert status == 201 and body["team_id"] == "ml" and body["name"] == "ML"
    status, body = await gateway.admin("POST", "/admin/v1/teams", {"team_id": "ml"})
    assert status == 409
    assert_error_shape(body, 409001)
    for bad in ("Not Valid!", "ml\n", "\nml", "ml\u200b"):  # look-alikes of "ml" too
        status, body = await gateway.admin("POST", "/admin/v1/teams", {"team_id": bad})
        assert status == 422, bad
        assert_error_shape(body, 422001)
    status, body = await gateway.admin("POST", "/admin/v1/teams", {"unexpected": 1})
    assert status == 422
    assert body["detail"][0]["loc"] == ["unexpected"]
    status, body = await gateway.admin("POST", "/admin/v1/teams", {})
    assert status == 201 and body["team_id"].startswith("team-")
    status, body = await gateway.admin("GET", "/admin/v1/teams/ml")
    assert status == 200 and body["keys"] == 0
    status, body = await gateway.admin("GET", "/admin/v1/teams/nope")
    assert status == 404
    assert_error_shape(body, 404001)


@on_single_and_cluster
async def test_deleting_a_team_revokes_all_its_keys_at_once(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    status, second = await gateway.admin("POST", "/admin/v1/teams/design/keys", {"name": "ci"})
    assert status == 201
    assert (await submit(gateway, second["key"]))[0] == 200
    status, _ = await gateway.admin("DELETE", "/admin/v1/teams/design")
    assert status == 200
    for k in (key, second["key"]):
        status, body = await submit(gateway, k)
        assert status == 401
        assert_error_shape(body, 401001)
    status, _ = await gateway.admin("GET", "/admin/v1/teams/design")
    assert status == 404
    status, _ = await gateway.admin("DELETE", f"/admin/v1/keys/{second['key_id']}")
    assert status == 404


async def test_revoking_is_idempotent_and_unknown_keys_are_404(gateway: Gateway) -> None:
    await gateway.new_team("design")
    _, listing = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    key_id = listing["keys"][0]["key_id"]
    _, first = await gateway.admin("DELETE", f"/admin/v1/keys/{key_id}")
    _, again = await gateway.admin("DELETE", f"/admin/v1/keys/{key_id}")
    assert first["revoked_at"] == again["revoked_at"]
    for bad in ("zzzzzzzzzzzzzzzz", "short", "../../etc"):
        status, body = await gateway.admin("DELETE", f"/admin/v1/keys/{bad}")
        assert status == 404
        assert_error_shape(body, 404001)


async def test_the_admin_token_cannot_run_jobs(gateway: Gateway) -> None:
    status, body = await submit(gateway, ADMIN_TOKEN)
    assert status == 403
    assert_error_shape(body, 403001)


async def poll_until_refused(gw: Gateway, key: str) -> dict[str, Any]:
    """Submit until the key is refused (bounded), and return the refusal's body."""
    for _ in range(200):
        status, body = await submit(gw, key)
        if status == 401:
            return dict(body)
        assert status == 200, body
        await asyncio.sleep(0.05)
    raise AssertionError("the key was never refused")


async def test_a_key_with_an_expiry_stops_working_with_expired_key(gateway: Gateway) -> None:
    await gateway.new_team("design")
    status, long_lived = await gateway.admin(
        "POST", "/admin/v1/teams/design/keys", {"name": "ci", "expires_in_seconds": 3600}
    )
    assert status == 201 and long_lived["expires_at"] and long_lived["active"] is True
    assert (await submit(gateway, long_lived["key"]))[0] == 200
    _, short = await gateway.admin(
        "POST", "/admin/v1/teams/design/keys", {"name": "tmp", "expires_in_seconds": 1}
    )
    body = await poll_until_refused(gateway, short["key"])
    assert_error_shape(body, 401001)
    assert body["detail"] == "expired_key"
    _, listing = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    state = {k["name"]: (k["active"], k["expires_at"] is not None) for k in listing["keys"]}
    assert state == {"": (True, False), "ci": (True, True), "tmp": (False, True)}
    _, team = await gateway.admin("GET", "/admin/v1/teams/design")
    assert team["keys"] == 3 and team["active_keys"] == 2


async def test_a_key_can_expire_at_an_absolute_time(gateway: Gateway) -> None:
    await gateway.new_team("design")
    at = "2999-01-01T00:00:00+00:00"
    status, body = await gateway.admin("POST", "/admin/v1/teams/design/keys", {"expires_at": at})
    assert status == 201 and body["expires_at"].startswith("2999-01-01T00:00:00")
    assert (await submit(gateway, body["key"]))[0] == 200


async def test_key_expiries_that_cannot_work_are_refused(gateway: Gateway) -> None:
    await gateway.new_team("design")
    for payload in (
        {"expires_in_seconds": 0},
        {"expires_in_seconds": "soon"},
        {"expires_at": "2999-01-01T00:00:00"},  # no time zone
        {"expires_at": "2000-01-01T00:00:00+00:00"},  # passed
        {"expires_in_seconds": 60, "expires_at": "2999-01-01T00:00:00+00:00"},
    ):
        status, body = await gateway.admin("POST", "/admin/v1/teams/design/keys", payload)
        assert status == 422, payload
        assert_error_shape(body, 422001)
    _, listing = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    assert len(listing["keys"]) == 1


async def key_id_of(gw: Gateway, team: str) -> str:
    _, listing = await gw.admin("GET", f"/admin/v1/teams/{team}/keys")
    return str(listing["keys"][0]["key_id"])


async def test_rotation_gives_a_new_key_and_both_work_during_the_grace(
    gateway: Gateway,
) -> None:
    old_key = await gateway.new_team("design")
    old_id = await key_id_of(gateway, "design")
    status, new = await gateway.admin(
        "POST", f"/admin/v1/keys/{old_id}/rotate", {"grace_seconds": 3600}
    )
    assert status == 201, new
    assert new["key"].startswith("rcg_") and new["key"] != old_key
    assert new["team_id"] == "design" and new["name"] == "" and new["expires_at"] is None
    assert new["replaces"]["key_id"] == old_id and new["replaces"]["replaced_by"] == new["key_id"]
    for key in (old_key, new["key"]):
        assert (await submit(gateway, key))[0] == 200
    _, old = await gateway.admin("GET", f"/admin/v1/keys/{old_id}")
    assert old["active"] is True and old["expires_at"] and old["replaced_by"] == new["key_id"]
    status, body = await gateway.admin("POST", f"/admin/v1/keys/{old_id}/rotate", {})
    assert status == 409 and body["detail"] == "already_rotated"
    assert_error_shape(body, 409001)
    # Revocation stays immediate, grace or not.
    await gateway.admin("DELETE", f"/admin/v1/keys/{old_id}")
    status, body = await submit(gateway, old_key)
    assert status == 401 and body["detail"] == "revoked_key"
    assert (await submit(gateway, new["key"]))[0] == 200


async def test_after_a_short_grace_only_the_new_key_works(gateway: Gateway) -> None:
    old_key = await gateway.new_team("design")
    old_id = await key_id_of(gateway, "design")
    _, new = await gateway.admin("POST", f"/admin/v1/keys/{old_id}/rotate", {"grace_seconds": 1})
    body = await poll_until_refused(gateway, old_key)
    assert body["detail"] == "expired_key"
    assert (await submit(gateway, new["key"]))[0] == 200
    _, rotated = await gateway.admin(
        "POST", f"/admin/v1/keys/{new['key_id']}/rotate", {"grace_seconds": 0}
    )
    status, body = await submit(gateway, new["key"])  # no grace: refused at once
    assert status == 401 and body["detail"] == "expired_key"
    assert (await submit(gateway, rotated["key"]))[0] == 200


@on_single_and_cluster
async def test_rotation_keeps_the_name_the_per_key_dedup_policy_and_limits(
    gateway: Gateway,
) -> None:
    await gateway.new_team("design")
    _, ci = await gateway.admin("POST", "/admin/v1/teams/design/keys", {"name": "ci"})
    await gateway.admin(
        "PUT", "/admin/v1/teams/design/dedup-policy", {"keys": {ci["key_id"]: "off"}}
    )
    await gateway.set_limits("design", keys={ci["key_id"]: {"daily_requests": 7}})
    _, new = await gateway.admin("POST", f"/admin/v1/keys/{ci['key_id']}/rotate", {})
    assert new["name"] == "ci"
    _, policy = await gateway.admin("GET", "/admin/v1/teams/design/dedup-policy")
    assert policy["keys"] == {ci["key_id"]: "off", new["key_id"]: "off"}
    _, limits = await gateway.admin("GET", "/admin/v1/teams/design/limits")
    assert limits["keys"][new["key_id"]] == limits["keys"][ci["key_id"]]
    assert limits["keys"][new["key_id"]]["daily_requests"] == 7


async def test_revoked_or_unknown_keys_cannot_be_rotated(gateway: Gateway) -> None:
    await gateway.new_team("design")
    key_id = await key_id_of(gateway, "design")
    await gateway.admin("DELETE", f"/admin/v1/keys/{key_id}")
    status, body = await gateway.admin("POST", f"/admin/v1/keys/{key_id}/rotate", {})
    assert status == 409 and body["detail"] == "revoked_key"
    for bad in ("zzzzzzzzzzzzzzzz", "short"):
        status, body = await gateway.admin("POST", f"/admin/v1/keys/{bad}/rotate", {})
        assert status == 404
        assert_error_shape(body, 404001)
    for payload in ({"grace_seconds": -1}, {"grace_seconds": 91 * 24 * 3600}, {"x": 1}):
        status, body = await gateway.admin("POST", f"/admin/v1/keys/{key_id}/rotate", payload)
        assert status == 422, payload


# --- isolation between teams: nothing of another team is reachable, nor is its existence -------


async def test_another_teams_serverless_request_id_is_404_exactly_like_an_unknown_one(
    gateway: Gateway,
) -> None:
    design = await gateway.new_team("design", deployments=["*"])
    ops = await gateway.new_team("ops", deployments=["*"])
    _, listed, _ = await gateway.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    dep = listed[0]["id"]
    for version in ("v1", "v2"):
        base = f"/prod/{version}/deployments/{dep}"
        status, sub, _ = await gateway.request("POST", f"{base}/inference", key=design, json={})
        assert status == 200, sub
        rid, unknown = sub["request_id"], str(uuid.uuid4())
        for leaf, method in (("status", "GET"), ("result", "GET"), ("cancel", "POST")):
            answers = []
            for target in (rid, unknown):
                status, body, _ = await gateway.request(
                    method, f"{base}/requests/{target}/{leaf}", key=ops
                )
                assert status == 404, (version, leaf)
                assert_error_shape(body, 404001)
                answers.append(str(body).replace(target, "ID"))
            assert answers[0] == answers[1], (version, leaf)
        status, body, _ = await gateway.request("GET", f"{base}/requests/{rid}/status", key=design)
        assert status == 200 and body["request_id"] == rid  # the owner still sees it


async def test_a_key_never_reveals_whether_a_key_id_exists(gateway: Gateway) -> None:
    """A wrong secret for a real key id, even a revoked one, or a key id moved to another
    team's slot: each answers exactly like a key that never existed."""
    design = await gateway.new_team("design")
    ops = await gateway.new_team("ops")
    _, listed = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    revoked = (await gateway.admin("POST", "/admin/v1/teams/design/keys", {}))[1]
    await gateway.admin("DELETE", f"/admin/v1/keys/{revoked['key_id']}")
    secret = design.rsplit("_", 1)[1]
    wrong_secret = design[:-4] + ("zzzz" if not design.endswith("zzzz") else "yyyy")
    ops_slot = ops[4:12]
    other_slot = f"rcg_{ops_slot}{design[12:]}"  # design's key id and secret in ops' slot
    revoked_wrong = (
        f"{revoked['key'][:-4]}{'zzzz' if not revoked['key'].endswith('zzzz') else 'yyyy'}"
    )
    never = f"rcg_{'a' * 16}_{secret}"
    answers = set()
    for presented in (wrong_secret, other_slot, revoked_wrong, never):
        status, body = await submit(gateway, presented)
        assert status == 401, presented
        assert_error_shape(body, 401001)
        assert body["detail"] == "invalid_key"
        answers.add(str(body))
    assert len(answers) == 1, answers
    assert listed["keys"][0]["key_id"] not in str(answers)


async def test_team_keys_reach_no_admin_route_of_any_team_with_one_answer_for_all(
    gateway: Gateway, simulator: Simulator
) -> None:
    """Usage, limits, keys, cache purges: a team key gets the same 403 for its own team,
    another team and a team that does not exist."""
    design = await gateway.new_team("design")
    await gateway.new_team("ops")
    before = await simulator.calls()
    for team in ("design", "ops", "no-such-team"):
        answers = set()
        for method, path in (
            ("GET", f"/admin/v1/teams/{team}/usage"),
            ("GET", f"/admin/v1/teams/{team}/limits"),
            ("GET", f"/admin/v1/teams/{team}/keys"),
            ("GET", f"/admin/v1/teams/{team}/unreconciled"),
            ("DELETE", f"/admin/v1/teams/{team}/cache"),
            ("POST", f"/admin/v1/teams/{team}/keys"),
        ):
            status, body, _ = await gateway.request(method, path, key=design, json={})
            assert status == 403, (method, path)
            assert_error_shape(body, 403001)
            answers.add(str(body))
        assert len(answers) == 1
    assert await simulator.calls() == before
    _, keys = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    assert len(keys["keys"]) == 1  # nothing was created


async def test_keys_and_admin_tokens_are_stored_only_as_hashes_anywhere_in_redis(
    gateway: Gateway, redis_url: str, namespace: str
) -> None:
    """After creating, using, rotating and revoking them, and the audit log of all that."""
    key = await gateway.new_team("design")
    assert (await submit(gateway, key))[0] == 200
    _, listed = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    status, rotated = await gateway.admin(
        "POST", f"/admin/v1/keys/{listed['keys'][0]['key_id']}/rotate", {"grace_seconds": 60}
    )
    assert status == 201
    assert (await submit(gateway, rotated["key"]))[0] == 200
    _, extra = await gateway.admin("POST", "/admin/v1/teams/design/keys", {"name": "ci"})
    await gateway.admin("DELETE", f"/admin/v1/keys/{extra['key_id']}")
    _, admin = await gateway.admin("POST", "/admin/v1/admins", {"name": "alice", "role": "admin"})
    status, _, _ = await gateway.request("GET", "/admin/v1/whoami", key=admin["token"])
    assert status == 200
    text = await redis_text(redis_url, namespace)
    assert listed["keys"][0]["key_id"] in text  # the scan does see the records
    for secret in (key, rotated["key"], extra["key"], admin["token"], ADMIN_TOKEN):
        assert secret not in text
        assert secret.rsplit("_", 1)[-1] not in text  # not even the secret part
    assert hashlib.sha256(key.encode()).hexdigest() in text


async def test_every_team_route_refuses_admin_tokens_and_missing_or_invalid_keys(
    gateway: Gateway, simulator: Simulator
) -> None:
    """Walks every team route of the OpenAPI table: jobs run only under a team key."""
    await gateway.new_team("design", deployments=["*"])
    _, named = await gateway.admin("POST", "/admin/v1/admins", {"name": "alice", "role": "admin"})
    _, listed, _ = await gateway.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    values = {"model_id": NANO, "deployment_id": listed[0]["id"], "request_id": str(uuid.uuid4())}
    before = await simulator.calls()
    team_ops = [op for op in operations() if op.auth is Auth.TEAM]
    assert len(team_ops) >= 12
    for op in team_ops:
        path = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], op.path)
        for cred, expected in (
            (ADMIN_TOKEN, 403),
            (named["token"], 403),
            (None, 401),
            ("not-a-key", 401),
            (f"rcg_{'a' * 16}_{'b' * 40}", 401),
        ):
            status, body, _ = await gateway.request(
                op.method, path, key=cred, json={"prompt": "x"} if op.body else None
            )
            assert status == expected, (op.method, path, cred, body)
            assert_error_shape(body, 401001 if expected == 401 else 403001)
    assert await simulator.calls() == before
