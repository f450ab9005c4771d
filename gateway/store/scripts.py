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
from gateway.store.contracts import CONTRACTS, ScriptArgs, pairs
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


class Commands:
    """The plain commands of the poller's hot path, over the pipelined connection when there is
    one (as the scripts are), else redis-py: profiling the miss path showed redis-py's layers
    around these three at 18 % of the gateway's CPU."""

    def __init__(self, redis: Store, pipelined: PipelinedRedis | None) -> None:
        self._redis = redis
        self._pipelined = pipelined

    async def hgetall(self, key: str) -> dict[str, str]:
        if self._pipelined is not None:
            return pairs(await self._pipelined.call("HGETALL", key))
        return {str(k): str(v) for k, v in (await self._redis.hgetall(key)).items()}

    async def hdel(self, key: str, field: str) -> None:
        if self._pipelined is not None:
            await self._pipelined.call("HDEL", key, field)
        else:
            await self._redis.hdel(key, field)

    async def zrem(self, key: str, member: str) -> None:
        if self._pipelined is not None:
            await self._pipelined.call("ZREM", key, member)
        else:
            await self._redis.zrem(key, member)
