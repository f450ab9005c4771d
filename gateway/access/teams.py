"""Teams and their API keys: creation, listing, expiry, rotation, revocation and verification.

Keys are verified in Redis on every request (inside the team's hash slot, one round trip), with no
local cache: a revoked key fails on the very next request on every replica. Expiry is judged by
Redis's clock in the same script, so every replica agrees on the instant a key stops working.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

from gateway.access.credentials import (
    SLOT_LEN,
    KeyCredential,
    new_key,
    random_id,
    split_key_id,
)
from gateway.common.clock import iso_from_epoch, now_iso
from gateway.common.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from gateway.common.records import record
from gateway.store.client import Store
from gateway.store.contracts import (
    AuthenticateArgs,
    CreateKeyArgs,
    DeleteTeamArgs,
    ExpiryKind,
    KeyChangeRefusal,
    KeyRefused,
    NowArgs,
    RevokeKeyArgs,
    RotateKeyArgs,
    TeamDeletion,
)
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts

TEAM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DELETE_RETRIES = 5


@record
class TeamPrincipal:
    """A caller verified as holding a live key of ``team_id``."""

    team_id: str
    slot: str
    key_id: str


@record
class Team:
    team_id: str
    name: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@record
class ApiKey:
    """What an admin may see of a key: never the key or its hash.

    ``active`` is whether the key works now: neither revoked nor expired. ``replaced_by`` names
    the key a rotation created in its place.
    """

    key_id: str
    team_id: str
    name: str
    prefix: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    replaced_by: str | None
    active: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@record
class Expiry:
    """When a new key stops working: ``in_seconds`` from now, or ``at``; neither means never."""

    in_seconds: int | None = None
    at: datetime | None = None

    def script_args(self) -> tuple[ExpiryKind, float | None]:
        """The mode and value the key scripts take (judged by Redis's clock there)."""
        if self.in_seconds is not None:
            return ExpiryKind.IN, self.in_seconds
        if self.at is not None:
            return ExpiryKind.AT, self.at.timestamp()
        return ExpiryKind.NONE, None


NEVER = Expiry()


def _strs(value: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash reply (the client decodes responses) typed as ``str`` to ``str``."""
    return cast(dict[str, str], dict(value))


def unauthorized_reason(reason: str) -> Unauthorized:
    if reason == "revoked_key":
        return Unauthorized("The API key has been revoked.", detail="revoked_key")
    if reason == "expired_key":
        return Unauthorized("The API key has expired.", detail="expired_key")
    return Unauthorized("The API key is not valid.", detail="invalid_key")


def _expiry_passed() -> ValidationFailed:
    return ValidationFailed("The key's expiry is not in the future.", detail="expiry_passed")


class TeamService:
    """Rules for teams and keys; the Redis layout comes from :class:`Layout`."""

    def __init__(self, redis: Store, scripts: Scripts, layout: Layout) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout

    async def authenticate(self, cred: KeyCredential) -> TeamPrincipal:
        """Verify a key against Redis; raises :class:`Unauthorized`."""
        reply = await self._scripts.run(
            AuthenticateArgs(
                key_record=self._layout.key(cred.slot, cred.kid), key_digest=cred.digest
            )
        )
        if isinstance(reply, KeyRefused):
            raise unauthorized_reason(reply.reason)
        return TeamPrincipal(team_id=reply.team_id, slot=cred.slot, key_id=cred.key_id)

    async def create_team(self, team_id: str | None, name: str | None) -> Team:
        if team_id is None:
            team_id = "team-" + random_id(8)
        if not TEAM_ID_RE.fullmatch(team_id):
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
            reply = await self._scripts.run(
                DeleteTeamArgs(
                    team_record=self._layout.team(slot),
                    team_keys=self._layout.team_keys(slot),
                    key_records=tuple(self._layout.key(slot, kid) for kid in sorted(kids)),
                    key_count=len(kids),
                )
            )
            if reply.result is not TeamDeletion.KEYS_CHANGED:
                break
        else:
            raise Conflict("The team's keys kept changing while deleting it; retry.")
        await self._redis.hdel(self._layout.team_index(), team_id)
        if reply.result is TeamDeletion.NO_TEAM:
            raise NotFound(f"No team {team_id!r}.")

    async def create_key(
        self, team_id: str, name: str | None, expiry: Expiry = NEVER
    ) -> tuple[ApiKey, str]:
        """A new key; the secret is returned here once and never stored."""
        slot = await self.slot_of(team_id)
        key, cred = new_key(slot)
        prefix, created_at = key.rsplit("_", 1)[0], now_iso()
        expiry_kind, expiry_value = expiry.script_args()
        reply = await self._scripts.run(
            CreateKeyArgs(
                team_record=self._layout.team(slot),
                team_keys=self._layout.team_keys(slot),
                key_record=self._layout.key(slot, cred.kid),
                key_digest=cred.digest,
                team_id=team_id,
                name=name or "",
                prefix=prefix,
                created_at=created_at,
                kid=cred.kid,
                expiry_kind=expiry_kind,
                expiry_value=expiry_value,
            )
        )
        if reply.refusal is KeyChangeRefusal.EXPIRY_PASSED:
            raise _expiry_passed()
        if reply.refusal is not None:
            raise NotFound(f"No team {team_id!r}.")
        value = reply.expires
        info = ApiKey(
            key_id=cred.key_id,
            team_id=team_id,
            name=name or "",
            prefix=prefix,
            created_at=created_at,
            expires_at=iso_from_epoch(float(value)) if value else None,
            revoked_at=None,
            replaced_by=None,
            active=True,
        )
        return info, key

    async def rotate_key(
        self, key_id: str, grace_seconds: int, expiry: Expiry = NEVER
    ) -> tuple[ApiKey, ApiKey, str]:
        """A new key in place of ``key_id`` (same team, name, per-key dedup policy and limits;
        shown once); the old one keeps working for ``grace_seconds``. Returns the old key, the
        new key and its secret."""
        parts = split_key_id(key_id)
        if parts is None:
            raise NotFound(f"No key {key_id!r}.")
        slot, old_kid = parts
        key, cred = new_key(slot)
        prefix, created_at = key.rsplit("_", 1)[0], now_iso()
        expiry_kind, expiry_value = expiry.script_args()
        reply = await self._scripts.run(
            RotateKeyArgs(
                old_key_record=self._layout.key(slot, old_kid),
                team_keys=self._layout.team_keys(slot),
                new_key_record=self._layout.key(slot, cred.kid),
                policy_hash=self._layout.policy(slot),
                team_limits=self._layout.limits(slot),
                new_digest=cred.digest,
                new_kid=cred.kid,
                new_prefix=prefix,
                created_at=created_at,
                grace_seconds=grace_seconds,
                old_key_id=key_id,
                new_key_id=cred.key_id,
                expiry_kind=expiry_kind,
                expiry_value=expiry_value,
                old_kid=old_kid,
            )
        )
        reason = reply.refusal
        if reason is not None:
            if reason is KeyChangeRefusal.REVOKED_KEY:
                raise Conflict("A revoked key cannot be rotated.", detail="revoked_key")
            if reason is KeyChangeRefusal.ALREADY_ROTATED:
                raise Conflict(
                    "The key was rotated already; rotate the key that replaced it.",
                    detail="already_rotated",
                )
            if reason is KeyChangeRefusal.EXPIRY_PASSED:
                raise _expiry_passed()
            raise NotFound(f"No key {key_id!r}.")
        old = await self.get_key(key_id)
        new_expires = reply.new_expires
        new = ApiKey(
            key_id=cred.key_id,
            team_id=old.team_id,
            name=old.name,
            prefix=prefix,
            created_at=created_at,
            expires_at=iso_from_epoch(float(new_expires)) if new_expires else None,
            revoked_at=None,
            replaced_by=None,
            active=True,
        )
        return old, new, key

    async def _now(self) -> float:
        """Redis's clock as :func:`verify_key` sees it."""
        return (await self._scripts.run(NowArgs())).seconds

    def _key_from_record(self, key_id: str, record: dict[str, str], now: float) -> ApiKey:
        revoked_at = record.get("revoked_at") or None
        expires = float(record["expires"]) if record.get("expires") else None
        return ApiKey(
            key_id=key_id,
            team_id=record["team"],
            name=record.get("name", ""),
            prefix=record.get("prefix", ""),
            created_at=record.get("created_at", ""),
            expires_at=iso_from_epoch(expires) if expires is not None else None,
            revoked_at=revoked_at,
            replaced_by=record.get("replaced_by") or None,
            active=revoked_at is None and (expires is None or now < expires),
        )

    async def list_keys(self, team_id: str) -> list[ApiKey]:
        slot = await self.slot_of(team_id)
        kids = sorted(str(k) for k in await self._redis.smembers(self._layout.team_keys(slot)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for kid in kids:
                pipe.hgetall(self._layout.key(slot, kid))
            records = [_strs(r) for r in await pipe.execute()]
        now = await self._now()
        return [
            self._key_from_record(slot + kid, record, now)
            for kid, record in zip(kids, records, strict=True)
            if record
        ]

    async def require_own_keys(self, team_id: str, key_ids: Iterable[str]) -> None:
        """422 unless every key id names a key of ``team_id`` (policies and limits name keys)."""
        known = {k.key_id for k in await self.list_keys(team_id)}
        unknown = sorted(set(key_ids) - known)
        if unknown:
            raise ValidationFailed(detail=[f"no key {k!r} in team {team_id!r}" for k in unknown])

    async def get_key(self, key_id: str) -> ApiKey:
        parts = split_key_id(key_id)
        if parts is None:
            raise NotFound(f"No key {key_id!r}.")
        record = _strs(await self._redis.hgetall(self._layout.key(*parts)))
        if not record:
            raise NotFound(f"No key {key_id!r}.")
        return self._key_from_record(key_id, record, await self._now())

    async def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key; idempotent. The record stays (marked revoked) so admins can audit it."""
        parts = split_key_id(key_id)
        if parts is None:
            raise NotFound(f"No key {key_id!r}.")
        reply = await self._scripts.run(
            RevokeKeyArgs(key_record=self._layout.key(*parts), revoked_at=now_iso())
        )
        if reply.record is None:
            raise NotFound(f"No key {key_id!r}.")
        return self._key_from_record(key_id, reply.record, now=0.0)  # revoked: inactive at any time
