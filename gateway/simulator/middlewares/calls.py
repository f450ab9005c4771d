"""Count every API call before anything can reject it, so tests see attempts, not successes."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.simulator.keys import SIM_ROUTES, SIM_STATE


@web.middleware
async def calls_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record method, path, route name, query and time (never headers)."""
    route = request.app[SIM_ROUTES].name_of(request)
    if route is not None:
        state = request.app[SIM_STATE]
        state.calls.record(request, route, state.timestamp())
    return await handler(request)
