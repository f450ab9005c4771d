"""Bearer-token check on every API route, with each API's own 401 error code."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.simulator.errors import api_family, unauthorized
from gateway.simulator.keys import SIM_STATE
from gateway.simulator.routing import CONTROL_PREFIX


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 unless ``Authorization: Bearer <config.token>``; unmatched paths fall through to 404."""
    if request.path.startswith(CONTROL_PREFIX) or request.match_info.http_exception is not None:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = request.app[SIM_STATE].config.token
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise unauthorized(api_family(request.path))
    return await handler(request)
