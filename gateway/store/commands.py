"""The plain commands of the poller's hot path, over the connection chosen once at start-up.

Profiling the miss path showed redis-py's layers around these three at 18 % of the gateway's
CPU, so they go over the pipelined connection (``pipelined.py``) when the URL allows one, as the
scripts do, else over redis-py. ``commands_for`` picks the implementation; callers see only the
``Commands`` protocol, and either raises ``StoreUnavailable`` for an outage.
"""

from __future__ import annotations

from typing import Protocol

from gateway.store.client import Store
from gateway.store.pipelined import PipelinedRedis
from gateway.store.scripts import pairs


class Commands(Protocol):
    async def hgetall(self, key: str) -> dict[str, str]: ...

    async def hdel(self, key: str, field: str) -> None: ...

    async def zrem(self, key: str, member: str) -> None: ...


class RedisPyCommands:
    """The commands over redis-py (TLS, Cluster and Sentinel URLs)."""

    def __init__(self, redis: Store) -> None:
        self._redis = redis

    async def hgetall(self, key: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in (await self._redis.hgetall(key)).items()}

    async def hdel(self, key: str, field: str) -> None:
        await self._redis.hdel(key, field)

    async def zrem(self, key: str, member: str) -> None:
        await self._redis.zrem(key, member)


class PipelinedCommands:
    """The commands over the pipelined connection, sent with the scripts of the same tick."""

    def __init__(self, pipelined: PipelinedRedis) -> None:
        self._pipelined = pipelined

    async def hgetall(self, key: str) -> dict[str, str]:
        return pairs(await self._pipelined.call("HGETALL", key))

    async def hdel(self, key: str, field: str) -> None:
        await self._pipelined.call("HDEL", key, field)

    async def zrem(self, key: str, member: str) -> None:
        await self._pipelined.call("ZREM", key, member)


def commands_for(redis: Store, pipelined: PipelinedRedis | None) -> Commands:
    """The pipelined commands when there is a pipelined connection, else redis-py's."""
    return RedisPyCommands(redis) if pipelined is None else PipelinedCommands(pipelined)
