"""Stall detection of one connection (see :class:`~pulp_aio_download.Timeouts`).

The mean speed over the last ``stall_window`` seconds below ``min_speed`` aborts the
response: a sliding window sampled four times per window, so a stall is noticed at most a
quarter window after the last window-worth of time fell below ``min_speed``. Time a
bandwidth cap holds the stream back (:meth:`StallWatch.hold`) is not a stall: the window
starts again after it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import DownloadTimeout

if TYPE_CHECKING:
    from ..config import Timeouts
    from ..transports.base import Response

__all__ = ["StallWatch"]


class StallWatch:
    """Watch ``resp``: abort it when ``position()`` (bytes received) advances too slowly.

    ``stalled`` tells, once the read that the abort broke has failed, why it did. Call
    :meth:`stop` when the body is read.
    """

    __slots__ = ("_handle", "_held_until", "stalled", "timeouts")

    def __init__(self, timeouts: Timeouts, resp: Response, position: Callable[[], int]) -> None:
        self.timeouts = timeouts
        self.stalled = False
        self._held_until = 0.0
        self._handle: asyncio.TimerHandle | None = None
        if not timeouts.min_speed:
            return
        loop = asyncio.get_running_loop()
        window, min_speed = timeouts.stall_window, timeouts.min_speed
        step = window / 4
        samples = collections.deque([(loop.time(), position())])

        def check() -> None:
            now, pos = loop.time(), position()
            if self._held_until >= samples[0][0]:  # held back since the window began
                samples.clear()
            samples.append((now, pos))
            while len(samples) > 2 and samples[1][0] <= now - window:
                samples.popleft()
            since, base = samples[0]
            if now - since >= window * 0.999 and pos - base < min_speed * (now - since):
                self.stalled = True
                resp.abort()
            else:
                self._handle = loop.call_later(step, check)

        self._handle = loop.call_later(step, check)

    def hold(self, seconds: float) -> None:
        """A bandwidth cap holds the stream back for ``seconds`` from now."""
        self._held_until = asyncio.get_running_loop().time() + seconds

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def error(self, url: str, what: str = "stalled") -> DownloadTimeout:
        """The error of a stalled stream (``what`` names it: a whole file, a range)."""
        t = self.timeouts
        return DownloadTimeout(
            f"{what}: less than {t.min_speed:g} bytes/s over {t.stall_window:g} s",
            url=url,
            timeout="stall",
        )
