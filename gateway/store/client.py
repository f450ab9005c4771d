"""The Redis connection: one pooled client per process, and the mapping of its failures.

``GATEWAY_REDIS_URL`` chooses the client:

    redis://, rediss://, unix://                  one Redis server
    redis+cluster://[user:pass@]host:port[,...]   a Redis Cluster, found from any listed node
    redis+sentinel://[user:pass@]host:port[,...]/service[/db]
                                                  the primary that Redis Sentinel names
    rediss+cluster://…, rediss+sentinel://…       the same over TLS

Every client reports each command to the same observer, fails fast, and raises
``StoreUnavailable`` for an outage (``failures.py``) from each command, script and pipeline. The
gateway keeps every multi-key command and script in one hash slot (see ``layout.py``), so it
needs nothing else from a cluster.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import SplitResult, urlsplit, urlunsplit

import redis.asyncio as aioredis
import structlog
from redis import exceptions as rexc
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from gateway.common.errors import StoreUnavailable
from gateway.store.failures import REDIS_FAILURES, unavailable
from gateway.store.redis_urls import url_options

log = structlog.get_logger(__name__)

Store: TypeAlias = aioredis.Redis | RedisCluster
"""What services talk to: one Redis or a Redis Cluster, through the commands both share."""


class ClusterUnreachable(rexc.ConnectionError):
    """No listed node of the Redis Cluster answered with a usable slot map (an outage, to the
    gateway, like a refused connection to a single Redis)."""


class NotAClusterUrl(RuntimeError):
    """``GATEWAY_REDIS_URL`` names one Redis server but reaches a node of a Redis Cluster."""


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
URL_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)
SENTINEL_PORT = 26379

CommandObserver = Callable[[str, float, bool], None]


async def _observed(
    observer: CommandObserver | None, args: tuple[Any, ...], run: Awaitable[Any]
) -> Any:
    """Await one command, reporting its name, latency and whether it failed; an outage is
    raised as ``StoreUnavailable``."""
    started = time.perf_counter()
    failed = True
    try:
        result = await run
        failed = False
        return result
    except rexc.NoScriptError:
        failed = False  # the normal first call of a script: redis-py loads it and retries
        raise
    except REDIS_FAILURES as exc:
        raise unavailable() from exc
    finally:
        if observer is not None:
            name = str(args[0]).upper() if args else "?"
            observer(name, time.perf_counter() - started, failed)


class StorePipeline(aioredis.client.Pipeline):
    """redis-py's pipeline, raising an outage as ``StoreUnavailable`` like single commands."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error)
        except REDIS_FAILURES as exc:
            raise unavailable() from exc


class StoreClusterPipeline(ClusterPipeline):
    """The cluster's pipeline, raising an outage as ``StoreUnavailable``."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except REDIS_FAILURES as exc:
            raise unavailable() from exc


# redis-py 5.0 builds a cluster pipeline from the client alone; later versions also pass the
# ``transaction`` flag (and 5.0 refuses a true one in ``pipeline()`` itself).
_PIPELINE_TAKES_TRANSACTION = (
    "transaction" in inspect.signature(ClusterPipeline.__init__).parameters
)


class ObservedRedis(aioredis.Redis):
    """A client that reports each command's name, latency and failure (for metrics)."""

    observer: CommandObserver | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        # redis-py leaves this method unannotated
        run = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await _observed(self.observer, args, run)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> StorePipeline:
        return StorePipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class ObservedRedisCluster(RedisCluster):
    """The cluster client, reporting each command as ``ObservedRedis`` does (redirections and
    retries included in its latency)."""

    observer: CommandObserver | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await _observed(self.observer, args, super().execute_command(*args, **options))

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> StoreClusterPipeline:
        if shard_hint:
            raise rexc.RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py's annotations leave _event_dispatcher abstract; its own pipeline() is the same
        if _PIPELINE_TAKES_TRANSACTION:
            return StoreClusterPipeline(self, transaction)  # type: ignore[abstract]
        if transaction:
            raise rexc.RedisClusterException("transaction is deprecated in cluster mode")
        return StoreClusterPipeline(self)  # type: ignore[abstract]

    async def initialize(self, *args: Any, **kwargs: Any) -> ObservedRedisCluster:
        """Read the slot map (commands and pipelines call this whenever it is stale); a failure
        is an outage, not the programming error a bare ``RedisClusterException`` means."""
        try:
            await super().initialize(*args, **kwargs)
        except rexc.RedisClusterException as exc:
            raise ClusterUnreachable(str(exc)) from exc
        return self


class ObservedSentinelRedis(ObservedRedis):
    """The client of the primary Sentinel names; closing it closes the Sentinel clients too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = cast(SentinelConnectionPool, self.connection_pool)
        await pool.sentinel_manager.aclose()


def check_url(url: str) -> str:
    """``url`` if the gateway can connect with it, else ValueError saying why."""
    if not url:
        return url
    scheme = urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise ValueError("the scheme must be one of " + ", ".join(f"{s}://" for s in URL_SCHEMES))
    if scheme in CLUSTER_SCHEMES:
        _cluster_options(url)
    if scheme in SENTINEL_SCHEMES:
        _sentinel_options(url)
    return url


def _hosts(url: str, default_port: int) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The ``host:port`` list of a URL naming several nodes, and the connection options its
    credentials and query give every one of them (``db`` only if the query names it)."""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for host in hosts.split(","):
        address = urlsplit(f"//{host.strip()}")
        if not address.hostname:
            raise ValueError(f"the URL lists host:port pairs, not {host!r}")
        seeds.append((address.hostname, address.port or default_port))
    base = {**CLUSTER_SCHEMES, **SENTINEL_SCHEMES}[parts.scheme]
    netloc = f"{credentials}@localhost" if credentials else "localhost"
    options = url_options(urlunsplit(SplitResult(base, netloc, "", parts.query, "")))
    options.pop("host", None)
    return seeds, options


def _cluster_options(url: str) -> dict[str, Any]:
    """RedisCluster arguments for a ``redis+cluster://`` URL: every listed node is a seed
    (``seeds``, host and port), and the credentials and query options apply to all of them."""
    seeds, options = _hosts(url, 6379)
    if urlsplit(url).path.strip("/") not in ("", "0") or options.pop("db", 0):
        raise ValueError("a Redis Cluster has only database 0")
    options["seeds"] = seeds
    return options


def _sentinel_options(
    url: str,
) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """For a ``redis+sentinel://`` URL: the Sentinels, the service name, the primary's connection
    options (the URL's credentials, query options and database) and the Sentinels' own
    (``sentinel_username`` and ``sentinel_password`` from the query, and TLS like the primary)."""
    sentinels, options = _hosts(url, SENTINEL_PORT)
    service, _, db = urlsplit(url).path.strip("/").partition("/")
    if not service:
        raise ValueError("a Sentinel URL names its service: redis+sentinel://host:port/<service>")
    if db:
        if not db.isdigit():
            raise ValueError(f"the database after the service must be a number, not {db!r}")
        options["db"] = int(db)
    own = {
        k: options.pop(f"sentinel_{k}")
        for k in ("username", "password")
        if f"sentinel_{k}" in options
    }
    own |= {k: v for k, v in options.items() if k.startswith("ssl")}
    return sentinels, service, options, own


def connect(
    url: str,
    max_connections: int = 512,
    observer: CommandObserver | None = None,
    timeout: float = 2.0,
) -> Store:
    """A pooled asyncio client with short timeouts, so an outage fails fast instead of hanging.

    For a cluster, ``max_connections`` is per node. Options in the URL's query win.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 15,
        "max_connections": max_connections,
        # Never re-send a command after a connection error: a script such as admit may have
        # run, and running it twice would charge twice.
        "retry": Retry(NoBackoff(), 0),
    }
    client: ObservedRedis | ObservedRedisCluster
    scheme = urlsplit(url).scheme
    if scheme in CLUSTER_SCHEMES:
        options |= _cluster_options(url)
        seeds = options.pop("seeds")
        client = ObservedRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds], **options
        )
    elif scheme in SENTINEL_SCHEMES:
        sentinels, service, primary, own = _sentinel_options(url)
        timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
        # redis-py leaves the Sentinel class unannotated
        manager = Sentinel(sentinels, sentinel_kwargs=timeouts | own)  # type: ignore[no-untyped-call]
        client = manager.master_for(
            service, redis_class=ObservedSentinelRedis, **(options | primary)
        )
    else:
        client = cast(ObservedRedis, ObservedRedis.from_url(url, **options))
    client.observer = observer
    return client


async def ping(redis: Store) -> None:
    """PING the Redis, or every primary of a cluster: one down is an outage of its slots."""
    if isinstance(redis, RedisCluster):
        await redis.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await redis.ping()


async def refuse_cluster_node(redis: Store) -> None:
    """Raise ``NotAClusterUrl`` when a plain URL reaches a cluster node: every key of a slot that
    node does not serve would fail with MOVED."""
    if isinstance(redis, RedisCluster):
        return
    try:
        info = await redis.info("cluster")
    except rexc.ResponseError:
        return  # INFO disabled: nothing to learn
    if str(info.get("cluster_enabled", "0")) == "1":
        raise NotAClusterUrl(
            "GATEWAY_REDIS_URL reaches a Redis Cluster node: write it as "
            "redis+cluster://host:port[,host:port...] (rediss+cluster:// for TLS)"
        )


T = TypeVar("T")


async def through_outage(step: Callable[[], Awaitable[T]], within: float) -> T:
    """Run ``step``, again and again while Redis is unavailable, for up to ``within`` seconds
    (then its last failure is raised). Only for steps that may run twice: admission may not."""
    deadline = time.monotonic() + within
    pause = 0.05
    while True:
        try:
            return await step()
        except StoreUnavailable:
            if time.monotonic() + pause > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)


async def warn_if_evicting(redis: Store) -> str | None:
    """Warn when Redis may evict the gateway's keys; returns the policy (None if unreadable).

    On a cluster every primary is asked, and the first policy that is not ``noeviction`` wins.
    """
    replies: list[dict[Any, Any]]
    try:
        if isinstance(redis, RedisCluster):
            by_node: Any = await redis.config_get(
                "maxmemory-policy", target_nodes=RedisCluster.PRIMARIES
            )
            # redis-py answers a dict per node when it asked several, the reply itself for one
            replies = list(by_node.values()) if len(redis.get_primaries()) > 1 else [by_node]
        else:
            replies = [await redis.config_get("maxmemory-policy")]
    except rexc.ResponseError:
        return None  # managed Redis services often disable CONFIG
    policies = [str(reply.get("maxmemory-policy", "")) for reply in replies]
    policy = next((p for p in policies if p != "noeviction"), policies[0] if policies else "")
    if policy and policy != "noeviction":
        log.warning(
            "redis_eviction_policy",
            policy=policy,
            advice="set maxmemory-policy noeviction: evicted keys lose teams, keys and jobs",
        )
    return policy
