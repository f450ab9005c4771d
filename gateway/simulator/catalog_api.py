"""The model catalog: ``GET /v1/models``, ``/v1/models/categories``, ``/v1/models/{id}``.

``categories`` is a reserved segment: its route is registered before ``{model_id:.+}``.
"""

from __future__ import annotations

from aiohttp import web

from gateway.simulator.errors import validation_failed
from gateway.simulator.jsonio import json_response
from gateway.simulator.keys import SIM_STATE
from gateway.simulator.parsing import query_flag
from gateway.simulator.routing import RouteTable

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds, or 422 422001 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lstrip("-").isdigit() and low <= int(raw) <= high:
        return int(raw)
    msg = f"Input should be an integer between {low} and {high}"
    detail = [{"loc": ["query", name], "msg": msg, "type": "value_error"}]
    raise validation_failed(f"Invalid query parameter '{name}'.", detail)


async def list_models(request: web.Request) -> web.Response:
    """A page of models matching ``search``, ``category`` and ``kind``."""
    catalog = request.app[SIM_STATE].catalog
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    include_schema = query_flag(request, "include_schema")
    found = catalog.search(
        search=request.query.get("search"),
        category=request.query.get("category"),
        kind=request.query.get("kind"),
    )
    page = [m.public(include_schema=include_schema) for m in found[offset : offset + limit]]
    return json_response({"models": page, "total": len(found), "limit": limit, "offset": offset})


async def categories(request: web.Request) -> web.Response:
    """Every category in use."""
    return json_response({"categories": request.app[SIM_STATE].catalog.categories()})


async def get_model(request: web.Request) -> web.Response:
    """One bare entry, always with its ``input_schema`` (clients read the price from it)."""
    model = request.app[SIM_STATE].catalog.get(request.match_info["model_id"])
    return json_response(model.public(include_schema=True))


def register(app: web.Application, routes: RouteTable) -> None:
    """Catalog routes; must run before ``model_api.register`` claims ``/v1/models/{id}``."""
    routes.add(app, "GET", "/v1/models", list_models, "catalog.list")
    routes.add(app, "GET", "/v1/models/categories", categories, "catalog.categories")
    routes.add(app, "GET", "/v1/models/{model_id:.+}", get_model, "catalog.get")
