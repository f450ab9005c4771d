"""The pricing admin API under ``/admin/v1/pricing``: price overrides and trial estimates.

An override replaces what the gateway assumes a model or deployment costs (see
:mod:`gateway.money.pricing`); ``POST /admin/v1/pricing/estimate`` shows what a request would be
estimated at, so an admin can check a rule before teams' budgets depend on it. Reads and
estimates need an admin token of either role; changes the ``admin`` role, and are audited.

A model's override is checked against its entry in RunComfy's catalog, so a typo is a 422 at
once instead of a rule that silently never applies: the model must be in the catalog, and a
rule's parameter and the ``units_param`` must be inputs of its schema, with a rule's value one
the input can take (in its enum, of its type, within its minimum and maximum). Values are
compared as text, as the estimate compares them, so ``"10"`` matches an integer input's ``10``.
An entry without an input schema leaves the parameters unchecked.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.common.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    UpstreamClientError,
    ValidationFailed,
)
from gateway.money.pricing import DeploymentPrice, ModelPrice, PriceRule, _as_text
from gateway.upstream.apis import Api
from gateway.web.appkeys import AUDIT, CATALOG, PRICING
from gateway.web.callers import admin_actor
from gateway.web.middlewares.bodies import read_json_object
from gateway.web.responses import (
    DeploymentPriceDeleted,
    DeploymentPriceSet,
    Estimate,
    ModelPriceDeleted,
    ModelPriceSet,
    PriceBook,
    answer,
)
from gateway.web.routes.shared import (
    DEPLOYMENT_ID_RE,
    MODEL_ID_RE,
    checked_model_id,
    validated,
)


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


NUMBER_TYPES = frozenset({"integer", "int", "float", "number"})
INTEGER_TYPES = frozenset({"integer", "int"})


async def _catalog_inputs(request: web.Request, model_id: str) -> dict[str, Any]:
    """The input properties of the model's catalog entry (empty when it has no schema); 422
    when RunComfy's catalog has no such model. A catalog that cannot be read is its own error
    (502, 503, 504): an override is not stored unchecked."""
    try:
        entry = await request.app[CATALOG].model(model_id)
    except UpstreamClientError as exc:
        if exc.status != 404:
            raise
        raise ValidationFailed(
            f"Model {model_id!r} is not in RunComfy's catalog, so it has no price to override.",
            detail=[
                {"loc": ["model_id"], "msg": "not in RunComfy's catalog", "type": "unknown_model"}
            ],
        ) from None
    schema = entry.get("input_schema") if isinstance(entry, dict) else None
    inputs = schema.get("properties") if isinstance(schema, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _schema_problems(price: ModelPrice, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """What in the override no request to this model can match, one ``{loc, msg, type}`` each."""
    if not inputs:
        return []
    known = ", ".join(sorted(inputs))
    problems: list[dict[str, Any]] = []

    def unknown(loc: list[str | int], name: str) -> None:
        msg = f"the model has no input {name!r}; its inputs: {known}"
        problems.append({"loc": loc, "msg": msg, "type": "unknown_parameter"})

    if price.units_param is not None:
        spec = inputs.get(price.units_param)
        kinds = _types(spec)
        if not isinstance(spec, dict):
            unknown(["units_param"], price.units_param)
        elif kinds and not kinds & (NUMBER_TYPES | {"string"}):
            msg = (
                f"input {price.units_param!r} is {'/'.join(sorted(kinds))}, not a count or duration"
            )
            problems.append({"loc": ["units_param"], "msg": msg, "type": "wrong_type"})
    for i, rule in enumerate(price.rules):
        spec = inputs.get(rule.param)
        if not isinstance(spec, dict):
            unknown(["rules", i, "param"], rule.param)
            continue
        why = _value_problem(rule, spec)
        if why is not None:
            problems.append({"loc": ["rules", i, "equals"], "msg": why, "type": "outside_schema"})
    return problems


def _types(spec: Any) -> set[str]:
    declared = spec.get("type") if isinstance(spec, dict) else None
    names = declared if isinstance(declared, list) else [declared]
    return {str(n) for n in names if n not in (None, "null")}


def _value_problem(rule: PriceRule, spec: dict[str, Any]) -> str | None:
    """Why no request's value of this input can equal the rule's, or None when one can."""
    text = _as_text(rule.equals)
    enum = spec.get("enum")
    if isinstance(enum, list):
        allowed = [_as_text(v) for v in enum if v is not None]
        if text in allowed:
            return None
        return f"{rule.param} is one of {', '.join(allowed)}; {text!r} is not"
    kinds = _types(spec)
    if not kinds or "string" in kinds:
        return None  # any value compares as text
    if kinds <= {"boolean"}:
        return None if text in ("true", "false") else f"{rule.param} is true or false"
    if not kinds & NUMBER_TYPES:
        return f"{rule.param} is {'/'.join(sorted(kinds))}; a rule matches single values only"
    number = _number(rule.equals)
    if number is None or (kinds <= INTEGER_TYPES and not number.is_integer()):
        kind = "an integer" if kinds <= INTEGER_TYPES else "a number"
        return f"{rule.param} is {kind}; {text!r} is not"
    low, high = spec.get("minimum"), spec.get("maximum")
    if isinstance(low, int | float) and number < low:
        return f"{rule.param} is at least {_as_text(low)}; {text} is less"
    if isinstance(high, int | float) and number > high:
        return f"{rule.param} is at most {_as_text(high)}; {text} is more"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


async def show(request: web.Request) -> web.Response:
    """Every override."""
    book = await request.app[PRICING].price_book()
    return answer(PriceBook.model_validate(book.to_json()))


async def set_model(request: web.Request) -> web.Response:
    """Replace a model's override (the whole of it)."""
    actor = admin_actor(request)
    model_id = _model_id(request)
    price = validated(ModelPrice, await read_json_object(request))
    problems = _schema_problems(price, await _catalog_inputs(request, model_id))
    if problems:
        raise ValidationFailed(
            f"The override does not fit the input schema of {model_id!r} in RunComfy's catalog.",
            detail=problems,
        )
    pricing = request.app[PRICING]
    before = (await pricing.price_book()).to_json()["models"].get(model_id)
    await pricing.set_model_price(model_id, price)
    after = price.model_dump(exclude_none=True)
    await request.app[AUDIT].record(
        actor, "pricing.set_model", f"pricing/model/{model_id}", before, after
    )
    return answer(ModelPriceSet.model_validate({"model_id": model_id, **after}))


async def clear_model(request: web.Request) -> web.Response:
    """Back to the catalog price."""
    actor = admin_actor(request)
    model_id = _model_id(request)
    pricing = request.app[PRICING]
    before = (await pricing.price_book()).to_json()["models"].get(model_id)
    if not await pricing.clear_model_price(model_id):
        raise NotFound(f"No price override for model {model_id!r}.", detail="no_override")
    await request.app[AUDIT].record(
        actor, "pricing.clear_model", f"pricing/model/{model_id}", before, None
    )
    return answer(ModelPriceDeleted(model_id=model_id, deleted=True))


async def set_deployment(request: web.Request) -> web.Response:
    """Set a deployment's GPU rate and expected run time."""
    actor = admin_actor(request)
    deployment_id = _deployment_id(request)
    price = validated(DeploymentPrice, await read_json_object(request))
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
    return answer(
        DeploymentPriceSet.model_validate({"deployment_id": deployment_id, **price.model_dump()})
    )


async def clear_deployment(request: web.Request) -> web.Response:
    """Forget a deployment's rate: its requests are estimated as unknown again."""
    actor = admin_actor(request)
    deployment_id = _deployment_id(request)
    pricing = request.app[PRICING]
    before = (await pricing.price_book()).to_json()["deployments"].get(deployment_id)
    if not await pricing.clear_deployment_price(deployment_id):
        raise NotFound(f"No rate set for deployment {deployment_id!r}.", detail="no_override")
    await request.app[AUDIT].record(
        actor, "pricing.clear_deployment", f"pricing/deployment/{deployment_id}", before, None
    )
    return answer(DeploymentPriceDeleted(deployment_id=deployment_id, deleted=True))


async def estimate(request: web.Request) -> web.Response:
    """What the gateway would reserve for this request, and how it got there (changes nothing,
    so viewers may ask)."""
    query = validated(EstimateQuery, await read_json_object(request))
    pricing = request.app[PRICING]
    if query.model_id is not None:
        found = await pricing.estimate(Api.MODEL, query.model_id, query.body)
    else:
        found = await pricing.estimate(Api.SERVERLESS, str(query.deployment_id), query.body)
    return answer(Estimate.model_validate(found.to_json()))
