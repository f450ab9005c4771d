"""The RunComfy simulator, driven over real HTTP as the gateway and RunComfy's clients drive it.

Most tests keep jobs slow (10 s queue, 10 s run) and move simulated time with ``/_sim/advance``, so
they are exact and fast; one walks a job through its states on the real clock.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, unused_port

from gateway.simulator import SIM_STATE, SimulatorConfig, create_simulator_app, run_simulator
from gateway.simulator.deployments import SEEDED_DEPLOYMENT_IDS
from gateway.simulator.state import inputs_digest

Client = TestClient[web.Request, web.Application]
StartSim = Callable[..., Awaitable[Client]]

TOKEN = "sim-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NANO = "google/nano-banana/pro/text-to-image"
GPT_IMAGE = "openai/gpt-image-2/text-to-image"
SEEDANCE = "bytedance/seedance-2.5/image-to-video/1080p"
FLUX_FLASH = "blackforestlabs/flux-2/flash/text-to-image"
DEP = SEEDED_DEPLOYMENT_IDS[0]
OTHER_DEP = SEEDED_DEPLOYMENT_IDS[1]
IMAGE_URL = "https://playgrounds-storage-public.runcomfy.net/tools/7063/media-files/input.webp"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d:\d\d$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SERVERLESS_SUBMIT_KEYS = {"request_id", "status_url", "result_url", "cancel_url"}
QUEUE, RUN = 10.0, 10.0


@pytest.fixture
async def start() -> AsyncIterator[StartSim]:
    """Start simulators (slow jobs by default) and close them after the test."""
    clients: list[Client] = []

    async def _start(**overrides: Any) -> Client:
        config = SimulatorConfig(**{"queue_seconds": QUEUE, "run_seconds": RUN, **overrides})
        client: Client = TestClient(TestServer(create_simulator_app(config)), headers=AUTH)
        await client.start_server()
        clients.append(client)
        return client

    yield _start
    for client in clients:
        await client.close()


@pytest.fixture
async def sim(start: StartSim) -> Client:
    """A simulator with the default token and slow jobs."""
    return await start()


async def call(
    client: Client,
    method: str,
    path: str,
    *,
    expect: int = 200,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One request; asserts the status and returns the parsed JSON body."""
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    async with client.request(method, path, data=data, headers=headers) as resp:
        text = await resp.text()
        assert resp.status == expect, text
        assert resp.content_type == "application/json"
        return orjson.loads(text)


async def advance(client: Client, seconds: float) -> None:
    """Move simulated time forward."""
    await call(client, "POST", "/_sim/advance", body={"seconds": seconds})


async def submit(client: Client, model_id: str = NANO, **inputs: Any) -> str:
    """Submit a Model API job and return its request id."""
    reply = await call(client, "POST", f"/v1/models/{model_id}", body={"prompt": "a fox", **inputs})
    return str(reply["request_id"])


async def infer(client: Client, version: str = "v1", deployment: str = DEP) -> str:
    """Start a serverless job and return its request id."""
    path = f"/prod/{version}/deployments/{deployment}/inference"
    reply = await call(client, "POST", path, body={"overrides": {"6": {"inputs": {"text": "x"}}}})
    return str(reply["request_id"])


def rpath(request_id: str, action: str) -> str:
    """A Model API request path."""
    return f"/v1/requests/{request_id}/{action}"


def spath(request_id: str, action: str, version: str = "v1", deployment: str = DEP) -> str:
    """A serverless request path."""
    return f"/prod/{version}/deployments/{deployment}/requests/{request_id}/{action}"


def assert_error(body: Any, code: int) -> None:
    """RunComfy's error shape with the given code."""
    assert set(body) == {"error_code", "error_message", "detail"}
    assert body["error_code"] == code
    assert isinstance(body["error_message"], str)


# -- Model API lifecycle -----------------------------------------------------------------------


async def test_model_job_moves_from_queue_to_progress_to_completed_in_real_time(
    start: StartSim,
) -> None:
    sim = await start(queue_seconds=0.15, run_seconds=0.3)
    rid = await submit(sim)
    assert UUID4.match(rid)

    first = await call(sim, "GET", rpath(rid, "status"))
    assert first["status"] == "in_queue"
    assert isinstance(first["queue_position"], int)
    await asyncio.sleep(0.25)
    running = await call(sim, "GET", rpath(rid, "status"))
    assert running["status"] == "in_progress"
    assert "queue_position" not in running
    await asyncio.sleep(0.3)
    done = await call(sim, "GET", rpath(rid, "status"))
    assert done["status"] == "completed"

    result = await call(sim, "GET", rpath(rid, "result"))
    assert result["status"] == "succeeded"
    assert result["request_id"] == rid
    assert TIMESTAMP.match(result["created_at"])
    assert TIMESTAMP.match(result["finished_at"])
    assert result["created_at"].endswith("+00:00")
    assert result["output"]["image"].startswith("https://playgrounds-storage-public.runcomfy.net/")


async def test_status_shows_request_id_and_urls_back_at_the_simulator(sim: Client) -> None:
    origin = str(sim.make_url("/")).rstrip("/")
    reply = await call(sim, "POST", f"/v1/models/{NANO}", body={"prompt": "x"})
    assert set(reply) == {"request_id", "status_url", "result_url", "cancel_url"}
    rid = reply["request_id"]
    assert reply["status_url"] == f"{origin}/v1/requests/{rid}/status"
    assert reply["result_url"] == f"{origin}/v1/requests/{rid}/result"
    assert reply["cancel_url"] == f"{origin}/v1/requests/{rid}/cancel"
    status = await call(sim, "GET", rpath(rid, "status"))
    assert set(status) == {"request_id", "status", "queue_position", "status_url", "result_url"}
    assert status["result_url"] == reply["result_url"]


async def test_result_of_an_unfinished_job_is_its_current_state(sim: Client) -> None:
    rid = await submit(sim)
    queued = await call(sim, "GET", rpath(rid, "result"))
    assert set(queued) == {"request_id", "status", "created_at"}
    assert queued["status"] == "in_queue"
    await advance(sim, QUEUE)
    running = await call(sim, "GET", rpath(rid, "result?include_cost=true"))
    assert set(running) == {"request_id", "status", "created_at"}
    assert running["status"] == "in_progress"


async def test_queue_position_counts_down_to_one(sim: Client) -> None:
    rid = await submit(sim)
    positions = []
    for _ in range(4):
        positions.append((await call(sim, "GET", rpath(rid, "status")))["queue_position"])
        await advance(sim, QUEUE / 4)
    assert positions == sorted(positions, reverse=True)
    assert positions[0] > positions[-1] == 1


async def test_a_job_submitted_behind_another_waits_further_back(sim: Client) -> None:
    first = await submit(sim)
    second = await submit(sim)
    one = (await call(sim, "GET", rpath(first, "status")))["queue_position"]
    two = (await call(sim, "GET", rpath(second, "status")))["queue_position"]
    assert two == one + 1


async def test_failed_job_is_completed_on_status_and_failed_on_result(sim: Client) -> None:
    await call(sim, "POST", "/_sim/config", body={"next_outcomes": ["failed"]})
    failing, fine = await submit(sim), await submit(sim)
    await advance(sim, QUEUE + RUN)
    assert (await call(sim, "GET", rpath(failing, "status")))["status"] == "completed"
    result = await call(sim, "GET", rpath(failing, "result"))
    assert result["status"] == "failed"
    assert isinstance(result["error"], dict)
    assert "output" not in result
    assert "error_code" not in result
    assert TIMESTAMP.match(result["finished_at"])
    assert (await call(sim, "GET", rpath(fine, "result")))["status"] == "succeeded"


async def test_video_and_multi_image_models_answer_with_their_output_keys(sim: Client) -> None:
    video = await submit(sim, SEEDANCE, image=IMAGE_URL)
    images = await submit(sim, GPT_IMAGE, num_images=3, output_format="webp")
    audio = await call(
        sim, "POST", "/v1/models/acestep-ai/ace-step-1.5/text-to-audio", body={"tags": "lofi"}
    )
    await advance(sim, QUEUE + RUN)
    video_out = (await call(sim, "GET", rpath(video, "result")))["output"]
    assert set(video_out) == {"video"}
    assert video_out["video"].endswith(".mp4")
    image_out = (await call(sim, "GET", rpath(images, "result")))["output"]
    assert set(image_out) == {"images"}
    assert len(image_out["images"]) == 3
    assert all(url.endswith(".webp") for url in image_out["images"])
    audio_out = (await call(sim, "GET", rpath(audio["request_id"], "result")))["output"]
    assert set(audio_out) == {"audio"}
    assert audio_out["audio"].endswith(".mp3")


# -- cost and balance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "inputs", "cost"),
    [
        (NANO, {}, 0.15),
        (GPT_IMAGE, {"num_images": 3}, 0.126),
        (SEEDANCE, {"image": IMAGE_URL}, 2.85),
        (SEEDANCE, {"image": IMAGE_URL, "duration": 10}, 5.7),
    ],
)
async def test_include_cost_reports_price_times_outputs_or_seconds(
    sim: Client, model_id: str, inputs: dict[str, Any], cost: float
) -> None:
    rid = await submit(sim, model_id, **inputs)
    await advance(sim, QUEUE + RUN)
    result = await call(sim, "GET", rpath(rid, "result?include_cost=true"))
    assert result["cost"] == pytest.approx(cost)
    assert isinstance(result["cost"], float)
    assert "cost" not in await call(sim, "GET", rpath(rid, "result"))


async def test_failed_and_cancelled_jobs_cost_nothing(sim: Client) -> None:
    await call(sim, "POST", "/_sim/config", body={"next_outcomes": ["failed"]})
    failed, cancelled = await submit(sim), await submit(sim)
    await call(sim, "POST", rpath(cancelled, "cancel"), expect=202)
    await advance(sim, QUEUE + RUN)
    for rid in (failed, cancelled):
        assert (await call(sim, "GET", rpath(rid, "result?include_cost=true")))["cost"] == 0
    balance = await call(sim, "GET", "/prod/v2/balance")
    assert balance["balance_usd"] == 100.0


async def test_balance_drops_by_the_cost_of_finished_jobs_only(sim: Client) -> None:
    await submit(sim, GPT_IMAGE, num_images=2)
    assert (await call(sim, "GET", "/prod/v2/balance"))["balance_usd"] == 100.0
    await advance(sim, QUEUE + RUN)
    balance = await call(sim, "GET", "/prod/v2/balance")
    assert balance == {
        "balance_usd": pytest.approx(99.916),
        "balance_microdollars": 99_916_000,
        "currency": "USD",
    }


async def test_submit_without_balance_is_refused_with_402(start: StartSim) -> None:
    sim = await start(balance_usd=0.0)
    reply = await call(sim, "POST", f"/v1/models/{NANO}", body={"prompt": "x"}, expect=402)
    assert_error(reply, 400002)
    path = f"/prod/v2/deployments/{DEP}/inference"
    assert_error(await call(sim, "POST", path, body={}, expect=402), 400002)
    await call(sim, "POST", "/_sim/config", body={"balance_usd": 1.0})
    await submit(sim)


async def test_balance_running_out_refuses_the_next_submit(start: StartSim) -> None:
    sim = await start(balance_usd=0.2)
    await submit(sim)
    await submit(sim)  # both accepted: nothing has finished yet
    await advance(sim, QUEUE + RUN)
    assert (await call(sim, "GET", "/prod/v2/balance"))["balance_usd"] == pytest.approx(-0.1)
    await call(sim, "POST", f"/v1/models/{NANO}", body={"prompt": "x"}, expect=402)


# -- cancel ------------------------------------------------------------------------------------


async def test_cancelling_a_queued_model_job_cancels_it(sim: Client) -> None:
    rid = await submit(sim)
    reply = await call(sim, "POST", rpath(rid, "cancel"), expect=202)
    assert reply == {"request_id": rid, "status": "cancelled", "outcome": "cancelled"}
    assert (await call(sim, "GET", rpath(rid, "status")))["status"] == "cancelled"
    await advance(sim, QUEUE + RUN)
    result = await call(sim, "GET", rpath(rid, "result"))
    assert result["status"] == "cancelled"
    assert TIMESTAMP.match(result["finished_at"])
    assert "output" not in result


async def test_a_running_model_job_is_not_cancellable_and_still_finishes(sim: Client) -> None:
    rid = await submit(sim)
    await advance(sim, QUEUE + 1)
    reply = await call(sim, "POST", rpath(rid, "cancel"), expect=202)
    assert reply == {"request_id": rid, "status": "in_progress", "outcome": "not_cancellable"}
    await advance(sim, RUN)
    assert (await call(sim, "GET", rpath(rid, "result")))["status"] == "succeeded"


async def test_a_finished_model_job_is_not_cancellable(sim: Client) -> None:
    rid = await submit(sim)
    await advance(sim, QUEUE + RUN)
    reply = await call(sim, "POST", rpath(rid, "cancel"), expect=202)
    assert reply["outcome"] == "not_cancellable"
    assert reply["status"] == "completed"


# -- input validation and lookups -------------------------------------------------------------


async def test_input_that_breaks_the_schema_gets_422_with_one_detail_per_field(
    sim: Client,
) -> None:
    body = {"aspect_ratio": "7:1", "resolution": "8K", "output_format": "png"}
    reply = await call(sim, "POST", f"/v1/models/{NANO}", body=body, expect=422)
    assert_error(reply, 422001)
    by_loc = {tuple(d["loc"]): d for d in reply["detail"]}
    assert set(by_loc) == {("body", "prompt"), ("body", "aspect_ratio"), ("body", "resolution")}
    assert by_loc["body", "prompt"]["type"] == "missing"
    assert by_loc["body", "aspect_ratio"]["type"] == "enum"
    assert all(isinstance(d["msg"], str) for d in reply["detail"])
    assert (await call(sim, "GET", "/_sim/calls"))["counts"]["model.submit"] == 1


async def test_runcomfy_schema_dialect_float_types_null_defaults_and_uri_lists(
    sim: Client,
) -> None:
    await submit(sim, FLUX_FLASH, guidance_scale=2.5, seed=None)
    await submit(sim, FLUX_FLASH, guidance_scale=3)
    bad = await call(
        sim,
        "POST",
        f"/v1/models/{FLUX_FLASH}",
        body={"prompt": "x", "guidance_scale": "3"},
        expect=422,
    )
    assert bad["detail"][0]["loc"] == ["body", "guidance_scale"]
    edit = "google/nano-banana-2-lite/edit"
    await submit(sim, edit, image_urls=[IMAGE_URL, "data:image/png;base64,iVBORw0KGgo="])
    empty = await call(
        sim, "POST", f"/v1/models/{edit}", body={"prompt": "x", "image_urls": []}, expect=422
    )
    assert empty["detail"][0]["type"] == "minItems"
    not_str = await call(
        sim, "POST", f"/v1/models/{edit}", body={"prompt": "x", "image_urls": [1]}, expect=422
    )
    assert not_str["detail"][0]["loc"] == ["body", "image_urls", 0]


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"prompt"', b"{not json", b""])
async def test_a_body_that_is_not_a_json_object_gets_400(sim: Client, raw: bytes) -> None:
    assert_error(await call(sim, "POST", f"/v1/models/{NANO}", raw=raw, expect=400), 400001)
    path = f"/prod/v1/deployments/{DEP}/inference"
    assert_error(await call(sim, "POST", path, raw=raw, expect=400), 400001)


async def test_large_inline_data_uri_inputs_are_accepted(sim: Client) -> None:
    data_uri = "data:image/png;base64," + "A" * (3 * 1024 * 1024)
    body = io.BytesIO(orjson.dumps({"prompt": "x", "image_url": data_uri}))
    async with sim.post("/v1/models/blackforestlabs/flux-1-kontext/pro/edit", data=body) as resp:
        assert resp.status == 200, await resp.text()


async def test_unknown_model_gets_404(sim: Client) -> None:
    body = {"prompt": "x"}
    assert_error(await call(sim, "POST", "/v1/models/acme/nope", body=body, expect=404), 404001)
    assert_error(await call(sim, "GET", "/v1/models/acme/nope", expect=404), 404001)


@pytest.mark.parametrize(
    ("method", "action"), [("GET", "status"), ("GET", "result"), ("POST", "cancel")]
)
async def test_unknown_request_id_gets_404(sim: Client, method: str, action: str) -> None:
    missing = "0b7e4a52-7f55-4c57-9d21-5b0e3c1a9f00"
    assert_error(await call(sim, method, rpath(missing, action), expect=404), 404001)
    assert_error(await call(sim, method, spath(missing, action), expect=404), 404001)


async def test_a_serverless_request_id_is_unknown_to_the_model_api(sim: Client) -> None:
    rid = await infer(sim)
    await call(sim, "GET", rpath(rid, "status"), expect=404)
    model_rid = await submit(sim)
    await call(sim, "GET", spath(model_rid, "status"), expect=404)


async def test_unknown_routes_get_json_404_and_wrong_methods_json_405(sim: Client) -> None:
    assert_error(await call(sim, "GET", "/v2/whatever", expect=404), 404001)
    assert_error(await call(sim, "GET", "/prod/v3/balance", expect=404), 404001)
    assert_error(await call(sim, "GET", "/_sim/nothing", expect=404), 404001)
    async with sim.delete("/v1/models") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET"
        assert_error(await resp.json(), 405001)


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("POST", f"/v1/models/{NANO}", 400004),
        ("GET", "/v1/models", 400004),
        ("GET", f"/v1/models/{NANO}", 400004),
        ("GET", "/v1/requests/x/status", 400004),
        ("POST", f"/prod/v1/deployments/{DEP}/inference", 401001),
        ("GET", f"/prod/v2/deployments/{DEP}/requests/x/result", 401001),
        ("GET", "/prod/v2/deployments", 401001),
        ("GET", "/prod/v2/balance", 401001),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
async def test_a_missing_or_wrong_token_gets_401_with_the_apis_own_code(
    sim: Client, method: str, path: str, code: int, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession() as bare,
        bare.request(method, sim.make_url(path), headers=headers, data=b"{}") as resp,
    ):
        assert resp.status == 401
        assert_error(await resp.json(), code)


async def test_the_token_is_configurable_and_the_control_api_needs_none(start: StartSim) -> None:
    sim = await start(token="other")
    await call(sim, "GET", "/v1/models", expect=401)
    await call(sim, "GET", "/v1/models", headers={"Authorization": "Bearer other"})
    async with aiohttp.ClientSession() as bare, bare.get(sim.make_url("/_sim/calls")) as resp:
        assert resp.status == 200


# -- catalog -----------------------------------------------------------------------------------


async def test_catalog_lists_models_without_schemas_unless_asked(sim: Client) -> None:
    listing = await call(sim, "GET", "/v1/models")
    assert set(listing) == {"models", "total", "limit", "offset"}
    assert listing["total"] == len(listing["models"]) >= 8
    assert all("input_schema" not in m for m in listing["models"])
    keys = {
        "model_id", "display_name", "description", "categories", "kind",
        "base_price_usd", "price_unit", "pricing_note", "model_url",
    }  # fmt: skip
    for entry in listing["models"]:
        assert set(entry) == keys
        assert isinstance(entry["base_price_usd"], float | int)
        assert entry["price_unit"] in {"output", "second"}
        assert entry["kind"] == "model"
    with_schema = await call(sim, "GET", "/v1/models?include_schema=true")
    assert all(m["input_schema"]["type"] == "object" for m in with_schema["models"])


async def test_catalog_pages_with_limit_and_offset(sim: Client) -> None:
    everything = (await call(sim, "GET", "/v1/models"))["models"]
    page = await call(sim, "GET", "/v1/models?limit=3&offset=2")
    assert page["limit"] == 3
    assert page["offset"] == 2
    assert page["total"] == len(everything)
    assert [m["model_id"] for m in page["models"]] == [m["model_id"] for m in everything[2:5]]
    beyond = await call(sim, "GET", "/v1/models?offset=1000")
    assert beyond["models"] == []
    assert beyond["total"] == len(everything)
    for bad in ("limit=0", "limit=501", "limit=ten", "offset=-1"):
        assert_error(await call(sim, "GET", f"/v1/models?{bad}", expect=422), 422001)
    assert (await call(sim, "GET", "/v1/models?limit=500"))["limit"] == 500


async def test_catalog_filters_by_search_category_and_kind(sim: Client) -> None:
    videos = await call(sim, "GET", "/v1/models?category=image-to-video")
    assert {m["model_id"] for m in videos["models"]} == {SEEDANCE, "wan-ai/wan-3.0/image-to-video"}
    banana = await call(sim, "GET", "/v1/models?search=NANO%20BANANA")
    assert {m["model_id"] for m in banana["models"]} == {NANO, "google/nano-banana-2-lite/edit"}
    both = await call(sim, "GET", "/v1/models?search=banana&category=text-to-image")
    assert [m["model_id"] for m in both["models"]] == [NANO]
    assert (await call(sim, "GET", "/v1/models?kind=model"))["total"] >= 8
    assert (await call(sim, "GET", "/v1/models?kind=workflow"))["total"] == 0


async def test_categories_lists_every_category_and_is_no_model_id(sim: Client) -> None:
    reply = await call(sim, "GET", "/v1/models/categories")
    assert set(reply) == {"categories"}
    assert {"text-to-image", "image-to-image", "image-to-video", "text-to-audio"} <= set(
        reply["categories"]
    )
    await call(sim, "POST", "/v1/models/categories", body={"prompt": "x"}, expect=404)


async def test_one_model_is_a_bare_entry_with_its_input_schema(sim: Client) -> None:
    entry = await call(sim, "GET", f"/v1/models/{SEEDANCE}")
    assert entry["model_id"] == SEEDANCE
    assert entry["price_unit"] == "second"
    assert entry["base_price_usd"] == 0.57
    duration = entry["input_schema"]["properties"]["duration"]
    assert duration["default"] == 5
    assert "simulator" not in entry
    gpt = await call(sim, "GET", f"/v1/models/{GPT_IMAGE}")
    assert "num_images" in gpt["input_schema"]["properties"]


# -- serverless --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_serverless_job_lifecycle_with_exact_key_sets(sim: Client, version: str) -> None:
    origin = str(sim.make_url("/")).rstrip("/")
    path = f"/prod/{version}/deployments/{DEP}/inference"
    reply = await call(sim, "POST", path, body={"overrides": {"31": {"inputs": {"seed": 1}}}})
    assert set(reply) == SERVERLESS_SUBMIT_KEYS
    rid = reply["request_id"]
    assert reply["status_url"] == f"{origin}{spath(rid, 'status', version)}"
    assert reply["cancel_url"] == f"{origin}{spath(rid, 'cancel', version)}"

    queued = await call(sim, "GET", spath(rid, "status", version))
    assert set(queued) == {"request_id", "status", "queue_position", "status_url", "result_url"}
    assert queued["status"] == "in_queue"
    pending = await call(sim, "GET", spath(rid, "result", version))
    assert set(pending) == {"request_id", "status", "created_at"}
    assert TIMESTAMP.match(pending["created_at"])

    await advance(sim, QUEUE)
    running = await call(sim, "GET", spath(rid, "status", version))
    assert set(running) == {"request_id", "status", "status_url", "result_url"}
    assert running["status"] == "in_progress"

    await advance(sim, RUN)
    assert (await call(sim, "GET", spath(rid, "status", version)))["status"] == "completed"
    result = await call(sim, "GET", spath(rid, "result", version))
    assert result["status"] == "succeeded"
    assert TIMESTAMP.match(result["finished_at"])
    [image] = result["outputs"]["9"]["images"]
    assert set(image) == {"filename", "subfolder", "type", "url"}
    assert image["type"] == "output"
    assert image["url"].startswith("https://serverless-api-storage.runcomfy.net/")


async def test_serverless_jobs_are_reachable_through_either_version(sim: Client) -> None:
    rid = await infer(sim, "v2")
    assert (await call(sim, "GET", spath(rid, "status", "v1")))["request_id"] == rid


async def test_serverless_failure_reports_an_error_list(sim: Client) -> None:
    await call(sim, "POST", "/_sim/config", body={"next_outcomes": ["failed"]})
    rid = await infer(sim)
    await advance(sim, QUEUE + RUN)
    assert (await call(sim, "GET", spath(rid, "status")))["status"] == "completed"
    result = await call(sim, "GET", spath(rid, "result"))
    assert result["status"] == "failed"
    [error] = result["error"]
    assert set(error) == {"errorCode", "error", "debugInfo"}
    assert isinstance(error["errorCode"], int)
    assert "outputs" not in result


async def test_serverless_cancel_while_queued_requests_cancellation(sim: Client) -> None:
    rid = await infer(sim)
    reply = await call(sim, "POST", spath(rid, "cancel"), expect=202)
    assert reply == {"request_id": rid, "status": "cancellation_requested"}
    assert (await call(sim, "GET", spath(rid, "status")))["status"] == "cancelled"
    result = await call(sim, "GET", spath(rid, "result"))
    assert result["status"] == "cancelled"
    assert TIMESTAMP.match(result["finished_at"])


async def test_serverless_cancel_once_running_is_not_cancellable(sim: Client) -> None:
    rid = await infer(sim, "v2")
    await advance(sim, QUEUE + 1)
    reply = await call(sim, "POST", spath(rid, "cancel", "v2"), expect=202)
    assert reply == {"request_id": rid, "status": "not_cancellable"}


async def test_a_request_id_under_another_deployment_is_404(sim: Client) -> None:
    rid = await infer(sim)
    await call(sim, "GET", spath(rid, "status", deployment=OTHER_DEP), expect=404)
    await call(sim, "POST", spath(rid, "cancel", deployment=OTHER_DEP), expect=404)


async def test_inference_accepts_any_subset_of_the_three_sections(sim: Client) -> None:
    path = f"/prod/v1/deployments/{DEP}/inference"
    await call(sim, "POST", path, body={})
    await call(sim, "POST", path, body={"workflow_api_json": {"9": {}}, "extra_data": {}})
    bad = await call(sim, "POST", path, body={"overrides": {"6": {"text": "x"}}}, expect=422)
    assert_error(bad, 422001)
    assert bad["detail"] == [
        {"loc": ["body", "overrides", "6", "inputs"], "msg": "Field required", "type": "missing"}
    ]
    assert_error(await call(sim, "POST", path, body={"extra_data": []}, expect=422), 422001)
    unknown = "/prod/v1/deployments/00000000-0000-4000-8000-000000000000/inference"
    assert_error(await call(sim, "POST", unknown, body={}, expect=404), 404001)


async def test_webhook_query_parameters_are_accepted_and_logged(sim: Client) -> None:
    path = f"/prod/v1/deployments/{DEP}/inference?webhook=https%3A%2F%2Fhooks.example%2Fx"
    await call(sim, "POST", f"{path}&webhook_intermediate_status=false", body={})
    [logged] = (await call(sim, "GET", "/_sim/calls"))["calls"]
    assert logged["query"] == {
        "webhook": "https://hooks.example/x",
        "webhook_intermediate_status": "false",
    }


async def test_serverless_jobs_are_billed_per_gpu_second_even_when_they_fail(
    sim: Client,
) -> None:
    await call(sim, "POST", "/_sim/config", body={"next_outcomes": ["failed"]})
    await infer(sim)  # AMPERE_48 for RUN seconds
    await advance(sim, QUEUE + RUN)
    balance = await call(sim, "GET", "/prod/v2/balance")
    assert balance["balance_usd"] == pytest.approx(100 - 0.00054 * RUN)


async def test_ledger_lists_what_each_job_was_charged_and_reset_clears_it(sim: Client) -> None:
    await call(sim, "POST", "/_sim/config", body={"next_outcomes": ["succeeded", "failed"]})
    images = await submit(sim, GPT_IMAGE, num_images=2)
    failed = await submit(sim)
    cancelled = await submit(sim)
    await call(sim, "POST", rpath(cancelled, "cancel"), expect=202)
    serverless = await infer(sim)  # AMPERE_48 for RUN seconds
    queued = await call(sim, "GET", "/_sim/ledger")
    assert queued["charged_micro"] == 0
    assert [j["state"] for j in queued["jobs"]] == ["in_queue", "in_queue", "cancelled", "in_queue"]

    await advance(sim, QUEUE + RUN)
    ledger = await call(sim, "GET", "/_sim/ledger")
    digests = [job.pop("inputs_sha256") for job in ledger["jobs"]]
    assert digests == [
        inputs_digest({"prompt": "a fox", "num_images": 2}),
        inputs_digest({"prompt": "a fox"}),
        inputs_digest({"prompt": "a fox"}),
        inputs_digest({"overrides": {"6": {"inputs": {"text": "x"}}}}),
    ]
    assert ledger == {
        "charged_micro": 84_000 + 5_400,
        "jobs": [
            {"request_id": images, "api": "model", "target": GPT_IMAGE, "state": "succeeded",
             "billed_micro": 84_000},
            {"request_id": failed, "api": "model", "target": NANO, "state": "failed",
             "billed_micro": 0},
            {"request_id": cancelled, "api": "model", "target": NANO, "state": "cancelled",
             "billed_micro": 0},
            {"request_id": serverless, "api": "serverless", "target": DEP, "state": "succeeded",
             "billed_micro": 5_400},
        ],
    }  # fmt: skip
    balance = await call(sim, "GET", "/prod/v2/balance")
    assert balance["balance_microdollars"] == 100_000_000 - ledger["charged_micro"]

    await call(sim, "POST", "/_sim/reset")
    assert await call(sim, "GET", "/_sim/ledger") == {"charged_micro": 0, "jobs": []}


# -- deployments -------------------------------------------------------------------------------


async def test_deployments_list_is_a_bare_array_of_the_seeded_ones(sim: Client) -> None:
    listing = await call(sim, "GET", "/prod/v2/deployments")
    assert isinstance(listing, list)
    assert {d["id"] for d in listing} == set(SEEDED_DEPLOYMENT_IDS)
    keys = {
        "id", "name", "workflow_id", "workflow_version", "hardware", "min_instances",
        "max_instances", "queue_size", "keep_warm_duration_in_seconds", "status", "is_enabled",
        "created_at", "updated_at",
    }  # fmt: skip
    assert all(set(d) == keys for d in listing)
    picked = await call(sim, "GET", f"/prod/v2/deployments?ids={DEP}&ids={OTHER_DEP}")
    assert {d["id"] for d in picked} == {DEP, OTHER_DEP}
    full = await call(
        sim, "GET", f"/prod/v2/deployments?ids={DEP}&includes=payload&includes=readme"
    )
    assert set(full[0]["payload"]) == {"workflow_api_json", "overrides", "object_info_url"}
    assert isinstance(full[0]["readme"], str)


async def test_deployments_can_be_created_read_updated_and_deleted(sim: Client) -> None:
    created = await call(
        sim,
        "POST",
        "/prod/v2/deployments",
        body={
            "name": "my-flow",
            "workflow_id": "wf-1",
            "workflow_version": "v2",
            "hardware": ["AMPERE_24"],
            "max_instances": 2,
        },
    )
    dep = created["id"]
    assert UUID4.match(dep)
    assert created["max_instances"] == 2
    assert created["is_enabled"] is True
    fetched = await call(sim, "GET", f"/prod/v2/deployments/{dep}?includes=payload")
    assert fetched["name"] == "my-flow"
    assert "payload" in fetched

    updated = await call(
        sim, "PATCH", f"/prod/v2/deployments/{dep}", body={"name": "renamed", "is_enabled": False}
    )
    assert updated["name"] == "renamed"
    assert updated["is_enabled"] is False
    assert updated["workflow_version"] == "v2"
    await infer(sim, "v2", deployment=dep)

    deleted = await call(sim, "DELETE", f"/prod/v2/deployments/{dep}")
    assert deleted == {"id": dep, "deleted": True}
    await call(sim, "GET", f"/prod/v2/deployments/{dep}", expect=404)
    await call(sim, "POST", f"/prod/v2/deployments/{dep}/inference", body={}, expect=404)


async def test_updating_a_deployment_without_a_name_is_refused(sim: Client) -> None:
    reply = await call(
        sim, "PATCH", f"/prod/v2/deployments/{DEP}", body={"max_instances": 3}, expect=422
    )
    assert_error(reply, 422001)
    assert reply["error_message"] == "Deployment name is required"


async def test_creating_a_deployment_with_bad_fields_is_refused(sim: Client) -> None:
    body: dict[str, Any] = {"name": "x", "workflow_id": "w", "workflow_version": "v1"}
    body["hardware"] = ["TPU"]
    reply = await call(sim, "POST", "/prod/v2/deployments", body=body, expect=422)
    assert reply["detail"][0]["loc"] == ["body", "hardware", 0]
    body |= {"hardware": ["AMPERE_48"], "min_instances": 3, "max_instances": 1}
    await call(sim, "POST", "/prod/v2/deployments", body=body, expect=422)


async def test_requests_of_a_deleted_deployment_are_404(sim: Client) -> None:
    rid = await infer(sim)
    await call(sim, "DELETE", f"/prod/v2/deployments/{DEP}")
    await call(sim, "GET", spath(rid, "result"), expect=404)


# -- faults ------------------------------------------------------------------------------------


async def arm(client: Client, rules: Any) -> None:
    """Arm fault rules."""
    await call(client, "POST", "/_sim/faults", body=rules)


async def test_status_fault_answers_in_runcomfys_error_shape_then_recovers(sim: Client) -> None:
    await arm(sim, {"route": "model.submit", "action": "status", "status": 503, "times": 2})
    for _ in range(2):
        body = {"prompt": "x"}
        assert_error(await call(sim, "POST", f"/v1/models/{NANO}", body=body, expect=503), 503001)
    await submit(sim)
    assert (await call(sim, "GET", "/_sim/calls"))["counts"]["model.submit"] == 3
    assert (await call(sim, "GET", "/_sim/faults"))["faults"] == []


async def test_status_fault_with_a_body_and_headers_answers_exactly_that(sim: Client) -> None:
    await arm(
        sim,
        [
            {
                "route": "catalog.list",
                "action": "status",
                "status": 429,
                "body": {"message": "slow down"},
                "headers": {"Retry-After": "7"},
            },
            {"route": "balance", "action": "status", "status": 200, "body": "plain text"},
        ],
    )
    async with sim.get("/v1/models") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7"
        assert await resp.json() == {"message": "slow down"}
    async with sim.get("/prod/v2/balance") as resp:
        assert resp.status == 200
        assert await resp.text() == "plain text"


async def test_faults_with_times_null_fire_forever_and_can_be_cleared(sim: Client) -> None:
    await arm(sim, {"route": "model.status", "action": "status", "status": 500, "times": None})
    rid = await submit(sim)
    for _ in range(3):
        assert_error(await call(sim, "GET", rpath(rid, "status"), expect=500), 500001)
    await call(sim, "DELETE", "/_sim/faults")
    await call(sim, "GET", rpath(rid, "status"))


async def test_wildcard_faults_hit_every_matching_route(sim: Client) -> None:
    await arm(sim, {"route": "serverless.*", "action": "status", "status": 502, "times": None})
    await call(sim, "POST", f"/prod/v1/deployments/{DEP}/inference", body={}, expect=502)
    await call(sim, "GET", spath("x", "status"), expect=502)
    await submit(sim)
    await call(sim, "DELETE", "/_sim/faults")
    await arm(sim, {"route": "*", "action": "status", "status": 500})
    await call(sim, "GET", "/prod/v2/balance", expect=500)
    await call(sim, "GET", "/prod/v2/balance")


async def test_delay_fault_slows_the_answer_but_keeps_it(sim: Client) -> None:
    await arm(sim, {"route": "catalog.categories", "action": "delay", "delay": 0.3})
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await call(sim, "GET", "/v1/models/categories")
    assert loop.time() - started >= 0.3
    assert "categories" in reply
    started = loop.time()
    await call(sim, "GET", "/v1/models/categories")
    assert loop.time() - started < 0.3


async def test_delay_fault_with_a_status_answers_late_with_that_status(sim: Client) -> None:
    await arm(sim, {"route": "model.result", "action": "delay", "delay": 0.1, "status": 504})
    assert_error(await call(sim, "GET", rpath("x", "result"), expect=504), 504001)


async def test_delay_fault_lets_a_client_time_out(sim: Client) -> None:
    await arm(sim, {"route": "model.submit", "action": "delay", "delay": 1.0})
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        await sim.post(f"/v1/models/{NANO}", json={"prompt": "x"}, timeout=timeout)


async def test_drop_fault_disconnects_without_an_answer(sim: Client) -> None:
    await arm(sim, {"route": "model.submit", "action": "drop"})
    with pytest.raises(aiohttp.ClientConnectionError):
        await sim.post(f"/v1/models/{NANO}", json={"prompt": "x"})
    await submit(sim)
    assert (await call(sim, "GET", "/_sim/calls"))["counts"]["model.submit"] == 2
    assert len(sim.app[SIM_STATE].jobs) == 1


async def test_invalid_json_fault_answers_200_with_a_body_that_does_not_parse(
    sim: Client,
) -> None:
    await arm(sim, {"route": "serverless.inference", "action": "invalid_json"})
    async with sim.post(f"/prod/v1/deployments/{DEP}/inference", json={}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(await resp.read())
    assert not sim.app[SIM_STATE].jobs


async def test_faults_fire_before_auth_and_are_still_counted(sim: Client) -> None:
    await arm(sim, {"route": "balance", "action": "status", "status": 500})
    headers = {"Authorization": "Bearer wrong"}
    await call(sim, "GET", "/prod/v2/balance", headers=headers, expect=500)
    await call(sim, "GET", "/prod/v2/balance", headers=headers, expect=401)
    assert (await call(sim, "GET", "/_sim/calls"))["counts"]["balance"] == 2


async def test_malformed_fault_rules_are_refused(sim: Client) -> None:
    for rule in (
        {"route": "balance", "action": "explode"},
        {"action": "drop"},
        [{"route": "balance", "action": "status", "status": 99}],
        {"route": "balance", "action": "status", "times": 0},
    ):
        assert_error(await call(sim, "POST", "/_sim/faults", body=rule, expect=422), 422001)
    assert (await call(sim, "GET", "/_sim/faults"))["faults"] == []


async def test_fault_route_names_are_listed(sim: Client) -> None:
    routes = set((await call(sim, "GET", "/_sim/faults"))["routes"])
    assert routes == {
        "model.submit", "model.status", "model.result", "model.cancel",
        "catalog.list", "catalog.categories", "catalog.get",
        "serverless.inference", "serverless.status", "serverless.result", "serverless.cancel",
        "deployments.list", "deployments.create", "deployments.get", "deployments.update",
        "deployments.delete", "balance",
    }  # fmt: skip


# -- call log, control API, state --------------------------------------------------------------


async def test_call_log_counts_each_route_and_never_records_the_token(sim: Client) -> None:
    rid = await submit(sim)
    await call(sim, "GET", rpath(rid, "status"))
    await call(sim, "GET", rpath(rid, "status"))
    await call(sim, "GET", rpath(rid, "result?include_cost=true"))
    await call(sim, "POST", rpath(rid, "cancel"), expect=202)
    await call(sim, "GET", "/v1/models")
    await call(sim, "GET", f"/v1/models/{NANO}")
    await infer(sim, "v2")
    await call(sim, "GET", "/nowhere", expect=404)
    log = await call(sim, "GET", "/_sim/calls")
    assert log["counts"] == {
        "model.submit": 1,
        "model.status": 2,
        "model.result": 1,
        "model.cancel": 1,
        "catalog.list": 1,
        "catalog.get": 1,
        "serverless.inference": 1,
        "unmatched": 1,
    }
    assert [c["route"] for c in log["calls"]][:2] == ["model.submit", "model.status"]
    first = log["calls"][0]
    assert set(first) == {"method", "path", "route", "query", "at"}
    assert first["method"] == "POST"
    assert first["path"] == f"/v1/models/{NANO}"
    assert TIMESTAMP.match(first["at"])
    assert log["calls"][3]["query"] == {"include_cost": "true"}
    assert TOKEN not in orjson.dumps(log).decode()


async def test_counters_are_readable_in_process(sim: Client) -> None:
    await submit(sim)
    await call(sim, "GET", "/_sim/calls")
    state = sim.app[SIM_STATE]
    assert state.calls.count("model.submit") == 1
    assert state.calls.count("model.status") == 0
    assert len(state.jobs) == 1


async def test_reset_restores_the_starting_point(start: StartSim) -> None:
    sim = await start(balance_usd=5.0)
    rid = await submit(sim)
    await call(sim, "POST", f"/prod/v2/deployments/{DEP}/inference", body={})
    await call(sim, "DELETE", f"/prod/v2/deployments/{OTHER_DEP}")
    await call(
        sim,
        "POST",
        "/_sim/config",
        body={"queue_seconds": 0, "balance_usd": 1, "next_outcomes": ["failed"]},
    )
    await arm(sim, {"route": "*", "action": "drop", "times": None})
    await advance(sim, 1000)

    reply = await call(sim, "POST", "/_sim/reset")
    assert reply["config"] == {
        "queue_seconds": QUEUE,
        "run_seconds": RUN,
        "balance_usd": 5.0,
        "next_outcomes": [],
    }
    assert (await call(sim, "GET", "/_sim/calls")) == {"counts": {}, "calls": []}
    await call(sim, "GET", rpath(rid, "status"), expect=404)
    assert len(await call(sim, "GET", "/prod/v2/deployments")) == 3
    fresh = await submit(sim)
    assert (await call(sim, "GET", rpath(fresh, "status")))["status"] == "in_queue"


async def test_config_updates_apply_to_new_jobs_and_reject_unknown_keys(sim: Client) -> None:
    before = await submit(sim)
    reply = await call(sim, "POST", "/_sim/config", body={"queue_seconds": 0, "run_seconds": 1})
    assert reply["queue_seconds"] == 0
    assert reply["run_seconds"] == 1
    after = await submit(sim)
    await advance(sim, 1)
    assert (await call(sim, "GET", rpath(after, "result")))["status"] == "succeeded"
    assert (await call(sim, "GET", rpath(before, "result")))["status"] == "in_queue"
    for bad in ({"token": "x"}, {"queue_seconds": -1}, {"next_outcomes": ["exploded"]}):
        assert_error(await call(sim, "POST", "/_sim/config", body=bad, expect=422), 422001)
    assert (await call(sim, "GET", "/_sim/config"))["run_seconds"] == 1


async def test_a_seed_makes_request_ids_reproducible(start: StartSim) -> None:
    first, second, unseeded = await start(seed=7), await start(seed=7), await start()
    ids = [await submit(first), await submit(first)]
    assert ids == [await submit(second), await submit(second)]
    assert all(UUID4.match(rid) for rid in ids)
    assert await submit(unseeded) not in ids


async def test_a_catalog_entry_can_override_durations(start: StartSim, tmp_path: Path) -> None:
    catalog = {
        "models": [
            {
                "model_id": "acme/quick/text-to-image",
                "display_name": "Quick",
                "description": "",
                "categories": ["text-to-image"],
                "kind": "model",
                "base_price_usd": 0.01,
                "price_unit": "output",
                "pricing_note": "",
                "model_url": "https://www.runcomfy.com/models/acme/quick",
                "input_schema": {"type": "object", "properties": {}},
                "simulator": {"queue_seconds": 0, "run_seconds": 0.5},
            }
        ]
    }
    path = tmp_path / "catalog.json"
    path.write_bytes(orjson.dumps(catalog))
    sim = await start(catalog_path=str(path))
    rid = await submit(sim, "acme/quick/text-to-image")
    assert (await call(sim, "GET", rpath(rid, "status")))["status"] == "in_progress"
    await advance(sim, 0.5)
    result = await call(sim, "GET", rpath(rid, "result"))
    assert result["output"] == {
        "image": f"https://playgrounds-storage-public.runcomfy.net/model-api/{rid}/output-0.png"
    }


async def test_run_simulator_serves_on_a_port_until_cancelled() -> None:
    port = unused_port()
    task = asyncio.create_task(run_simulator("127.0.0.1", port, SimulatorConfig(token="t")))
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/v1/models/categories") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail("simulator never started listening")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
