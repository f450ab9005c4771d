"""The one place where errors become responses, always in RunComfy's error shape.

aiohttp's own HTTP exceptions (unknown route, wrong method, body too large) are mapped to gateway
errors first; a Redis outage arrives as ``StoreUnavailable`` (the store raises nothing else for
one) and is counted and logged with the Redis error behind it; anything unexpected, a stray
``TimeoutError`` or ``OSError`` included, becomes a bare 500 whose log line names the exception
type and location but carries no traceback and no secrets.
"""

from __future__ import annotations

import traceback

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.common.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    UpstreamClientError,
)
from gateway.common.jsonutil import json_response
from gateway.store.failures import cause
from gateway.web.appkeys import METRICS

log = structlog.get_logger(__name__)


def error_response(error: GatewayError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers())


def from_http_exception(exc: web.HTTPException) -> GatewayError | None:
    """The gateway error for one of aiohttp's own HTTP exceptions (None for non-errors)."""
    if exc.status < 400:
        return None
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("No such route.", detail="unknown_path")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(sorted(exc.allowed_methods))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(detail=exc.text or "")
    body = {"error_code": exc.status * 1000 + 1, "error_message": exc.reason, "detail": ""}
    return UpstreamClientError(exc.status, body) if exc.status < 500 else GatewayError()


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StoreUnavailable as exc:
        request.app[METRICS].redis_errors.inc()
        failure = cause(exc)
        log.error("store_unavailable", error_type=type(failure).__name__, where=_where(failure))
        return error_response(exc)
    except GatewayError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        mapped = from_http_exception(exc)
        if mapped is None:
            raise
        return error_response(mapped)
    except Exception as exc:
        log.error("unhandled_error", error_type=type(exc).__name__, where=_where(exc))
        return error_response(GatewayError())


def setup_errors(app: web.Application) -> None:
    app.middlewares.append(error_middleware)
