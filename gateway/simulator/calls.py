"""The call log: which API routes were hit, so tests can prove the gateway did or did not call.

Only method, path, route name, query and time are kept; headers (the token) never are.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

MAX_CALLS_KEPT = 10_000
"""Counts are exact forever; the detailed list keeps only the latest calls."""


@dataclass(frozen=True, slots=True)
class Call:
    """One API request as the simulator saw it."""

    method: str
    path: str
    route: str
    query: dict[str, str]
    at: str


class CallLog:
    """Per-route counters plus the most recent calls."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.calls: deque[Call] = deque(maxlen=MAX_CALLS_KEPT)

    def record(self, request: web.Request, route: str, at: str) -> None:
        """Count one call; repeated query keys are joined with commas."""
        query = {key: ",".join(request.query.getall(key)) for key in request.query}
        self.calls.append(Call(request.method, request.path, route, query, at))
        self.counts[route] += 1

    def count(self, route: str) -> int:
        """How many times ``route`` was called since the last reset."""
        return self.counts[route]

    def clear(self) -> None:
        """Forget everything (``POST /_sim/reset``)."""
        self.counts.clear()
        self.calls.clear()

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /_sim/calls``."""
        return {"counts": dict(self.counts), "calls": [asdict(call) for call in self.calls]}
