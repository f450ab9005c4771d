"""What runs before every console page: the session, its admin token, CSRF and the origin.

A page handler receives a :class:`Ctx` only once all of these hold:

* the cookie names a live session (else: to the sign-in page);
* the session's admin token is still valid: a named token not revoked, the bootstrap token
  still the one it signed in with (else the session ends: to the sign-in page, saying why);
* a POST comes from this console's own origin (``Origin``, when the browser sends it) and
  carries the session's CSRF token (hidden field ``csrf_token`` or header ``X-CSRF-Token``),
  else 403; and is made by an ``admin`` (a viewer's POST is 403, whatever it asks).

The admin API then enforces its own rules as for any caller (:mod:`gateway.web.console.api`).
Its refusals are rendered as pages with the API's message and details, which never hold a
key or a token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from gateway.access.admins import BOOTSTRAP
from gateway.common.errors import GatewayError, NotFound
from gateway.upstream.urls import public_base
from gateway.web.appkeys import ADMIN_ACTOR, ADMINS, SETTINGS
from gateway.web.console.api import AdminApi, allowed
from gateway.web.console.render import PREFIX, SECURITY_HEADERS, html, redirect
from gateway.web.console.sessions import COOKIE, Session, SessionStore, digest

CONSOLE_SESSIONS = web.AppKey("console_sessions", SessionStore)
MAX_FORM_BYTES = 64 * 1024


@dataclass
class Ctx:
    """One console request of a signed-in admin."""

    request: web.Request
    session: Session
    session_id: str
    api: AdminApi
    form: MultiDictProxy[str] = field(default_factory=lambda: MultiDictProxy(MultiDict()))

    async def listed_keys(self, entries: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The team's keys a page lists by id: the active ones, and the revoked ones that still
        have an entry in ``entries`` (a limit, a dedup policy), so that it can be removed."""
        keys = (await self.api.call("listKeys"))["keys"]
        return {k["key_id"]: k for k in keys if k["active"] or k["key_id"] in entries}

    def team_url(self, leaf: str) -> str:
        """The console URL of a tab (``leaf``) of the team this request is about."""
        return f"{PREFIX}/teams/{self.request.match_info['team_id']}/{leaf}"

    def page(
        self, template: str, status: int = 200, *, url: str | None = None, **values: Any
    ) -> web.Response:
        """A page of the console, for this admin; ``url`` is where the browser should show
        it (after a change made by a POST to another path)."""
        headers = {"HX-Push-Url": url} if url else None
        return html(
            template,
            status,
            headers,
            session=self.session,
            can=lambda operation_id: allowed(self.session.actor, operation_id),
            path=self.request.path,
            **values,
        )


ConsoleHandler = Callable[[Ctx], Awaitable[web.StreamResponse]]


def same_origin(request: web.Request) -> bool:
    """Whether a POST's ``Origin`` (when sent) is the console's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # an old browser or a non-browser client: the CSRF token decides
    try:
        expected = public_base(request, request.app[SETTINGS].public_url)
    except GatewayError:
        return False
    return hmac.compare_digest(origin.lower(), expected.lower())


def secure(request: web.Request) -> bool:
    """Whether the console is served over https (its cookie is then ``Secure``)."""
    try:
        return public_base(request, request.app[SETTINGS].public_url).startswith("https://")
    except GatewayError:
        return False


def to_sign_in(request: web.Request, reason: str = "") -> web.Response:
    """To the sign-in page, back here afterwards; htmx follows ``HX-Redirect``."""
    target = f"{PREFIX}/login?next={quote(request.path)}"
    if reason:
        target += f"&reason={reason}"
    if request.headers.get("HX-Request"):
        response = web.Response(status=200, headers={**SECURITY_HEADERS, "HX-Redirect": target})
    else:
        response = redirect(target)
    response.del_cookie(COOKIE, path=PREFIX)
    return response


async def still_valid(request: web.Request, session: Session) -> bool:
    """Whether the admin token that signed in would still be accepted by the admin API."""
    if session.token_id == BOOTSTRAP.token_id:
        current = request.app[SETTINGS].admin_token.get_secret_value()
        return bool(current) and hmac.compare_digest(digest(current), session.bootstrap_digest)
    try:
        token = await request.app[ADMINS].get(session.token_id)
    except NotFound:
        return False
    return token.revoked_at is None


def refused(request: web.Request, status: int, message: str, **values: Any) -> web.Response:
    """An error page for a request that got no further than the guard."""
    return html("error.html", status, session=None, message=message, detail="", **values)


def page(
    handler: ConsoleHandler, *, change: bool = True
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler`` behind the console's checks (see the module docstring); a POST that changes
    nothing (``change=False``: signing out) is open to viewers too."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            ctx = await _checked(request, change)
        except GatewayError as exc:  # Redis unreachable, say: a page, not JSON
            return refused(request, exc.status, exc.message)
        if isinstance(ctx, web.Response):
            return ctx
        try:
            return await handler(ctx)
        except GatewayError as exc:
            return ctx.page("error.html", exc.status, message=exc.message, detail=exc.detail)

    return guarded


async def _checked(request: web.Request, change: bool) -> Ctx | web.Response:
    """The request's :class:`Ctx` once every check holds, else the answer refusing it."""
    sessions = request.app[CONSOLE_SESSIONS]
    session_id = request.cookies.get(COOKIE, "")
    session = await sessions.find(session_id)
    if session is None:
        return to_sign_in(request)
    if not await still_valid(request, session):
        await sessions.end(session_id)
        return to_sign_in(request, "revoked")
    request[ADMIN_ACTOR] = session.actor  # for the access log, as for an admin API call
    ctx = Ctx(request, session, session_id, AdminApi(request, session.actor))
    if request.method != "POST":
        return ctx
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return refused(request, 413, "The form is too large.")
    if not same_origin(request):
        return refused(request, 403, "The form came from another site.")
    posted = await request.post()
    ctx.form = MultiDictProxy(MultiDict((k, v) for k, v in posted.items() if isinstance(v, str)))
    token = ctx.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
    if not session.csrf_matches(str(token) if token else None):
        return refused(request, 403, "The form is out of date: reload the page.")
    if change and not session.actor.is_admin:
        return refused(request, 403, "A viewer may not change anything.")
    return ctx
