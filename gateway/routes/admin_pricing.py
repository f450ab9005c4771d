"""The pricing admin API under ``/admin/v1/pricing``: price overrides and trial estimates.

An override replaces what the gateway assumes a model or deployment costs (see
:mod:`gateway.pricing`); ``POST /admin/v1/pricing/estimate`` shows what a request would be
estimated at, so an admin can check a rule before teams' budgets depend on it. Reads and
estimates need an admin token of either role; changes the ``admin`` role, and are audited.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.appkeys import AUDIT, PRICING
from gateway.callers import require_admin, require_viewer
from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.jsonutil import json_response
from gateway.middlewares.bodies import read_json_object
from gateway.pricing import DeploymentPrice, ModelPrice
from gateway.request_records import Api
from gateway.routes.admin import _validated
from gateway.routes.model_api import MODEL_ID_RE, checked_model_id
from gateway.routes.serverless import DEPLOYMENT_ID_RE


class EstimateQuery(BaseModel):
    """A trial request: a model or a deployment, and the body a team would send."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_id: str | None = Field(default=None, max_length=300, pattern=MODEL_ID_RE.pattern)
    deployment_id: str | None = Field(default=None, pattern=DEPLOYMENT_ID_RE.pattern)
    body: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> EstimateQuery:
        if (self.model_id is None) == (self.deployment_id is None):
            raise ValueError("give exactly one of model_id and deployment_id")
        return self


def _model_id(request: web.Request) -> str:
    model_id = request.match_info["model_id"]
    try:
        return checked_model_id(model_id)
    except GatewayError:
        raise BadRequest(f"{model_id!r} is not a RunComfy model id.", detail="model_id") from None


def _deployment_id(request: web.Request) -> str:
    deployment_id = request.match_info["deployment_id"]
    if not DEPLOYMENT_ID_RE.fullmatch(deployment_id):
        raise BadRequest(f"{deployment_id!r} is not a deployment id.", detail="deployment_id")
    return deployment_id


async def show(request: web.Request) -> web.Response:
    """Every override."""
    await require_viewer(request)
    book = await request.app[PRICING].price_book()
    return json_response(book.to_json())


async def set_model(request: web.Request) -> web.Response:
    """Replace a model's override (the whole of it)."""
    actor = await require_admin(request)
    model_id = _model_id(request)
    price = _validated(ModelPrice, await read_json_object(request))
    pricing = request.app[PRICING]
    before = (await pricing.price_book()).to_json()["models"].get(model_id)
    await pricing.set_model_price(model_id, price)
    after = price.model_dump(exclude_none=True)
    await request.app[AUDIT].record(
        actor, "pricing.set_model", f"pricing/model/{model_id}", before, after
    )
    return json_response({"model_id": model_id, **after})


async def clear_model(request: web.Request) -> web.Response:
    """Back to the catalog price."""
    actor = await require_admin(request)
    model_id = _model_id(request)
    pricing = request.app[PRICING]
    before = (await pricing.price_book()).to_json()["models"].get(model_id)
    if not await pricing.clear_model_price(model_id):
        raise NotFound(f"No price override for model {model_id!r}.", detail="no_override")
    await request.app[AUDIT].record(
        actor, "pricing.clear_model", f"pricing/model/{model_id}", before, None
    )
    return json_response({"model_id": model_id, "deleted": True})


async def set_deployment(request: web.Request) -> web.Response:
    """Set a deployment's GPU rate and expected run time."""
    actor = await require_admin(request)
    deployment_id = _deployment_id(request)
    price = _validated(DeploymentPrice, await read_json_object(request))
    pricing = request.app[PRICING]
    before = (await pricing.price_book()).to_json()["deployments"].get(deployment_id)
    await pricing.set_deployment_price(deployment_id, price)
    await request.app[AUDIT].record(
        actor,
        "pricing.set_deployment",
        f"pricing/deployment/{deployment_id}",
        before,
        price.model_dump(exclude_none=True),
    )
    return json_response({"deployment_id": deployment_id, **price.model_dump()})


async def clear_deployment(request: web.Request) -> web.Response:
    """Forget a deployment's rate: its requests are estimated as unknown again."""
    actor = await require_admin(request)
    deployment_id = _deployment_id(request)
    pricing = request.app[PRICING]
    before = (await pricing.price_book()).to_json()["deployments"].get(deployment_id)
    if not await pricing.clear_deployment_price(deployment_id):
        raise NotFound(f"No rate set for deployment {deployment_id!r}.", detail="no_override")
    await request.app[AUDIT].record(
        actor, "pricing.clear_deployment", f"pricing/deployment/{deployment_id}", before, None
    )
    return json_response({"deployment_id": deployment_id, "deleted": True})


async def estimate(request: web.Request) -> web.Response:
    """What the gateway would reserve for this request, and how it got there (changes nothing,
    so viewers may ask)."""
    await require_viewer(request)
    query = _validated(EstimateQuery, await read_json_object(request))
    pricing = request.app[PRICING]
    if query.model_id is not None:
        found = await pricing.estimate(Api.MODEL, query.model_id, query.body)
    else:
        found = await pricing.estimate(Api.SERVERLESS, str(query.deployment_id), query.body)
    return json_response(found.to_json())


def setup_admin_pricing_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/v1/pricing", show)
    r.add_post("/admin/v1/pricing/estimate", estimate)
    r.add_put("/admin/v1/pricing/models/{model_id:.+}", set_model)
    r.add_delete("/admin/v1/pricing/models/{model_id:.+}", clear_model)
    r.add_put("/admin/v1/pricing/deployments/{deployment_id}", set_deployment)
    r.add_delete("/admin/v1/pricing/deployments/{deployment_id}", clear_deployment)
