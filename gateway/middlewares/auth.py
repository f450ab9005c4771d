"""Identify the caller (no I/O): the route decides what it requires and verifies it.

Team keys are verified inside the same Redis round trip as the route's own work (see
:mod:`gateway.request_records`), which is why identification and verification are split.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.appkeys import CREDENTIAL, SETTINGS
from gateway.credentials import AdminCredential, KeyCredential, parse_bearer
from gateway.errors import Forbidden, Unauthorized


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    admin_token = request.app[SETTINGS].admin_token.get_secret_value()
    request[CREDENTIAL] = parse_bearer(request.headers.get("Authorization"), admin_token)
    return await handler(request)


def team_credential(request: web.Request) -> KeyCredential:
    """The caller's team key (still to be verified in Redis), or 401/403."""
    cred = request[CREDENTIAL]
    if isinstance(cred, KeyCredential):
        return cred
    if isinstance(cred, AdminCredential):
        raise Forbidden(
            "The admin token cannot run jobs; use a team API key.", detail="admin_token"
        )
    if cred is None:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.", "missing_key")
    raise Unauthorized("The API key is not valid.", detail="invalid_key")


def require_admin(request: web.Request) -> None:
    """Allow only the admin token; a team key is 403, anything else 401."""
    cred = request[CREDENTIAL]
    if isinstance(cred, AdminCredential):
        return
    if isinstance(cred, KeyCredential):
        raise Forbidden("This route is for gateway administrators only.", detail="admin_only")
    if not request.app[SETTINGS].admin_token.get_secret_value():
        raise Forbidden("Administration is disabled: GATEWAY_ADMIN_TOKEN is not set.")
    raise Unauthorized("Missing or invalid admin token.", detail="admin_only")


def setup_auth(app: web.Application) -> None:
    app.middlewares.append(auth_middleware)
