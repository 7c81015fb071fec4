"""Bandwidth caps in bytes per second, shared fairly by the streams they cover.

A :class:`Bandwidth` is a virtual clock: each chunk a stream receives books the time its
bytes take at the cap (``len(chunk) / rate``) after the bookings before it, and the stream
waits until its booking ends before it reads on. Each stream has at most one booking
outstanding and bookings are served in the order they are made, so busy streams take
turns, chunk by chunk: each of N gets about 1/N of the cap. A stream that stops reading
books nothing. Idle time is not saved up beyond :data:`BURST` seconds.

The bytes are held back where they are read: aiohttp stops reading a socket whose buffer
is full, so TCP's flow control slows the sender down to the cap (a bounded read-ahead
excepted). One engine's cap is split between ``--workers`` processes like its other
limits (:func:`~pulp_aio_download.parallel.plan.worker_configs`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

__all__ = ["BURST", "Bandwidth", "throttle"]

#: Seconds of unused cap a stream may spend at once (a burst).
BURST = 0.05
#: Waits shorter than this are left to accumulate: a sleep per chunk costs more than it
#: would hold back.
_MIN_SLEEP = 0.005


class Bandwidth:
    """A cap of ``rate`` bytes per second.

    Args:
        rate: bytes per second (positive).
    """

    __slots__ = ("_next", "rate")

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"a bandwidth cap must be positive, got {rate!r}")
        self.rate = float(rate)
        self._next = 0.0

    def book(self, nbytes: int, now: float) -> float:
        """Book ``nbytes`` at ``now`` (monotonic seconds); return how long to wait."""
        start = max(self._next, now - BURST)
        self._next = start + nbytes / self.rate
        return self._next - now


async def throttle(
    caps: Sequence[Bandwidth], nbytes: int, on_hold: Callable[[float], None]
) -> None:
    """Hold a stream that received ``nbytes`` back until they fit under every cap of
    ``caps``; ``on_hold(seconds)`` is told first (stall detection does not count the
    time against the stream)."""
    now = time.monotonic()
    wait = max(cap.book(nbytes, now) for cap in caps)
    if wait >= _MIN_SLEEP:
        on_hold(wait)
        await asyncio.sleep(wait)
