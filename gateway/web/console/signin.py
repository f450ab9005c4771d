"""Signing in with an admin token and out again.

The token is verified exactly as the admin API verifies a bearer token, then forgotten: the
session keeps the token's id (and, for the bootstrap token, a digest of it), never the token.
"""

from __future__ import annotations

from aiohttp import web

from gateway.access.admins import BOOTSTRAP, AdminActor
from gateway.access.credentials import AdminCredential, AdminTokenCredential, parse_bearer
from gateway.common.errors import Unauthorized
from gateway.web.appkeys import ADMINS, SETTINGS
from gateway.web.console.guard import (
    CONSOLE_SESSIONS,
    MAX_FORM_BYTES,
    Ctx,
    refused,
    same_origin,
    secure,
)
from gateway.web.console.render import PREFIX, html, redirect
from gateway.web.console.sessions import COOKIE, digest


def _next(value: object) -> str:
    """Where to go after signing in: a console path, never another site."""
    target = str(value or "")
    ok = target.startswith(PREFIX + "/") and "//" not in target and "\\" not in target
    return target if ok and not target.startswith(f"{PREFIX}/log") else f"{PREFIX}/teams"


async def sign_in_page(request: web.Request) -> web.Response:
    return html(
        "login.html",
        session=None,
        next=_next(request.query.get("next")),
        reason=request.query.get("reason", ""),
        error="",
    )


async def _actor(request: web.Request, token: str) -> tuple[AdminActor, str]:
    """The admin the token stands for, and the bootstrap digest the session keeps."""
    bootstrap = request.app[SETTINGS].admin_token.get_secret_value()
    cred = parse_bearer(f"Bearer {token}", bootstrap)
    if isinstance(cred, AdminCredential):
        return BOOTSTRAP, digest(bootstrap)
    if isinstance(cred, AdminTokenCredential):
        return await request.app[ADMINS].authenticate(cred), ""
    raise Unauthorized("That is not an admin token.", detail="admin_only")


async def sign_in(request: web.Request) -> web.Response:
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return refused(request, 413, "The form is too large.")
    if not same_origin(request):
        return refused(request, 403, "The form came from another site.")
    form = await request.post()
    target = _next(form.get("next"))
    try:
        actor, bootstrap_digest = await _actor(request, str(form.get("token", "")).strip())
    except Unauthorized as exc:
        return html("login.html", 401, session=None, next=target, reason="", error=exc.message)
    session_id, _ = await request.app[CONSOLE_SESSIONS].create(actor, bootstrap_digest)
    response = redirect(target)
    response.set_cookie(
        COOKIE,
        session_id,
        path=PREFIX,
        max_age=request.app[CONSOLE_SESSIONS].lifetime_seconds,
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )
    return response


async def sign_out(ctx: Ctx) -> web.StreamResponse:
    await ctx.request.app[CONSOLE_SESSIONS].end(ctx.session_id)
    response = redirect(f"{PREFIX}/login?reason=signed-out")
    response.del_cookie(COOKIE, path=PREFIX)
    return response
