"""Deployment management and balance: ``/prod/v2/deployments[/{id}]``, ``/prod/v2/balance``."""

from __future__ import annotations

from aiohttp import web

from gateway.simulator.catalog import MICRO
from gateway.simulator.deployments import Deployment, check_create, check_update
from gateway.simulator.jsonio import json_response
from gateway.simulator.keys import SIM_STATE
from gateway.simulator.parsing import read_json_object
from gateway.simulator.routing import RouteTable


def _includes(request: web.Request) -> set[str]:
    """``?includes=payload&includes=readme`` (comma-separated also accepted)."""
    return {part for value in request.query.getall("includes", []) for part in value.split(",")}


async def list_deployments(request: web.Request) -> web.Response:
    """A bare JSON array, optionally narrowed by ``?ids=``."""
    state = request.app[SIM_STATE]
    wanted = {p for v in request.query.getall("ids", []) for p in v.split(",") if p}
    includes = _includes(request)
    found = [d for d in state.deployments.values() if not wanted or d.id in wanted]
    found.sort(key=lambda d: d.created_at)
    return json_response([d.to_json(includes) for d in found])


async def create_deployment(request: web.Request) -> web.Response:
    """Create from ``name, workflow_id, workflow_version, hardware`` (+ scaling fields)."""
    state = request.app[SIM_STATE]
    body = await read_json_object(request)
    check_create(body)
    now = state.timestamp()
    deployment = Deployment(
        id=state.new_deployment_id(),
        name=body["name"],
        workflow_id=body["workflow_id"],
        workflow_version=body["workflow_version"],
        hardware=list(body["hardware"]),
        created_at=now,
        updated_at=now,
        min_instances=body.get("min_instances", 0),
        max_instances=body.get("max_instances", 1),
        queue_size=body.get("queue_size", 1),
        keep_warm_duration_in_seconds=body.get("keep_warm_duration_in_seconds", 60),
        is_enabled=body.get("is_enabled", True),
    )
    state.deployments[deployment.id] = deployment
    return json_response(deployment.to_json())


async def get_deployment(request: web.Request) -> web.Response:
    """One deployment, with ``?includes=`` like the list."""
    state = request.app[SIM_STATE]
    deployment = state.deployment(request.match_info["deployment_id"])
    return json_response(deployment.to_json(_includes(request)))


async def update_deployment(request: web.Request) -> web.Response:
    """Partial update; RunComfy rejects it without ``name``."""
    state = request.app[SIM_STATE]
    current = state.deployment(request.match_info["deployment_id"])
    body = await read_json_object(request)
    check_update(body, current)
    updated = current.updated(body, state.timestamp())
    state.deployments[updated.id] = updated
    return json_response(updated.to_json())


async def delete_deployment(request: web.Request) -> web.Response:
    """Delete; its requests become unknown (404) from then on."""
    state = request.app[SIM_STATE]
    deployment = state.deployment(request.match_info["deployment_id"])
    del state.deployments[deployment.id]
    return json_response({"id": deployment.id, "deleted": True})


async def balance(request: web.Request) -> web.Response:
    """The account balance after every finished job has been paid for."""
    usd = request.app[SIM_STATE].balance_usd
    return json_response(
        {"balance_usd": usd, "balance_microdollars": round(usd * MICRO), "currency": "USD"}
    )


def register(app: web.Application, routes: RouteTable) -> None:
    """Management routes (v2 only, as in RunComfy)."""
    one = "/prod/v2/deployments/{deployment_id}"
    routes.add(app, "GET", "/prod/v2/deployments", list_deployments, "deployments.list")
    routes.add(app, "POST", "/prod/v2/deployments", create_deployment, "deployments.create")
    routes.add(app, "GET", one, get_deployment, "deployments.get")
    routes.add(app, "PATCH", one, update_deployment, "deployments.update")
    routes.add(app, "DELETE", one, delete_deployment, "deployments.delete")
    routes.add(app, "GET", "/prod/v2/balance", balance, "balance")
