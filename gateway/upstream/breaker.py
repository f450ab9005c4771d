"""A circuit breaker per upstream, so a failing RunComfy is not hammered and callers fail fast.

While RunComfy refuses connections, times out or answers 5xx, every caller would otherwise wait
out its timeouts and retries, and every retry adds load to an upstream that is already failing.
After ``failures`` consecutive failed attempts the breaker opens: calls fail at once with 503
503001 and a ``Retry-After`` (nothing is sent, so a refused submit is provably not a job). After
``open_seconds`` one call is let through as a probe; its success closes the breaker, its failure
opens it again.

    closed ──N consecutive failures──► open ──open_seconds──► half-open ──probe ok──► closed
                                        ▲                         │
                                        └──────probe failed───────┘

Each replica keeps its own breakers (one per RunComfy API); they need no coordination, since
each replica sees the same upstream. Only the probe's outcome moves a half-open breaker; the
late outcome of a call admitted before the breaker opened changes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import IntEnum

from gateway.common.errors import CircuitOpen
from gateway.common.records import record


class BreakerState(IntEnum):
    """Values of the ``gateway_upstream_circuit_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@record
class BreakerConfig:
    failures: int  # consecutive failed attempts that open the breaker; 0 disables it
    open_seconds: float  # how long it stays open before a probe


class CircuitBreaker:
    """Counts consecutive failures of one upstream and refuses calls while open."""

    def __init__(
        self,
        config: BreakerConfig,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._reopen_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def enabled(self) -> bool:
        return self._config.failures > 0

    def admit(self) -> bool:
        """Allow one attempt, or raise :class:`CircuitOpen`. True when it is the probe."""
        if not self.enabled or self._state is BreakerState.CLOSED:
            return False
        now = self._clock()
        if self._state is BreakerState.OPEN:
            if now < self._reopen_at:
                raise CircuitOpen(retry_after=math.ceil(self._reopen_at - now))
            self._set(BreakerState.HALF_OPEN)
        if self._probing:  # half-open, and the probe is still out
            raise CircuitOpen(retry_after=math.ceil(self._config.open_seconds))
        self._probing = True
        return True

    def succeeded(self, probe: bool) -> None:
        """The attempt reached RunComfy and got an answer that was not a 5xx."""
        if probe:
            self._probing = False
            self._set(BreakerState.CLOSED)
        if self._state is BreakerState.CLOSED:
            self._failures = 0

    def failed(self, probe: bool) -> None:
        """The attempt could not connect, timed out, was cut off, or got a 5xx."""
        if not self.enabled:
            return
        if probe:
            self._probing = False
            self._open()
        elif self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self._config.failures:
                self._open()

    def abandoned(self, probe: bool) -> None:
        """The attempt ended without an outcome (its caller was cancelled)."""
        if probe:
            self._probing = False

    def _open(self) -> None:
        self._failures = 0
        self._reopen_at = self._clock() + self._config.open_seconds
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)
