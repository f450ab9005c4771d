"""Background loops that stop when asked, even if a library swallowed a cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

STOP_TIMEOUT = 10.0


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stopping`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


@contextlib.asynccontextmanager
async def background(
    loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]], name: str
) -> AsyncIterator[None]:
    """Run ``loop(stopping)`` as a task for the duration of the block, then stop it cleanly."""
    stopping = asyncio.Event()
    task = asyncio.create_task(loop(stopping), name=name)
    try:
        yield
    finally:
        stopping.set()
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_TIMEOUT)
