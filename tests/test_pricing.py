"""Cost estimates as admins see them: equal to what RunComfy charges, overridable, shared.

Estimates are checked against what the simulator actually charged (``GET /_sim/ledger``) for
every model of its catalog, plus one model whose duration is a string enum.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.money.amounts import settle_serverless_micro
from gateway.money.pricing import MAX_ESTIMATE_MICRO
from gateway.simulator import SimulatorConfig
from gateway.simulator.deployments import SEEDED_DEPLOYMENT_IDS
from tests.conftest import (
    ADMIN_TOKEN,
    NANO,
    SIM_TOKEN,
    Gateway,
    Simulator,
    assert_error_shape,
    run_cli,
    start_simulator,
)

GPT_IMAGE = "openai/gpt-image-2/text-to-image"
ACE = "acestep-ai/ace-step-1.5/text-to-audio"
CLIP = "acme/clip-1/text-to-video"
DEP = SEEDED_DEPLOYMENT_IDS[0]  # AMPERE_48: $0.00054 per GPU-second
RUN_SECONDS = 2.0
IMAGE = "https://playgrounds-storage-public.runcomfy.net/tools/7063/media-files/input.webp"

CLIP_ENTRY: dict[str, Any] = {
    "model_id": CLIP,
    "display_name": "Clip 1 Text to Video",
    "description": "A model whose duration is a string enum, as some RunComfy models have.",
    "categories": ["text-to-video"],
    "kind": "model",
    "base_price_usd": 0.07,
    "price_unit": "second",
    "pricing_note": "$0.07 per second of video.",
    "model_url": "https://www.runcomfy.com/models/acme/clip-1/text-to-video",
    "input_schema": {
        "type": "object",
        "title": "Input",
        "required": ["prompt"],
        "properties": {
            "prompt": {"title": "Prompt", "description": "", "type": "string"},
            "duration": {
                "title": "Duration (s)",
                "description": "",
                "type": "string",
                "enum": ["5", "10"],
                "default": "5",
            },
            "clip_length": {
                "title": "Length",
                "description": "A length the estimate does not know by name, e.g. '7s'.",
                "type": "string",
            },
        },
    },
    "simulator": {"output": "video", "duration_param": "duration", "extension": "mp4"},
}

ORDINARY_BODIES: dict[str, list[dict[str, Any]]] = {
    NANO: [{"prompt": "a fox"}, {"prompt": "a fox", "resolution": "4K"}],
    "blackforestlabs/flux-2/flash/text-to-image": [
        {"prompt": "a fox"},
        {"prompt": "a fox", "seed": 7, "image_size": "square_hd"},
    ],
    "google/nano-banana-2-lite/edit": [
        {"prompt": "make it blue", "image_urls": [IMAGE]},
        {"prompt": "combine", "image_urls": [IMAGE, IMAGE, IMAGE]},
    ],
    "blackforestlabs/flux-1-kontext/pro/edit": [{"prompt": "add a hat", "image_url": IMAGE}],
    GPT_IMAGE: [
        {"prompt": "a fox"},
        {"prompt": "a fox", "num_images": 3},
        {"prompt": "a fox", "num_images": 4, "quality": "high"},
    ],
    "bytedance/seedance-2.5/image-to-video/1080p": [
        {"prompt": "waves", "image": IMAGE},
        {"prompt": "waves", "image": IMAGE, "duration": 12},
    ],
    "wan-ai/wan-3.0/image-to-video": [
        {"prompt": "waves", "image_url": IMAGE},
        {"prompt": "waves", "image_url": IMAGE, "duration": 30, "resolution": "1080p"},
    ],
    ACE: [
        {"tags": "jazz"},
        {"tags": "jazz", "duration": 61.5},
        {"tags": "jazz", "duration": 240},
    ],
    CLIP: [{"prompt": "a fox"}, {"prompt": "a fox", "duration": "10"}],
}


@pytest.fixture
async def runcomfy(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Simulator]:
    """The simulator with its bundled catalog plus CLIP, and jobs that wait for ``advance``."""
    bundled = json.loads(resources.files("gateway.simulator").joinpath("catalog.json").read_text())
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"models": [*bundled["models"], CLIP_ENTRY]}))
    config = SimulatorConfig(
        token=SIM_TOKEN, queue_seconds=1.0, run_seconds=RUN_SECONDS, catalog_path=str(catalog)
    )
    server: TestServer = await start_simulator(config)
    yield Simulator(url=str(server.make_url("")).rstrip("/"), session=http)
    await server.close()


@pytest.fixture
async def gw(gateway_factory: Any, runcomfy: Simulator) -> Gateway:
    gateway: Gateway = await gateway_factory(upstream=runcomfy.url)
    return gateway


async def estimate(gw: Gateway, **query: Any) -> dict[str, Any]:
    status, body = await gw.admin("POST", "/admin/v1/pricing/estimate", query)
    assert status == 200, body
    return dict(body)


async def charged(sim: Simulator, path: str, body: dict[str, Any]) -> str:
    """Run one job on "RunComfy" directly; returns its request id."""
    headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
    async with sim.session.post(sim.url + path, json=body, headers=headers) as resp:
        reply = await resp.json()
        assert resp.status == 200, reply
    return str(reply["request_id"])


async def ledger(sim: Simulator) -> dict[str, Any]:
    async with sim.session.post(f"{sim.url}/_sim/advance", json={"seconds": 3600}) as resp:
        assert resp.status == 200
    async with sim.session.get(f"{sim.url}/_sim/ledger") as resp:
        return dict(await resp.json())


async def test_every_catalog_models_estimate_equals_what_runcomfy_charges(
    gw: Gateway, runcomfy: Simulator
) -> None:
    bundled = json.loads(resources.files("gateway.simulator").joinpath("catalog.json").read_text())
    assert {m["model_id"] for m in bundled["models"]} | {CLIP} == set(ORDINARY_BODIES)
    expected: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    for model_id, bodies in ORDINARY_BODIES.items():
        for body in bodies:
            found = await estimate(gw, model_id=model_id, body=body)
            assert found["source"] == "catalog", found
            rid = await charged(runcomfy, f"/v1/models/{model_id}", body)
            expected[rid] = (model_id, body, found)
    books = await ledger(runcomfy)
    assert len(books["jobs"]) == len(expected)
    for job in books["jobs"]:
        model_id, body, found = expected[job["request_id"]]
        assert job["state"] == "succeeded"
        assert found["micro"] == job["billed_micro"] > 0, (model_id, body, found)
    assert books["charged_micro"] == sum(e[2]["micro"] for e in expected.values())


async def test_an_estimate_says_how_it_was_derived(gw: Gateway) -> None:
    found = await estimate(gw, model_id=GPT_IMAGE, body={"prompt": "x", "num_images": 3})
    assert found == {
        "micro": 126_000,
        "unit_price_micro": 42_000,
        "units": 3,
        "unit": "output",
        "source": "catalog",
        "notes": ["num_images=3 from the request"],
    }
    default = await estimate(gw, model_id=CLIP, body={"prompt": "x"})
    assert (default["micro"], default["units"], default["unit"]) == (350_000, 5, "second")
    assert default["notes"] == ["duration=5 from the schema default"]


async def test_absurd_counts_and_rule_chains_are_capped_not_a_500(gw: Gateway) -> None:
    """A team asking for 1e18 images made the reservation overflow Redis's 64-bit counters, and
    1e308 overflowed the estimate itself: both were a 500 before RunComfy could refuse them."""
    key = await gw.new_team("design")
    for count in (10**18, 1e308):
        status, body, _ = await gw.request(
            "POST", f"/v1/models/{GPT_IMAGE}", key=key, json={"prompt": "x", "num_images": count}
        )
        assert status == 422, body  # RunComfy's own answer: at most 4 images
        assert_error_shape(body, 422001)
    found = await estimate(gw, model_id=GPT_IMAGE, body={"prompt": "x", "num_images": 1e308})
    assert found["micro"] == MAX_ESTIMATE_MICRO and "capped" in found["notes"][-1]
    chain = [{"param": "prompt", "equals": "x", "multiplier": 1000}] * 50
    status, _ = await gw.admin(
        "PUT", f"/admin/v1/pricing/models/{GPT_IMAGE}", {"unit_price_usd": 100_000, "rules": chain}
    )
    assert status == 200
    found = await estimate(gw, model_id=GPT_IMAGE, body={"prompt": "x"})
    assert found["micro"] == found["unit_price_micro"] == MAX_ESTIMATE_MICRO
    status, body, _ = await gw.request(
        "POST", f"/v1/models/{GPT_IMAGE}", key=key, json={"prompt": "x"}
    )
    assert status == 200, body


async def test_a_model_override_replaces_the_catalog_unit_price(gw: Gateway) -> None:
    status, body = await gw.admin(
        "PUT", f"/admin/v1/pricing/models/{GPT_IMAGE}", {"unit_price_usd": 0.25}
    )
    assert status == 200, body
    assert body == {"model_id": GPT_IMAGE, "unit_price_usd": 0.25, "rules": []}
    found = await estimate(gw, model_id=GPT_IMAGE, body={"prompt": "x", "num_images": 2})
    assert (found["micro"], found["unit_price_micro"], found["source"]) == (
        500_000,
        250_000,
        "override",
    )
    other = await estimate(gw, model_id=NANO, body={"prompt": "x"})
    assert (other["micro"], other["source"]) == (150_000, "catalog")


async def test_parameter_rules_price_a_4k_image_differently(gw: Gateway) -> None:
    rules = {
        "rules": [
            {"param": "resolution", "equals": "4K", "unit_price_usd": 0.3},
            {"param": "resolution", "equals": "1K", "multiplier": 0.5},
            {"param": "output_format", "equals": "webp", "multiplier": 2},
        ]
    }
    status, body = await gw.admin("PUT", f"/admin/v1/pricing/models/{NANO}", rules)
    assert status == 200, body

    async def micro(**inputs: Any) -> tuple[int, str]:
        found = await estimate(gw, model_id=NANO, body={"prompt": "x", **inputs})
        return found["micro"], found["source"]

    assert await micro(resolution="4K") == (300_000, "override")
    assert await micro(resolution="4K", output_format="webp") == (600_000, "override")
    assert await micro() == (75_000, "override")  # 1K is the schema default
    assert await micro(resolution="2K") == (150_000, "catalog")
    found = await estimate(gw, model_id=NANO, body={"prompt": "x", "resolution": "4K"})
    assert "rule resolution=4K: unit price 300000 micro" in found["notes"]


async def test_rule_values_match_numbers_and_numeric_strings_alike(gw: Gateway) -> None:
    rule = {"rules": [{"param": "duration", "equals": 10, "multiplier": 1.5}]}
    status, body = await gw.admin("PUT", f"/admin/v1/pricing/models/{CLIP}", rule)
    assert status == 200, body
    found = await estimate(gw, model_id=CLIP, body={"prompt": "x", "duration": "10"})
    assert (found["micro"], found["unit_price_micro"]) == (1_050_000, 105_000)


async def test_a_per_second_model_without_a_duration_uses_the_override_else_ten_seconds(
    gw: Gateway,
) -> None:
    path = f"/admin/v1/pricing/models/{NANO}"
    status, body = await gw.admin("PUT", path, {"price_unit": "second"})
    assert status == 200, body
    fallback = await estimate(gw, model_id=NANO, body={"prompt": "x"})
    assert (fallback["micro"], fallback["units"], fallback["unit"]) == (1_500_000, 10, "second")
    assert fallback["notes"] == ["no duration given: 10 s assumed"]

    await gw.admin("PUT", path, {"price_unit": "second", "default_units": 4})
    assert (await estimate(gw, model_id=NANO, body={}))["micro"] == 600_000

    status, body = await gw.admin(
        "PUT", f"/admin/v1/pricing/models/{CLIP}", {"units_param": "clip_length"}
    )
    assert status == 200, body
    found = await estimate(gw, model_id=CLIP, body={"clip_length": "7s"})
    assert (found["micro"], found["units"]) == (490_000, 7)


async def test_a_deployment_is_estimated_at_its_rate_and_settles_to_runcomfys_charge(
    gw: Gateway, runcomfy: Simulator
) -> None:
    rate = {"usd_per_second": 0.00054, "estimated_seconds": RUN_SECONDS}
    status, body = await gw.admin("PUT", f"/admin/v1/pricing/deployments/{DEP}", rate)
    assert status == 200, body
    assert body == {"deployment_id": DEP, **rate}
    found = await estimate(gw, deployment_id=DEP, body={"overrides": {}})
    assert found == {
        "micro": 1_080,
        "unit_price_micro": 540,
        "units": 2,
        "unit": "second",
        "source": "deployment",
        "notes": ["2 GPU-seconds estimated by the admin"],
    }
    await charged(runcomfy, f"/prod/v1/deployments/{DEP}/inference", {"overrides": {}})
    [job] = (await ledger(runcomfy))["jobs"]
    assert job["billed_micro"] == settle_serverless_micro(540, RUN_SECONDS) == found["micro"]


async def test_without_a_price_the_estimate_is_zero_and_says_unknown(
    gw: Gateway, runcomfy: Simulator
) -> None:
    no_rate = await estimate(gw, deployment_id=SEEDED_DEPLOYMENT_IDS[1], body={})
    assert (no_rate["micro"], no_rate["source"]) == (0, "unknown")
    assert no_rate["notes"] == ["no rate set for this deployment"]

    unknown = await estimate(gw, model_id="acme/no-such-model", body={"prompt": "x"})
    assert (unknown["micro"], unknown["source"], unknown["unit"]) == (0, "unknown", None)
    assert unknown["notes"] == ["model not in RunComfy's catalog"]

    await runcomfy.fault(route="catalog.get", action="status", status=503, times=None)
    down = await estimate(gw, model_id=GPT_IMAGE, body={"prompt": "x"})
    assert (down["micro"], down["source"]) == (0, "unknown")
    assert "catalog is unavailable" in down["notes"][0]


async def test_pricing_admin_routes_need_the_admin_token(gw: Gateway) -> None:
    key = await gw.new_team("design")
    routes = [
        ("GET", "/admin/v1/pricing", None),
        ("PUT", f"/admin/v1/pricing/models/{NANO}", {"unit_price_usd": 1}),
        ("DELETE", f"/admin/v1/pricing/models/{NANO}", None),
        ("PUT", f"/admin/v1/pricing/deployments/{DEP}", {"usd_per_second": 1}),
        ("DELETE", f"/admin/v1/pricing/deployments/{DEP}", None),
        ("POST", "/admin/v1/pricing/estimate", {"model_id": NANO}),
    ]
    for method, path, body in routes:
        status, answer, _ = await gw.request(method, path, json=body)
        assert status == 401, (method, path)
        assert_error_shape(answer, 401001)
        status, answer, _ = await gw.request(method, path, key=key, json=body)
        assert status == 403, (method, path)
        assert_error_shape(answer, 403001)
    _, book = await gw.admin("GET", "/admin/v1/pricing")
    assert book == {"models": {}, "deployments": {}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"models/{NANO}", {}),
        (f"models/{NANO}", {"unit_price_usd": -1}),
        (f"models/{NANO}", {"unit_price": 1}),
        (f"models/{NANO}", {"price_unit": "image"}),
        (f"models/{NANO}", {"rules": [{"param": "resolution", "equals": "4K"}]}),
        (
            f"models/{NANO}",
            {"rules": [{"param": "a", "equals": "b", "unit_price_usd": 1, "multiplier": 2}]},
        ),
        (f"models/{NANO}", {"rules": [{"param": "a", "equals": ["4K"], "multiplier": 2}]}),
        (f"deployments/{DEP}", {"usd_per_second": 0.001}),
        (f"deployments/{DEP}", {"usd_per_second": 0.001, "estimated_seconds": 0}),
        ("estimate", {"body": {}}),
        ("estimate", {"model_id": NANO, "deployment_id": DEP}),
        ("estimate", {"model_id": NANO, "body": []}),
    ],
)
async def test_bad_overrides_and_queries_are_refused_with_422(
    gw: Gateway, path: str, body: dict[str, Any]
) -> None:
    method = "POST" if path == "estimate" else "PUT"
    status, answer = await gw.admin(method, f"/admin/v1/pricing/{path}", body)
    assert status == 422, answer
    assert_error_shape(answer, 422001)
    assert answer["detail"]
    _, book = await gw.admin("GET", "/admin/v1/pricing")
    assert book == {"models": {}, "deployments": {}}


WAN = "wan-ai/wan-3.0/image-to-video"
EDIT = "google/nano-banana-2-lite/edit"


@pytest.mark.parametrize(
    ("model_id", "override", "loc", "says"),
    [
        ("acme/no-such-model", {"unit_price_usd": 1}, ["model_id"], "not in RunComfy's catalog"),
        (NANO, {"rules": [{"param": "resolutoin", "equals": "4K", "multiplier": 2}]},
         ["rules", 0, "param"], "no input 'resolutoin'; its inputs: aspect_ratio, output_format"),
        (NANO, {"rules": [{"param": "resolution", "equals": "8K", "multiplier": 2}]},
         ["rules", 0, "equals"], "resolution is one of 1K, 2K, 4K; '8K' is not"),
        (GPT_IMAGE, {"rules": [{"param": "num_images", "equals": 9, "multiplier": 2}]},
         ["rules", 0, "equals"], "num_images is at most 4; 9 is more"),
        (WAN, {"rules": [{"param": "duration", "equals": "1", "multiplier": 2}]},
         ["rules", 0, "equals"], "duration is at least 2; 1 is less"),
        (GPT_IMAGE, {"rules": [{"param": "num_images", "equals": "two", "multiplier": 2}]},
         ["rules", 0, "equals"], "num_images is an integer; 'two' is not"),
        (GPT_IMAGE, {"rules": [{"param": "num_images", "equals": 2.5, "multiplier": 2}]},
         ["rules", 0, "equals"], "num_images is an integer; '2.5' is not"),
        (ACE, {"rules": [{"param": "duration", "equals": "long", "multiplier": 2}]},
         ["rules", 0, "equals"], "duration is a number; 'long' is not"),
        (WAN, {"rules": [{"param": "enable_audio", "equals": "maybe", "multiplier": 2}]},
         ["rules", 0, "equals"], "enable_audio is true or false"),
        (EDIT, {"rules": [{"param": "image_urls", "equals": "x", "multiplier": 2}]},
         ["rules", 0, "equals"], "image_urls is array; a rule matches single values only"),
        (NANO, {"price_unit": "second", "units_param": "clip_seconds"},
         ["units_param"], "no input 'clip_seconds'"),
        (WAN, {"units_param": "enable_audio"},
         ["units_param"], "input 'enable_audio' is boolean, not a count or duration"),
    ],
)  # fmt: skip
async def test_an_override_that_does_not_fit_the_models_catalog_schema_is_a_422_saying_why(
    gw: Gateway, model_id: str, override: dict[str, Any], loc: list[Any], says: str
) -> None:
    status, answer = await gw.admin("PUT", f"/admin/v1/pricing/models/{model_id}", override)
    assert status == 422, answer
    assert_error_shape(answer, 422001)
    assert model_id in answer["error_message"]
    [problem] = answer["detail"]
    assert problem["loc"] == loc and says in problem["msg"], problem
    _, book = await gw.admin("GET", "/admin/v1/pricing")
    assert book == {"models": {}, "deployments": {}}


async def test_rule_values_a_request_can_send_are_accepted_as_text_or_json(gw: Gateway) -> None:
    """The CLI sends every rule value as text: "3" must fit an integer input as 3 does."""
    for model_id, rules in [
        (GPT_IMAGE, [{"param": "num_images", "equals": "3", "multiplier": 3},
                     {"param": "num_images", "equals": 4, "multiplier": 4},
                     {"param": "prompt", "equals": 4, "multiplier": 2}]),
        (WAN, [{"param": "enable_audio", "equals": "true", "multiplier": 1.5},
               {"param": "enable_audio", "equals": False, "multiplier": 1},
               {"param": "duration", "equals": "30", "multiplier": 2}]),
        (ACE, [{"param": "duration", "equals": 61.5, "multiplier": 2}]),
        (CLIP, [{"param": "duration", "equals": 10, "multiplier": 2}]),
    ]:  # fmt: skip
        status, body = await gw.admin(
            "PUT", f"/admin/v1/pricing/models/{model_id}", {"rules": rules}
        )
        assert status == 200, (model_id, body)
    found = await estimate(gw, model_id=GPT_IMAGE, body={"prompt": "x", "num_images": 3})
    assert found["unit_price_micro"] == 126_000 and found["source"] == "override"


async def test_a_model_price_is_not_stored_unchecked_while_the_catalog_is_down(
    gw: Gateway, runcomfy: Simulator
) -> None:
    await runcomfy.fault(route="catalog.get", action="status", status=503, times=None)
    status, answer = await gw.admin(
        "PUT", f"/admin/v1/pricing/models/{NANO}", {"unit_price_usd": 1}
    )
    assert status in (502, 503, 504), answer
    assert_error_shape(answer)
    _, book = await gw.admin("GET", "/admin/v1/pricing")
    assert book == {"models": {}, "deployments": {}}


async def test_malformed_bodies_and_ids_are_refused_with_400(gw: Gateway) -> None:
    status, answer, _ = await gw.request(
        "PUT", f"/admin/v1/pricing/models/{NANO}", key=ADMIN_TOKEN, data=b"{not json"
    )
    assert status == 400
    assert_error_shape(answer, 400001)
    for path in ("models/a%20b", "models/a,b", "deployments/a%20b"):
        status, answer = await gw.admin("PUT", f"/admin/v1/pricing/{path}", {"multiplier": 1})
        assert status == 400, (path, answer)
        assert_error_shape(answer, 400001)


async def test_overrides_are_listed_and_cleared(gw: Gateway) -> None:
    rule = {"param": "resolution", "equals": "4K", "multiplier": 2}
    await gw.admin("PUT", f"/admin/v1/pricing/models/{NANO}", {"rules": [rule]})
    await gw.admin(
        "PUT", f"/admin/v1/pricing/deployments/{DEP}", {"usd_per_second": 1, "estimated_seconds": 3}
    )
    status, book = await gw.admin("GET", "/admin/v1/pricing")
    assert status == 200
    assert book == {
        "models": {NANO: {"rules": [rule]}},
        "deployments": {DEP: {"usd_per_second": 1.0, "estimated_seconds": 3.0}},
    }
    assert await gw.admin("DELETE", f"/admin/v1/pricing/models/{NANO}") == (
        200,
        {"model_id": NANO, "deleted": True},
    )
    assert await gw.admin("DELETE", f"/admin/v1/pricing/deployments/{DEP}") == (
        200,
        {"deployment_id": DEP, "deleted": True},
    )
    status, answer = await gw.admin("DELETE", f"/admin/v1/pricing/models/{NANO}")
    assert status == 404
    assert_error_shape(answer, 404001)
    found = await estimate(gw, model_id=NANO, body={"resolution": "4K"})
    assert (found["micro"], found["source"]) == (150_000, "catalog")


async def test_a_price_change_reaches_another_replica_within_the_cache_bound(
    gateway_factory: Any, runcomfy: Simulator
) -> None:
    first: Gateway = await gateway_factory(upstream=runcomfy.url, pricing_cache_seconds=0.3)
    second: Gateway = await gateway_factory(upstream=runcomfy.url, pricing_cache_seconds=0.3)
    assert (await estimate(second, model_id=NANO, body={}))["micro"] == 150_000
    status, _ = await first.admin("PUT", f"/admin/v1/pricing/models/{NANO}", {"unit_price_usd": 1})
    assert status == 200
    assert (await estimate(first, model_id=NANO, body={}))["micro"] == 1_000_000  # at once here
    for _ in range(200):
        if (await estimate(second, model_id=NANO, body={}))["micro"] == 1_000_000:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the second replica never saw the new price")
    await first.admin("DELETE", f"/admin/v1/pricing/models/{NANO}")
    for _ in range(200):
        if (await estimate(second, model_id=NANO, body={}))["source"] == "catalog":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the second replica never dropped the override")


async def cli(gw: Gateway, *args: str) -> tuple[int, str, str]:
    env = {"GATEWAY_ADMIN_URL": gw.url, "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "250"}
    return await run_cli("admin", *args, env=env)


async def test_pricing_cli_sets_shows_estimates_and_clears(gw: Gateway, tmp_path: Path) -> None:
    code, out, err = await cli(
        gw, "--json", "pricing", "set-model", NANO,
        "--rule", "resolution=4K:0.3", "--rule", "output_format=webp:x2",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rules"] == [
        {"param": "resolution", "equals": "4K", "unit_price_usd": 0.3},
        {"param": "output_format", "equals": "webp", "multiplier": 2.0},
    ]
    code, out, err = await cli(
        gw, "pricing", "set-deployment", DEP, "--usd-per-second", "0.001", "--seconds", "30"
    )
    assert code == 0, err
    assert DEP in out

    code, out, err = await cli(gw, "pricing", "show")
    assert code == 0, err
    assert NANO in out and "resolution=4K:$0.3" in out and DEP in out

    body = json.dumps({"prompt": "x", "resolution": "4K", "output_format": "webp"})
    code, out, err = await cli(gw, "--json", "pricing", "estimate", "--model", NANO, "--body", body)
    assert code == 0, err
    assert json.loads(out)["micro"] == 600_000
    (tmp_path / "body.json").write_text(body)
    code, out, err = await cli(
        gw, "pricing", "estimate", "--model", NANO, "--body", f"@{tmp_path / 'body.json'}", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["micro"] == 600_000
    code, _, err = await cli(gw, "pricing", "estimate", "--model", NANO, "--body", "@nowhere.json")
    assert code == 2 and "cannot read nowhere.json" in err
    code, out, err = await cli(gw, "pricing", "estimate", NANO, "--body", body, "--json")
    assert code == 0, err  # the model as set-model takes it, without --model
    assert json.loads(out)["micro"] == 600_000
    code, _, err = await cli(gw, "pricing", "estimate", NANO, "--model", "other/model")
    assert code == 2 and "give the model once" in err
    code, out, err = await cli(gw, "pricing", "estimate", "--deployment", DEP)
    assert code == 0, err
    assert "$0.030000" in out and "deployment" in out

    code, _, err = await cli(gw, "pricing", "set-model", NANO, "--rule", "resolution")
    assert code != 0 and "PARAM=VALUE:USD" in err
    code, _, err = await cli(gw, "pricing", "set-model", NANO)
    assert code != 0 and "422" in err and "set at least one field" in err
    code, _, err = await cli(gw, "pricing", "set-model", NANO, "--rule", "resolution=8K:x2")
    assert code == 1
    assert err.splitlines()[1:] == [
        "  rules.0.equals: resolution is one of 1K, 2K, 4K; '8K' is not"
    ]
    code, _, err = await cli(gw, "pricing", "set-model", "acme/nope", "--unit-price", "1")
    assert code == 1 and "model_id: not in RunComfy's catalog" in err

    assert (await cli(gw, "pricing", "clear-model", NANO))[0] == 0
    assert (await cli(gw, "pricing", "clear-deployment", DEP))[0] == 0
    code, _, err = await cli(gw, "pricing", "clear-deployment", DEP)
    assert code != 0 and "404" in err
    _, book = await gw.admin("GET", "/admin/v1/pricing")
    assert book == {"models": {}, "deployments": {}}
