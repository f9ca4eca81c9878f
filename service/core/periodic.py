"""Background work an API process repeats while it runs: the counters it flushes to Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable


@contextlib.asynccontextmanager
async def every(seconds: float, flush: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Run `flush` every `seconds` while the body runs, and once more when it ends; a flush under way is never
    cancelled (it finishes, then the loop stops). `flush` handles its own errors: one that escapes ends the loop."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            await flush()

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        await task
