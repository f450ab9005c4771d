"""Lua scripts, called by SHA and reloaded after NOSCRIPT, over the pipelined connection
(:mod:`gateway.store.pipelined`) when the URL allows it, else over redis-py.

A script declares the libraries of ``lib/`` it calls on a ``-- uses: clock, keys`` line; the
loader prepends those and what they use in turn (each once, dependencies first), and nothing
else: a script that uses none is sent as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from typing import Any, Protocol, TypeVar

from gateway.store.client import Store
from gateway.store.contracts import CONTRACTS, ScriptArgs
from gateway.store.pipelined import PipelinedRedis, PipelinedScript

R = TypeVar("R")


_USES = re.compile(r"^-- uses: (.*)$", re.MULTILINE)


def _read(name: str) -> str:
    return resources.files("gateway.store").joinpath(name).read_text(encoding="utf-8")


def uses(text: str) -> list[str]:
    """The libraries a script or library declares it calls."""
    m = _USES.search(text)
    return [name.strip() for name in m[1].split(",")] if m else []


def libraries(script: str) -> list[str]:
    """The libraries a script needs, dependencies first, each once."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dependency in uses(_read(f"lib/{name}.lua")):
            visit(dependency)
        order.append(name)

    for name in uses(_read(f"{script}.lua")):
        visit(name)
    return order


def script_text(script: str, clock_offset: float = 0.0) -> str:
    """What Redis runs for ``script``: its libraries, then its own text."""
    parts = []
    for name in libraries(script):
        if name == "clock":
            parts.append(f"local CLOCK_OFFSET = {clock_offset!r}")
        parts.append(_read(f"lib/{name}.lua"))
    return "\n".join([*parts, _read(f"{script}.lua")])


class ScriptCall(Protocol):
    """``await script(keys=[...], args=[...])``: redis-py's AsyncScript or a PipelinedScript."""

    async def __call__(self, keys: Any = None, args: Any = None) -> Any: ...


class Scripts:
    """Every script of :data:`CONTRACTS`, loaded once; :meth:`run` calls one by its arguments
    and parses its reply."""

    def __init__(self, calls: Mapping[str, ScriptCall]) -> None:
        self._calls = dict(calls)

    @classmethod
    def register(
        cls, redis: Store, pipelined: PipelinedRedis | None = None, *, clock_offset: float = 0.0
    ) -> Scripts:
        """``clock_offset`` shifts Redis's clock as the scripts see it (tests of period ends)."""
        texts = {c.script: script_text(c.script, clock_offset) for c in CONTRACTS}
        if pipelined is not None:
            return cls({name: PipelinedScript(pipelined, text) for name, text in texts.items()})
        return cls({name: redis.register_script(text) for name, text in texts.items()})

    async def run(self, args: ScriptArgs[R]) -> R:
        raw = await self._calls[args.script](keys=args.keys(), args=args.argv())
        return args.parse_reply(raw)
