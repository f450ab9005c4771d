"""Lua scripts, called by SHA and reloaded after NOSCRIPT, over the pipelined connection
(:mod:`gateway.store.pipelined`) when the URL allows it, else over redis-py.

Every script gets ``common.lua`` (key verification, Redis's clock, terminal states) and
``quota.lua`` (periods, GCRA, budget alerts, usage counters) prepended.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any, Protocol, TypeVar

from gateway.store.client import Store
from gateway.store.contracts import CONTRACTS, ScriptArgs, pairs
from gateway.store.pipelined import PipelinedRedis, PipelinedScript

R = TypeVar("R")


def _read(name: str) -> str:
    return resources.files("gateway.store").joinpath(name).read_text(encoding="utf-8")


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
        prelude = "\n".join(
            [f"local CLOCK_OFFSET = {clock_offset!r}", _read("common.lua"), _read("quota.lua")]
        )
        texts = {c.script: prelude + "\n" + _read(f"{c.script}.lua") for c in CONTRACTS}
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
