"""runcomfy-mcp's own client, unchanged, completes jobs through the gateway.

The client is RunComfy's public code (runcomfy-com/runcomfy-mcp, ``runcomfy_client.py``); it is
not vendored here. Point ``RUNCOMFY_MCP_CLIENT`` at a checkout of it to run these tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, NANO, Gateway, Simulator

# A checkout of runcomfy-com/runcomfy-mcp is not part of this project: name its client file.
CLIENT_PATH = Path(os.environ.get("RUNCOMFY_MCP_CLIENT", "runcomfy-mcp/runcomfy_client.py"))


def _load_client() -> ModuleType:
    if not CLIENT_PATH.is_file():
        pytest.skip(f"runcomfy_client.py not at {CLIENT_PATH}: set RUNCOMFY_MCP_CLIENT")
    spec = importlib.util.spec_from_file_location("runcomfy_client", CLIENT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_mcp_model_api_client_runs_a_generation_through_the_gateway(
    gateway: Gateway, simulator: Simulator
) -> None:
    rc = _load_client()
    key = await gateway.new_team("design")
    client: Any = rc.RunComfyModelAPIClient(key, base_url=gateway.url, timeout_seconds=30)
    try:
        submitted = await client.submit_request(NANO, request_body={"prompt": "a red fox"})
        assert submitted["status_url"].startswith(gateway.url)
        done = await client.wait_for_completion(
            submitted["request_id"], poll_interval_seconds=0.1, timeout_seconds=30
        )
        assert done["status_payload"]["status"] == "completed"
        assert done["result_payload"]["status"] == "succeeded"
        assert done["result_payload"]["output"]
    finally:
        await client.aclose()
    assert await simulator.count("model.submit") == 1


async def test_the_mcp_serverless_client_runs_an_inference_through_the_gateway(
    gateway: Gateway, simulator: Simulator
) -> None:
    rc = _load_client()
    key = await gateway.new_team("design", deployments=["*"])
    status, deployments, _ = await gateway.request("GET", "/prod/v2/deployments", key=ADMIN_TOKEN)
    assert status == 200
    deployment_id = deployments[0]["id"]
    client: Any = rc.RunComfyServerlessClient(key, base_url=gateway.url, timeout_seconds=30)
    try:
        submitted = await client.submit_request(deployment_id, overrides={"6": {"inputs": {}}})
        done = await client.wait_for_completion(
            deployment_id, submitted["request_id"], poll_interval_seconds=0.1, timeout_seconds=30
        )
        assert done["result_payload"]["status"] == "succeeded"
    finally:
        await client.aclose()
