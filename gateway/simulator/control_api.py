"""The test-only control API under ``/_sim/`` (no auth, never logged or faulted).

- ``GET /_sim/calls``: ``{"counts": {route: n}, "calls": [{method, path, route, query, at}]}``
- ``GET /_sim/ledger``: ``{"charged_micro": n, "jobs": [{request_id, api, target, state,
  billed_micro, inputs_sha256}]}``, what RunComfy charged so far (finished jobs only), in
  micro-dollars; ``inputs_sha256`` is the SHA-256 of the submitted body as sorted-key JSON
- ``POST /_sim/reset``: forget jobs, calls and faults; restore config, balance, deployments
- ``GET|POST /_sim/config``: read, or partially update, ``queue_seconds``, ``run_seconds``,
  ``balance_usd`` and ``next_outcomes`` (outcomes of the next submits, in order)
- ``GET|POST|DELETE /_sim/faults``: list, arm (object or list of rules), disarm all
- ``POST /_sim/advance``: ``{"seconds": s}`` moves simulated time forward, so tests can walk
  jobs through their states without sleeping
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.simulator.errors import validation_failed
from gateway.simulator.faults import parse_rules
from gateway.simulator.jsonio import json_response
from gateway.simulator.keys import SIM_ROUTES, SIM_STATE
from gateway.simulator.parsing import read_json, read_json_object
from gateway.simulator.state import SimState
from gateway.simulator.validation import make_validator, schema_errors

_CONFIG = make_validator(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "queue_seconds": {"type": "number", "minimum": 0},
            "run_seconds": {"type": "number", "minimum": 0},
            "balance_usd": {"type": "number"},
            "next_outcomes": {"type": "array", "items": {"enum": ["succeeded", "failed"]}},
        },
    }
)
_ADVANCE = make_validator(
    {
        "type": "object",
        "required": ["seconds"],
        "additionalProperties": False,
        "properties": {"seconds": {"type": "number", "minimum": 0}},
    }
)


def _config_view(state: SimState) -> dict[str, Any]:
    """What ``/_sim/config`` reports (never the token)."""
    return {
        "queue_seconds": state.config.queue_seconds,
        "run_seconds": state.config.run_seconds,
        "balance_usd": state.balance_usd,
        "next_outcomes": list(state.next_outcomes),
    }


async def get_calls(request: web.Request) -> web.Response:
    """Counters and the recent call list."""
    return json_response(request.app[SIM_STATE].calls.to_json())


async def get_ledger(request: web.Request) -> web.Response:
    """Every job and what it has been charged, so tests can check the gateway's books."""
    return json_response(request.app[SIM_STATE].ledger())


async def reset(request: web.Request) -> web.Response:
    """Back to the state the simulator started in."""
    state = request.app[SIM_STATE]
    state.reset()
    return json_response({"reset": True, "config": _config_view(state)})


async def get_config(request: web.Request) -> web.Response:
    """The current knobs."""
    return json_response(_config_view(request.app[SIM_STATE]))


async def set_config(request: web.Request) -> web.Response:
    """Partial update; new durations apply to jobs submitted from now on."""
    state = request.app[SIM_STATE]
    body = await read_json_object(request)
    details = schema_errors(_CONFIG, body)
    if details:
        raise validation_failed("Invalid simulator config.", details)
    state.configure(body)
    return json_response(_config_view(state))


async def get_faults(request: web.Request) -> web.Response:
    """The armed rules and the route names they can target."""
    app = request.app
    return json_response(
        {"faults": app[SIM_STATE].faults.to_json(), "routes": app[SIM_ROUTES].names()}
    )


async def add_faults(request: web.Request) -> web.Response:
    """Arm one rule (object) or several (list)."""
    state = request.app[SIM_STATE]
    state.faults.add(parse_rules(await read_json(request)))
    return json_response({"faults": state.faults.to_json()})


async def clear_faults(request: web.Request) -> web.Response:
    """Disarm everything."""
    state = request.app[SIM_STATE]
    state.faults.clear()
    return json_response({"faults": []})


async def advance(request: web.Request) -> web.Response:
    """Move simulated time forward."""
    state = request.app[SIM_STATE]
    body = await read_json_object(request)
    details = schema_errors(_ADVANCE, body)
    if details:
        raise validation_failed("Invalid advance request.", details)
    state.clock.advance(float(body["seconds"]))
    return json_response({"now": state.timestamp()})


def register(app: web.Application) -> None:
    """Control routes; deliberately outside the route table."""
    app.router.add_get("/_sim/calls", get_calls)
    app.router.add_get("/_sim/ledger", get_ledger)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_post("/_sim/config", set_config)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", add_faults)
    app.router.add_delete("/_sim/faults", clear_faults)
    app.router.add_post("/_sim/advance", advance)
