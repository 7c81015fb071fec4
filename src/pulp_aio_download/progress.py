"""Progress accounting: counters updated per file, bytes read from the active writers.

Nothing here runs per chunk: a transfer registers its writer once when it starts streaming
and once when it stops; the bytes in flight are summed from the active writers' ``size``
only when a snapshot is taken, at most once every ``interval`` seconds, plus one final
report. One tracker covers one batch (``download_many``), one verify run, or the loose
``download()`` calls of an engine (its final report comes when the engine closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from .errors import AllSourcesFailed, DownloadError
from .models import ActiveTransfer, DownloadResult, ProgressReport

__all__ = ["ProgressTracker", "plural", "was_retried"]

log = logging.getLogger(__name__)

#: At most this many active transfers are listed in one report.
MAX_ACTIVE_LISTED = 64


class _Writer(Protocol):
    size: int


def was_retried(outcome: DownloadResult | DownloadError) -> bool:
    """Whether a finished download counts as *retried*: its source needed more than one
    attempt (for a failure over several sources: some source did).

    The one meaning of ``retried`` in :class:`ProgressReport` and in the CLI's summaries.
    """
    if isinstance(outcome, AllSourcesFailed):
        return any(was_retried(error) for error in outcome.errors)
    return outcome.attempts > 1


def plural(count: int, noun: str) -> str:
    """``plural(1, "file")`` → ``'1 file'``; ``plural(2, "file")`` → ``'2 files'``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class ProgressTracker:
    """Counts one batch (or one verify run) and reports to ``callback``.

    Reports come at most once every ``interval`` seconds while work runs (a ticker task
    sends one each interval, so a slow transfer still shows its bytes moving), then once
    with ``state`` ``"completed"`` or ``"failed"`` from :meth:`finish`. A callback that
    raises is logged and does not fail any download.

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
        self._bytes_fetched = 0
        self._bytes_shown = 0
        self._planned = 0
        self._active: dict[_Writer, None] = {}
        self._started = time.monotonic()
        self._last = float("-inf")
        self._ticker: asyncio.Task[None] | None = None
        self._final_sent = False
        self._callback_failed = False

    # -- counting ------------------------------------------------------------------------
    def plan(self, count: int, size: int = 0) -> None:
        """Announce ``count`` files (``size`` bytes known) before they start.

        The next ``count`` calls of :meth:`add` then only start the ticker, so the totals
        are right from the first report of a batch.
        """
        self.total += count
        self.bytes_total += size
        self._planned += count
        self._ensure_ticker()

    def add(self, count: int = 1, size: int | None = None) -> None:
        """Count a file that starts (unless it was announced by :meth:`plan`)."""
        if self._planned >= count:
            self._planned -= count
        else:
            self.total += count
            if size:
                self.bytes_total += size
        self._ensure_ticker()

    def start_transfer(self, writer: _Writer) -> None:
        """A transfer streams into ``writer`` (its ``size``, ``url`` and ``expected_size``
        are read when a snapshot is taken)."""
        self._active[writer] = None

    def end_transfer(self, writer: _Writer) -> None:
        """The transfer into ``writer`` stopped (finished, failed or paused to retry)."""
        self._active.pop(writer, None)

    def file_done(
        self, size: int, *, cached: bool = False, retried: bool = False, carried: int = 0
    ) -> None:
        """A file finished: ``cached`` when the store served it (nothing transferred),
        ``retried`` as :func:`was_retried` says, ``carried`` bytes of it continued from a
        partial an earlier process left (not transferred now)."""
        self.done += 1
        self._bytes_finished += size
        if cached:
            self.cached += 1
        else:
            self._bytes_fetched += size - carried
        if retried:
            self.retried += 1
        self._maybe_emit()

    def file_undone(self, size: int, *, cached: bool = False, retried: bool = False) -> None:
        """Take back a :meth:`file_done` (a later hook failed the download)."""
        self.done -= 1
        self._bytes_finished -= size
        if cached:
            self.cached -= 1
        else:
            self._bytes_fetched -= size
        if retried:
            self.retried -= 1

    def file_failed(self, *, retried: bool = False) -> None:
        self.failed += 1
        if retried:
            self.retried += 1
        self._maybe_emit()

    @property
    def bytes_done(self) -> int:
        """Bytes of finished files plus the bytes written so far by active transfers."""
        return self._bytes_finished + sum(w.size for w in self._active)

    @property
    def bytes_transferred(self) -> int:
        """Like :attr:`bytes_done`, without the files the store served (``cached``)."""
        return self._bytes_fetched + sum(w.size - getattr(w, "carried", 0) for w in self._active)

    def active(self) -> tuple[ActiveTransfer, ...]:
        """The transfers streaming now (at most ``MAX_ACTIVE_LISTED``)."""
        out = []
        for writer in self._active:
            out.append(
                ActiveTransfer(
                    url=getattr(writer, "url", None) or "",
                    bytes_done=writer.size,
                    bytes_total=getattr(writer, "expected_size", None),
                )
            )
            if len(out) >= MAX_ACTIVE_LISTED:
                break
        return tuple(out)

    # -- reporting -----------------------------------------------------------------------
    def snapshot(self, state: str = "running") -> ProgressReport:
        """The current :class:`ProgressReport`.

        While running, ``bytes_done`` never goes backwards between two snapshots (a file
        leaves the active set just before it is counted as done); the final snapshot has
        the exact bytes of the files done.
        """
        if state == "running":
            self._bytes_shown = max(self._bytes_shown, self.bytes_done)
            nbytes = self._bytes_shown
            active = self.active()
        else:
            nbytes = self.bytes_done
            active = ()
        fetched = min(self.bytes_transferred, nbytes)
        return ProgressReport(
            message=self.message,
            code=self.code,
            total=self.total,
            done=self.done,
            failed=self.failed,
            bytes_total=self.bytes_total,
            bytes_done=nbytes,
            bytes_transferred=fetched,
            state=state,
            cached=self.cached,
            retried=self.retried,
            elapsed=time.monotonic() - self._started,
            active=active,
        )

    def _deliver(self, report: ProgressReport) -> None:
        assert self.callback is not None
        try:
            self.callback(report)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                log.exception("the progress callback raised; later errors are not logged")

    def _maybe_emit(self) -> None:
        if self.callback is None or self._final_sent:
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._deliver(self.snapshot("running"))

    def _ensure_ticker(self) -> None:
        if self.callback is None or self._ticker is not None or self._final_sent:
            return
        with contextlib.suppress(RuntimeError):
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._maybe_emit()

    async def finish(self) -> ProgressReport:
        """Stop the ticker and send the final report (state completed or failed).

        Only the first call sends it; every call returns the final snapshot.
        """
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
                self._deliver(report)
        return report
