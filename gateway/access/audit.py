"""The audit log: one append-only record per admin change, in one Redis stream.

A record says who (the actor's name, role and token id), what (an action such as ``key.revoke``
and a target such as ``team/design/key/<key_id>``), the state before and after (JSON, ``null``
for none) and when: the stream entry's id, which Redis assigns from its own clock in
milliseconds and never lets go backwards. Each record is also logged as an ``admin_action``
event, with the request's correlation id.

Targets are paths, so a prefix selects a subtree: ``team/<team>``, ``team/<team>/key/<key_id>``,
``team/<team>/dedup-policy``, ``team/<team>/limits``, ``team/<team>/unreconciled/<job>``,
``team/<team>/cache[/model/<model>|/entry/<cache key>]``, ``cache/model/<model>`` (every team),
``pricing/model/<model>``, ``pricing/deployment/<id>``, ``admin/<token_id>``, ``deployment/<id>``.

The gateway never trims the stream: it grows by one entry (a few hundred bytes) per admin change.
An operator who wants a cap trims it deliberately (``XTRIM <ns>:v1:{audit}:log MINID <ms>``).
Callers pass only public views of keys and tokens; as a second line of defence, anything shaped
like a key, a token or a configured secret is scrubbed before it is stored. A record is written
right after its change: if Redis fails in between, the change stands unrecorded and the caller
gets a 503 (both live in the same Redis).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import structlog

from gateway.access.admins import AdminActor
from gateway.common.jsonutil import dumps, loads
from gateway.common.records import record
from gateway.observability.logs import SecretScrubber
from gateway.store.client import Store
from gateway.store.layout import Layout

log = structlog.get_logger("gateway.admin")
ENTRY_ID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_U64 = 2**64 - 1


def parse_entry_id(text: str) -> tuple[int, int] | None:
    """A stream entry id ``<ms>-<seq>`` as Redis reads it (two unsigned 64-bit numbers), or
    None: Redis answers an error, not an empty range, for anything else."""
    if not ENTRY_ID_RE.fullmatch(text):
        return None
    ms, seq = (int(part) for part in text.split("-"))
    return (ms, seq) if ms <= _U64 and seq <= _U64 else None


MAX_PAGE = 1000
_BATCH = 500
_SCAN_PER_PAGE = 20_000


def fingerprint_url(url: str) -> str:
    """A URL as the audit log keeps it: scheme and host, and a digest of the rest (webhook URLs
    such as Slack's carry their secret in the path), so a change still shows."""
    parts = urlsplit(url)
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return f"{parts.scheme}://{parts.hostname or ''}/…#sha256:{digest}"


@record
class AuditQuery:
    """Filters of a page of the audit log, newest first; ``cursor`` continues a page."""

    actor: str | None = None
    action: str | None = None
    target_prefix: str | None = None
    team: str | None = None
    since: datetime | None = None
    cursor: str | None = None
    limit: int = 100

    def matches(self, entry: AuditEntry) -> bool:
        if self.actor is not None and self.actor not in (entry.actor, entry.token_id):
            return False
        if self.action is not None and entry.action != self.action:
            return False
        if self.target_prefix is not None and not entry.target.startswith(self.target_prefix):
            return False
        if self.team is None:
            return True
        team = f"team/{self.team}"
        return entry.target == team or entry.target.startswith(team + "/")


@record
class AuditEntry:
    id: str
    at: str
    actor: str
    role: str
    token_id: str
    action: str
    target: str
    before: Any
    after: Any
    correlation_id: str | None

    @classmethod
    def from_stream(cls, entry_id: str, fields: dict[str, str]) -> AuditEntry:
        millis = int(entry_id.split("-", 1)[0])
        return cls(
            id=entry_id,
            at=datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds"),
            actor=fields.get("actor", ""),
            role=fields.get("role", ""),
            token_id=fields.get("token_id", ""),
            action=fields.get("action", ""),
            target=fields.get("target", ""),
            before=loads(fields.get("before", "null")),
            after=loads(fields.get("after", "null")),
            correlation_id=fields.get("correlation_id") or None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "role": self.role,
            "token_id": self.token_id,
            "action": self.action,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "correlation_id": self.correlation_id,
        }


class AuditLog:
    """Appends and reads audit records."""

    def __init__(self, redis: Store, layout: Layout, scrubber: SecretScrubber) -> None:
        self._redis = redis
        self._stream = layout.audit_log()
        self._scrubber = scrubber

    async def record(
        self, actor: AdminActor, action: str, target: str, before: Any, after: Any
    ) -> None:
        """Append one record of a change ``actor`` made, and log it as ``admin_action``."""
        correlation_id = structlog.contextvars.get_contextvars().get("correlation_id", "")
        before_json = self._scrubber.scrub(dumps(before).decode())
        after_json = self._scrubber.scrub(dumps(after).decode())
        entry_id = await self._redis.xadd(
            self._stream,
            {
                "actor": actor.name,
                "role": actor.role,
                "token_id": actor.token_id,
                "action": action,
                "target": target,
                "before": before_json,
                "after": after_json,
                "correlation_id": str(correlation_id),
            },
        )
        log.info(
            "admin_action",
            audit_id=str(entry_id),
            actor=actor.name,
            actor_token_id=actor.token_id,
            role=actor.role,
            action=action,
            target=target,
            before=loads(before_json),
            after=loads(after_json),
        )

    async def read(self, query: AuditQuery) -> tuple[list[AuditEntry], str | None]:
        """Matching records, newest first, and the cursor of the next page (None at the end).

        Filters are applied while scanning back from the cursor; a page stops after
        ``_SCAN_PER_PAGE`` records even with few matches, so a rare filter over a long log
        answers in bounded time and hands back a cursor to go on from.
        """
        cursor = parse_entry_id(query.cursor) if query.cursor else None
        if cursor == (0, 0):
            return [], None  # nothing is older than the first id (and "(0-0" is an error)
        newest = f"({cursor[0]}-{cursor[1]}" if cursor else "+"
        # Stream ids are milliseconds since 1970: an earlier 'since' bounds nothing.
        oldest = f"{max(0, int(query.since.timestamp() * 1000))}-0" if query.since else "-"
        entries: list[AuditEntry] = []
        scanned = 0
        while scanned < _SCAN_PER_PAGE:
            batch = cast(  # the client decodes responses
                list[tuple[str, dict[str, str]]],
                await self._redis.xrevrange(self._stream, newest, oldest, count=_BATCH),
            )
            for entry_id, fields in batch:
                scanned += 1
                entry = AuditEntry.from_stream(entry_id, fields)
                if query.matches(entry):
                    entries.append(entry)
                    if len(entries) == query.limit:
                        return entries, entry.id
                newest = f"({entry_id}"
            if len(batch) < _BATCH:
                return entries, None
        return entries, newest[1:]
