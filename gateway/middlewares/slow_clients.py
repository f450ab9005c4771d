"""Slow clients: a request body must arrive in time, and one declared too large is refused unread.

aiohttp puts no limit on how long reading a body may take, so a client that sends its body a
byte at a time would hold a handler and a connection for as long as it likes. Every body is
read here, within ``GATEWAY_CLIENT_BODY_TIMEOUT_SECONDS``, before any handler runs (handlers
then get it from aiohttp's cache); a slower client gets 408 408001. A body whose
``Content-Length`` exceeds ``GATEWAY_MAX_BODY_BYTES`` gets 413 at once; a chunked one gets it as
soon as it grows past the limit.

Slow *headers* (slowloris) never reach a middleware: ``serve`` bounds them with the server's
idle timeout (``GATEWAY_CLIENT_IDLE_TIMEOUT_SECONDS``), which closes a connection that has not
completed a request's headers in that time, counted from its opening or its previous answer.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.appkeys import SETTINGS
from gateway.errors import PayloadTooLarge, RequestTimeout


@web.middleware
async def slow_clients_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.body_exists:
        settings = request.app[SETTINGS]
        declared = request.content_length
        if declared is not None and declared > settings.max_body_bytes:
            raise PayloadTooLarge(
                detail=f"the body is {declared} bytes; the limit is {settings.max_body_bytes}"
            )
        try:
            async with asyncio.timeout(settings.client_body_timeout_seconds):
                await request.read()
        except TimeoutError:
            raise RequestTimeout(
                detail=f"the body took over {settings.client_body_timeout_seconds:g} s"
            ) from None
    return await handler(request)


def setup_slow_clients(app: web.Application) -> None:
    app.middlewares.append(slow_clients_middleware)
