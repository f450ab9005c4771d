"""Console pages of the administrators: named admin tokens and the audit log."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.common.errors import ClientError
from gateway.web.console.forms import Outcome, body_of, refusal
from gateway.web.console.guard import Ctx
from gateway.web.console.render import PREFIX

AUDIT_FILTERS = ("actor", "action", "team", "target", "since", "cursor")


async def _admins(
    ctx: Ctx, outcome: Outcome | None = None, status: int = 200, token: Any = None
) -> web.Response:
    listing = await ctx.api.call("listAdminTokens")
    return ctx.page(
        "admins.html",
        status,
        url=f"{PREFIX}/admins",
        admins=listing["admins"],
        outcome=outcome or Outcome(),
        token=token,
        form=ctx.form,
    )


async def admins_page(ctx: Ctx) -> web.StreamResponse:
    return await _admins(ctx)


async def create_admin(ctx: Ctx) -> web.StreamResponse:
    try:
        token = await ctx.api.call("createAdminToken", body=body_of(ctx.form, ("name", "role")))
    except ClientError as exc:
        return await _admins(ctx, refusal(exc), exc.status)
    return await _admins(
        ctx, Outcome(message=f"Admin token for {token['name']} created."), token=token
    )


async def revoke_admin(ctx: Ctx) -> web.StreamResponse:
    try:
        token = await ctx.api.call("revokeAdminToken")
    except ClientError as exc:
        return await _admins(ctx, refusal(exc), exc.status)
    return await _admins(ctx, Outcome(message=f"Admin token {token['token_id']} revoked."))


async def audit_page(ctx: Ctx) -> web.StreamResponse:
    """The audit log, newest first, with the API's filters."""
    query = {k: v for k in AUDIT_FILTERS if (v := ctx.request.query.get(k, "").strip())}
    query["limit"] = "50"
    outcome = Outcome()
    try:
        page = await ctx.api.call("readAudit", query=query)
    except ClientError as exc:
        outcome = refusal(exc)
        page = {"entries": [], "next_cursor": None}
    filters = {k: v for k, v in query.items() if k not in ("limit", "cursor")}
    return ctx.page(
        "audit.html",
        400 if outcome.error else 200,
        entries=page["entries"],
        next_cursor=page["next_cursor"],
        filters=filters,
        outcome=outcome,
    )
