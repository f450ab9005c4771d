"""Reading what clients send the way RunComfy does: JSON bodies (or a 400) and query flags."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.simulator.errors import bad_request

_TRUE = frozenset({"true", "1", "yes"})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> Any:
    """The body as any JSON value, or 400 400001 if it does not parse.

    Parsed by Python's ``json`` module, as RunComfy's Python service parses it: integers of any
    size exact, the last value of a key written twice (NaN and Infinity refused)."""
    try:
        return json.loads(await request.read(), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise bad_request("The request body must be valid JSON.", str(exc)) from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or 400 400001 saying why it is not one."""
    value = await read_json(request)
    if not isinstance(value, dict):
        raise bad_request(
            "The request body must be a JSON object.", f"got JSON {type(value).__name__}"
        )
    return value


def query_flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter such as ``include_cost=true``."""
    return request.query.get(name, "").lower() in _TRUE
