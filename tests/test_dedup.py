"""Deduplication as a team sees it: hits, coalescing, controls, policies, purges and cancels."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from gateway.jobs.canonical import canonical_json
from gateway.store.client import connect
from tests.conftest import NANO, Gateway, Simulator, assert_error_shape, on_single_and_cluster

CACHE = "X-Gateway-Cache"


async def submit(
    gw: Gateway, key: str, body: dict[str, Any], control: str | None = None
) -> tuple[int, Any, str]:
    headers = {"X-Gateway-Cache-Control": control} if control else None
    status, answer, resp_headers = await gw.request(
        "POST", f"/v1/models/{NANO}", key=key, json=body, headers=headers
    )
    return status, answer, resp_headers.get(CACHE, "")


async def finished(gw: Gateway, key: str, rid: str) -> dict[str, Any]:
    """Poll /result like the ComfyUI nodes do until the job ends; returns the result."""
    for _ in range(400):
        status, body, _ = await gw.request(
            "GET", f"/v1/requests/{rid}/result?include_cost=true", key=key
        )
        assert status == 200, body
        if body["status"] in ("succeeded", "failed", "cancelled"):
            result: dict[str, Any] = body
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"{rid} never finished")


@on_single_and_cluster
async def test_an_identical_request_after_success_is_a_free_instant_hit(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    status, first, outcome = await submit(gateway, key, {"prompt": "a red fox"})
    assert (status, outcome) == (200, "miss")
    original = await finished(gateway, key, first["request_id"])
    assert original["cost"] > 0

    status, again, outcome = await submit(gateway, key, {"prompt": "a red fox"})
    assert (status, outcome) == (200, "hit")
    assert again["request_id"] != first["request_id"]
    _, state, _ = await gateway.request(
        "GET", f"/v1/requests/{again['request_id']}/status", key=key
    )
    assert state["status"] == "completed"
    assert state["request_id"] == again["request_id"]
    _, result, _ = await gateway.request(
        "GET", f"/v1/requests/{again['request_id']}/result?include_cost=true", key=key
    )
    assert result["output"] == original["output"]
    assert result["request_id"] == again["request_id"]
    assert result["cost"] == 0
    assert await simulator.count("model.submit") == 1


async def test_schema_defaults_and_key_order_do_not_make_a_request_different(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    _, first, _ = await submit(gateway, key, {"prompt": "x", "aspect_ratio": "1:1"})
    await finished(gateway, key, first["request_id"])
    same = {"resolution": "1K", "aspect_ratio": "1:1", "prompt": "x", "output_format": "png"}
    assert (await submit(gateway, key, same))[2] == "hit"
    assert (await submit(gateway, key, {**same, "resolution": "2K"}))[2] == "miss"
    assert await simulator.count("model.submit") == 2


@on_single_and_cluster
async def test_identical_requests_in_flight_share_one_upstream_job(
    gateway_factory: Any, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=0.5, run_seconds=0.5)
    replicas: list[Gateway] = [await gateway_factory(), await gateway_factory()]
    key = await replicas[0].new_team("design")
    answers = await asyncio.gather(
        *(submit(replicas[i % 2], key, {"prompt": "same"}) for i in range(20))
    )
    outcomes = sorted(a[2] for a in answers)
    assert outcomes.count("miss") == 1
    assert outcomes.count("coalesced") == 19
    assert len({a[1]["request_id"] for a in answers}) == 20
    assert await simulator.count("model.submit") == 1
    results = [await finished(replicas[0], key, a[1]["request_id"]) for a in answers]
    assert all(r["status"] == "succeeded" for r in results)
    assert len({str(r["output"]) for r in results}) == 1
    costs = sorted(r["cost"] for r in results)
    assert costs[:-1] == [0] * 19 and costs[-1] > 0  # paid once, by the request that started it


async def test_seeds_beyond_64_bits_are_different_requests_never_coalesced(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=5)
    key = await gateway.new_team("design")
    outcomes = []
    for seed in ("18446744073709551616", "18446744073709551617", "18446744073709551616"):
        status, body, headers = await gateway.request(
            "POST",
            f"/v1/models/{NANO}",
            key=key,
            data=f'{{"prompt": "x", "seed": {seed}}}'.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert status == 200, body
        outcomes.append(headers[CACHE])
    assert outcomes == ["miss", "miss", "coalesced"]
    assert await simulator.count("model.submit") == 2


async def test_the_cache_key_is_a_keyed_hash_no_outsider_can_recompute(
    gateway_factory: Any, redis_url: str, namespace: str
) -> None:
    """X-Gateway-Cache-Key is keyed with a secret the gateway creates once and keeps in Redis:
    every replica of one gateway agrees on it, another gateway's differs."""
    body = {"prompt": "a private prompt"}
    first, second = await gateway_factory(), await gateway_factory()
    other = await gateway_factory(redis_namespace=namespace + "x")
    cache_keys = []
    for team, gw in (("design", first), ("ops", second), ("design", other)):
        key = await gw.new_team(team)
        _, _, headers = await gw.request("POST", f"/v1/models/{NANO}", key=key, json=body)
        cache_keys.append(headers["X-Gateway-Cache-Key"])
    assert cache_keys[0] == cache_keys[1] != cache_keys[2]
    plain = hashlib.sha256(canonical_json(body)).hexdigest()
    assert plain not in cache_keys
    client = connect(redis_url)
    try:
        secret = await client.get(f"{namespace}:v1:identity-secret")
    finally:
        await client.aclose()
    assert isinstance(secret, str) and len(bytes.fromhex(secret)) == 32


async def test_teams_never_share_results_or_ids_through_the_cache(
    gateway: Gateway, simulator: Simulator
) -> None:
    design = await gateway.new_team("design")
    ops = await gateway.new_team("ops")
    _, first, _ = await submit(gateway, design, {"prompt": "secret plan"})
    await finished(gateway, design, first["request_id"])
    status, theirs, outcome = await submit(gateway, ops, {"prompt": "secret plan"})
    assert (status, outcome) == (200, "miss")
    assert theirs["request_id"] != first["request_id"]
    status, _, _ = await gateway.request(
        "GET", f"/v1/requests/{first['request_id']}/result", key=ops
    )
    assert status == 404
    assert await simulator.count("model.submit") == 2


async def test_cache_control_no_cache_no_store_and_max_age(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    body = {"prompt": "lighthouse"}
    _, first, _ = await submit(gateway, key, body)
    old = await finished(gateway, key, first["request_id"])

    _, fresh, outcome = await submit(gateway, key, body, "no-store")
    assert outcome == "miss"
    await finished(gateway, key, fresh["request_id"])
    _, hit, outcome = await submit(gateway, key, body)
    assert outcome == "hit"  # no-store left the earlier result in place
    assert (await finished(gateway, key, hit["request_id"]))["output"] == old["output"]

    _, renewed, outcome = await submit(gateway, key, body, "no-cache")
    assert outcome == "miss"
    new = await finished(gateway, key, renewed["request_id"])
    _, hit, outcome = await submit(gateway, key, body)
    assert outcome == "hit"
    assert (await finished(gateway, key, hit["request_id"]))["output"] == new["output"]

    await asyncio.sleep(0.3)
    _, young, outcome = await submit(gateway, key, body, "max-age=0.1")
    assert outcome == "miss"
    # a job in flight is younger than any max-age: identical requests join it
    assert (await submit(gateway, key, body, "max-age=3600"))[2] == "coalesced"
    await finished(gateway, key, young["request_id"])
    assert (await submit(gateway, key, body, "max-age=3600"))[2] == "hit"
    assert await simulator.count("model.submit") == 4

    status, error, _ = await submit(gateway, key, body, "private")
    assert status == 400
    assert_error_shape(error, 400001)
    status, error, _ = await submit(gateway, key, body, "max-age=soon")
    assert status == 400


async def test_the_standard_cache_control_header_is_ignored_on_purpose(
    gateway: Gateway, simulator: Simulator
) -> None:
    """The ComfyUI partner nodes send ``Cache-Control: no-cache`` and ``Pragma: no-cache`` on
    every call; honouring them would turn the cache off for all their users. Only
    ``X-Gateway-Cache-Control`` narrows what a request may reuse."""
    key = await gateway.new_team("design")
    comfyui = {"Cache-Control": "no-cache", "Pragma": "no-cache"}
    status, first, headers = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}, headers=comfyui
    )
    assert (status, headers[CACHE]) == (200, "miss")
    await finished(gateway, key, first["request_id"])
    for standard in (comfyui, {"Cache-Control": "no-store, max-age=0"}):
        status, _, headers = await gateway.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}, headers=standard
        )
        assert (status, headers[CACHE]) == (200, "hit"), standard
    assert (await submit(gateway, key, {"prompt": "x"}, "no-cache"))[2] == "miss"
    assert await simulator.count("model.submit") == 2


async def test_results_expire_after_the_cache_ttl(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(cache_ttl_seconds=1)
    key = await gw.new_team("design")
    _, first, _ = await submit(gw, key, {"prompt": "x"})
    await finished(gw, key, first["request_id"])
    assert (await submit(gw, key, {"prompt": "x"}))[2] == "hit"
    await asyncio.sleep(1.2)
    assert (await submit(gw, key, {"prompt": "x"}))[2] == "miss"
    status, _, _ = await gw.request("GET", f"/v1/requests/{first['request_id']}/result", key=key)
    assert status == 200  # expiry of the cache entry does not expire request ids


@on_single_and_cluster
async def test_admins_purge_by_cache_key_by_model_and_by_team(gateway: Gateway) -> None:
    key = await gateway.new_team("design")

    async def cached(prompt: str) -> str:
        status, answer, headers = await gateway.request(
            "POST", f"/v1/models/{NANO}", key=key, json={"prompt": prompt}
        )
        assert status == 200
        await finished(gateway, key, answer["request_id"])
        return headers["X-Gateway-Cache-Key"]

    one = await cached("one")
    await cached("two")
    status, body = await gateway.admin("DELETE", f"/admin/v1/teams/design/cache/{one}")
    assert (status, body) == (200, {"purged": 1})
    assert (await submit(gateway, key, {"prompt": "one"}))[2] == "miss"
    assert (await submit(gateway, key, {"prompt": "two"}))[2] == "hit"

    status, body = await gateway.admin("DELETE", f"/admin/v1/cache/{NANO}")
    assert status == 200 and body["purged"] >= 1
    assert (await submit(gateway, key, {"prompt": "two"}))[2] == "miss"

    await cached("three")
    status, body = await gateway.admin("DELETE", "/admin/v1/teams/design/cache?model=")
    assert status == 400  # an empty model is a mistake, not "purge everything"
    assert_error_shape(body, 400001)
    assert (await submit(gateway, key, {"prompt": "three"}))[2] == "hit"
    status, body = await gateway.admin("DELETE", "/admin/v1/teams/design/cache")
    assert status == 200 and body["purged"] >= 1
    assert (await submit(gateway, key, {"prompt": "three"}))[2] == "miss"


@on_single_and_cluster
async def test_dedup_policy_per_team_key_and_model_most_restrictive_wins(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    _, listing = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    key_id = listing["keys"][0]["key_id"]
    _, first, _ = await submit(gateway, key, {"prompt": "p"})
    await finished(gateway, key, first["request_id"])

    for policy, expected in (
        ({"default": "off"}, "miss"),
        ({"keys": {key_id: "inflight"}}, "miss"),  # completed results are not reused
        ({"models": {NANO: "off"}}, "miss"),
        ({"default": "cache", "keys": {key_id: "cache"}}, "hit"),
    ):
        status, stored = await gateway.admin("PUT", "/admin/v1/teams/design/dedup-policy", policy)
        assert status == 200, stored
        _, answer, outcome = await submit(gateway, key, {"prompt": "p"})
        assert outcome == expected, policy
        await finished(gateway, key, answer["request_id"])

    status, body = await gateway.admin(
        "PUT", "/admin/v1/teams/design/dedup-policy", {"default": "sometimes"}
    )
    assert status == 422
    assert_error_shape(body, 422001)
    status, body = await gateway.admin(
        "PUT", "/admin/v1/teams/design/dedup-policy", {"keys": {"nokey0000000000x": "off"}}
    )
    assert status == 422


async def test_policy_off_sends_every_request_and_inflight_still_coalesces(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=0.5, run_seconds=0.3)
    key = await gateway.new_team("design")
    await gateway.admin("PUT", "/admin/v1/teams/design/dedup-policy", {"default": "off"})
    answers = await asyncio.gather(*(submit(gateway, key, {"prompt": "v"}) for _ in range(3)))
    assert [a[2] for a in answers] == ["miss"] * 3
    assert await simulator.count("model.submit") == 3

    await gateway.admin("PUT", "/admin/v1/teams/design/dedup-policy", {"default": "inflight"})
    answers = await asyncio.gather(*(submit(gateway, key, {"prompt": "w"}) for _ in range(3)))
    assert sorted(a[2] for a in answers) == ["coalesced", "coalesced", "miss"]
    assert await simulator.count("model.submit") == 4


async def test_a_failed_job_is_never_cached_and_its_followers_see_the_failure(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(next_outcomes=["failed"], queue_seconds=0.3)
    key = await gateway.new_team("design")
    answers = await asyncio.gather(*(submit(gateway, key, {"prompt": "doomed"}) for _ in range(3)))
    for _, answer, _ in answers:
        result = await finished(gateway, key, answer["request_id"])
        assert result["status"] == "failed" and result["error"]
    status, _, outcome = await submit(gateway, key, {"prompt": "doomed"})
    assert (status, outcome) == (200, "miss")
    assert await simulator.count("model.submit") == 2


async def test_a_rejected_submit_gives_every_coalesced_caller_the_same_error(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await simulator.fault(route="model.submit", action="delay", delay=0.3)
    bad = {"prompt": "x", "resolution": "16K"}
    answers = await asyncio.gather(*(submit(gateway, key, bad) for _ in range(4)))
    assert [a[0] for a in answers] == [422] * 4
    for _, body, _ in answers:
        assert_error_shape(body, 422001)
    assert await simulator.count("model.submit") == 1


@on_single_and_cluster
async def test_cancelling_one_follower_leaves_the_job_running_for_the_others(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=3.0, run_seconds=0.2)
    key = await gateway.new_team("design")
    _, owner, _ = await submit(gateway, key, {"prompt": "shared"})
    _, follower, outcome = await submit(gateway, key, {"prompt": "shared"})
    assert outcome == "coalesced"

    status, body, _ = await gateway.request(
        "POST", f"/v1/requests/{follower['request_id']}/cancel", key=key
    )
    assert status == 202
    assert body == {
        "request_id": follower["request_id"],
        "status": "cancelled",
        "outcome": "cancelled",
    }
    assert await simulator.count("model.cancel") == 0
    _, state, _ = await gateway.request(
        "GET", f"/v1/requests/{follower['request_id']}/status", key=key
    )
    assert state["status"] == "cancelled"
    _, state, _ = await gateway.request(
        "GET", f"/v1/requests/{owner['request_id']}/status", key=key
    )
    assert state["status"] == "in_queue"

    status, body, _ = await gateway.request(
        "POST", f"/v1/requests/{owner['request_id']}/cancel", key=key
    )
    assert status == 202 and body["outcome"] == "cancelled"
    assert body["request_id"] == owner["request_id"]
    assert await simulator.count("model.cancel") == 1
    assert (await finished(gateway, key, owner["request_id"]))["status"] == "cancelled"
    status, _, outcome = await submit(gateway, key, {"prompt": "shared"})
    assert outcome == "miss"  # cancelled jobs are never cached


async def test_a_running_job_is_not_cancellable_and_a_hit_cannot_be_cancelled(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=0.0, run_seconds=1.0)
    key = await gateway.new_team("design")
    _, owner, _ = await submit(gateway, key, {"prompt": "busy"})
    for _ in range(100):
        _, state, _ = await gateway.request(
            "GET", f"/v1/requests/{owner['request_id']}/status", key=key
        )
        if state["status"] == "in_progress":
            break
        await asyncio.sleep(0.02)
    _, follower, _ = await submit(gateway, key, {"prompt": "busy"})
    status, body, _ = await gateway.request(
        "POST", f"/v1/requests/{follower['request_id']}/cancel", key=key
    )
    assert status == 202 and body["outcome"] == "not_cancellable"
    await finished(gateway, key, owner["request_id"])
    _, hit, outcome = await submit(gateway, key, {"prompt": "busy"})
    assert outcome == "hit"
    status, body, _ = await gateway.request(
        "POST", f"/v1/requests/{hit['request_id']}/cancel", key=key
    )
    assert status == 202
    assert body["outcome"] == "not_cancellable" and body["status"] == "completed"


async def test_serverless_inferences_are_deduplicated_too(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", deployments=["*"])
    _, deployments, _ = await gateway.request(
        "GET", "/prod/v2/deployments", key="test-admin-token-0123456789"
    )
    dep = deployments[0]["id"]
    path = f"/prod/v2/deployments/{dep}/inference"
    body = {"overrides": {"6": {"inputs": {"text": "x"}}}}
    _, first, headers = await gateway.request("POST", path, key=key, json=body)
    assert headers[CACHE] == "miss"
    rid = first["request_id"]
    for _ in range(200):
        _, state, _ = await gateway.request(
            "GET", f"/prod/v2/deployments/{dep}/requests/{rid}/status", key=key
        )
        if state["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    _, again, headers = await gateway.request("POST", path, key=key, json=body)
    assert headers[CACHE] == "hit"
    assert set(again) == {"request_id", "status_url", "result_url", "cancel_url"}
    _, result, _ = await gateway.request(
        "GET", f"/prod/v2/deployments/{dep}/requests/{again['request_id']}/result", key=key
    )
    assert result["status"] == "succeeded" and result["outputs"]
    assert await simulator.count("serverless.inference") == 1


@on_single_and_cluster
async def test_a_shared_cache_serves_identical_requests_of_other_teams_but_never_their_ids(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(cache_scope="shared")
    design = await gw.new_team("design")
    ops = await gw.new_team("ops")
    _, first, outcome = await submit(gw, design, {"prompt": "common"})
    assert outcome == "miss"
    original = await finished(gw, design, first["request_id"])
    status, theirs, outcome = await submit(gw, ops, {"prompt": "common"})
    assert (status, outcome) == (200, "hit")  # documented: a hit reveals an earlier request
    assert theirs["request_id"] != first["request_id"]
    result = await finished(gw, ops, theirs["request_id"])
    assert result["output"] == original["output"] and result["cost"] == 0
    for leaf, method in (("status", "GET"), ("result", "GET"), ("cancel", "POST")):
        status, body, _ = await gw.request(
            method, f"/v1/requests/{first['request_id']}/{leaf}", key=ops
        )
        assert status == 404, leaf
        assert_error_shape(body, 404001)
    # a team policy still applies to that team's requests in the shared scope
    await gw.admin("PUT", "/admin/v1/teams/ops/dedup-policy", {"default": "off"})
    assert (await submit(gw, ops, {"prompt": "common"}))[2] == "miss"
    assert (await submit(gw, design, {"prompt": "common"}))[2] == "hit"
    status, body = await gw.admin("DELETE", "/admin/v1/teams/ops/cache")
    assert status == 400
    status, body = await gw.admin("DELETE", f"/admin/v1/cache/{NANO}")
    assert status == 200 and body["purged"] == 1
    assert await simulator.count("model.submit") == 2


async def test_shared_cache_coalesces_concurrent_requests_across_teams(
    gateway_factory: Any, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=0.5)
    gw: Gateway = await gateway_factory(cache_scope="shared")
    keys = [await gw.new_team(t) for t in ("a", "b", "c")]
    answers = await asyncio.gather(*(submit(gw, k, {"prompt": "together"}) for k in keys * 3))
    assert sorted(a[2] for a in answers) == ["coalesced"] * 8 + ["miss"]
    assert await simulator.count("model.submit") == 1
    for (_, answer, _), key in zip(answers, keys * 3, strict=True):
        assert (await finished(gw, key, answer["request_id"]))["status"] == "succeeded"
