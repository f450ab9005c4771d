"""The circuit breaker: opens after consecutive failures, fails fast, probes, closes."""

from __future__ import annotations

import pytest

from gateway.common.errors import CircuitOpen
from gateway.upstream.breaker import BreakerConfig, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 3, open_seconds: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(BreakerConfig(failures, open_seconds), clock=clock), clock


def state(cb: CircuitBreaker) -> BreakerState:
    """Read anew each time (mypy would narrow a repeated ``cb.state``)."""
    return cb.state


def test_it_opens_after_consecutive_failures_only() -> None:
    cb, _ = breaker(failures=3)
    for _ in range(2):
        cb.failed(cb.admit())
    cb.succeeded(cb.admit())  # a success in between: the count starts again
    for _ in range(2):
        cb.failed(cb.admit())
    assert state(cb) is BreakerState.CLOSED
    cb.failed(cb.admit())
    assert state(cb) is BreakerState.OPEN


def test_while_open_calls_fail_fast_with_the_time_left() -> None:
    cb, clock = breaker(failures=1, open_seconds=10)
    cb.failed(cb.admit())
    clock.now += 3.5
    with pytest.raises(CircuitOpen) as info:
        cb.admit()
    assert info.value.status == 503 and info.value.error_code == 503001
    assert info.value.headers() == {"Retry-After": "7"}


def test_after_the_open_time_one_probe_goes_out_and_its_success_closes_it() -> None:
    cb, clock = breaker(failures=1, open_seconds=10)
    cb.failed(cb.admit())
    clock.now += 10
    assert cb.admit() is True  # the probe
    assert state(cb) is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        cb.admit()  # only one probe at a time
    cb.succeeded(True)
    assert state(cb) is BreakerState.CLOSED
    assert cb.admit() is False


def test_a_failed_probe_opens_it_again_for_the_full_time() -> None:
    cb, clock = breaker(failures=2, open_seconds=10)
    cb.failed(cb.admit())
    cb.failed(cb.admit())
    clock.now += 10
    cb.failed(cb.admit())
    assert state(cb) is BreakerState.OPEN
    clock.now += 9
    with pytest.raises(CircuitOpen):
        cb.admit()


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    cb, clock = breaker(failures=1, open_seconds=1)
    cb.failed(cb.admit())
    clock.now += 1
    cb.abandoned(cb.admit())
    assert cb.admit() is True


def test_late_outcomes_of_calls_admitted_before_it_opened_change_nothing() -> None:
    cb, clock = breaker(failures=2, open_seconds=10)
    early = [cb.admit() for _ in range(4)]  # four calls out at once, all closed-state calls
    cb.failed(early[0])
    cb.failed(early[1])
    assert state(cb) is BreakerState.OPEN
    cb.succeeded(early[2])  # a straggler's success does not close it
    cb.failed(early[3])  # nor does a straggler's failure extend it
    assert state(cb) is BreakerState.OPEN
    clock.now += 10
    assert cb.admit() is True


def test_zero_failures_disables_it() -> None:
    cb, _ = breaker(failures=0)
    for _ in range(100):
        cb.failed(cb.admit())
    assert state(cb) is BreakerState.CLOSED


def test_state_changes_are_reported() -> None:
    seen: list[BreakerState] = []
    clock = Clock()
    cb = CircuitBreaker(BreakerConfig(1, 5), on_change=seen.append, clock=clock)
    cb.failed(cb.admit())
    clock.now += 5
    cb.succeeded(cb.admit())
    assert seen == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
