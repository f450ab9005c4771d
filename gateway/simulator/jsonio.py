"""JSON answers with orjson and RunComfy's content type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

JSON_CONTENT_TYPE = "application/json"


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON; integers beyond 64 bits (which RunComfy's Python keeps) included."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
        return text.encode()


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer with RunComfy's content type."""
    return web.Response(
        body=dumps(body), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
    )
