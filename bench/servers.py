"""Baseline servers for the benchmarks, each run as its own process by ``bench/run.py``.

``--mode bare``: an aiohttp server (uvloop, no access log, no middleware) that answers every
request with one fixed JSON body held in memory: the floor for any Python aiohttp server on this
machine. It reads the request body, as a real handler must.

``--mode proxy``: a naive aiohttp pass-through proxy: every request is forwarded as is (method,
path, query, Authorization, Content-Type, body) to ``--upstream`` over one pooled client session,
and the answer is returned with its status and content type. No auth, no Redis, no logging:
what the simplest Python proxy in front of RunComfy costs.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

# A typical gateway status answer (same fields and size class as a completed job's status).
FIXED_BODY = (
    b'{"request_id":"0b6f1c5e-2f6b-4d3a-9a55-3c3c8f9f8d11","status":"completed",'
    b'"status_url":"http://127.0.0.1:8080/v1/requests/0b6f1c5e-2f6b-4d3a-9a55-3c3c8f9f8d11/status",'
    b'"result_url":"http://127.0.0.1:8080/v1/requests/0b6f1c5e-2f6b-4d3a-9a55-3c3c8f9f8d11/result"}'
)
FORWARDED_HEADERS = ("Authorization", "Content-Type")


def bare_app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        if request.can_read_body:
            await request.read()
        return web.Response(body=FIXED_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def proxy_app(upstream: str) -> web.Application:
    upstream = upstream.rstrip("/")
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=200)
        app[session_key] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        )
        yield
        await app[session_key].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read() if request.can_read_body else None
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        async with request.app[session_key].request(
            request.method, upstream + request.path_qs, headers=headers, data=body
        ) as resp:
            payload = await resp.read()
            return web.Response(
                body=payload,
                status=resp.status,
                content_type=resp.content_type or "application/json",
            )

    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="bench baseline servers")
    parser.add_argument("--mode", choices=("bare", "proxy"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="", help="proxy mode: http://127.0.0.1:PORT")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    if args.mode == "proxy" and not args.upstream.startswith("http://127.0.0.1:"):
        raise SystemExit("--upstream must be http://127.0.0.1:PORT")
    app = bare_app() if args.mode == "bare" else proxy_app(args.upstream)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
