"""Gateway request ids: the mapping to RunComfy's job id and to the team that owns it.

A record is written *before* a submit leaves the gateway, so nothing reaches RunComfy unrecorded:
a submit whose answer is lost stays findable (state ``unknown``) for reconciliation.
Records live in the owning team's hash slot and are looked up with the caller's slot, so another
team's id is not merely forbidden but unaddressable: it is 404, exactly like an unknown id.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio as aioredis

from gateway.clock import now_iso
from gateway.credentials import KeyCredential
from gateway.store.layout import UNKNOWN_SUBMITS_CAP, Layout
from gateway.store.scripts import Scripts
from gateway.teams import TeamPrincipal, unauthorized_reason

REQUEST_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class Api(StrEnum):
    MODEL = "model"
    SERVERLESS = "serverless"


class SubmitState(StrEnum):
    SUBMITTING = "submitting"  # recorded, on its way to RunComfy
    SUBMITTED = "submitted"  # RunComfy accepted it: upstream_id is set
    UNKNOWN = "unknown"  # sent, but no answer came back: needs reconciliation


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    team_id: str
    key_id: str
    api: Api
    target: str  # model id or deployment id
    state: SubmitState
    upstream_id: str
    created_at: str

    @classmethod
    def from_hash(cls, request_id: str, fields: dict[str, str]) -> RequestRecord:
        return cls(
            request_id=request_id,
            team_id=fields["team"],
            key_id=fields.get("key_id", ""),
            api=Api(fields["api"]),
            target=fields["target"],
            state=SubmitState(fields.get("state", SubmitState.SUBMITTING)),
            upstream_id=fields.get("upstream_id", ""),
            created_at=fields.get("created_at", ""),
        )


def new_request_id() -> str:
    return str(uuid.uuid4())


class RequestRecords:
    """Creates and resolves gateway request ids, verifying the caller's key in the same step."""

    def __init__(
        self, redis: aioredis.Redis, scripts: Scripts, layout: Layout, ttl_seconds: int
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout
        self._ttl = ttl_seconds

    async def begin(
        self, cred: KeyCredential, api: Api, target: str
    ) -> tuple[TeamPrincipal, RequestRecord]:
        """Verify the key and record a new request before it is sent upstream."""
        rid = new_request_id()
        created_at = now_iso()
        ok, value = await self._scripts.begin_request(
            keys=[self._layout.key(cred.slot, cred.kid), self._layout.request(cred.slot, rid)],
            args=[
                cred.digest,
                self._ttl,
                "key_id",
                cred.key_id,
                "api",
                api.value,
                "target",
                target,
                "state",
                SubmitState.SUBMITTING.value,
                "created_at",
                created_at,
            ],
        )
        if int(ok) == 0:
            raise unauthorized_reason(str(value))
        if int(ok) != 1:
            raise RuntimeError("request id collision")  # 122 random bits: not expected to happen
        team = str(value)
        principal = TeamPrincipal(team_id=team, slot=cred.slot, key_id=cred.key_id)
        record = RequestRecord(
            request_id=rid,
            team_id=team,
            key_id=cred.key_id,
            api=api,
            target=target,
            state=SubmitState.SUBMITTING,
            upstream_id="",
            created_at=created_at,
        )
        return principal, record

    async def load(
        self, cred: KeyCredential, rid: str
    ) -> tuple[TeamPrincipal, RequestRecord | None]:
        """Verify the key and read the caller's record ``rid`` (None if unknown to this team)."""
        if not REQUEST_ID_RE.match(rid):
            rid = ""  # still verify the key: a bad key must get 401, not 404
        reply = await self._scripts.load_request(
            keys=[self._layout.key(cred.slot, cred.kid), self._layout.request(cred.slot, rid)],
            args=[cred.digest],
        )
        status = int(reply[0])
        if status == 0:
            raise unauthorized_reason(str(reply[1]))
        principal = TeamPrincipal(team_id=str(reply[1]), slot=cred.slot, key_id=cred.key_id)
        if status == 2 or not rid:
            return principal, None
        flat = [str(v) for v in reply[2:]]
        return principal, RequestRecord.from_hash(
            rid, dict(zip(flat[::2], flat[1::2], strict=True))
        )

    async def mark_submitted(self, slot: str, rid: str, upstream_id: str) -> None:
        await self._redis.hset(
            self._layout.request(slot, rid),
            mapping={"state": SubmitState.SUBMITTED.value, "upstream_id": upstream_id},
        )

    async def discard(self, slot: str, rid: str) -> None:
        """Forget a request RunComfy definitely refused (its id was never handed out)."""
        await self._redis.delete(self._layout.request(slot, rid))

    async def mark_unknown(self, slot: str, rid: str, reason: str) -> None:
        """Keep a submit of unknown outcome findable by operators for reconciliation."""
        key = self._layout.unknown_submits(slot)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._layout.request(slot, rid),
                mapping={"state": SubmitState.UNKNOWN.value, "unknown_reason": reason},
            )
            pipe.zadd(key, {rid: time.time()})
            pipe.zremrangebyrank(key, 0, -UNKNOWN_SUBMITS_CAP - 1)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def unknown_submits(self, slot: str) -> list[RequestRecord]:
        """Submits of unknown outcome of one team, newest first."""
        rids = [
            str(r) for r in await self._redis.zrevrange(self._layout.unknown_submits(slot), 0, 999)
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.hgetall(self._layout.request(slot, rid))
            records: list[dict[str, str]] = await pipe.execute()
        return [
            RequestRecord.from_hash(rid, rec) for rid, rec in zip(rids, records, strict=True) if rec
        ]
