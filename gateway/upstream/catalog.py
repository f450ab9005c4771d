"""RunComfy's model catalog, read through a short in-process cache.

The catalog is the same for every team (it is the gateway account's), and some clients fetch a
model's entry before every submit (ComfyUI partner nodes do, for the price), so repeated reads are
served from memory for ``GATEWAY_CATALOG_CACHE_SECONDS``. RunComfy's "no such model" (404) is
remembered for :data:`MISSING_TTL` whatever that setting, because every submit asks: the schema
(request identity), the price (budget estimate) and the gateway's own refusal of a mistyped
model id all read this one answer, and a flood of typos costs RunComfy one call per model.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from gateway.common.errors import UpstreamClientError
from gateway.observability.metrics import upstream_seconds
from gateway.upstream.client import UpstreamClient

_MAX_ENTRIES = 2048
MISSING_TTL = 30.0  # seconds a 404 is remembered: a model RunComfy adds is seen within this
_ALLOWED_PARAMS = frozenset({"search", "category", "kind", "include_schema", "limit", "offset"})


Key = tuple[str, tuple[tuple[str, str], ...]]


class Catalog:
    def __init__(self, upstream: UpstreamClient, ttl_seconds: float) -> None:
        self._upstream = upstream
        self._ttl = ttl_seconds
        self._entries: OrderedDict[Key, tuple[float, Any]] = OrderedDict()
        self._missing: OrderedDict[Key, tuple[float, dict[str, Any]]] = OrderedDict()
        self._reading: dict[Key, asyncio.Task[Any]] = {}

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        """The cached answer, else one read of RunComfy that concurrent callers share: a
        stampede on a model nobody asked for yet costs RunComfy one call, not one per caller."""
        key = (path, tuple(sorted(params.items())))
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(key)
            return hit[1]
        missing = self._missing.get(key)
        if missing is not None and missing[0] > now:
            raise UpstreamClientError(404, missing[1])
        task = self._reading.get(key)
        if task is None:
            task = asyncio.create_task(self._read(key, path, params))
            self._reading[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        started = time.perf_counter()
        try:
            return await asyncio.shield(task)  # a caller that gives up leaves it to the rest
        finally:
            # The read ran in its own task: the wait is this request's time upstream.
            upstream_seconds.set(upstream_seconds.get() + time.perf_counter() - started)

    def _finished(self, key: Key, task: asyncio.Task[Any]) -> None:
        self._reading.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a read nobody waits for is not reported

    async def _read(self, key: Key, path: str, params: Mapping[str, str]) -> Any:
        now = time.monotonic()
        try:
            reply = await self._upstream.call("GET", path, params=params, idempotent=True)
        except UpstreamClientError as exc:
            if exc.status == 404:
                self._remember(self._missing, key, (now + MISSING_TTL, exc.body()))
            raise
        self._missing.pop(key, None)
        if self._ttl > 0:
            self._remember(self._entries, key, (now + self._ttl, reply.body))
        return reply.body

    @staticmethod
    def _remember(entries: OrderedDict[Key, Any], key: Key, value: Any) -> None:
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > _MAX_ENTRIES:
            entries.popitem(last=False)

    def known_missing(self, model_id: str) -> bool:
        """Whether RunComfy said lately that it has no such model (no call made)."""
        missing = self._missing.get((self._model_path(model_id), ()))
        return missing is not None and missing[0] > time.monotonic()

    async def list_models(self, query: Mapping[str, str]) -> Any:
        params = {k: v for k, v in query.items() if k in _ALLOWED_PARAMS}
        return await self._get("/v1/models", params)

    async def categories(self) -> Any:
        return await self._get("/v1/models/categories", {})

    @staticmethod
    def _model_path(model_id: str) -> str:
        return f"/v1/models/{quote(model_id, safe='/')}"

    async def model(self, model_id: str) -> Any:
        """The model's catalog entry; ``UpstreamClientError`` 404 when RunComfy has none."""
        return await self._get(self._model_path(model_id), {})
