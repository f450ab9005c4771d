"""Identify the caller (no I/O): the route decides what it requires and verifies it.

The ``Authorization`` header is parsed once, when a route first asks for the caller, rather than
in a middleware layer of its own: every layer costs every request, and the routes that need no
caller (health, metrics) need no parsing.

Team keys are verified inside the same Redis round trip as the route's own work (see
:mod:`gateway.jobs.records`), which is why identification and verification are split. Admin
routes are guarded by :func:`require_viewer` (reads) or :func:`require_admin` (changes), as their
row in the operations table says, before the handler runs; both verify a named admin token
against Redis on every call, so a revoked one is refused at once on every replica. The handler
reads the verified actor with :func:`admin_actor`.
"""

from __future__ import annotations

from aiohttp import web

from gateway.access.admins import BOOTSTRAP, AdminActor
from gateway.access.credentials import (
    AdminCredential,
    AdminTokenCredential,
    Credential,
    KeyCredential,
    parse_bearer,
)
from gateway.common.errors import Forbidden, Unauthorized
from gateway.web.appkeys import ADMIN_ACTOR, ADMINS, CREDENTIAL, SETTINGS, TEAM_ID, TEAMS

__all__ = [
    "AdminActor",
    "admin_actor",
    "credential",
    "require_admin",
    "require_catalog_caller",
    "require_viewer",
    "team_credential",
]


def credential(request: web.Request) -> Credential | None:
    """What the caller presents (not yet verified): parsed on first use, then kept."""
    if CREDENTIAL in request:
        return request[CREDENTIAL]
    admin_token = request.app[SETTINGS].admin_token.get_secret_value()
    cred = parse_bearer(request.headers.get("Authorization"), admin_token)
    request[CREDENTIAL] = cred
    return cred


def team_credential(request: web.Request) -> KeyCredential:
    """The caller's team key (still to be verified in Redis), or 401/403."""
    cred = credential(request)
    if isinstance(cred, KeyCredential):
        return cred
    if isinstance(cred, AdminCredential | AdminTokenCredential):
        raise Forbidden(
            "The admin token cannot run jobs; use a team API key.", detail="admin_token"
        )
    if cred is None:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.", "missing_key")
    raise Unauthorized("The API key is not valid.", detail="invalid_key")


def presents_admin_token(request: web.Request) -> bool:
    """Whether the caller sent an admin token of either kind (not yet verified)."""
    return isinstance(credential(request), AdminCredential | AdminTokenCredential)


async def require_viewer(request: web.Request) -> AdminActor:
    """The verified admin actor, of either role; a team key is 403, anything else 401."""
    cred = credential(request)
    if isinstance(cred, AdminCredential):
        actor = BOOTSTRAP
    elif isinstance(cred, AdminTokenCredential):
        actor = await request.app[ADMINS].authenticate(cred)
    elif isinstance(cred, KeyCredential):
        raise Forbidden("This route is for gateway administrators only.", detail="admin_only")
    else:
        raise Unauthorized("Missing or invalid admin token.", detail="admin_only")
    request[ADMIN_ACTOR] = actor
    return actor


async def require_admin(request: web.Request) -> AdminActor:
    """The verified admin actor with role ``admin``; a viewer is 403, the rest as for viewers."""
    actor = await require_viewer(request)
    if not actor.is_admin:
        raise Forbidden(
            "This change needs an admin token; viewer tokens may only read.",
            detail="admin_role_required",
        )
    return actor


async def require_catalog_caller(request: web.Request) -> None:
    """The catalog is open to any verified team key and to admin tokens of either role."""
    if presents_admin_token(request):
        await require_viewer(request)
        return
    principal = await request.app[TEAMS].authenticate(team_credential(request))
    request[TEAM_ID] = principal.team_id


def admin_actor(request: web.Request) -> AdminActor:
    """The admin actor verified for this request by its route's guard."""
    return request[ADMIN_ACTOR]
