"""Console pages of teams and their keys: list, create, delete; create, rotate, revoke keys.

A new or rotated key is shown once, in the answer to the POST that made it, and never again:
no page reads it back (the gateway keeps only its hash).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.common.errors import ClientError
from gateway.web.console.forms import Outcome, body_of, refusal, seconds, text
from gateway.web.console.guard import Ctx
from gateway.web.console.render import PREFIX, redirect

DAY = 24 * 3600
HOUR = 3600


async def teams_page(ctx: Ctx, outcome: Outcome | None = None, status: int = 200) -> web.Response:
    listing = await ctx.api.call("listTeams")
    return ctx.page(
        "teams.html",
        status,
        url=f"{PREFIX}/teams",
        teams=listing["teams"],
        outcome=outcome or Outcome(),
        form=ctx.form,
    )


async def list_teams(ctx: Ctx) -> web.StreamResponse:
    return await teams_page(ctx)


async def create_team(ctx: Ctx) -> web.StreamResponse:
    try:
        team = await ctx.api.call("createTeam", body=body_of(ctx.form, ("team_id", "name")))
    except ClientError as exc:
        return await teams_page(ctx, refusal(exc), exc.status)
    return redirect(f"{PREFIX}/teams/{team['team_id']}")


async def team_page(
    ctx: Ctx,
    outcome: Outcome | None = None,
    status: int = 200,
    secret: dict[str, Any] | None = None,
) -> web.Response:
    """A team, its keys and what can be done with them; ``secret`` is a key just made."""
    team = await ctx.api.call("getTeam")
    keys = await ctx.api.call("listKeys")
    return ctx.page(
        "team.html",
        status,
        url=f"{PREFIX}/teams/{team['team_id']}",
        team=team,
        keys=keys["keys"],
        outcome=outcome or Outcome(),
        secret=secret,
        form=ctx.form,
        tab="keys",
    )


async def show_team(ctx: Ctx) -> web.StreamResponse:
    return await team_page(ctx)


async def confirm_delete(ctx: Ctx) -> web.StreamResponse:
    team = await ctx.api.call("getTeam")
    return ctx.page("team_delete.html", team=team, outcome=Outcome())


async def delete_team(ctx: Ctx) -> web.StreamResponse:
    team_id = ctx.request.match_info["team_id"]
    if text(ctx.form, "confirm") != team_id:
        team = await ctx.api.call("getTeam")
        outcome = Outcome(error="Type the team's id to confirm.", fields={"confirm": ["no match"]})
        return ctx.page("team_delete.html", 422, team=team, outcome=outcome)
    await ctx.api.call("deleteTeam")
    return await teams_page(ctx, Outcome(message=f"Team {team_id} deleted; its keys are revoked."))


async def create_key(ctx: Ctx) -> web.StreamResponse:
    body: dict[str, Any] = body_of(ctx.form, ("name",))
    expiry = seconds(ctx.form, "expires_in_days", DAY)
    if expiry is not None:
        body["expires_in_seconds"] = expiry
    try:
        key = await ctx.api.call("createKey", body=body)
    except ClientError as exc:
        aliases = {"expires_in_seconds": "expires_in_days"}
        return await team_page(ctx, refusal(exc, aliases), exc.status)
    return await team_page(ctx, Outcome(message="Key created."), secret=key)


async def rotate_key(ctx: Ctx) -> web.StreamResponse:
    body: dict[str, Any] = {}
    grace = seconds(ctx.form, "grace_hours", HOUR)
    if grace is not None:
        body["grace_seconds"] = grace
    try:
        key = await ctx.api.call("rotateKey", body=body)
    except ClientError as exc:
        return await team_page(ctx, refusal(exc, {"grace_seconds": "grace_hours"}), exc.status)
    old = key["replaces"]
    message = f"Key {old['key_id']} rotated: it works until {old['expires_at'] or 'revoked'}."
    return await team_page(ctx, Outcome(message=message), secret=key)


async def revoke_key(ctx: Ctx) -> web.StreamResponse:
    key = await ctx.api.call("revokeKey")
    return await team_page(ctx, Outcome(message=f"Key {key['key_id']} revoked."))
