"""JSON in and out with orjson, the one place responses are serialised."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.common.errors import BadRequest

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


# orjson reads integers outside [-2**63, 2**64) as floats; any float that large is integral.
_INEXACT_INT = float(2**63)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def dumps_exact(value: Any) -> bytes:
    """Serialise what :func:`read_json_object` read, integers beyond 64 bits included."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _inspect(value: Any, limit: int = MAX_JSON_DEPTH) -> tuple[bool, bool]:
    """(nests deeper than ``limit``, holds a float that orjson may have read from an integer
    literal), in one iterative walk: any depth, one pass on the request path."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    inexact = False
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, float) and abs(item) >= _INEXACT_INT:
                inexact = True
            continue
        if depth >= limit:
            return True, inexact
        pending.extend((child, depth + 1) for child in children)
    return False, inexact


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response with RunComfy's content type."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
    )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object read as RunComfy's Python parser reads it: integers of any size exact and,
    of a key written twice in one object, the last value; else a RunComfy-shaped 400.

    orjson reads first (fast, strict); the rare body with a number of 2**63 or more is read
    again by the standard library, which keeps integers exact.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("The request body is not valid JSON.", detail=str(exc)) from None
    if not isinstance(value, dict):
        raise BadRequest(
            "The request body must be a JSON object.", detail=f"got {type(value).__name__}"
        )
    too_deep, inexact = _inspect(value)
    if too_deep:
        raise BadRequest(
            "The request body is nested too deeply.",
            detail=f"arrays and objects may nest at most {MAX_JSON_DEPTH} levels deep",
        )
    if inexact:
        # Checked for depth first: the standard library's parser recurses once per level.
        try:
            exact: dict[str, Any] = json.loads(raw, parse_constant=_refuse_constant)
        except ValueError as exc:  # an integer longer than Python reads (4,300 digits)
            raise BadRequest("The request body holds a number too long.", detail=str(exc)) from None
        return exact
    return value
