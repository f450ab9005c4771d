"""Background loops that stop when asked, even if a library swallowed a cancellation, and
whose log lines name only the work they do.

A new asyncio task starts with a copy of its creator's context, structlog's bound fields
included: a loop started from a request (or anything that bound a job's ids) would log that
request's ``correlation_id`` forever, and every task it starts after it. So a loop starts from
an empty context, and each unit of work in it (one poll, one queued send) opens
:func:`own_log_context` with its job's fields, which nothing it binds outlives.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import structlog

STOP_TIMEOUT = 10.0


@contextlib.contextmanager
def own_log_context(**fields: Any) -> Iterator[None]:
    """Log with ``fields`` alone for the block: not what the caller bound (another job's or a
    request's ids), and nothing bound inside stays bound after it."""
    outer = structlog.contextvars.get_contextvars()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**outer)


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stopping`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


@contextlib.asynccontextmanager
async def background(
    loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]], name: str
) -> AsyncIterator[None]:
    """Run ``loop(stopping)`` as a task for the duration of the block, then stop it cleanly.
    The task gets an empty context, whoever opens the block."""
    stopping = asyncio.Event()
    task = asyncio.create_task(loop(stopping), name=name, context=contextvars.Context())
    try:
        yield
    finally:
        stopping.set()
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_TIMEOUT)
