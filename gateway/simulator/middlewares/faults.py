"""Apply armed fault rules (see :mod:`gateway.simulator.faults`) before auth and handlers."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.simulator.errors import api_family
from gateway.simulator.keys import SIM_ROUTES, SIM_STATE


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Fail the call as the first live matching rule says, or pass it through."""
    route = request.app[SIM_ROUTES].name_of(request)
    rule = None if route is None else request.app[SIM_STATE].faults.take(route)
    if rule is None:
        return await handler(request)
    if rule.after and rule.action == "delay" and rule.status is None:
        # Shielded: the job exists even if the caller hangs up while the answer is late.
        response = await asyncio.shield(handler(request))
        await asyncio.sleep(rule.delay)
        return response
    if rule.delay:
        await asyncio.sleep(rule.delay)
    if rule.action == "drop":
        if request.transport is not None:
            request.transport.close()
        # Never sent: aiohttp sees the closed transport and drops the response quietly.
        return web.Response(status=500)
    if rule.action == "delay" and rule.status is None:
        return await handler(request)
    return rule.response(api_family(request.path))
