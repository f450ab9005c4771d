"""The row type of the operations table: one method and path, its handler, who may call it,
what it answers and which errors it may raise.

:mod:`gateway.web.operations` holds the rows; the router is built from them
(:func:`add_routes`) and so is ``/openapi.json`` (:mod:`gateway.web.openapi`), so a route cannot
be served undocumented or documented unserved, nor guarded otherwise than documented.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import field
from enum import Enum
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from gateway.common.errors import (
    BadRequest,
    Forbidden,
    GatewayBusy,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from gateway.common.records import record
from gateway.web.callers import require_admin, require_catalog_caller, require_viewer

Json = dict[str, Any]
Where = Literal["path", "query", "header"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Guard = Callable[[web.Request], Awaitable[object]]


@record
class Relayed:
    """RunComfy's own 4xx for the caller's input, passed on with RunComfy's body and code
    (:class:`~gateway.common.errors.UpstreamClientError`, whose status is RunComfy's)."""

    status: int


ErrorSpec = type[GatewayError] | Relayed

ANY_ROUTE: tuple[ErrorSpec, ...] = (GatewayError,)
"""Every route may fail unexpectedly."""
CREDENTIAL_CHECKED: tuple[ErrorSpec, ...] = (Unauthorized, Forbidden, StoreUnavailable)
"""Any credential check: refused (401, 403) or not checkable without Redis (503)."""
BODY_READ: tuple[ErrorSpec, ...] = (
    BadRequest,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    GatewayBusy,
    StoreUnavailable,
)
"""Any route that reads a body (:mod:`gateway.web.middlewares.bodies`)."""


def status_of(error: ErrorSpec) -> int:
    return error.status


class Auth(Enum):
    """Who may call an operation: its security requirement, its auth errors and its guard."""

    NONE = "none"
    TEAM = "team"  # a team key; an admin token is 403
    CATALOG = "catalog"  # a team key or an admin token of either role
    VIEWER = "viewer"  # an admin token of either role; a team key is 403
    ADMIN = "admin"  # an admin token of role admin; a viewer or a team key is 403

    def security(self) -> list[Json]:
        team: Json = {"TeamKey": []}
        admin: Json = {"AdminToken": []}
        return {
            Auth.NONE: [],
            Auth.TEAM: [team],
            Auth.CATALOG: [team, admin],
            Auth.VIEWER: [admin],
            Auth.ADMIN: [admin],
        }[self]

    def errors(self) -> tuple[ErrorSpec, ...]:
        return () if self is Auth.NONE else CREDENTIAL_CHECKED

    def guard(self) -> Guard | None:
        """What runs before the handler. None for a team key: the route identifies it first
        and verifies it inside the Redis round trip of its own work (one trip, not two)."""
        return {
            Auth.CATALOG: require_catalog_caller,
            Auth.VIEWER: require_viewer,
            Auth.ADMIN: require_admin,
        }.get(self)


@record
class Param:
    name: str
    where: Where
    schema: Json
    description: str = ""
    required: bool = False


@record
class Ok:
    """A success answer: its status, body (a response model or a JSON schema) and headers."""

    status: int
    body: type[BaseModel] | Json
    description: str
    headers: tuple[str, ...] = ()
    media_type: str = "application/json"


_VARIABLE = re.compile(r"\{(\w+)(?::([^{}]+))?\}")
_LITERAL = re.compile(r"^[\w-]+$")


@record
class Operation:
    """One row: ``route`` is the router's pattern; a variable that admits one word only
    (``{leaf:status}``) is that word in the documented path, any other ``{name:regex}`` is
    the parameter ``{name}``."""

    method: str
    route: str
    operation_id: str
    summary: str
    tag: str
    auth: Auth
    ok: tuple[Ok, ...]
    errors: tuple[ErrorSpec, ...] = ()
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | Json | None = None
    body_required: bool = True
    description: str = ""
    head: bool = True  # a GET also answers HEAD (aiohttp's add_get)
    handler: Handler = field(kw_only=True)

    @property
    def path(self) -> str:
        """The path as clients call it and the document names it."""

        def shown(match: re.Match[str]) -> str:
            name, pattern = match[1], match[2]
            return pattern if pattern and _LITERAL.match(pattern) else f"{{{name}}}"

        return _VARIABLE.sub(shown, self.route)

    def all_errors(self) -> tuple[ErrorSpec, ...]:
        """The row's errors and those of every route of its kind, each once, in order."""
        errors: list[ErrorSpec] = [*self.errors, *self.auth.errors(), *ANY_ROUTE]
        if self.body is not None:
            errors += BODY_READ
        if any(p.where == "path" for p in self.params):
            errors.append(NotFound)  # a value the route's pattern refuses is no route
        return tuple(dict.fromkeys(errors))

    def statuses(self) -> list[int]:
        return sorted({status_of(e) for e in self.all_errors()})

    def guarded(self) -> Handler:
        """The handler behind the row's guard, when it has one."""
        guard, handler = self.auth.guard(), self.handler
        if guard is None:
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            await guard(request)
            return await handler(request)

        return guarded


def add_routes(app: web.Application, operations: list[Operation]) -> None:
    """Register every row, in order (rows of one path are adjacent: one aiohttp resource)."""
    for op in operations:
        if op.method == "GET":
            app.router.add_get(op.route, op.guarded(), allow_head=op.head)
        else:
            app.router.add_route(op.method, op.route, op.guarded())
