"""JSON in and out with orjson, the one place responses are serialised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BadRequest, PayloadTooLarge

JSON_CONTENT_TYPE = "application/json"
# Deepest nesting of arrays and objects a request body may have. RunComfy inputs are a few levels
# deep; the bound keeps every later step safe: orjson serialises at most 254 levels and the
# canonicaliser recurses once per level, far below Python's recursion limit.
MAX_JSON_DEPTH = 128


def dumps(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON bytes."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes; raises ``orjson.JSONDecodeError``."""
    return orjson.loads(data)


def depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests arrays and objects deeper than ``limit`` (iterative: any depth)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response with RunComfy's content type."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
    )


async def read_json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, or a RunComfy-shaped 400 explaining what is wrong."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(detail=exc.text or "") from None
    if not raw.strip():
        if required:
            raise BadRequest("The request body must be a JSON object.", detail="empty body")
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("The request body is not valid JSON.", detail=str(exc)) from None
    if not isinstance(value, dict):
        raise BadRequest(
            "The request body must be a JSON object.", detail=f"got {type(value).__name__}"
        )
    if depth_exceeds(value):
        raise BadRequest(
            "The request body is nested too deeply.",
            detail=f"arrays and objects may nest at most {MAX_JSON_DEPTH} levels deep",
        )
    return value
