"""Teams and their API keys: creation, listing, revocation and per-request verification.

Keys are verified in Redis on every request (inside the team's hash slot, one round trip), with no
local cache: a revoked key fails on the very next request on every replica.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from gateway.clock import now_iso
from gateway.credentials import (
    SLOT_LEN,
    KeyCredential,
    new_key,
    random_id,
    split_key_id,
)
from gateway.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts

TEAM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DELETE_RETRIES = 5


@dataclass(frozen=True, slots=True)
class TeamPrincipal:
    """A caller verified as holding a live key of ``team_id``."""

    team_id: str
    slot: str
    key_id: str


@dataclass(frozen=True, slots=True)
class Team:
    team_id: str
    name: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What an admin may see of a key: never the key or its hash."""

    key_id: str
    team_id: str
    name: str
    prefix: str
    created_at: str
    revoked_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.revoked_at is None}


def _strs(value: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash reply (the client decodes responses) typed as ``str`` to ``str``."""
    return cast(dict[str, str], dict(value))


def unauthorized_reason(reason: str) -> Unauthorized:
    if reason == "revoked_key":
        return Unauthorized("The API key has been revoked.", detail="revoked_key")
    return Unauthorized("The API key is not valid.", detail="invalid_key")


class TeamService:
    """Rules for teams and keys; the Redis layout comes from :class:`Layout`."""

    def __init__(self, redis: aioredis.Redis, scripts: Scripts, layout: Layout) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout

    async def authenticate(self, cred: KeyCredential) -> TeamPrincipal:
        """Verify a key against Redis; raises :class:`Unauthorized`."""
        ok, value = await self._scripts.authenticate(
            keys=[self._layout.key(cred.slot, cred.kid)], args=[cred.digest]
        )
        if int(ok) != 1:
            raise unauthorized_reason(str(value))
        return TeamPrincipal(team_id=str(value), slot=cred.slot, key_id=cred.key_id)

    async def create_team(self, team_id: str | None, name: str | None) -> Team:
        if team_id is None:
            team_id = "team-" + random_id(8)
        if not TEAM_ID_RE.match(team_id):
            raise ValidationFailed(
                "Invalid team_id.",
                detail="team_id must be 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit",
            )
        slot = random_id(SLOT_LEN)
        if not await self._redis.hsetnx(self._layout.team_index(), team_id, slot):
            raise Conflict(f"Team {team_id!r} already exists.")
        team = Team(team_id=team_id, name=name or team_id, created_at=now_iso())
        await self._redis.hset(
            self._layout.team(slot),
            mapping={"team_id": team_id, "name": team.name, "created_at": team.created_at},
        )
        return team

    async def slot_of(self, team_id: str) -> str:
        slot = await self._redis.hget(self._layout.team_index(), team_id)
        if slot is None:
            raise NotFound(f"No team {team_id!r}.")
        return str(slot)

    async def get_team(self, team_id: str) -> Team:
        slot = await self.slot_of(team_id)
        record = _strs(await self._redis.hgetall(self._layout.team(slot)))
        if not record:
            raise NotFound(f"No team {team_id!r}.")
        return Team(team_id=team_id, name=record["name"], created_at=record["created_at"])

    async def slots(self) -> dict[str, str]:
        """Every team's slot tag, by team id."""
        return _strs(await self._redis.hgetall(self._layout.team_index()))

    async def team_ids(self) -> list[str]:
        return [str(t) for t in await self._redis.hkeys(self._layout.team_index())]

    async def list_teams(self) -> list[Team]:
        index = _strs(await self._redis.hgetall(self._layout.team_index()))
        teams: list[Team] = []
        for team_id in sorted(index):
            try:
                teams.append(await self.get_team(team_id))
            except NotFound:
                continue  # deleted meanwhile
        return teams

    async def delete_team(self, team_id: str) -> None:
        """Delete a team and every key of it at once; its request ids expire with their TTL."""
        slot = await self.slot_of(team_id)
        for _ in range(_DELETE_RETRIES):
            kids = {str(k) for k in await self._redis.smembers(self._layout.team_keys(slot))}
            keys = [self._layout.team(slot), self._layout.team_keys(slot)]
            keys += [self._layout.key(slot, kid) for kid in sorted(kids)]
            result = int(await self._scripts.delete_team(keys=keys, args=[len(kids)]))
            if result >= 0:
                break
        else:
            raise Conflict("The team's keys kept changing while deleting it; retry.")
        await self._redis.hdel(self._layout.team_index(), team_id)
        if result == 0:
            raise NotFound(f"No team {team_id!r}.")

    async def create_key(self, team_id: str, name: str | None) -> tuple[ApiKey, str]:
        """A new key; the secret is returned here once and never stored."""
        slot = await self.slot_of(team_id)
        key, cred = new_key(slot)
        info = ApiKey(
            key_id=cred.key_id,
            team_id=team_id,
            name=name or "",
            prefix=key.rsplit("_", 1)[0],
            created_at=now_iso(),
            revoked_at=None,
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(self._layout.team(slot))
            pipe.hset(
                self._layout.key(slot, cred.kid),
                mapping={
                    "hash": cred.digest,
                    "team": team_id,
                    "name": info.name,
                    "prefix": info.prefix,
                    "created_at": info.created_at,
                },
            )
            pipe.sadd(self._layout.team_keys(slot), cred.kid)
            team_exists, *_ = await pipe.execute()
        if not team_exists:
            await self._redis.delete(self._layout.key(slot, cred.kid))
            raise NotFound(f"No team {team_id!r}.")
        return info, key

    def _key_from_record(self, key_id: str, record: dict[str, str]) -> ApiKey:
        return ApiKey(
            key_id=key_id,
            team_id=record["team"],
            name=record.get("name", ""),
            prefix=record.get("prefix", ""),
            created_at=record.get("created_at", ""),
            revoked_at=record.get("revoked_at") or None,
        )

    async def list_keys(self, team_id: str) -> list[ApiKey]:
        slot = await self.slot_of(team_id)
        kids = sorted(str(k) for k in await self._redis.smembers(self._layout.team_keys(slot)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for kid in kids:
                pipe.hgetall(self._layout.key(slot, kid))
            records = [_strs(r) for r in await pipe.execute()]
        return [
            self._key_from_record(slot + kid, record)
            for kid, record in zip(kids, records, strict=True)
            if record
        ]

    async def get_key(self, key_id: str) -> ApiKey:
        parts = split_key_id(key_id)
        if parts is None:
            raise NotFound(f"No key {key_id!r}.")
        record = _strs(await self._redis.hgetall(self._layout.key(*parts)))
        if not record:
            raise NotFound(f"No key {key_id!r}.")
        return self._key_from_record(key_id, record)

    async def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key; idempotent. The record stays (marked revoked) so admins can audit it."""
        parts = split_key_id(key_id)
        if parts is None:
            raise NotFound(f"No key {key_id!r}.")
        record = await self._scripts.revoke_key(keys=[self._layout.key(*parts)], args=[now_iso()])
        if not record:
            raise NotFound(f"No key {key_id!r}.")
        return self._key_from_record(key_id, dict(zip(record[::2], record[1::2], strict=True)))
