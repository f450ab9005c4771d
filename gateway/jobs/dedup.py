"""Deduplication rules: request identity, per-request cache controls, policies and purges.

Generation is random and some users resend a prompt on purpose to get variations, so how far
dedup goes is a policy an admin sets per team, per key and per model; the most restrictive of
those that apply wins (``off`` < ``inflight`` < ``seeded`` < ``cache``):

- ``cache``: hit on a completed result and coalesce onto a job in flight (the default);
- ``seeded``: like ``cache`` for a request that pins its randomness (its seeds, see
  :mod:`gateway.jobs.seeds`), reusing only results of requests that pinned theirs; like ``inflight``
  for any other request (a model without a seed parameter, a seed left out or ``-1``);
- ``inflight``: only coalesce concurrent duplicates; results are not reused later;
- ``off``: every submit is a new RunComfy job.

The standard ``Cache-Control`` request header is ignored on purpose: some clients send
``no-cache`` on every call (the ComfyUI partner nodes do), which would turn the cache off for
everyone who uses them.

Per request, ``X-Gateway-Cache-Control`` narrows it further: ``no-cache`` (run fresh, store the
new result), ``no-store`` (run fresh, store nothing, let nobody join) and ``max-age=N`` (accept
only a result younger than N seconds).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from enum import StrEnum
from typing import Any

import structlog

from gateway.common.errors import BadRequest, GatewayError, UpstreamClientError, ValidationFailed
from gateway.common.records import record
from gateway.jobs.canonical import SECRET_BYTES, RequestIdentity
from gateway.jobs.gate import Lookup
from gateway.jobs.seeds import model_request_pinned, serverless_request_pinned
from gateway.observability.metrics import Metrics
from gateway.store.client import Store
from gateway.store.contracts import PurgeTargetArgs, ReplaceHashArgs
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts
from gateway.upstream.apis import Api
from gateway.upstream.catalog import Catalog

log = structlog.get_logger(__name__)

CACHE_CONTROL_HEADER = "X-Gateway-Cache-Control"
SCHEMA_TTL = 600.0
SCHEMA_FAILURE_TTL = 30.0
SCHEMA_ENTRIES = 4096  # models remembered per replica (least recently used go first)


class Policy(StrEnum):
    """Least to most reuse; the most restrictive applicable one wins."""

    OFF = "off"
    INFLIGHT = "inflight"
    SEEDED = "seeded"
    CACHE = "cache"


@record
class CacheControl:
    no_cache: bool = False
    no_store: bool = False
    max_age: float | None = None


def parse_cache_control(header: str | None) -> CacheControl:
    """Parse ``X-Gateway-Cache-Control``; an unknown directive is a clear 400, not ignored."""
    if not header:
        return CacheControl()
    no_cache = no_store = False
    max_age: float | None = None
    for raw in header.split(","):
        directive = raw.strip().lower()
        if not directive:
            continue
        if directive == "no-cache":
            no_cache = True
        elif directive == "no-store":
            no_store = True
        elif directive.startswith("max-age="):
            try:
                max_age = float(directive.removeprefix("max-age="))
            except ValueError:
                max_age = -1.0
            if not max_age >= 0:
                raise BadRequest(
                    f"Invalid {CACHE_CONTROL_HEADER}: max-age must be a number of seconds >= 0.",
                    detail=header,
                )
        else:
            raise BadRequest(
                f"Unknown {CACHE_CONTROL_HEADER} directive {directive!r}; "
                "use no-cache, no-store or max-age=N.",
                detail=header,
            )
    return CacheControl(no_cache=no_cache, no_store=no_store, max_age=max_age)


class SchemaCache:
    """Models' input schemas from the catalog, so defaults count in a request's identity."""

    def __init__(self, catalog: Catalog, metrics: Metrics) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self._entries: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()

    def cached(self, model_id: str) -> bool:
        """Whether the schema (or that there is none) is known without a catalog read."""
        hit = self._entries.get(model_id)
        if hit is not None and hit[0] > time.monotonic():
            return True
        return self._catalog.known_missing(model_id)

    def _remember(self, model_id: str, expires: float, schema: dict[str, Any] | None) -> None:
        self._entries[model_id] = (expires, schema)
        self._entries.move_to_end(model_id)
        while len(self._entries) > SCHEMA_ENTRIES:
            self._entries.popitem(last=False)

    async def schema(self, model_id: str) -> dict[str, Any] | None:
        """The model's input schema, or None when it cannot be had now (the body is then hashed
        as sent); ``UpstreamClientError`` 404 when RunComfy has no such model."""
        now = time.monotonic()
        hit = self._entries.get(model_id)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(model_id)
            return hit[1]
        try:
            entry = await self._catalog.model(model_id)
        except UpstreamClientError as exc:
            if exc.status == 404:  # no such model: the submit is refused (the catalog remembers)
                raise
            log.info("schema_unavailable", model=model_id, error=type(exc).__name__)
            self._remember(model_id, now + SCHEMA_FAILURE_TTL, None)
            return None
        except GatewayError as exc:
            # RunComfy unreachable: hash the body as sent; identical bodies still match.
            log.info("schema_unavailable", model=model_id, error=type(exc).__name__)
            self._remember(model_id, now + SCHEMA_FAILURE_TTL, None)
            return None
        schema = entry.get("input_schema") if isinstance(entry, dict) else None
        schema = schema if isinstance(schema, dict) else None
        self._remember(model_id, now + SCHEMA_TTL, schema)
        self._metrics.labels.add_model(model_id)  # the catalog knows it: a bounded label
        return schema


class IdentityKey:
    """The secret request identities are keyed with: created once by whichever replica asks
    first, kept in Redis, read once per process. Keyed, an identity (``X-Gateway-Cache-Key``,
    dedup keys, audit entries) is no fingerprint of a prompt that anyone could recompute."""

    def __init__(self, redis: Store, layout: Layout) -> None:
        self._redis = redis
        self._key = layout.identity_secret()
        self._identity: RequestIdentity | None = None
        self._lock = asyncio.Lock()

    async def identity(self) -> RequestIdentity:
        if self._identity is None:
            async with self._lock:
                if self._identity is None:
                    fresh = secrets.token_hex(SECRET_BYTES)
                    await self._redis.set(self._key, fresh, nx=True)
                    stored = await self._redis.get(self._key)
                    self._identity = RequestIdentity(bytes.fromhex(str(stored or fresh)))
        return self._identity


class DedupService:
    def __init__(
        self,
        redis: Store,
        scripts: Scripts,
        layout: Layout,
        schemas: SchemaCache,
        metrics: Metrics,
    ) -> None:
        self._identity = IdentityKey(redis, layout)
        self._metrics = metrics
        self._redis = redis
        self._scripts = scripts
        self._layout = layout
        self._schemas = schemas

    def schema_cached(self, model_id: str) -> bool:
        return self._schemas.cached(model_id)

    async def lookup_for(
        self, api: Api, target: str, body: dict[str, Any], control: CacheControl
    ) -> Lookup:
        schema = await self._schemas.schema(target) if api is Api.MODEL else None
        identity = (await self._identity.identity())(api.value, target, body, schema)
        if api is Api.MODEL:
            pinned = model_request_pinned(body, schema)
        else:
            pinned = serverless_request_pinned(body)
        return Lookup(
            identity=identity,
            pinned=pinned,
            allow_lookup=not (control.no_cache or control.no_store),
            allow_store=not control.no_store,
            max_age=control.max_age,
        )

    # --- policies ---------------------------------------------------------------------------

    async def get_policy(self, slot: str) -> dict[str, Any]:
        raw = await self._redis.hgetall(self._layout.policy(slot))
        fields = {str(k): str(v) for k, v in raw.items()}
        return {
            "default": fields.get("default"),
            "keys": {k[4:]: v for k, v in fields.items() if k.startswith("key:")},
            "models": {k[6:]: v for k, v in fields.items() if k.startswith("model:")},
        }

    async def set_policy(
        self,
        slot: str,
        default: str | None,
        keys: dict[str, str],
        models: dict[str, str],
    ) -> None:
        """Replace a team's policy as a whole."""
        mapping: dict[str, str] = {}
        if default is not None:
            mapping["default"] = default
        mapping |= {f"key:{k}": v for k, v in keys.items()}
        mapping |= {f"model:{m}": v for m, v in models.items()}
        for value in mapping.values():
            if value not in Policy.__members__.values():
                raise ValidationFailed(detail=f"policy must be one of {[p.value for p in Policy]}")
        flat = tuple(item for pair in mapping.items() for item in pair)
        await self._scripts.run(ReplaceHashArgs(hash_key=self._layout.policy(slot), fields=flat))

    # --- purges -----------------------------------------------------------------------------

    async def purge_identity(self, slot: str, identity: str) -> int:
        purged = int(await self._redis.delete(self._layout.dedup(slot, identity)))
        self._metrics.cache_purges.inc(purged)
        return purged

    async def purge_target(self, slot: str, target: str) -> int:
        reply = await self._scripts.run(
            PurgeTargetArgs(
                target_index=self._layout.cache_index(slot, target),
                cached_targets=self._layout.cache_targets(slot),
                dedup_prefix=self._layout.dedup_prefix(slot),
                target=target,
            )
        )
        purged = reply.purged
        self._metrics.cache_purges.inc(purged)
        return purged

    async def purge_team(self, slot: str) -> int:
        targets = [str(t) for t in await self._redis.smembers(self._layout.cache_targets(slot))]
        return sum([await self.purge_target(slot, t) for t in targets])
