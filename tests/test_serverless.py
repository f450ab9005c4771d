"""Serverless deployments through the gateway, v1 and v2, and what team keys may not do."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog.testing
from yarl import URL

from tests.conftest import (
    ADMIN_TOKEN,
    Gateway,
    Simulator,
    assert_error_shape,
    on_single_and_cluster,
)

SUBMIT_FIELDS = {"request_id", "status_url", "result_url", "cancel_url"}
STATUS_FIELDS = {"request_id", "status", "queue_position", "status_url", "result_url"}


async def first_deployment(gw: Gateway) -> str:
    status, deployments, _ = await gw.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    assert status == 200, deployments
    deployment_id: str = deployments[0]["id"]
    return deployment_id


@pytest.mark.parametrize("version", ["v1", "v2"])
@on_single_and_cluster
async def test_an_inference_runs_to_a_result_with_runcomfys_exact_fields(
    gateway: Gateway, simulator: Simulator, version: str
) -> None:
    key = await gateway.new_team("design", deployments=["*"])
    dep = await first_deployment(gateway)
    base = f"/prod/{version}/deployments/{dep}"
    status, sub, _ = await gateway.request(
        "POST", f"{base}/inference", key=key, json={"overrides": {"6": {"inputs": {"text": "x"}}}}
    )
    assert status == 200, sub
    assert set(sub) == SUBMIT_FIELDS  # the Go client rejects unknown fields
    rid = sub["request_id"]
    assert sub["status_url"] == f"{gateway.url}{base}/requests/{rid}/status"
    assert sub["cancel_url"] == f"{gateway.url}{base}/requests/{rid}/cancel"
    for _ in range(200):
        status, body, _ = await gateway.request("GET", f"{base}/requests/{rid}/status", key=key)
        assert status == 200
        assert set(body) <= STATUS_FIELDS
        assert body["request_id"] == rid
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    status, result, _ = await gateway.request("GET", f"{base}/requests/{rid}/result", key=key)
    assert status == 200
    assert result["status"] == "succeeded"
    assert result["created_at"] and result["finished_at"]
    images = [img for node in result["outputs"].values() for img in node.get("images", [])]
    assert images and all(".runcomfy.net/" in img["url"] for img in images)


async def test_cancelling_a_queued_inference_answers_only_request_id_and_status(
    gateway: Gateway, simulator: Simulator
) -> None:
    await simulator.configure(queue_seconds=5.0)
    key = await gateway.new_team("design", deployments=["*"])
    dep = await first_deployment(gateway)
    base = f"/prod/v1/deployments/{dep}"
    _, sub, _ = await gateway.request("POST", f"{base}/inference", key=key, json={})
    rid = sub["request_id"]
    status, body, _ = await gateway.request("POST", f"{base}/requests/{rid}/cancel", key=key)
    assert status in (200, 202)
    assert body == {"request_id": rid, "status": "cancellation_requested"}


async def test_a_request_id_under_another_deployment_or_api_is_404(gateway: Gateway) -> None:
    key = await gateway.new_team("design", deployments=["*"])
    dep = await first_deployment(gateway)
    _, sub, _ = await gateway.request(
        "POST", f"/prod/v2/deployments/{dep}/inference", key=key, json={}
    )
    rid = sub["request_id"]
    for path in (
        f"/prod/v2/deployments/other-deployment/requests/{rid}/status",
        f"/v1/requests/{rid}/status",
    ):
        status, body, _ = await gateway.request("GET", path, key=key)
        assert status == 404, path
        assert_error_shape(body, 404001)


async def test_team_keys_can_never_manage_deployments_or_read_the_balance(
    gateway: Gateway, simulator: Simulator
) -> None:
    key = await gateway.new_team("design", deployments=["*"])
    dep = await first_deployment(gateway)
    before = await simulator.calls()
    attempts: list[tuple[str, str, Any]] = [
        ("GET", "/prod/v2/deployments", None),
        ("POST", "/prod/v2/deployments", {"name": "mine"}),
        ("GET", f"/prod/v2/deployments/{dep}", None),
        ("PATCH", f"/prod/v2/deployments/{dep}", {"name": "renamed"}),
        ("DELETE", f"/prod/v2/deployments/{dep}", None),
        ("GET", "/prod/v2/balance", None),
    ]
    for method, path, body in attempts:
        status, answer, _ = await gateway.request(method, path, key=key, json=body)
        assert status == 403, (method, path)
        assert_error_shape(answer, 403001)
        status, answer, _ = await gateway.request(method, path, json=body)
        assert status == 401, (method, path)
    after = await simulator.calls()
    assert {k: v for k, v in after.items() if k.startswith(("deployments", "balance"))} == {
        k: v for k, v in before.items() if k.startswith(("deployments", "balance"))
    }
    status, still_there, _ = await gateway.request(
        "GET", f"/prod/v2/deployments/{dep}", key=ADMIN_TOKEN
    )
    assert status == 200 and still_there["id"] == dep


async def test_the_admin_token_manages_deployments_and_reads_the_balance(
    gateway: Gateway,
) -> None:
    dep = await first_deployment(gateway)
    status, body, _ = await gateway.request("GET", "/prod/v2/balance", key=ADMIN_TOKEN)
    assert status == 200 and body["currency"] == "USD"
    status, body, _ = await gateway.request(
        "PATCH", f"/prod/v2/deployments/{dep}", key=ADMIN_TOKEN, json={"name": "renamed"}
    )
    assert status == 200 and body["name"] == "renamed"
    status, body, _ = await gateway.request(
        "PATCH", f"/prod/v2/deployments/{dep}", key=ADMIN_TOKEN, json={}
    )
    assert status in (400, 422)
    assert_error_shape(body)
    status, body, _ = await gateway.request(
        "DELETE", f"/prod/v2/deployments/{dep}", key=ADMIN_TOKEN
    )
    assert status == 200
    status, body, _ = await gateway.request("GET", f"/prod/v2/deployments/{dep}", key=ADMIN_TOKEN)
    assert status == 404
    assert_error_shape(body, 404001)


@pytest.mark.parametrize(
    "deployment_id",
    [
        "..%2F..%2F..%2Fv1%2Fmodels",
        "%2e%2e%2f%2e%2e%2fbalance",
        "%2E%2E",
        "..",
        ".",
        "x%2Fy",
        "x%5Cy",
        "x%00y",
        "..%252F..%252Fbalance",
    ],
)
async def test_management_calls_never_leave_runcomfys_management_routes(
    gateway: Gateway, simulator: Simulator, http: Any, deployment_id: str
) -> None:
    """Encoded separators and dot segments in a deployment id are 404: nothing reaches
    RunComfy, for a viewer's GET as for an admin's change."""
    status, viewer, _ = await gateway.request(
        "POST", "/admin/v1/admins", key=ADMIN_TOKEN, json={"name": "vic", "role": "viewer"}
    )
    assert status == 201, viewer
    before = await simulator.calls()
    path = f"/prod/v2/deployments/{deployment_id}"
    for method, token in (
        ("GET", viewer["token"]),
        ("PATCH", ADMIN_TOKEN),
        ("DELETE", ADMIN_TOKEN),
    ):
        url = URL(gateway.url + path, encoded=True)
        headers = {"Authorization": f"Bearer {token}"}
        async with http.request(method, url, headers=headers, json={"name": "x"}) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 404, (method, resp.status, body)
            assert_error_shape(body, 404001)
    assert await simulator.calls() == before


async def test_every_management_call_logs_the_runcomfy_route_it_reached(
    gateway: Gateway,
) -> None:
    dep = await first_deployment(gateway)
    with structlog.testing.capture_logs() as logs:
        for path in ("/prod/v2/deployments", f"/prod/v2/deployments/{dep}", "/prod/v2/balance"):
            status, _, _ = await gateway.request("GET", path, key=ADMIN_TOKEN)
            assert status == 200
    routes = [e["upstream_route"] for e in logs if e["event"] == "management_call"]
    assert routes == [
        "/prod/v2/deployments",
        "/prod/v2/deployments/{deployment_id}",
        "/prod/v2/balance",
    ]
