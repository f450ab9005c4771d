"""Simulated time: wall clock plus an offset that tests can advance instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_timestamp(epoch: float) -> str:
    """RunComfy's timestamp layout: microseconds and a numeric offset (Go clients reject ``Z``)."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="microseconds")


class SimClock:
    """Jobs progress lazily from timestamps, so moving this clock moves every job at once."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, as the simulator sees them."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Jump forward without waiting."""
        self.offset += seconds

    def reset(self) -> None:
        """Back to the real wall clock."""
        self.offset = 0.0
