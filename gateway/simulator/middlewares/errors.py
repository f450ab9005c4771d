"""Render every failure in RunComfy's JSON error shape, including the router's 404/405."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.simulator.errors import SimError, api_family, default_error_code, error_body
from gateway.simulator.jsonio import json_response

logger = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: a client must never get aiohttp's HTML error pages."""
    try:
        return await handler(request)
    except SimError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = default_error_code(exc.status, api_family(request.path))
        detail = f"{request.method} {request.path}"
        return json_response(error_body(code, exc.reason, detail), exc.status, headers)
    except Exception:
        logger.exception("simulator handler crashed on %s %s", request.method, request.path)
        return json_response(error_body(500001, "Internal server error."), status=500)
