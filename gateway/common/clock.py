"""Wall-clock timestamps in RunComfy's format (numeric offset, never ``Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """Now, as ``2026-11-25T17:26:04.123456+00:00``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def iso_from_epoch(seconds: float) -> str:
    """Epoch seconds (Redis's clock) in the same format as :func:`now_iso`."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")
