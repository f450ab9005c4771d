"""The admin API, called in-process for the signed-in admin.

The console changes nothing itself: every read and change is the admin API's own handler from
the operations table (:mod:`gateway.web.operations`), run on a copy of the console's request
that carries the signed-in actor and a JSON body. So the console gets the API's validation
(its 422 details name the fields), its audit records (under the admin's name), its role rule
(the row's :class:`~gateway.web.spec.Auth`) and its numbers, and cannot drift from them.

A console route names its path variables as the API route it calls does (``team_id``,
``key_id``, ...): the handler reads them from the copy's match info, which is the console
route's own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.access.admins import AdminActor
from gateway.common.errors import Forbidden
from gateway.common.jsonutil import dumps, loads
from gateway.web.appkeys import ADMIN_ACTOR, RAW_BODY
from gateway.web.operations import operations
from gateway.web.spec import Auth, Operation


@functools.cache
def _by_id() -> dict[str, Operation]:
    return {op.operation_id: op for op in operations()}


def allowed(actor: AdminActor, operation_id: str) -> bool:
    """Whether ``actor`` may call the operation (so a page shows no control that would fail)."""
    auth = _by_id()[operation_id].auth
    return auth is Auth.VIEWER or (auth is Auth.ADMIN and actor.is_admin)


class AdminApi:
    """Calls of admin operations by ``operationId`` on behalf of one verified actor."""

    def __init__(self, request: web.Request, actor: AdminActor) -> None:
        # Copied before the console reads its own body (aiohttp copies only unread requests);
        # every call copies this one again.
        self._blank = request.clone(headers={})
        self.actor = actor

    async def call(
        self,
        operation_id: str,
        *,
        query: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """The operation's JSON answer; its refusals raise as over HTTP (GatewayError)."""
        op = _by_id()[operation_id]
        if op.auth not in (Auth.VIEWER, Auth.ADMIN):
            raise ValueError(f"{operation_id} is not an admin operation")
        if not allowed(self.actor, operation_id):
            raise Forbidden(
                "This change needs an admin token; viewer tokens may only read.",
                detail="admin_role_required",
            )
        url = self._blank.rel_url.with_query(dict(query or {}))
        sub = self._blank.clone(method=op.method, rel_url=url)
        sub[ADMIN_ACTOR] = self.actor
        sub[RAW_BODY] = dumps(body) if body is not None else b""
        response = await op.handler(sub)
        assert isinstance(response, web.Response)
        assert isinstance(response.body, bytes)
        return loads(response.body)
