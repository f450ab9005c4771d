"""Stable route names, the vocabulary of the call log and of fault rules.

aiohttp's own route names must be unique per resource and GET/POST on
``/v1/models/{model_id}`` share one, so names are kept in this table instead.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

CONTROL_PREFIX = "/_sim/"
UNMATCHED = "unmatched"
"""Route name of requests no API route matched (they answer 404/405)."""


class RouteTable:
    """Maps each registered API route to its stable name."""

    def __init__(self) -> None:
        self._names: dict[web.AbstractRoute, str] = {}

    def add(
        self, app: web.Application, method: str, path: str, handler: Handler, name: str
    ) -> None:
        """Register an API route under ``name``."""
        self._names[app.router.add_route(method, path, handler)] = name

    def names(self) -> list[str]:
        """Every API route name, sorted."""
        return sorted(set(self._names.values()))

    def name_of(self, request: web.Request) -> str | None:
        """The request's route name; None for the control API, which is never logged."""
        if request.path.startswith(CONTROL_PREFIX):
            return None
        return self._names.get(request.match_info.route, UNMATCHED)
