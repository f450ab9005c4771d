"""Console sign-ins: a random session id in a cookie, its record in Redis under its hash.

The cookie holds 256 random bits and nothing else: no token, no name. Redis keeps the record,
a JSON string, under the SHA-256 of that id (``<ns>:v1:{console}:session:<sha256>``, a hash
tag of its own: sessions belong to no team), so a copy of Redis gives nobody a usable cookie.
The record names the admin token that signed in, by id (the bootstrap token by a digest of its
value), and is re-checked on every request (:func:`gateway.web.console.guard.page`): revoking
that token, or changing ``GATEWAY_ADMIN_TOKEN``, ends the session on its next request on every
replica. Redis expires the record; a sign-out deletes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from typing import cast

from gateway.access.admins import AdminActor, AdminRole
from gateway.common.jsonutil import dumps, loads
from gateway.store.client import Store
from gateway.store.layout import Layout

COOKIE = "rcg_console"
SESSION_ID_BYTES = 32


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in admin: who, which token (``bootstrap`` or a named token's id), the CSRF token
    every change must carry, and for the bootstrap token the digest of the value it used."""

    name: str
    role: AdminRole
    token_id: str
    csrf: str
    bootstrap_digest: str = ""

    @property
    def actor(self) -> AdminActor:
        return AdminActor(name=self.name, role=self.role, token_id=self.token_id)

    def csrf_matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, str(presented))


class SessionStore:
    """Create, find and end console sessions in Redis."""

    def __init__(self, redis: Store, namespace: str, lifetime_seconds: int) -> None:
        self._redis = redis
        self._prefix = f"{Layout(namespace).root}:{{console}}:session:"
        self.lifetime_seconds = lifetime_seconds

    def _key(self, session_id: str) -> str:
        return self._prefix + digest(session_id)

    async def create(self, actor: AdminActor, bootstrap_digest: str = "") -> tuple[str, Session]:
        """A new session of ``actor``; returns the cookie's value (never stored) and the record."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        session = Session(
            name=actor.name,
            role=actor.role,
            token_id=actor.token_id,
            csrf=secrets.token_urlsafe(SESSION_ID_BYTES),
            bootstrap_digest=bootstrap_digest,
        )
        # one command, so a session never exists without its expiry
        await self._redis.set(
            self._key(session_id), dumps(asdict(session)), ex=self.lifetime_seconds
        )
        return session_id, session

    async def find(self, session_id: str | None) -> Session | None:
        """The live session of a cookie's value, or None (unknown, expired or malformed)."""
        if not session_id or len(session_id) > 128:
            return None
        record = await self._redis.get(self._key(session_id))
        if record is None:
            return None
        values = loads(record)
        return Session(
            name=str(values["name"]),
            role=cast(AdminRole, values["role"]),
            token_id=str(values["token_id"]),
            csrf=str(values["csrf"]),
            bootstrap_digest=str(values["bootstrap_digest"]),
        )

    async def end(self, session_id: str) -> None:
        await self._redis.delete(self._key(session_id))
