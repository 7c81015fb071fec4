"""Work that must run to its end even when the task waiting for it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["finish_shielded"]

T = TypeVar("T")


async def finish_shielded(work: Awaitable[T]) -> T:
    """Await ``work`` to its end: when the caller is cancelled meanwhile, wait for ``work``
    to finish all the same (a cleanup, an undo), then let the cancellation propagate."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await future
        raise
