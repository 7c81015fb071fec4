"""The command line's live progress display (``--progress bar``).

On a terminal, with ``rich`` installed (the ``progress`` extra), a live overall bar (files,
bytes, rate, ETA) above one line per active transfer. On a terminal without rich, one
status line rewritten in place (a carriage return, no escape codes). Anywhere else (output
redirected to a file or a pipe) a plain line every few seconds and one at the end, with no
escape codes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from ..progress import plural

if TYPE_CHECKING:
    from ..models import ProgressReport

__all__ = ["ProgressBar", "format_duration", "human_bytes", "plain_line"]


def human_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """``75`` → ``'1m15s'``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _eta(report: ProgressReport) -> float | None:
    rate = report.rate
    if report.bytes_total > report.bytes_done and rate > 0:
        return (report.bytes_total - report.bytes_done) / rate
    finished = report.done + report.failed
    if report.total > finished and finished and report.elapsed > 0:
        return (report.total - finished) * report.elapsed / finished
    return None


def plain_line(report: ProgressReport) -> str:
    """One line describing ``report``, without escape codes."""
    parts = [f"{report.done + report.failed}/{plural(report.total, 'file')}"]
    extra = []
    if report.cached:
        extra.append(f"{report.cached} already stored")
    if report.failed:
        extra.append(f"{report.failed} failed")
    if extra:
        parts[0] += f" ({', '.join(extra)})"
    size = human_bytes(report.bytes_done)
    if report.bytes_total:
        size += f" of {human_bytes(report.bytes_total)}"
    parts.append(size)
    parts.append(f"{human_bytes(report.rate)}/s")
    if report.state == "running":
        eta = _eta(report)
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
    else:
        parts.append(f"{report.state} in {format_duration(report.elapsed)}")
    return f"{report.message}: " + ", ".join(parts)


def _short(url: str, width: int = 48) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1] or url
    return name if len(name) <= width else "…" + name[-(width - 1) :]


class _PlainBar:
    def __init__(self, stream: TextIO, interval: float) -> None:
        self.stream = stream
        self.interval = interval
        self._last = float("-inf")

    def update(self, report: ProgressReport) -> None:
        now = time.monotonic()
        if report.state == "running" and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(plain_line(report) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class _StatusLine:
    """One line rewritten in place with a carriage return (a terminal without rich)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._width = 0

    def update(self, report: ProgressReport) -> None:
        line = plain_line(report)
        pad = max(0, self._width - len(line))
        self._width = len(line)
        end = "" if report.state == "running" else "\n"
        self.stream.write("\r" + line + " " * pad + end)
        self.stream.flush()
        if end:
            self._width = 0

    def close(self) -> None:
        if self._width:
            self.stream.write("\n")
            self._width = 0
        self.stream.flush()


def _rate_text(speed: float | None) -> str:
    return "" if speed is None else f"{human_bytes(speed)}/s"


class _RichBar:
    """Rich's live display, in binary units (as the summary), one line per row at any
    width: every column is cut (with an ellipsis) rather than wrapped, and the bar shrinks
    first. The overall row shows the engine's own rate (bytes transferred, files served by
    the store count for nothing) and the ETA derived from it."""

    def __init__(self, stream: TextIO, max_active: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            ProgressColumn,
            Task,
            TextColumn,
        )
        from rich.table import Column
        from rich.text import Text

        def cut() -> Column:
            return Column(no_wrap=True, overflow="ellipsis")

        # Rich narrows only the columns that may wrap: the bar, then the description, whose
        # text is cut with an ellipsis instead of wrapping.
        class Description(ProgressColumn):
            def render(self, task: Task) -> Text:
                return Text(task.description, style="bold", no_wrap=True, overflow="ellipsis")

        class Rate(ProgressColumn):
            def render(self, task: Task) -> Text:
                text = task.fields.get("rate") or _rate_text(task.finished_speed or task.speed)
                return Text(text, style="progress.data.speed")

        class Eta(ProgressColumn):
            def render(self, task: Task) -> Text:
                eta = task.fields.get("eta")
                if eta is None:
                    remaining = task.time_remaining
                    eta = "" if remaining is None else format_duration(remaining)
                return Text(eta, style="progress.remaining")

        self.max_active = max_active
        self.progress = Progress(
            Description(),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[files]}", table_column=cut()),
            DownloadColumn(binary_units=True, table_column=cut()),
            Rate(table_column=cut()),
            Eta(table_column=cut()),
            console=Console(file=stream),
            refresh_per_second=8,
        )
        self.overall = self.progress.add_task("Starting", total=None, files="", rate="", eta="")
        self.tasks: dict[str, Any] = {}
        self.progress.start()

    def update(self, report: ProgressReport) -> None:
        progress = self.progress
        files = f"{report.done + report.failed}/{plural(report.total, 'file')}"
        if report.failed:
            files += f" [red]{report.failed} failed[/]"
        total = max(report.bytes_total, report.bytes_done) if report.bytes_total else None
        eta = _eta(report) if report.state == "running" else None
        progress.update(
            self.overall,
            description=report.message,
            total=total,
            completed=report.bytes_done,
            files=files,
            rate=_rate_text(report.rate),
            eta=format_duration(eta) if eta is not None else "",
        )
        current = {t.url: t for t in report.active[: self.max_active]}
        for url in list(self.tasks):
            if url not in current:
                progress.remove_task(self.tasks.pop(url))
        for url, transfer in current.items():
            task = self.tasks.get(url)
            if task is None:
                self.tasks[url] = progress.add_task(
                    f"  {_short(url)}",
                    total=transfer.bytes_total,
                    completed=transfer.bytes_done,
                    files="",
                )
            else:
                progress.update(task, completed=transfer.bytes_done)
        if report.state != "running":
            progress.refresh()

    def close(self) -> None:
        self.progress.stop()


class ProgressBar:
    """A live progress display fed with :class:`ProgressReport` snapshots.

    Args:
        stream: where to draw (the command line uses stderr).
        max_active: active transfers shown under the overall bar.
        plain_interval: seconds between two plain lines (not on a terminal).
        use_rich: None picks rich on a terminal when it is installed; False uses the
            status line rewritten in place instead.

    Example::

        bar = ProgressBar(sys.stderr)
        config = EngineConfig(progress=bar.update)
        ...
        bar.close()
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        max_active: int = 6,
        plain_interval: float = 2.0,
        use_rich: bool | None = None,
    ) -> None:
        self._impl: _PlainBar | _StatusLine | _RichBar
        self._closed = False
        if _isatty(stream):
            if use_rich is not False:
                try:
                    self._impl = _RichBar(stream, max_active)
                    return
                except ImportError:
                    pass
            self._impl = _StatusLine(stream)
        else:
            self._impl = _PlainBar(stream, plain_interval)

    @property
    def rich(self) -> bool:
        """True when the rich live display is used."""
        return isinstance(self._impl, _RichBar)

    def update(self, report: ProgressReport) -> None:
        """Show ``report`` (use as the engine's progress callback)."""
        if not self._closed:
            self._impl.update(report)

    def close(self) -> None:
        """Stop the live display, leaving its last state on screen. Idempotent."""
        if not self._closed:
            self._closed = True
            self._impl.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_mode(requested: str | None, stream: TextIO) -> str:
    """``--progress`` as given, else ``bar`` when ``stream`` is a terminal, else ``none``."""
    if requested is not None:
        return requested
    try:
        return "bar" if stream.isatty() else "none"
    except (AttributeError, ValueError):
        return "none"


class Progress:
    """The progress callback of one command, and what to close after it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        # Taken before the live bar starts, which swaps sys.stdout for a proxy.
        self.summary_stream: TextIO = sys.stderr if mode == "json" else sys.stdout
        self.bar: Any = None
        self.callback: Any = None
        if mode == "json":
            self.callback = json_progress(sys.stdout)
        elif mode == "bar":
            self.bar = ProgressBar(sys.stderr)
            self.callback = self.bar.update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def json_progress(out: TextIO) -> Any:
    def emit(report: ProgressReport) -> None:
        out.write(json.dumps(report.to_json()) + "\n")
        out.flush()

    return emit
