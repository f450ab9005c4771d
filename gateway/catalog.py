"""RunComfy's model catalog, read through a short in-process cache.

The catalog is the same for every team (it is the gateway account's), and some clients fetch a
model's entry before every submit (ComfyUI partner nodes do, for the price), so repeated reads are
served from memory for ``GATEWAY_CATALOG_CACHE_SECONDS``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from gateway.upstream import UpstreamClient

_MAX_ENTRIES = 2048
_ALLOWED_PARAMS = frozenset({"search", "category", "kind", "include_schema", "limit", "offset"})


class Catalog:
    def __init__(self, upstream: UpstreamClient, ttl_seconds: float) -> None:
        self._upstream = upstream
        self._ttl = ttl_seconds
        self._entries: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, Any]] = (
            OrderedDict()
        )

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        key = (path, tuple(sorted(params.items())))
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(key)
            return hit[1]
        reply = await self._upstream.call("GET", path, params=params, idempotent=True)
        if self._ttl > 0:
            self._entries[key] = (now + self._ttl, reply.body)
            self._entries.move_to_end(key)
            while len(self._entries) > _MAX_ENTRIES:
                self._entries.popitem(last=False)
        return reply.body

    async def list_models(self, query: Mapping[str, str]) -> Any:
        params = {k: v for k, v in query.items() if k in _ALLOWED_PARAMS}
        return await self._get("/v1/models", params)

    async def categories(self) -> Any:
        return await self._get("/v1/models/categories", {})

    async def model(self, model_id: str) -> Any:
        return await self._get(f"/v1/models/{quote(model_id, safe='/')}", {})
