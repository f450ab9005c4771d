"""The Redis connection: one pooled client per process, and the mapping of its failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.errors import StoreUnavailable

log = structlog.get_logger(__name__)

STORE_FAILURES: tuple[type[Exception], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.BusyLoadingError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,
    rexc.MasterDownError,
    OSError,
)


CommandObserver = Callable[[str, float, bool], None]


class ObservedRedis(aioredis.Redis):
    """A client that reports each command's name, latency and failure (for metrics)."""

    observer: CommandObserver | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        failed = True
        try:
            # redis-py leaves this method unannotated
            result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            failed = False
            return result
        except rexc.NoScriptError:
            failed = False  # the normal first call of a script: redis-py loads it and retries
            raise
        finally:
            if self.observer is not None:
                name = str(args[0]).upper() if args else "?"
                self.observer(name, time.perf_counter() - started, failed)


def connect(
    url: str, max_connections: int = 512, observer: CommandObserver | None = None
) -> aioredis.Redis:
    """A pooled asyncio client with short timeouts, so an outage fails fast instead of hanging."""
    client = cast(
        ObservedRedis,
        ObservedRedis.from_url(
            url,
            decode_responses=True,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            health_check_interval=15,
            max_connections=max_connections,
            # Never re-send a command after a connection error: a script such as admit may
            # have run, and running it twice would charge twice.
            retry=Retry(NoBackoff(), 0),
        ),
    )
    client.observer = observer
    return client


def as_store_error(exc: BaseException) -> StoreUnavailable | None:
    """The gateway error for a Redis failure, or None when ``exc`` is not one."""
    if isinstance(exc, STORE_FAILURES):
        return StoreUnavailable(detail="state store unreachable")
    return None


async def warn_if_evicting(redis: aioredis.Redis) -> str | None:
    """Warn when Redis may evict the gateway's keys; returns the policy (None if unreadable)."""
    try:
        reply = await redis.config_get("maxmemory-policy")
    except rexc.ResponseError:
        return None  # managed Redis services often disable CONFIG
    policy = str(reply.get("maxmemory-policy", ""))
    if policy and policy != "noeviction":
        log.warning(
            "redis_eviction_policy",
            policy=policy,
            advice="set maxmemory-policy noeviction: evicted keys lose teams, keys and jobs",
        )
    return policy
