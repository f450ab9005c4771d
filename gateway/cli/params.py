"""Argument parsing the admin commands share: durations, ids written as prefixes or whole
secrets, the gateway's URL and a key's expiry."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Seconds, written as ``3600``, ``90s``, ``15m``, ``12h`` or ``30d``."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 3600, 90m, 12h or 30d")
    return int(match[1]) * _DURATION_UNITS[match[2]]


def gateway_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An http(s) URL, so ``localhost:8080`` is refused here rather than failing later."""
    if not re.match(r"https?://[^/]", value):
        raise click.BadParameter(f"{value!r}: give the gateway's URL, e.g. http://127.0.0.1:8080")
    return value


def id_of(prefix: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """An id argument that also takes what people have at hand: the public prefix a table shows
    (``rcg_<id>``) or the whole key or token (``rcg_<id>_<secret>``), e.g. to revoke a leak."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None or not value.startswith(prefix):
            return value
        return value.removeprefix(prefix).split("_", 1)[0]

    return callback


def expiry(expires_in: int | None, expires_at: str | None) -> dict[str, Any]:
    """The API's expiry fields for the CLI's ``--expires-in`` / ``--expires-at``."""
    if expires_in is not None and expires_at is not None:
        raise click.UsageError("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        return {"expires_in_seconds": expires_in}
    return {"expires_at": expires_at} if expires_at is not None else {}
