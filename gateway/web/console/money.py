"""Console pages of a team's usage and spend and its unreconciled ledger; and prices.

Every number shown is the admin API's own answer (``getUsage``, ``getLimits``, ...), the same
the CLI prints and ``/metrics`` exports; the charts draw those numbers and nothing else.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.common.errors import ClientError, ValidationFailed
from gateway.common.jsonutil import parse_json_object
from gateway.web.console.charts import bar_chart, burn
from gateway.web.console.forms import Outcome, body_of, refusal, text
from gateway.web.console.guard import Ctx
from gateway.web.console.render import PREFIX, redirect
from gateway.web.routes.shared import DEPLOYMENT_ID_RE, MODEL_ID_RE


async def usage_page(ctx: Ctx) -> web.StreamResponse:
    query = {k: v for k in ("from", "to") if (v := ctx.request.query.get(k, "").strip())}
    team = await ctx.api.call("getTeam")
    usage = await ctx.api.call("getUsage", query=query)
    days = usage["by_day"]
    return ctx.page(
        "usage.html",
        team=team,
        tab="usage",
        usage=usage,
        query=query,
        requests_chart=bar_chart([(d["day"][5:], d.get("requests", 0)) for d in days]),
        spend_chart=bar_chart([(d["day"][5:], d.get("spend_usd", 0)) for d in days], "$"),
        burn=burn(usage["budget"], datetime.now(UTC)),
    )


async def _ledger(ctx: Ctx, outcome: Outcome | None = None, status: int = 200) -> web.Response:
    team = await ctx.api.call("getTeam")
    ledger = await ctx.api.call("listUnreconciled")
    unknown = await ctx.api.call("listUnknownSubmits")
    return ctx.page(
        "unreconciled.html",
        status,
        url=ctx.team_url("unreconciled"),
        team=team,
        tab="unreconciled",
        jobs=ledger["jobs"],
        unknown=unknown["requests"],
        outcome=outcome or Outcome(),
    )


async def ledger_page(ctx: Ctx) -> web.StreamResponse:
    return await _ledger(ctx)


async def resolve(ctx: Ctx) -> web.StreamResponse:
    body: dict[str, Any] = {"outcome": text(ctx.form, "outcome")}
    if (cost := text(ctx.form, "cost_usd")) is not None:
        body["cost_usd"] = cost
    try:
        done = await ctx.api.call("resolveUnreconciled", body=body)
    except ClientError as exc:
        return await _ledger(ctx, refusal(exc), exc.status)
    message = f"Job {done['job_id']} {done['outcome']}: ${done['settled_usd']} settled."
    return await _ledger(ctx, Outcome(message=message))


async def _pricing(
    ctx: Ctx, outcome: Outcome | None = None, status: int = 200, **values: Any
) -> web.Response:
    book = await ctx.api.call("getPriceBook")
    defaults: dict[str, Any] = {"estimate": None, "shown": {}}
    return ctx.page(
        "pricing.html",
        status,
        url=f"{PREFIX}/pricing",
        book=book,
        outcome=outcome or Outcome(),
        **{**defaults, **values},
    )


async def pricing_page(ctx: Ctx) -> web.StreamResponse:
    return await _pricing(ctx)


async def estimate(ctx: Ctx) -> web.StreamResponse:
    """What a request would reserve, by the API's own estimate (changes nothing)."""
    names = ("model_id", "deployment_id", "request_body")
    shown = {name: str(ctx.form.get(name, "")) for name in names}
    try:
        raw = text(ctx.form, "request_body")
        request_body = parse_json_object(raw.encode()) if raw else {}
    except ClientError as exc:
        error = ValidationFailed("The request body is not a JSON object.", detail=exc.message)
        return await _pricing(ctx, refusal(error), 422, shown=shown)
    query = {
        "model_id": text(ctx.form, "model_id"),
        "deployment_id": text(ctx.form, "deployment_id"),
        "body": request_body,
    }
    try:
        answer = await ctx.api.call("estimate", body=query)
    except ClientError as exc:
        return await _pricing(ctx, refusal(exc), exc.status, shown=shown)
    return await _pricing(ctx, estimate=answer, shown=shown)


def _override_text(book: dict[str, Any], model_id: str) -> str:
    current = book["models"].get(model_id)
    return json.dumps(current, indent=2) if current else ""


async def choose_model(ctx: Ctx) -> web.StreamResponse:
    """From the pricing page's model field to that model's page."""
    model_id = ctx.request.query.get("model_id", "").strip()
    if not MODEL_ID_RE.fullmatch(model_id):
        error = Outcome(error=f"{model_id!r} is not a RunComfy model id.")
        return await _pricing(ctx, error, 422)
    return redirect(f"{PREFIX}/pricing/models/{quote(model_id)}")


async def _model_price(
    ctx: Ctx, outcome: Outcome | None = None, status: int = 200, **values: Any
) -> web.Response:
    model_id = ctx.request.match_info["model_id"]
    book = await ctx.api.call("getPriceBook")
    defaults: dict[str, Any] = {"estimate": None, "override": _override_text(book, model_id)}
    return ctx.page(
        "model_price.html",
        status,
        url=f"{PREFIX}/pricing/models/{quote(model_id)}",
        model_id=model_id,
        current=book["models"].get(model_id),
        outcome=outcome or Outcome(),
        **{**defaults, **values},
    )


async def model_price_page(ctx: Ctx) -> web.StreamResponse:
    return await _model_price(ctx)


async def set_model_price(ctx: Ctx) -> web.StreamResponse:
    """Replace the model's override with the form's JSON, checked by the API against the
    model's catalog entry."""
    raw = text(ctx.form, "override") or ""
    try:
        body = parse_json_object(raw.encode())
        await ctx.api.call("setModelPrice", body=body)
    except ClientError as exc:
        return await _model_price(ctx, refusal(exc), exc.status, override=raw)
    return await _model_price(ctx, Outcome(message="Override saved."))


async def clear_model_price(ctx: Ctx) -> web.StreamResponse:
    try:
        await ctx.api.call("clearModelPrice")
    except ClientError as exc:
        return await _model_price(ctx, refusal(exc), exc.status)
    return await _model_price(ctx, Outcome(message="Override cleared: the catalog price applies."))


async def choose_deployment(ctx: Ctx) -> web.StreamResponse:
    """From the pricing page's deployment field to that deployment's page."""
    deployment_id = ctx.request.query.get("deployment_id", "").strip()
    if not DEPLOYMENT_ID_RE.fullmatch(deployment_id):
        error = Outcome(error=f"{deployment_id!r} is not a deployment id.")
        return await _pricing(ctx, error, 422)
    return redirect(f"{PREFIX}/pricing/deployments/{deployment_id}")


async def _deployment_price(
    ctx: Ctx, outcome: Outcome | None = None, status: int = 200, shown: Any = None
) -> web.Response:
    deployment_id = ctx.request.match_info["deployment_id"]
    book = await ctx.api.call("getPriceBook")
    current = book["deployments"].get(deployment_id)
    return ctx.page(
        "deployment_price.html",
        status,
        url=f"{PREFIX}/pricing/deployments/{deployment_id}",
        deployment_id=deployment_id,
        current=current,
        shown=shown if shown is not None else {k: str(v) for k, v in (current or {}).items()},
        outcome=outcome or Outcome(),
    )


async def deployment_price_page(ctx: Ctx) -> web.StreamResponse:
    return await _deployment_price(ctx)


async def set_deployment_price(ctx: Ctx) -> web.StreamResponse:
    """Set the deployment's GPU rate and expected run time (what its requests reserve)."""
    body = body_of(ctx.form, ("usd_per_second", "estimated_seconds"))
    try:
        await ctx.api.call("setDeploymentPrice", body=body)
    except ClientError as exc:
        shown = {k: str(ctx.form.get(k, "")) for k in ("usd_per_second", "estimated_seconds")}
        return await _deployment_price(ctx, refusal(exc), exc.status, shown)
    return await _deployment_price(ctx, Outcome(message="Rate saved."))


async def clear_deployment_price(ctx: Ctx) -> web.StreamResponse:
    try:
        await ctx.api.call("clearDeploymentPrice")
    except ClientError as exc:
        return await _deployment_price(ctx, refusal(exc), exc.status)
    message = "Rate cleared: the deployment's requests are estimated as unknown again."
    return await _deployment_price(ctx, Outcome(message=message))
