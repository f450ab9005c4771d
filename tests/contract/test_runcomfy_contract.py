"""Every documented RunComfy request/response example, replayed against the simulator.

Each ``fixtures/*.json`` holds one example copied from the reference notes (``source`` says
where), the request to replay, and the documented response shape. ``fields`` is the exact key
set (a type ending in ``?`` may be absent), so an extra key fails: the Go client rejects unknown
fields on serverless inference, status and cancel. Types: string, integer (never a bool), number,
boolean, object, array, any, request_id (``^[A-Za-z0-9_-]{1,128}$``), url (absolute http/https),
timestamp (Go layout: microseconds at most, numeric offset, never ``Z``), ``{"enum": [...]}``,
``{"type": "object", "fields"|"each": ...}`` and ``{"type": "array", "items": ..., "min": n}``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from gateway.simulator import SimulatorConfig, create_simulator_app
from gateway.simulator.deployments import SEEDED_DEPLOYMENT_IDS

Client = TestClient[web.Request, web.Application]

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "contract-token"
DEPLOYMENT_ID = SEEDED_DEPLOYMENT_IDS[0]
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d:\d\d$")
URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")
PLAIN_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "any": lambda v: True,
    "request_id": lambda v: isinstance(v, str) and bool(REQUEST_ID.match(v)),
    "url": lambda v: isinstance(v, str) and bool(URL.match(v)),
    "timestamp": lambda v: isinstance(v, str) and bool(TIMESTAMP.match(v)),
}
LOOSE_TYPES = {"request_id": "string", "url": "string", "timestamp": "string"}
"""Docs examples use placeholders like ``{request_id}`` and ``.../status``."""

CASES = sorted(path.stem for path in FIXTURES.glob("*.json"))


def problems(value: Any, spec: Any, where: str, *, loose: bool = False) -> list[str]:
    """Every way ``value`` differs from ``spec`` (empty when it conforms)."""
    if isinstance(spec, str):
        name = spec.removesuffix("?")
        name = LOOSE_TYPES.get(name, name) if loose else name
        return [] if PLAIN_TYPES[name](value) else [f"{where}: {value!r} is not {name}"]
    if "enum" in spec:
        return [] if value in spec["enum"] else [f"{where}: {value!r} not in {spec['enum']}"]
    found = problems(value, spec["type"], where)
    if found:
        return found
    if spec["type"] == "array":
        if len(value) < spec.get("min", 0):
            found.append(f"{where}: fewer than {spec['min']} items")
        for index, item in enumerate(value):
            found += problems(item, spec.get("items", "any"), f"{where}[{index}]", loose=loose)
        return found
    if "each" in spec:
        for key, item in value.items():
            found += problems(item, spec["each"], f"{where}.{key}", loose=loose)
    if "fields" in spec:
        found += field_problems(value, spec["fields"], where, loose=loose)
    return found


def field_problems(
    value: dict[str, Any], fields: dict[str, Any], where: str, *, loose: bool = False
) -> list[str]:
    """Exact key set: required keys present, nothing undocumented, each of the right type."""
    found = [f"{where}: undocumented key {key!r}" for key in value if key not in fields]
    for key, spec in fields.items():
        optional = isinstance(spec, str) and spec.endswith("?")
        if key not in value:
            if not optional and not loose:
                found.append(f"{where}: missing key {key!r}")
            continue
        found += problems(value[key], spec, f"{where}.{key}", loose=loose)
    return found


def dig(value: Any, path: list[str | int]) -> Any:
    """The value at ``path`` inside a JSON document."""
    for step in path:
        value = value[step]
    return value


@pytest.fixture
async def sim() -> AsyncIterator[Client]:
    """A simulator whose jobs only move when the test advances time."""
    config = SimulatorConfig(token=TOKEN, queue_seconds=10.0, run_seconds=10.0)
    client: Client = TestClient(TestServer(create_simulator_app(config)))
    await client.start_server()
    yield client
    await client.close()


async def send(
    sim: Client, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    """One request; the status and the parsed body."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = None if body is None else orjson.dumps(body)
    async with sim.request(method, path, data=data, headers=headers) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, orjson.loads(await resp.read())


async def prepare(sim: Client, case: dict[str, Any]) -> dict[str, str]:
    """Apply the case's config and start its job; the values for the path placeholders."""
    if "config" in case:
        assert (await send(sim, "POST", "/_sim/config", case["config"]))[0] == 200
    context = {"deployment_id": DEPLOYMENT_ID}
    job = case.get("job")
    if job is None:
        return context
    if "outcome" in job:
        await send(sim, "POST", "/_sim/config", {"next_outcomes": [job["outcome"]]})
    if job["api"] == "model":
        path = f"/v1/models/{job['model_id']}"
    else:
        path = f"/prod/v1/deployments/{DEPLOYMENT_ID}/inference"
    status, reply = await send(sim, "POST", path, job["body"])
    assert status == 200, reply
    context["request_id"] = reply["request_id"]
    await send(sim, "POST", "/_sim/advance", {"seconds": job.get("advance", 0)})
    return context


@pytest.mark.parametrize("name", CASES)
async def test_documented_example_replays_with_the_documented_shape(sim: Client, name: str) -> None:
    case = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
    expected = case["response"]
    if "example" in expected and "fields" in expected:
        assert field_problems(expected["example"], expected["fields"], "example", loose=True) == []

    context = await prepare(sim, case)
    request = case["request"]
    path = request["path"].format(**context)
    status, body = await send(
        sim, request["method"], path, request.get("body"), request.get("token", TOKEN)
    )

    assert status == expected["status"], body
    if "fields" in expected:
        assert problems(body, {"type": "object", "fields": expected["fields"]}, "body") == []
    if "body" in expected:
        assert problems(body, expected["body"], "body") == []
    if "equals_at" in expected:
        assert dig(body, expected["equals_at"]["path"]) == expected["equals_at"]["value"]
    if "schema_at" in expected:
        value = dig(body, expected["schema_at"]["path"])
        schema = expected["schema_at"]["schema"]
        assert list(Draft202012Validator(schema).iter_errors(value)) == []
        assert set(value) <= set(schema["properties"])
    if status < 300:
        assert "error_code" not in body  # clients treat any error_code in a 2xx as a failure


def test_every_fixture_names_its_source_and_a_shape() -> None:
    assert len(CASES) >= 30
    for name in CASES:
        case = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
        assert case["source"], name
        assert {"fields", "body"} & set(case["response"]), name
