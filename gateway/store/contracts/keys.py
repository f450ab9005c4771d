"""Contracts of the scripts that manage API keys, teams and admin tokens."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, ClassVar

from gateway.common.records import record
from gateway.store.contracts.base import ScriptArgs, key, pairs


class KeyRefusal(StrEnum):
    """Why a presented API key does not work (verify_key)."""

    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    EXPIRED_KEY = "expired_key"


class KeyChangeRefusal(StrEnum):
    """Why a key was not created or rotated."""

    NO_TEAM = "no_team"
    EXPIRY_PASSED = "expiry_passed"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    ALREADY_ROTATED = "already_rotated"


class ExpiryKind(StrEnum):
    NONE = ""
    IN = "in"  # seconds from now, by Redis's clock
    AT = "at"  # epoch seconds


@record
class KeyRefused:
    """A ``{0, reason}`` reply: the presented key does not work."""

    reason: KeyRefusal


@record
class Authenticated:
    team_id: str

    @classmethod
    def parse(cls, raw: Any) -> KeyRefused | Authenticated:
        status, value = raw
        if int(status) != 1:
            return KeyRefused(KeyRefusal(str(value)))
        return cls(str(value))


@record(kw_only=True)
class AuthenticateArgs(ScriptArgs[KeyRefused | Authenticated]):
    script: ClassVar[str] = "authenticate"
    key_record: str = key()
    key_digest: str

    def parse_reply(self, raw: Any) -> KeyRefused | Authenticated:
        return Authenticated.parse(raw)


@record
class CreateKeyReply:
    refusal: KeyChangeRefusal | None
    expires: str  # epoch seconds, '' never

    @classmethod
    def parse(cls, raw: Any) -> CreateKeyReply:
        status, value = raw
        if int(status) != 1:
            return cls(KeyChangeRefusal(str(value)), "")
        return cls(None, str(value))


@record(kw_only=True)
class CreateKeyArgs(ScriptArgs[CreateKeyReply]):
    script: ClassVar[str] = "create_key"
    team_record: str = key()
    team_keys: str = key()
    key_record: str = key()
    key_digest: str
    team_id: str
    name: str
    prefix: str
    created_at: str
    kid: str
    expiry_kind: ExpiryKind
    expiry_value: float | None

    def parse_reply(self, raw: Any) -> CreateKeyReply:
        return CreateKeyReply.parse(raw)


@record
class RotateKeyReply:
    refusal: KeyChangeRefusal | None
    old_expires: str
    new_expires: str  # '' never

    @classmethod
    def parse(cls, raw: Any) -> RotateKeyReply:
        if int(raw[0]) != 1:
            return cls(KeyChangeRefusal(str(raw[1])), "", "")
        _, old_expires, new_expires = raw
        return cls(None, str(old_expires), str(new_expires))


@record(kw_only=True)
class RotateKeyArgs(ScriptArgs[RotateKeyReply]):
    script: ClassVar[str] = "rotate_key"
    old_key_record: str = key()
    team_keys: str = key()
    new_key_record: str = key()
    policy_hash: str = key()
    team_limits: str = key()
    new_digest: str
    new_kid: str
    new_prefix: str
    created_at: str
    grace_seconds: int
    old_key_id: str
    new_key_id: str
    expiry_kind: ExpiryKind
    expiry_value: float | None
    old_kid: str

    def parse_reply(self, raw: Any) -> RotateKeyReply:
        return RotateKeyReply.parse(raw)


@record
class RecordReply:
    """A record as a whole (HGETALL), or None when there is none."""

    record: dict[str, str] | None

    @classmethod
    def parse(cls, raw: Any) -> RecordReply:
        return cls(pairs(raw) if raw else None)


@record(kw_only=True)
class RevokeKeyArgs(ScriptArgs[RecordReply]):
    script: ClassVar[str] = "revoke_key"
    key_record: str = key()
    revoked_at: str

    def parse_reply(self, raw: Any) -> RecordReply:
        return RecordReply.parse(raw)


class TeamDeletion(IntEnum):
    KEYS_CHANGED = -1  # the caller retries
    NO_TEAM = 0
    DELETED = 1


@record
class DeleteTeamReply:
    result: TeamDeletion

    @classmethod
    def parse(cls, raw: Any) -> DeleteTeamReply:
        return cls(TeamDeletion(int(raw)))


@record(kw_only=True)
class DeleteTeamArgs(ScriptArgs[DeleteTeamReply]):
    script: ClassVar[str] = "delete_team"
    team_record: str = key()
    team_keys: str = key()
    key_records: tuple[str, ...] = key(rest=True)
    key_count: int

    def parse_reply(self, raw: Any) -> DeleteTeamReply:
        return DeleteTeamReply.parse(raw)


@record
class NowReply:
    seconds: float

    @classmethod
    def parse(cls, raw: Any) -> NowReply:
        return cls(float(raw))


@record(kw_only=True)
class NowArgs(ScriptArgs[NowReply]):
    script: ClassVar[str] = "now"

    def parse_reply(self, raw: Any) -> NowReply:
        return NowReply.parse(raw)


class TokenCreation(IntEnum):
    ID_TAKEN = -1  # draw another
    NAME_TAKEN = 0
    CREATED = 1


@record
class AdminTokenCreateReply:
    result: TokenCreation

    @classmethod
    def parse(cls, raw: Any) -> AdminTokenCreateReply:
        return cls(TokenCreation(int(raw)))


@record(kw_only=True)
class AdminTokenCreateArgs(ScriptArgs[AdminTokenCreateReply]):
    script: ClassVar[str] = "admin_token_create"
    token_record: str = key()
    token_ids: str = key()
    active_names: str = key()
    token_id: str
    digest: str
    name: str
    role: str
    prefix: str
    created_at: str
    created_by: str

    def parse_reply(self, raw: Any) -> AdminTokenCreateReply:
        return AdminTokenCreateReply.parse(raw)


LAST_ADMIN = "last_admin"


@record
class AdminTokenRevokeReply:
    record: dict[str, str] | None  # None: no such token
    last_admin: bool = False  # refused: it is the last active admin token

    @classmethod
    def parse(cls, raw: Any) -> AdminTokenRevokeReply:
        if list(raw) == [LAST_ADMIN]:
            return cls(None, last_admin=True)
        return cls(pairs(raw) if raw else None)


@record(kw_only=True)
class AdminTokenRevokeArgs(ScriptArgs[AdminTokenRevokeReply]):
    script: ClassVar[str] = "admin_token_revoke"
    token_record: str = key()
    active_names: str = key()
    token_id: str
    revoked_at: str
    revoked_by: str
    keep_an_admin: bool
    token_prefix: str

    def parse_reply(self, raw: Any) -> AdminTokenRevokeReply:
        return AdminTokenRevokeReply.parse(raw)
