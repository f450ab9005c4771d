"""Model API through the gateway: what an unchanged RunComfy client sees."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.conftest import NANO, Gateway, Simulator, assert_error_shape, on_single_and_cluster

UUID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


async def wait_for(gw: Gateway, key: str, rid: str, wanted: str, leaf: str = "status") -> Any:
    for _ in range(200):
        status, body, _ = await gw.request("GET", f"/v1/requests/{rid}/{leaf}", key=key)
        assert status == 200, body
        if body["status"] == wanted:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{rid} never reached {wanted}")


async def test_submit_returns_a_gateway_id_and_urls_pointing_at_the_gateway(
    gateway: Gateway,
) -> None:
    key = await gateway.new_team("design")
    status, body, headers = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a red fox"}
    )
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) == {"request_id", "status_url", "result_url", "cancel_url"}
    rid = body["request_id"]
    assert UUID_RE.match(rid)
    assert body["status_url"] == f"{gateway.url}/v1/requests/{rid}/status"
    assert body["result_url"] == f"{gateway.url}/v1/requests/{rid}/result"
    assert body["cancel_url"] == f"{gateway.url}/v1/requests/{rid}/cancel"


@on_single_and_cluster
async def test_a_job_runs_from_queue_to_a_result_with_untouched_asset_urls(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    _, sub, _ = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "a red fox"}
    )
    rid = sub["request_id"]
    status, first, _ = await gateway.request("GET", f"/v1/requests/{rid}/status", key=key)
    assert status == 200
    assert first["request_id"] == rid
    assert first["status"] in ("in_queue", "in_progress")
    if first["status"] == "in_queue":
        assert isinstance(first["queue_position"], int)
    assert first["status_url"] == f"{gateway.url}/v1/requests/{rid}/status"
    await wait_for(gateway, key, rid, "completed")
    status, result, _ = await gateway.request("GET", f"/v1/requests/{rid}/result", key=key)
    assert status == 200
    assert result["request_id"] == rid
    assert result["status"] == "succeeded"
    urls = [v for v in result["output"].values() if isinstance(v, str)]
    urls += [u for v in result["output"].values() if isinstance(v, list) for u in v]
    assert urls and all(u.startswith("https://") and ".runcomfy.net/" in u for u in urls)
    assert "cost" not in result
    assert await simulator.count("model.submit") == 1


async def test_result_with_include_cost_reports_runcomfys_cost(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    _, sub, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    rid = sub["request_id"]
    await wait_for(gateway, key, rid, "completed")
    status, result, _ = await gateway.request(
        "GET", f"/v1/requests/{rid}/result?include_cost=true", key=key
    )
    assert status == 200
    assert isinstance(result["cost"], int | float) and result["cost"] > 0


async def test_result_of_an_unfinished_job_reports_its_current_state(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    _, sub, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    status, result, _ = await gateway.request(
        "GET", f"/v1/requests/{sub['request_id']}/result", key=key
    )
    assert status == 200
    assert result["status"] in ("in_queue", "in_progress")
    assert "output" not in result


@on_single_and_cluster
async def test_cancel_while_queued_cancels_and_once_running_is_not_cancellable(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=5.0, run_seconds=5.0)
    key = await gateway.new_team("design")
    _, sub, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    rid = sub["request_id"]
    status, body, _ = await gateway.request("POST", f"/v1/requests/{rid}/cancel", key=key)
    assert status == 202, body
    assert body["request_id"] == rid
    assert body["outcome"] == "cancelled"
    await wait_for(gateway, key, rid, "cancelled")

    await simulator.configure(queue_seconds=0.0, run_seconds=5.0)
    _, sub, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "y"})
    rid = sub["request_id"]
    await wait_for(gateway, key, rid, "in_progress")
    status, body, _ = await gateway.request("POST", f"/v1/requests/{rid}/cancel", key=key)
    assert status == 202
    assert body["outcome"] == "not_cancellable"


async def test_a_failed_job_shows_completed_on_status_and_failed_on_result(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(next_outcomes=["failed"])
    key = await gateway.new_team("design")
    _, sub, _ = await gateway.request("POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"})
    rid = sub["request_id"]
    await wait_for(gateway, key, rid, "completed")
    _, result, _ = await gateway.request("GET", f"/v1/requests/{rid}/result", key=key)
    assert result["status"] == "failed"
    assert result["error"]
    assert "output" not in result


async def test_input_that_fails_the_models_schema_gets_runcomfys_validation_error(
    gateway: Gateway,
) -> None:
    key = await gateway.new_team("design")
    status, body, _ = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x", "resolution": "16K"}
    )
    assert status == 422
    assert_error_shape(body, 422001)
    assert isinstance(body["detail"], list) and body["detail"]


async def test_unknown_model_is_404_in_runcomfys_shape(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    status, body, _ = await gateway.request(
        "POST", "/v1/models/acme/not-a-model", key=key, json={"prompt": "x"}
    )
    assert status == 404
    assert_error_shape(body, 404001)
    status, body, _ = await gateway.request("POST", "/v1/models/a/../b", key=key, json={})
    assert status == 404
    assert_error_shape(body)


async def test_a_body_that_is_not_a_json_object_is_a_clear_400_and_never_sent_upstream(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    for data in (b"{not json", b"[1, 2]", b""):
        status, body, _ = await gateway.request(
            "POST", f"/v1/models/{NANO}", key=key, data=data,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 400, data
        assert_error_shape(body, 400001)
    assert await simulator.count("model.submit") == 0


async def test_urls_follow_forwarded_headers_and_the_configured_public_url(
    gateway_factory: Any,
) -> None:
    gw: Gateway = await gateway_factory()
    key = await gw.new_team("design")
    _, body, _ = await gw.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "gw.example.com"},
    )  # fmt: skip
    assert body["status_url"].startswith("https://gw.example.com/v1/requests/")

    pinned: Gateway = await gateway_factory(public_url="https://rc.internal/")
    _, body, _ = await pinned.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"},
        headers={"X-Forwarded-Host": "evil.example"},
    )  # fmt: skip
    assert body["result_url"] == f"https://rc.internal/v1/requests/{body['request_id']}/result"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "evil.example/phish?"},
        {"X-Forwarded-Host": "user@evil.example"},
        {"X-Forwarded-Host": "evil.example#"},
        {"X-Forwarded-Host": "a b"},
        {"X-Forwarded-Proto": "javascript"},
        {"Host": "gw.example.com/x"},
    ],
)
async def test_forwarded_headers_that_are_no_plain_host_or_scheme_are_refused(
    gateway: Gateway, simulator: Simulator, headers: dict[str, str]
) -> None:
    """They shape the URLs in answers: only a scheme and a host name (with a port) may."""
    key = await gateway.new_team("design")
    status, body, _ = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}, headers=headers
    )
    assert status == 400, body
    assert_error_shape(body, 400001)
    assert await simulator.count("model.submit") == 0


async def test_the_catalog_is_served_to_team_keys(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    status, body, _ = await gateway.request("GET", "/v1/models?limit=2&offset=0", key=key)
    assert status == 200
    assert len(body["models"]) == 2 and body["total"] >= 2
    status, body, _ = await gateway.request("GET", "/v1/models/categories", key=key)
    assert status == 200 and "text-to-image" in body["categories"]
    status, body, _ = await gateway.request("GET", f"/v1/models/{NANO}", key=key)
    assert status == 200
    assert body["model_id"] == NANO
    assert isinstance(body["base_price_usd"], int | float)
    assert body["input_schema"]["properties"]["resolution"]["default"] == "1K"
    status, body, _ = await gateway.request("GET", "/v1/models/acme/unknown", key=key)
    assert status == 404
    assert_error_shape(body, 404001)


async def test_catalog_reads_are_cached_for_the_configured_time(
    gateway_factory: Any, simulator: Simulator
) -> None:
    gw: Gateway = await gateway_factory(catalog_cache_seconds=60)
    key = await gw.new_team("design")
    for _ in range(5):
        status, _, _ = await gw.request("GET", f"/v1/models/{NANO}", key=key)
        assert status == 200
    assert await simulator.count("catalog.get") == 1


async def test_unknown_paths_and_methods_answer_in_runcomfys_shape(gateway: Gateway) -> None:
    key = await gateway.new_team("design")
    status, body, headers = await gateway.request("GET", "/v2/nothing/here", key=key)
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert_error_shape(body, 404001)
    status, body, _ = await gateway.request("DELETE", "/v1/models", key=key)
    assert status == 405
    assert_error_shape(body, 405001)


async def test_an_unverified_key_never_makes_the_gateway_call_runcomfy(
    gateway: Gateway, simulator: Simulator
) -> None:
    """A cold model's schema and price come from RunComfy's catalog, with the gateway's
    token: only a verified key may cause that (found by walking every team route)."""
    key = await gateway.new_team("design")
    forged = "rcg_aaaaaaaabbbbbbbb_" + "x" * 40
    before = await simulator.calls()
    for model in (NANO, *(f"acme/model-{i}" for i in range(10))):
        status, body, _ = await gateway.request(
            "POST", f"/v1/models/{model}", key=forged, json={"prompt": "x"}
        )
        assert status == 401
        assert_error_shape(body, 401001)
    assert await simulator.calls() == before
    status, _, _ = await gateway.request(
        "POST", f"/v1/models/{NANO}", key=key, json={"prompt": "x"}
    )
    assert status == 200
    assert await simulator.count("catalog.get") > before.get("catalog.get", 0)


async def test_a_stampede_on_a_cold_model_costs_runcomfy_one_catalog_read(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design")
    await simulator.fault(route="catalog.get", action="delay", delay=0.3)
    before = await simulator.count("catalog.get")
    answers = await asyncio.gather(
        *(gateway.request("GET", f"/v1/models/{NANO}", key=key) for _ in range(20))
    )
    assert {status for status, _, _ in answers} == {200}
    assert await simulator.count("catalog.get") == before + 1
