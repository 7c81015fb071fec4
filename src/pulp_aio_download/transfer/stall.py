"""Stall detection of one connection (see :class:`~pulp_aio_download.Timeouts`).

The mean speed over the last ``stall_window`` seconds below ``min_speed`` aborts the
response: a sliding window sampled four times per window, so a stall is noticed at most a
quarter window after the last window-worth of time fell below ``min_speed``. Time a
bandwidth cap holds the stream back (:meth:`StallWatch.hold`) is not a stall: the window
starts again after it.

Every watch of the same window on an event loop is sampled by one shared timer (a
:class:`_Ticker`), not a timer of its own: a small file costs a dict insertion and a
removal, not a timer scheduled and cancelled. The timer stops at its first tick with no
watch left.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
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

    __slots__ = (
        "__weakref__",
        "_held_until",
        "_position",
        "_resp",
        "_samples",
        "_ticker",
        "stalled",
        "timeouts",
    )

    def __init__(self, timeouts: Timeouts, resp: Response, position: Callable[[], int]) -> None:
        self.timeouts = timeouts
        self.stalled = False
        self._held_until = 0.0
        self._ticker: _Ticker | None = None
        if not timeouts.min_speed:
            return
        self._resp = resp
        self._position = position
        ticker = _ticker(timeouts.stall_window)
        self._samples = collections.deque([(ticker.loop.time(), position())])
        ticker.add(self)
        self._ticker = ticker

    def _check(self, now: float) -> bool:
        """Take a sample at ``now``; True (and the response aborted) when it stalled."""
        samples, window = self._samples, self.timeouts.stall_window
        pos = self._position()
        if self._held_until >= samples[0][0]:  # held back since the window began
            samples.clear()
        samples.append((now, pos))
        while len(samples) > 2 and samples[1][0] <= now - window:
            samples.popleft()
        since, base = samples[0]
        min_speed = self.timeouts.min_speed or 0.0
        if now - since >= window * 0.999 and pos - base < min_speed * (now - since):
            self.stalled = True
            self._resp.abort()
            return True
        return False

    def hold(self, seconds: float) -> None:
        """A bandwidth cap holds the stream back for ``seconds`` from now."""
        self._held_until = asyncio.get_running_loop().time() + seconds

    def stop(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.discard(self)

    def error(self, url: str, what: str = "stalled") -> DownloadTimeout:
        """The error of a stalled stream (``what`` names it: a whole file, a range)."""
        t = self.timeouts
        return DownloadTimeout(
            f"{what}: less than {t.min_speed:g} bytes/s over {t.stall_window:g} s",
            url=url,
            timeout="stall",
        )


class _Ticker:
    """The one timer of a loop that samples every watch of one window, a quarter window
    apart (a watch's first sample comes at most that long after it started)."""

    __slots__ = ("_handle", "loop", "step", "watches")

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        self.loop = loop
        self.step = window / 4
        self.watches: dict[StallWatch, None] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, watch: StallWatch) -> None:
        self.watches[watch] = None
        if self._handle is None:
            self._handle = self.loop.call_later(self.step, self._tick)

    def discard(self, watch: StallWatch) -> None:
        # The timer is left to run out (a tick with no watch stops it): a small file's
        # watch is often the only one and lives within one step of the loop, and a timer
        # cancelled and scheduled again per file is what the shared one is there to save.
        self.watches.pop(watch, None)

    def _tick(self) -> None:
        self._handle = None
        now = self.loop.time()
        for watch in list(self.watches):
            if watch in self.watches and watch._check(now):  # not stopped by another's check
                self.watches.pop(watch, None)
                watch._ticker = None
        if self.watches:
            self._handle = self.loop.call_later(self.step, self._tick)


#: The tickers of the loop that asked last (by window), and that loop.
_tickers: tuple[weakref.ReferenceType[asyncio.AbstractEventLoop], dict[float, _Ticker]] | None = (
    None
)


def _ticker(window: float) -> _Ticker:
    global _tickers
    loop = asyncio.get_running_loop()
    current = _tickers
    if current is None or current[0]() is not loop:
        current = _tickers = (weakref.ref(loop), {})
    ticker = current[1].get(window)
    if ticker is None:
        ticker = current[1][window] = _Ticker(loop, window)
    return ticker
