"""The Redis connection: one pooled client per process, and the mapping of its failures."""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog
from redis import exceptions as rexc

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


def connect(url: str, max_connections: int = 512) -> aioredis.Redis:
    """A pooled asyncio client with short timeouts, so an outage fails fast instead of hanging."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        health_check_interval=15,
        max_connections=max_connections,
    )


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
