"""Who administers the gateway: named admin tokens with a role, and the built-in ``bootstrap``.

Every change made over the admin API has an author. ``GATEWAY_ADMIN_TOKEN`` is the ``bootstrap``
actor with role ``admin`` (it needs no Redis, so it works while the token is set, even with no
named admin left). Named tokens are created by an admin, shown once and stored as SHA-256 only, in
the ``{admin}`` hash slot. They are verified against Redis on every request with no local cache,
so a revocation takes effect on the next request on every replica. ``viewer`` tokens may read the
admin API; only ``admin`` tokens change anything.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import asdict
from typing import Any, Literal, cast

from gateway.access.credentials import ADMIN_TOKEN_ID_RE, AdminTokenCredential, new_admin_token
from gateway.common.clock import now_iso
from gateway.common.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from gateway.common.records import record
from gateway.store.client import Store
from gateway.store.contracts import AdminTokenCreateArgs, AdminTokenRevokeArgs, TokenCreation
from gateway.store.layout import Layout
from gateway.store.scripts import Scripts

AdminRole = Literal["admin", "viewer"]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_CREATE_ATTEMPTS = 5


@record
class AdminActor:
    """A verified caller of the admin API, as the audit log names it."""

    name: str
    role: AdminRole
    token_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


BOOTSTRAP = AdminActor(name="bootstrap", role="admin", token_id="bootstrap")  # noqa: S106


@record
class AdminToken:
    """What anyone may see of a named admin token: never the token or its hash."""

    token_id: str
    name: str
    role: AdminRole
    prefix: str
    created_at: str
    created_by: str
    revoked_at: str | None
    revoked_by: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.revoked_at is None}

    @classmethod
    def from_record(cls, token_id: str, record: dict[str, str]) -> AdminToken:
        return cls(
            token_id=token_id,
            name=record["name"],
            role=cast(AdminRole, record["role"]),
            prefix=record.get("prefix", ""),
            created_at=record.get("created_at", ""),
            created_by=record.get("created_by", ""),
            revoked_at=record.get("revoked_at") or None,
            revoked_by=record.get("revoked_by") or None,
        )


def _strs(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(value).items()}


class AdminTokens:
    """Named admin tokens: create, list, revoke, and verify one per request."""

    def __init__(self, redis: Store, scripts: Scripts, layout: Layout) -> None:
        self._redis = redis
        self._scripts = scripts
        self._layout = layout

    async def authenticate(self, cred: AdminTokenCredential) -> AdminActor:
        """The token's actor; raises :class:`Unauthorized` when unknown, wrong or revoked."""
        name, role, digest, revoked_at = await self._redis.hmget(
            self._layout.admin_token(cred.token_id), ["name", "role", "hash", "revoked_at"]
        )
        if digest is None or not hmac.compare_digest(str(digest), cred.digest):
            raise Unauthorized("Missing or invalid admin token.", detail="invalid_admin_token")
        if revoked_at:
            raise Unauthorized("The admin token has been revoked.", detail="revoked_admin_token")
        return AdminActor(name=str(name), role=cast(AdminRole, str(role)), token_id=cred.token_id)

    async def create(
        self, name: str, role: AdminRole, author: AdminActor
    ) -> tuple[AdminToken, str]:
        """A new token; the secret is returned here once and never stored."""
        if not NAME_RE.fullmatch(name) or name.lower() == BOOTSTRAP.name:
            raise ValidationFailed(
                "Invalid admin name.",
                detail="name must be 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
                f"letter or digit, and not {BOOTSTRAP.name!r}",
            )
        for _ in range(_CREATE_ATTEMPTS):
            token, cred = new_admin_token()
            info = AdminToken(
                token_id=cred.token_id,
                name=name,
                role=role,
                prefix=token.rsplit("_", 1)[0],
                created_at=now_iso(),
                created_by=author.name,
                revoked_at=None,
                revoked_by=None,
            )
            reply = await self._scripts.run(
                AdminTokenCreateArgs(
                    token_record=self._layout.admin_token(cred.token_id),
                    token_ids=self._layout.admin_tokens(),
                    active_names=self._layout.admin_names(),
                    token_id=cred.token_id,
                    digest=cred.digest,
                    name=name,
                    role=role,
                    prefix=info.prefix,
                    created_at=info.created_at,
                    created_by=author.name,
                )
            )
            if reply.result is TokenCreation.CREATED:
                return info, token
            if reply.result is TokenCreation.NAME_TAKEN:
                raise Conflict(f"An active admin token is already named {name!r}.")
        raise Conflict("Could not draw an unused token id; retry.")  # pragma: no cover

    async def list_tokens(self) -> list[AdminToken]:
        """Every named token, revoked ones included, oldest first."""
        ids = sorted(str(i) for i in await self._redis.smembers(self._layout.admin_tokens()))
        async with self._redis.pipeline(transaction=False) as pipe:
            for token_id in ids:
                pipe.hgetall(self._layout.admin_token(token_id))
            records = [_strs(r) for r in await pipe.execute()]
        tokens = [
            AdminToken.from_record(token_id, record)
            for token_id, record in zip(ids, records, strict=True)
            if record
        ]
        return sorted(tokens, key=lambda t: (t.created_at, t.token_id))

    async def get(self, token_id: str) -> AdminToken:
        record = (
            _strs(await self._redis.hgetall(self._layout.admin_token(token_id)))
            if ADMIN_TOKEN_ID_RE.fullmatch(token_id)
            else {}
        )
        if not record:
            raise NotFound(f"No admin token {token_id!r}.")
        return AdminToken.from_record(token_id, record)

    async def revoke(self, token_id: str, author: AdminActor, keep_an_admin: bool) -> AdminToken:
        """Revoke a token; idempotent. With ``keep_an_admin`` the last active admin token stays,
        because without the bootstrap token nobody could administer the gateway any more."""
        if not ADMIN_TOKEN_ID_RE.fullmatch(token_id):
            raise NotFound(f"No admin token {token_id!r}.")
        reply = await self._scripts.run(
            AdminTokenRevokeArgs(
                token_record=self._layout.admin_token(token_id),
                active_names=self._layout.admin_names(),
                token_id=token_id,
                revoked_at=now_iso(),
                revoked_by=author.name,
                keep_an_admin=keep_an_admin,
                token_prefix=self._layout.admin_token_prefix(),
            )
        )
        if reply.last_admin:
            raise Conflict(
                "This is the last active admin token and GATEWAY_ADMIN_TOKEN is not set: revoking "
                "it would leave nobody able to administer the gateway. Create another admin first.",
                detail="last_admin",
            )
        if reply.record is None:
            raise NotFound(f"No admin token {token_id!r}.")
        return AdminToken.from_record(token_id, reply.record)
