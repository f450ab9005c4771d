"""Console pages of the cache: a team's dedup policy (its default, per key, per model) and
purges of cached results (a team's, one model's, one request's, or a model's for every team).

The policy is one record the API replaces whole (``setDedupPolicy``), as ``dedup set`` does:
the form holds every entry, so what it shows is what it saves.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.common.errors import ClientError, NotFound
from gateway.jobs.dedup import Policy
from gateway.web.appkeys import SETTINGS
from gateway.web.console.forms import Outcome, refusal, text
from gateway.web.console.guard import Ctx
from gateway.web.console.render import PREFIX
from gateway.web.routes.shared import checked_model_id

POLICIES = tuple(reversed(Policy))  # most reuse first, as `dedup set` lists them


async def _cache(
    ctx: Ctx, outcome: Outcome | None = None, status: int = 200, shown: Any = None
) -> web.Response:
    team = await ctx.api.call("getTeam")
    usage = await ctx.api.call("getUsage")
    policy = await ctx.api.call("getDedupPolicy")
    listed = await ctx.listed_keys(policy["keys"])
    return ctx.page(
        "cache.html",
        status,
        url=ctx.team_url("cache"),
        team=team,
        tab="cache",
        usage=usage,
        policy=policy,
        keys=listed,
        shown=shown if shown is not None else _as_form(policy),
        policies=POLICIES,
        gateway_default=ctx.request.app[SETTINGS].dedup_default_policy,
        outcome=outcome or Outcome(),
    )


def _as_form(policy: dict[str, Any]) -> dict[str, str]:
    """The policy as the form's fields: ``default``, ``key.<id>``, ``model.<id>``."""
    shown = {"default": policy["default"] or ""}
    shown |= {f"key.{kid}": mode for kid, mode in policy["keys"].items()}
    shown |= {f"model.{model}": mode for model, mode in policy["models"].items()}
    return shown


def _policy_body(form: Any) -> dict[str, Any]:
    """The form as the API's body; an entry left on "as the team" (empty) is no entry."""
    body: dict[str, Any] = {"default": text(form, "default"), "keys": {}, "models": {}}
    for name in form:
        kind, _, target = name.partition(".")
        if kind in ("key", "model") and target and (mode := text(form, name)) is not None:
            body[f"{kind}s"][target] = mode
    new_model, new_mode = text(form, "new_model"), text(form, "new_model_policy")
    if new_model is not None and new_mode is not None:
        body["models"][new_model] = new_mode
    return body


def _half_new_entry(form: Any) -> dict[str, list[str]] | None:
    """The field missing from a new model entry given in part (a model, or a mode)."""
    model, mode = text(form, "new_model"), text(form, "new_model_policy")
    if model is not None and mode is None:
        return {"new_model_policy": ["Choose the model's mode."]}
    if mode is not None and model is None:
        return {"new_model": ["Name the model or deployment."]}
    return None


async def cache_page(ctx: Ctx) -> web.StreamResponse:
    return await _cache(ctx)


async def set_policy(ctx: Ctx) -> web.StreamResponse:
    """Replace the team's dedup policy with the form's."""
    body = _policy_body(ctx.form)
    shown = {name: str(value) for name, value in ctx.form.items()}
    half = _half_new_entry(ctx.form)
    if half is not None:
        outcome = Outcome(error="A new model entry needs a model and a mode.", fields=half)
        return await _cache(ctx, outcome, 422, shown)
    try:
        await ctx.api.call("setDedupPolicy", body=body)
    except ClientError as exc:
        paths: dict[tuple[str, ...], str] = {("keys", k): f"key.{k}" for k in body["keys"]}
        paths |= {("models", m): f"model.{m}" for m in body["models"]}
        if new_model := text(ctx.form, "new_model"):
            paths[("models", new_model)] = "new_model"
        return await _cache(ctx, refusal(exc, paths=paths), exc.status, shown)
    return await _cache(ctx, Outcome(message="Dedup policy saved; it applies to the next request."))


async def purge_cache(ctx: Ctx) -> web.StreamResponse:
    """Purge the team's cached results: all of them, or one model's."""
    model = text(ctx.form, "model")
    if ctx.form.get("scope") == "model" and model is None:
        return await _cache(ctx, Outcome(error="Name the model to purge."), 422)
    query = {"model": model} if ctx.form.get("scope") == "model" and model else None
    try:
        purged = await ctx.api.call("purgeTeamCache", query=query)
    except ClientError as exc:
        return await _cache(ctx, refusal(exc), exc.status)
    what = f"of {model}" if query else "of the team"
    return await _cache(ctx, Outcome(message=f"Purged {purged['purged']} cached results {what}."))


async def choose_cache_entry(ctx: Ctx) -> web.StreamResponse:
    """Confirm purging one cached result of the team (by its ``X-Gateway-Cache-Key``)."""
    team = await ctx.api.call("getTeam")
    cache_key = ctx.request.query.get("cache_key", "").strip()
    if not cache_key or "/" in cache_key:
        return await _cache(ctx, Outcome(error="Give the cache key to purge."), 422)
    return ctx.page(
        "purge_confirm.html",
        team=team,
        what=f"the cached result {cache_key}",
        action=f"{PREFIX}/teams/{team['team_id']}/cache/entry/{quote(cache_key)}",
        back=f"{PREFIX}/teams/{team['team_id']}/cache",
    )


async def purge_cache_entry(ctx: Ctx) -> web.StreamResponse:
    purged = await ctx.api.call("purgeCacheEntry")
    key = ctx.request.match_info["cache_key"]
    return await _cache(ctx, Outcome(message=f"Purged {purged['purged']} cached result {key}."))


async def _every_team(ctx: Ctx, outcome: Outcome | None = None, status: int = 200) -> web.Response:
    return ctx.page("cache_all.html", status, url=f"{PREFIX}/cache", outcome=outcome or Outcome())


async def every_team_page(ctx: Ctx) -> web.StreamResponse:
    return await _every_team(ctx)


async def choose_model(ctx: Ctx) -> web.StreamResponse:
    """Confirm purging one model's (or deployment's) cached results for every team."""
    model = ctx.request.query.get("model", "").strip()
    try:
        checked_model_id(model)
    except NotFound:
        error = Outcome(error=f"{model!r} is not a model or deployment id.")
        return await _every_team(ctx, error, 422)
    return ctx.page(
        "purge_confirm.html",
        team=None,
        what=f"every team's cached results of {model}",
        action=f"{PREFIX}/cache/models/{quote(model)}",
        back=f"{PREFIX}/cache",
    )


async def purge_model(ctx: Ctx) -> web.StreamResponse:
    purged = await ctx.api.call("purgeModelCache")
    model = ctx.request.match_info["target"]
    message = f"Purged {purged['purged']} cached results of {model}, in every team."
    return await _every_team(ctx, Outcome(message=message))
