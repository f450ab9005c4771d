"""The ``seeded`` dedup policy as a team sees it: only requests that pin their seeds are cached."""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from gateway.jobs.seeds import (
    model_request_pinned,
    random_sentinels,
    seed_parameters,
    serverless_request_pinned,
)
from tests.conftest import NANO, Gateway, Simulator, on_single_and_cluster
from tests.test_dedup import CACHE, finished

FLUX = "blackforestlabs/flux-2/flash/text-to-image"  # seed: integer, default null
WAN = "wan-ai/wan-3.0/image-to-video"  # seed: integer 0..2^31-1, default 0
FRAME = "https://playgrounds-storage-public.runcomfy.net/frame.png"


def catalog_schema(model_id: str) -> dict[str, Any]:
    """A model's input schema as the bundled simulator (RunComfy's catalog) serves it."""
    text = resources.files("gateway.simulator").joinpath("catalog.json").read_text()
    models = json.loads(text)["models"]
    schema: dict[str, Any] = next(m for m in models if m["model_id"] == model_id)["input_schema"]
    return schema


async def submit(
    gw: Gateway,
    key: str,
    body: dict[str, Any],
    model: str = FLUX,
    headers: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Submit; returns the gateway's request id and its ``X-Gateway-Cache`` outcome."""
    status, answer, resp_headers = await gw.request(
        "POST", f"/v1/models/{model}", key=key, json=body, headers=headers
    )
    assert status == 200, answer
    return str(answer["request_id"]), resp_headers[CACHE]


async def run(
    gw: Gateway,
    key: str,
    body: dict[str, Any],
    model: str = FLUX,
    headers: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Submit and wait for the result, as the ComfyUI nodes do; returns outcome and result."""
    rid, outcome = await submit(gw, key, body, model, headers)
    return outcome, await finished(gw, key, rid)


async def seeded_team(gw: Gateway, team: str = "design") -> str:
    key = await gw.new_team(team)
    status, body = await gw.admin(
        "PUT", f"/admin/v1/teams/{team}/dedup-policy", {"default": "seeded"}
    )
    assert status == 200 and body["default"] == "seeded", body
    return key


@on_single_and_cluster
async def test_seeded_mode_runs_a_repeated_request_without_a_seed_again_and_charges_both(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await seeded_team(gateway)
    first_outcome, first = await run(gateway, key, {"prompt": "a red fox"})
    again_outcome, again = await run(gateway, key, {"prompt": "a red fox"})
    assert (first_outcome, again_outcome) == ("miss", "miss")
    assert first["output"] != again["output"]  # a new generation, not the old image
    assert first["cost"] > 0 and again["cost"] > 0
    assert await simulator.count("model.submit") == 2
    ledger = await simulator.ledger()
    assert len(ledger["jobs"]) == 2 and all(j["billed_micro"] > 0 for j in ledger["jobs"])


@on_single_and_cluster
async def test_seeded_mode_serves_a_repeated_pinned_seed_from_the_cache_at_cost_zero(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await seeded_team(gateway)
    outcome, original = await run(gateway, key, {"prompt": "a red fox", "seed": 7})
    assert outcome == "miss" and original["cost"] > 0
    outcome, cached = await run(gateway, key, {"seed": 7, "prompt": "a red fox"})
    assert outcome == "hit"
    assert cached["output"] == original["output"] and cached["cost"] == 0
    assert (await run(gateway, key, {"prompt": "a red fox", "seed": 8}))[0] == "miss"
    assert await simulator.count("model.submit") == 2


async def test_seeded_mode_never_caches_the_random_seed_sentinel_or_a_null_seed(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await seeded_team(gateway)
    for body in ({"prompt": "x", "seed": -1}, {"prompt": "y", "seed": None}):
        outcomes = [(await run(gateway, key, body))[0] for _ in range(2)]
        assert outcomes == ["miss", "miss"], body
    assert await simulator.count("model.submit") == 4


async def test_seeded_mode_still_coalesces_identical_unseeded_requests_in_flight(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=0.5, run_seconds=0.3)
    key = await seeded_team(gateway)
    answers = await asyncio.gather(*(submit(gateway, key, {"prompt": "same"}) for _ in range(6)))
    assert sorted(outcome for _, outcome in answers) == ["coalesced"] * 5 + ["miss"]
    assert await simulator.count("model.submit") == 1
    results = [await finished(gateway, key, rid) for rid, _ in answers]
    assert len({str(r["output"]) for r in results}) == 1
    assert sorted(r["cost"] for r in results)[:-1] == [0] * 5  # paid once
    # once it has finished, the unseeded request is not served from the cache
    assert (await run(gateway, key, {"prompt": "same"}))[0] == "miss"
    assert await simulator.count("model.submit") == 2


async def test_a_model_without_a_seed_parameter_is_never_cached_in_seeded_mode(
    gateway: Gateway, simulator: Simulator
) -> None:
    """What the ComfyUI nodes' "randomize" needs: their rerun control of a seedless model is
    never sent, so a rerun is the same body; under ``seeded`` it is a new generation."""
    key = await seeded_team(gateway)
    body = {"prompt": "a lighthouse", "seed": 5}  # not a parameter of this model: pins nothing
    outcomes = [(await run(gateway, key, body, NANO))[0] for _ in range(2)]
    assert outcomes == ["miss", "miss"]
    assert await simulator.count("model.submit") == 2


async def test_seeded_mode_reuses_only_results_whose_own_request_pinned_the_seed(
    gateway: Gateway, simulator: Simulator
) -> None:
    """Wan's seed defaults to 0, so a request without one has the identity of ``"seed": 0``;
    its result (RunComfy may have drawn a seed) is no answer to a request that pinned 0."""
    key = await gateway.new_team("design")
    status, made = await gateway.admin("POST", "/admin/v1/teams/design/keys", {})
    assert status == 201, made
    seeded_key, seeded_key_id = made["key"], made["key_id"]
    await gateway.admin(
        "PUT", "/admin/v1/teams/design/dedup-policy", {"keys": {seeded_key_id: "seeded"}}
    )
    unpinned = {"prompt": "waves", "image_url": FRAME}
    pinned = {**unpinned, "seed": 0}
    assert (await run(gateway, key, unpinned, WAN))[0] == "miss"  # cached under `cache`
    assert (await run(gateway, key, pinned, WAN))[0] == "hit"  # the same request to `cache`
    assert (await run(gateway, seeded_key, pinned, WAN))[0] == "miss"
    outcome, result = await run(gateway, seeded_key, pinned, WAN)
    assert outcome == "hit" and result["cost"] == 0
    assert (await run(gateway, seeded_key, unpinned, WAN))[0] == "miss"
    assert await simulator.count("model.submit") == 3


@on_single_and_cluster
async def test_seeded_sits_between_inflight_and_cache_and_the_most_restrictive_wins(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    _, listing = await gateway.admin("GET", "/admin/v1/teams/design/keys")
    key_id = listing["keys"][0]["key_id"]
    pinned, unpinned = {"prompt": "p", "seed": 1}, {"prompt": "p"}
    assert (await run(gateway, key, pinned))[0] == "miss"
    assert (await run(gateway, key, unpinned))[0] == "miss"  # both cached under `cache`

    for policy, expected in (
        ({"default": "seeded"}, ("hit", "miss")),
        ({"keys": {key_id: "seeded"}}, ("hit", "miss")),
        ({"models": {FLUX: "seeded"}}, ("hit", "miss")),
        ({"models": {NANO: "seeded"}}, ("hit", "hit")),  # another model's entry
        ({"default": "seeded", "keys": {key_id: "cache"}}, ("hit", "miss")),
        ({"default": "cache", "models": {FLUX: "seeded"}}, ("hit", "miss")),
        ({"default": "seeded", "models": {FLUX: "inflight"}}, ("miss", "miss")),
        ({"default": "seeded", "keys": {key_id: "off"}}, ("miss", "miss")),
        ({"default": "cache"}, ("hit", "hit")),  # what `seeded` ran was not stored
    ):
        status, stored = await gateway.admin("PUT", "/admin/v1/teams/design/dedup-policy", policy)
        assert status == 200, stored
        outcomes = ((await run(gateway, key, pinned))[0], (await run(gateway, key, unpinned))[0])
        assert outcomes == expected, policy
    status, shown = await gateway.admin("GET", "/admin/v1/teams/design/dedup-policy")
    assert status == 200 and shown["default"] == "cache"


async def test_seeded_as_the_gateway_default_applies_to_teams_without_a_policy(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(dedup_default_policy="seeded")
    key = await gw.new_team("design")
    assert [(await run(gw, key, {"prompt": "q"}))[0] for _ in range(2)] == ["miss", "miss"]
    assert [(await run(gw, key, {"prompt": "q", "seed": 3}))[0] for _ in range(2)] == [
        "miss",
        "hit",
    ]
    # a team's own default replaces the gateway's
    await gw.admin("PUT", "/admin/v1/teams/design/dedup-policy", {"default": "cache"})
    assert [(await run(gw, key, {"prompt": "q"}))[0] for _ in range(2)] == ["miss", "hit"]


async def test_cache_headers_narrow_a_pinned_request_in_seeded_mode(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await seeded_team(gateway)
    body = {"prompt": "dunes", "seed": 11}
    _, old = await run(gateway, key, body)

    def control(value: str) -> dict[str, str]:
        return {"X-Gateway-Cache-Control": value}

    outcome, _ = await run(gateway, key, body, headers=control("no-store"))
    assert outcome == "miss"
    outcome, kept = await run(gateway, key, body)
    assert outcome == "hit" and kept["output"] == old["output"]  # no-store stored nothing

    outcome, new = await run(gateway, key, body, headers=control("no-cache"))
    assert outcome == "miss"
    outcome, renewed = await run(gateway, key, body)
    assert outcome == "hit" and renewed["output"] == new["output"]

    await asyncio.sleep(0.3)
    assert (await run(gateway, key, body, headers=control("max-age=0.1")))[0] == "miss"
    assert (await run(gateway, key, body, headers=control("max-age=3600")))[0] == "hit"
    # no header makes a request without a seed cacheable under `seeded`
    assert (await run(gateway, key, {"prompt": "dunes"}, headers=control("max-age=3600")))[
        0
    ] == "miss"
    assert await simulator.count("model.submit") == 5


async def test_seeded_mode_caches_a_deployment_request_only_when_it_pins_a_seed_input(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", deployments=["*"])
    await gateway.admin("PUT", "/admin/v1/teams/design/dedup-policy", {"default": "seeded"})
    _, deployments, _ = await gateway.request(
        "GET", "/prod/v2/deployments", key="test-admin-token-0123456789"
    )
    path = f"/prod/v2/deployments/{deployments[0]['id']}"

    async def infer(body: dict[str, Any]) -> str:
        status, answer, headers = await gateway.request(
            "POST", f"{path}/inference", key=key, json=body
        )
        assert status == 200, answer
        rid = answer["request_id"]
        for _ in range(400):
            _, state, _ = await gateway.request("GET", f"{path}/requests/{rid}/status", key=key)
            if state["status"] in ("completed", "cancelled"):
                return str(headers[CACHE])
            await asyncio.sleep(0.02)
        raise AssertionError(f"{rid} never finished")

    text_only = {"overrides": {"6": {"inputs": {"text": "a lighthouse"}}}}
    with_seed = {"overrides": {**text_only["overrides"], "31": {"inputs": {"seed": 42}}}}
    random_seed = {"overrides": {"31": {"inputs": {"seed": -1}}}}
    assert [await infer(text_only) for _ in range(2)] == ["miss", "miss"]
    assert [await infer(with_seed) for _ in range(2)] == ["miss", "hit"]
    assert [await infer(random_seed) for _ in range(2)] == ["miss", "miss"]
    assert await simulator.count("serverless.inference") == 5


async def test_seeded_mode_holds_in_the_shared_cache_scope(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(cache_scope="shared")
    design, ops = await gw.new_team("design"), await gw.new_team("ops")
    await gw.admin("PUT", "/admin/v1/teams/ops/dedup-policy", {"default": "seeded"})
    assert (await run(gw, design, {"prompt": "common"}))[0] == "miss"
    assert (await run(gw, design, {"prompt": "common", "seed": 4}))[0] == "miss"
    assert (await run(gw, ops, {"prompt": "common"}))[0] == "miss"  # unpinned: run again
    assert (await run(gw, ops, {"prompt": "common", "seed": 4}))[0] == "hit"
    assert (await run(gw, design, {"prompt": "common"}))[0] == "hit"  # design is on `cache`
    assert await simulator.count("model.submit") == 3


# --- what counts as a pinned seed ----------------------------------------------------------


def test_the_catalogs_seed_parameters_are_found_by_name_and_type() -> None:
    assert set(seed_parameters(catalog_schema(FLUX))) == {"seed"}
    assert set(seed_parameters(catalog_schema(WAN))) == {"seed"}
    assert seed_parameters(catalog_schema(NANO)) == {}
    assert seed_parameters(None) == {}
    schema = {
        "properties": {
            "noise_seed": {"type": "integer"},
            "seed_image": {"type": "string"},  # a seed-like name, not a seed
            "seed": {"type": "string"},
            "variation_seed": {"type": ["integer", "null"]},
        }
    }
    assert set(seed_parameters(schema)) == {"noise_seed", "variation_seed"}


def test_a_value_the_seed_description_calls_random_is_no_pinned_seed() -> None:
    for text, sentinels in (
        ("Set seed, -1 for random", {-1}),
        ("Random seed. Set to 0 for random.", {0}),
        ("Seed (-1 = random)", {-1}),
        ("Randomized when set to -1", {-1}),
        ("The same seed and prompt give the same image.", set()),
        ("Range 0 to 2147483647.", set()),
    ):
        assert random_sentinels({"description": text}) == sentinels, text
    schema = {"properties": {"seed": {"type": "integer", "description": "0 means random"}}}
    assert not model_request_pinned({"seed": 0}, schema)
    assert model_request_pinned({"seed": 1}, schema)


def test_only_every_seed_of_the_model_present_and_fixed_pins_a_request() -> None:
    flux = catalog_schema(FLUX)
    assert model_request_pinned({"prompt": "x", "seed": 0}, flux)
    assert model_request_pinned({"prompt": "x", "seed": 12.0}, flux)  # integral: one number
    for seed in (-1, None, True, "5", 1.5):
        assert not model_request_pinned({"prompt": "x", "seed": seed}, flux), seed
    assert not model_request_pinned({"prompt": "x"}, flux)
    assert not model_request_pinned({"prompt": "x"}, catalog_schema(WAN))  # a default pins nothing
    assert not model_request_pinned({"prompt": "x", "seed": 1}, catalog_schema(NANO))
    assert not model_request_pinned({"prompt": "x", "seed": 1}, None)  # no schema: unknown
    two = {"properties": {"seed": {"type": "integer"}, "noise_seed": {"type": "integer"}}}
    assert not model_request_pinned({"seed": 1}, two)
    assert model_request_pinned({"seed": 1, "noise_seed": 2}, two)


def test_a_deployment_request_is_pinned_by_its_seed_inputs_and_only_by_them() -> None:
    def overrides(**nodes: dict[str, Any]) -> dict[str, Any]:
        return {"overrides": {n: {"inputs": i} for n, i in nodes.items()}}

    assert serverless_request_pinned(overrides(n31={"seed": 42}))
    assert serverless_request_pinned(overrides(n3={"noise_seed": 7}, n6={"text": "x"}))
    assert not serverless_request_pinned(overrides(n6={"text": "x"}))
    assert not serverless_request_pinned({})
    assert not serverless_request_pinned(overrides(n31={"seed": -1}))
    assert not serverless_request_pinned(overrides(n3={"seed": 1}, n4={"noise_seed": -1}))
    assert not serverless_request_pinned(overrides(n31={"seed": ["40", 0]}))  # a link
    workflow = {"workflow_api_json": {"31": {"class_type": "KSampler", "inputs": {"seed": 9}}}}
    assert serverless_request_pinned(workflow)
    assert not serverless_request_pinned({**workflow, **overrides(n31={"seed": -1})})
