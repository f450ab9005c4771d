"""Baseline servers for the benchmarks, each run as its own process by ``bench/run.py``.

``--mode bare``: an aiohttp server (uvloop, no access log, no middleware) that answers every
request with one fixed JSON body held in memory: the floor for any Python aiohttp server on this
machine. It reads the request body, as a real handler must.

``--mode proxy``: a naive aiohttp pass-through proxy: every request is forwarded as is (method,
path, query, Authorization, Content-Type, body) to ``--upstream`` over one pooled client session,
and the answer is returned with its status and content type. No auth, no Redis, no logging:
what the simplest Python proxy in front of RunComfy costs.

``--mode redis``: the bare server plus what any answer served from Redis with a key check must
do: hash the bearer token (SHA-256) and run one Lua script that compares it with a stored digest
and returns a stored JSON body, over the gateway's own pipelined Redis connection
(``gateway/store/pipelined.py``). No routing, quotas, records, metrics or logging: the floor for
the gateway's status and hit paths, so the report can tell the gateway's own work from the
Redis round trip every request needs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
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
FLOOR_KEY = "rcg_benchfloor_key"  # the bearer token the redis mode accepts
UNAUTHORIZED = (  # RunComfy's error shape, like every error of the gateway
    b'{"error_code":401001,"error_message":"The API key is not valid.","detail":"invalid_key"}'
)
CHAT_COMPLETION = (
    b'{"id":"chatcmpl-bench0001","object":"chat.completion","created":1764547200,'
    b'"model":"bench-model","system_fingerprint":"fp_bench",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"The bench stub answers '
    b'from memory."},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
)
NOT_FOUND = b'{"error":{"message":"not found","type":"invalid_request_error","code":null}}'
FLOOR_SCRIPT = """
if redis.call('HGET', KEYS[1], 'digest') ~= ARGV[1] then return false end
return redis.call('HGET', KEYS[1], 'body')
"""


def bare_app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        if request.can_read_body:
            await request.read()
        return web.Response(body=FIXED_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def redis_app(redis_url: str) -> web.Application:
    from gateway.store.pipelined import PipelinedRedis, PipelinedScript

    redis_key = web.AppKey("redis", PipelinedRedis)
    script_key = web.AppKey("script", PipelinedScript)
    record = "bench:floor:{k}"

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        redis = PipelinedRedis(redis_url)
        digest = hashlib.sha256(FLOOR_KEY.encode()).hexdigest()
        await redis.call("HSET", record, "digest", digest, "body", FIXED_BODY)
        app[redis_key] = redis
        app[script_key] = PipelinedScript(redis, FLOOR_SCRIPT)
        yield
        await redis.close()

    async def answer(request: web.Request) -> web.Response:
        if request.can_read_body:
            await request.read()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        digest = hashlib.sha256(token.encode()).hexdigest()
        body = await request.app[script_key](keys=[record], args=[digest])
        if body is None:
            return web.Response(status=401, body=UNAUTHORIZED, content_type="application/json")
        return web.Response(body=body.encode(), content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(redis_ctx)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def openai_app() -> web.Application:
    async def complete(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=CHAT_COMPLETION, content_type="application/json")

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, body=NOT_FOUND, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/chat/completions", complete)
    app.router.add_route("*", "/{tail:.*}", not_found)
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
    parser.add_argument("--mode", choices=("bare", "proxy", "redis", "openai"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="", help="proxy mode: http://127.0.0.1:PORT")
    parser.add_argument("--redis", default="", help="redis mode: the Redis URL")
    parser.add_argument(
        "--reuse-port", action="store_true", help="SO_REUSEPORT: several processes on one port"
    )
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    if args.mode == "proxy" and not args.upstream.startswith("http://127.0.0.1:"):
        raise SystemExit("--upstream must be http://127.0.0.1:PORT")
    if args.mode == "bare":
        app = bare_app()
    elif args.mode == "redis":
        app = redis_app(args.redis)
    elif args.mode == "openai":
        app = openai_app()
    else:
        app = proxy_app(args.upstream)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        reuse_port=args.reuse_port or None,
    )


if __name__ == "__main__":
    main()
