"""The demo's credentials, the same on every start: its admin token and its team key.

A key's secret is stored hashed only, so the demo keeps its own secrets in a file of its data
directory, readable by the user alone (mode 0600). A start reuses them while they still work;
an older demo key that is not the stored one is revoked, so one demo key exists at a time.
``GATEWAY_ADMIN_TOKEN``, when set, wins over the stored admin token (and is not stored).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from gateway.access.credentials import KeyCredential, parse_bearer
from gateway.access.teams import ApiKey, TeamService
from gateway.common.errors import Conflict, Unauthorized
from gateway.common.records import record

CREDENTIALS_FILE = "demo-credentials.json"
DEMO_TEAM = "demo"
DEMO_KEY_NAME = "demo key"


def _read(directory: Path) -> dict[str, str]:
    try:
        data = json.loads((directory / CREDENTIALS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write(directory: Path, data: dict[str, str]) -> None:
    """Replace the file at once, created 0600: never readable by others, not even briefly."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / CREDENTIALS_FILE
    partial = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    os.replace(partial, path)


def admin_token(directory: Path, explicit: str = "") -> str:
    """``explicit`` (GATEWAY_ADMIN_TOKEN) if given, else the stored token, else a new one that
    is stored for the next start."""
    if explicit:
        return explicit
    stored = _read(directory)
    if stored.get("admin_token"):
        return stored["admin_token"]
    token = secrets.token_urlsafe(24)
    _write(directory, {**stored, "admin_token": token})
    return token


@record
class DemoKey:
    info: ApiKey
    key: str


async def _working(teams: TeamService, key: str) -> KeyCredential | None:
    cred = parse_bearer(f"Bearer {key}", "")
    if not isinstance(cred, KeyCredential):
        return None
    try:
        principal = await teams.authenticate(cred)
    except Unauthorized:
        return None
    return cred if principal.team_id == DEMO_TEAM else None


async def team_key(teams: TeamService, directory: Path) -> DemoKey:
    """The demo team's key: the stored one while it works, else a new one (then stored).
    Every other active key named like the demo's is revoked."""
    with contextlib.suppress(Conflict):  # it survives restarts in the embedded Redis
        await teams.create_team(DEMO_TEAM, "Demo team")
    stored = _read(directory)
    key = stored.get("key", "")
    cred = await _working(teams, key) if key else None
    if cred is not None:
        info = await teams.get_key(cred.key_id)
    else:
        info, key = await teams.create_key(DEMO_TEAM, DEMO_KEY_NAME)
        _write(directory, {**_read(directory), "key": key})
    for other in await teams.list_keys(DEMO_TEAM):
        if other.active and other.name == DEMO_KEY_NAME and other.key_id != info.key_id:
            await teams.revoke_key(other.key_id)
    return DemoKey(info, key)
