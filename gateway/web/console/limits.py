"""Console pages of a team's limits: the team's own, and each key's narrower ones.

The admin API has one record per team (``setLimits`` replaces it whole, the keys' limits
inside it), so a change of one key's limits sends the team's current record with that key's
entry replaced: the team's limits and the other keys' stay as they are, and the API checks the
whole as it would the CLI's ``limits set --key``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.common.errors import ClientError, NotFound
from gateway.money.quotas import KeyLimits, Limits
from gateway.web.console.forms import Outcome, listed, refusal, text
from gateway.web.console.guard import Ctx

KEY_FIELDS = tuple(KeyLimits.model_fields)
LIMIT_FIELDS = (*KEY_FIELDS, "max_concurrent", "max_queue", "alert_webhook")


def _stored(limits: dict[str, Any]) -> dict[str, Any]:
    """The API's answer as the body that would store it again."""
    return {name: limits[name] for name in Limits.model_fields}


def _as_form(limits: dict[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    """Limits as a form's text fields (empty: no limit)."""
    return {name: "" if limits.get(name) is None else str(limits[name]) for name in names}


async def _limits(
    ctx: Ctx, outcome: Outcome | None = None, status: int = 200, shown: Any = None
) -> web.Response:
    team = await ctx.api.call("getTeam")
    limits = await ctx.api.call("getLimits")
    if shown is None:
        shown = _as_form(limits, LIMIT_FIELDS)
        shown["budget_period"] = limits["budget_period"]
        shown["models"] = ", ".join(limits["models"]) if limits["models"] is not None else ""
        shown["deployments"] = ", ".join(limits["deployments"])
    listed_keys = await ctx.listed_keys(limits["keys"])
    return ctx.page(
        "limits.html",
        status,
        url=ctx.team_url("limits"),
        team=team,
        tab="limits",
        limits=limits,
        keys=listed_keys,
        shown=shown,
        outcome=outcome or Outcome(),
        periods=("day", "week", "month"),
    )


async def limits_page(ctx: Ctx) -> web.StreamResponse:
    return await _limits(ctx)


async def set_limits(ctx: Ctx) -> web.StreamResponse:
    """Replace the team's limits with the form's (an empty field clears its limit, the period
    goes back to month); the keys' limits are kept as they are."""
    current = await ctx.api.call("getLimits")
    body: dict[str, Any] = {name: text(ctx.form, name) for name in LIMIT_FIELDS}
    body = {name: value for name, value in body.items() if value is not None}
    body["budget_period"] = text(ctx.form, "budget_period")
    body["models"] = listed(ctx.form, "models")
    body["deployments"] = listed(ctx.form, "deployments") or []
    body["keys"] = current["keys"]
    try:
        await ctx.api.call("setLimits", body=body)
    except ClientError as exc:
        names = (*LIMIT_FIELDS, "models", "budget_period", "deployments")
        shown = {name: str(ctx.form.get(name, "")) for name in names}
        return await _limits(ctx, refusal(exc), exc.status, shown)
    return await _limits(ctx, Outcome(message="Limits saved; they apply to the next request."))


async def _team_key(ctx: Ctx) -> dict[str, Any]:
    """The key of the path, if it is the team's (the API's ``getKey`` knows no team)."""
    key: dict[str, Any] = await ctx.api.call("getKey")
    if key["team_id"] != ctx.request.match_info["team_id"]:
        raise NotFound(f"No key {key['key_id']!r} in team {ctx.request.match_info['team_id']!r}.")
    return key


async def _key_limits(
    ctx: Ctx, outcome: Outcome | None = None, status: int = 200, shown: Any = None
) -> web.Response:
    team = await ctx.api.call("getTeam")
    key = await _team_key(ctx)
    limits = await ctx.api.call("getLimits")
    own = limits["keys"].get(key["key_id"], {})
    return ctx.page(
        "key_limits.html",
        status,
        url=ctx.team_url(f"limits/keys/{key['key_id']}"),
        team=team,
        tab="limits",
        key=key,
        limits=limits,
        has_limits=bool(own),
        shown=shown if shown is not None else _as_form(own, KEY_FIELDS),
        outcome=outcome or Outcome(),
    )


async def key_limits_page(ctx: Ctx) -> web.StreamResponse:
    return await _key_limits(ctx)


async def _replace_key(ctx: Ctx, own: dict[str, Any] | None) -> dict[str, Any]:
    """The team's limits with this key's entry replaced (``None``: removed), as the API
    stores them."""
    key = await _team_key(ctx)
    current = await ctx.api.call("getLimits")
    body = _stored(current)
    body["keys"] = {kid: v for kid, v in current["keys"].items() if kid != key["key_id"]}
    if own:
        body["keys"][key["key_id"]] = own
    answer: dict[str, Any] = await ctx.api.call("setLimits", body=body)
    return answer


async def set_key_limits(ctx: Ctx) -> web.StreamResponse:
    """Set one key's limits from the form (an empty field: no limit of the key's own)."""
    own = {name: value for name in KEY_FIELDS if (value := text(ctx.form, name)) is not None}
    key_id = ctx.request.match_info["key_id"]
    try:
        await _replace_key(ctx, own)
    except ClientError as exc:
        shown = {name: str(ctx.form.get(name, "")) for name in KEY_FIELDS}
        paths: dict[tuple[str, ...], str] = {("keys", key_id, n): n for n in KEY_FIELDS}
        return await _key_limits(ctx, refusal(exc, paths=paths), exc.status, shown)
    message = f"Limits of key {key_id} saved." if own else f"Key {key_id} has no limits of its own."
    return await _key_limits(ctx, Outcome(message=message))


async def clear_key_limits(ctx: Ctx) -> web.StreamResponse:
    """Remove the key's own limits: the team's apply to it alone."""
    await _replace_key(ctx, None)
    key_id = ctx.request.match_info["key_id"]
    return await _key_limits(ctx, Outcome(message=f"Key {key_id} has no limits of its own."))
