"""Redis failures become one gateway error, ``StoreUnavailable``, where the store is called.

Both connections raise it, chained to the original, for every failure that means Redis is away,
busy or refusing writes: redis-py's client (each command, script and pipeline, see
``client.py``) and the pipelined connection (``pipelined.py``). Code above the store catches
``StoreUnavailable`` alone, so a ``TimeoutError`` or ``OSError`` from anything else (RunComfy,
a file) is never answered as a Redis outage.

Passed on unchanged: ``ResponseError`` (Redis refused the command itself: a bug, a 500) and
``NOSCRIPT`` (the script callers load the script and call again).
"""

from __future__ import annotations

import re

from redis import exceptions as rexc

from gateway.common.errors import StoreUnavailable

REDIS_FAILURES: tuple[type[Exception], ...] = (
    rexc.ConnectionError,  # ClusterUnreachable and Sentinel's MasterNotFoundError too
    rexc.TimeoutError,
    rexc.BusyLoadingError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,
    rexc.MasterDownError,
    rexc.SlotNotCoveredError,
    rexc.OutOfMemoryError,  # full, with noeviction: writes refused until memory frees
    OSError,  # a socket error a client library let through unwrapped
)
"""What the store's connections turn into ``StoreUnavailable``; nothing outside the store names
these."""

_CREDENTIALS = re.compile(r"(//)[^/@\s]*@")


def unavailable() -> StoreUnavailable:
    """The gateway error for a Redis failure (raised ``from`` it, so logs can name it)."""
    return StoreUnavailable(detail="state store unreachable")


def cause(error: BaseException) -> BaseException:
    """The Redis failure behind a ``StoreUnavailable`` (through re-raises), else ``error``."""
    found = error
    while isinstance(found, StoreUnavailable) and found.__cause__ is not None:
        found = found.__cause__
    return found


def described(error: BaseException) -> dict[str, str]:
    """Log fields for a store failure: the Redis error's type and message, with any URL's
    credentials removed (a client library may name the URL it could not reach)."""
    failure = cause(error)
    return {
        "error_type": type(failure).__name__,
        "error": _CREDENTIALS.sub(r"\1***@", str(failure)),
    }
