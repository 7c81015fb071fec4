"""Progress accounting: counters updated per file, bytes read from the active writers.

Nothing here runs per chunk: the bytes in flight are summed from the active transfers only
when a snapshot is taken, at most once every ``interval`` seconds, plus one final report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from .models import ProgressReport

__all__ = ["ProgressTracker"]


class _Sized(Protocol):
    size: int


class ProgressTracker:
    """Counts one batch (or one verify run) and reports to ``callback``.

    Args:
        callback: receives :class:`ProgressReport`; None disables reporting (counting goes on).
        code: ``"download"`` or ``"verify"``.
        message: a human label.
        interval: minimum seconds between two reports (the final one always comes).
    """

    def __init__(
        self,
        callback: Callable[[ProgressReport], Any] | None,
        *,
        code: str = "download",
        message: str = "Downloading",
        interval: float = 0.25,
    ) -> None:
        self.callback = callback
        self.code = code
        self.message = message
        self.interval = interval
        self.total = 0
        self.done = 0
        self.failed = 0
        self.cached = 0
        self.retried = 0
        self.bytes_total = 0
        self._bytes_finished = 0
        self._active: set[_Sized] = set()
        self._started = time.monotonic()
        self._last = 0.0
        self._ticker: asyncio.Task[None] | None = None
        self._final_sent = False

    # -- counting ------------------------------------------------------------------------
    def add(self, count: int = 1, size: int | None = None) -> None:
        self.total += count
        if size:
            self.bytes_total += size
        self._ensure_ticker()

    def start_transfer(self, writer: _Sized) -> None:
        self._active.add(writer)

    def end_transfer(self, writer: _Sized) -> None:
        self._active.discard(writer)

    def file_done(self, size: int, *, cached: bool = False) -> None:
        self.done += 1
        self._bytes_finished += size
        if cached:
            self.cached += 1
        self._maybe_emit()

    def file_failed(self) -> None:
        self.failed += 1
        self._maybe_emit()

    def retry(self) -> None:
        self.retried += 1

    @property
    def bytes_done(self) -> int:
        return self._bytes_finished + sum(w.size for w in self._active)

    # -- reporting -----------------------------------------------------------------------
    def snapshot(self, state: str = "running") -> ProgressReport:
        return ProgressReport(
            message=self.message,
            code=self.code,
            total=self.total,
            done=self.done,
            failed=self.failed,
            bytes_total=self.bytes_total,
            bytes_done=self.bytes_done,
            state=state,
            cached=self.cached,
            retried=self.retried,
            elapsed=time.monotonic() - self._started,
        )

    def _emit(self, state: str) -> None:
        if self.callback is None:
            return
        self._last = time.monotonic()
        self.callback(self.snapshot(state))

    def _maybe_emit(self) -> None:
        if self.callback is not None and time.monotonic() - self._last >= self.interval:
            self._emit("running")

    def _ensure_ticker(self) -> None:
        if self.callback is None or self._ticker is not None or self._final_sent:
            return
        with contextlib.suppress(RuntimeError):
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._active:
                self._maybe_emit()

    async def finish(self) -> ProgressReport:
        """Stop the ticker and send the final report (state completed or failed)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        state = "failed" if self.failed else "completed"
        report = self.snapshot(state)
        if not self._final_sent:
            self._final_sent = True
            if self.callback is not None:
                self.callback(report)
        return report
