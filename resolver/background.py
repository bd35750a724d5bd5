"""Work an application runs beside its requests for as long as it serves."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Coroutine


@contextlib.asynccontextmanager
async def background(work: Coroutine[object, object, object], name: str) -> AsyncIterator[asyncio.Task[object]]:
    """Run ``work`` as a task named ``name`` while the block runs; on leaving
    it, cancel the task and wait until it has stopped, so nothing it uses
    is closed under it (an error it ended with earlier is raised here)."""
    task = asyncio.create_task(work, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
