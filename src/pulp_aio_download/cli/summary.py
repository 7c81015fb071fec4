"""The summary of a batch: counted as outcomes arrive, printed as JSON or one line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import DownloadError
from ..progress import was_retried

if TYPE_CHECKING:
    from ..models import DownloadRequest, VerifyReport

__all__ = ["BatchSummary", "print_summary", "print_verify_report", "summarize"]


class BatchSummary:
    """Counts a batch's outcomes as they arrive (nothing else is kept), for the summary.

    ``retried`` and ``bytes`` mean what they mean in the progress reports: files whose
    source needed more than one attempt (done or failed), and bytes transferred (files
    the store already had count for nothing, and so for the rate).
    """

    def __init__(self, requests: Sequence[DownloadRequest]) -> None:
        self.requests = requests
        self.done = self.cached = self.retried = self.bytes = 0
        self.failures: list[tuple[int, dict[str, Any]]] = []

    def add(self, index: int, outcome: Any) -> None:
        if was_retried(outcome):
            self.retried += 1
        if isinstance(outcome, DownloadError):
            url = self.requests[index].url
            failure = {
                "url": url,
                "error": type(outcome).__name__,
                "reason": _reason(outcome, url),
                "attempts": outcome.attempts,
            }
            self.failures.append((index, failure))
            return
        self.done += 1
        if outcome.cached:
            self.cached += 1
        self.bytes += outcome.transferred

    def to_json(self, elapsed: float) -> dict[str, Any]:
        return {
            "files": len(self.requests),
            "done": self.done,
            "cached": self.cached,
            "failed": len(self.failures),
            "retried": self.retried,
            "bytes": self.bytes,
            "elapsed": round(elapsed, 3),
            "rate": round(self.bytes / elapsed, 1) if elapsed > 0 else 0.0,
            "failures": [failure for _, failure in sorted(self.failures, key=lambda f: f[0])],
        }


def summarize(
    results: Sequence[Any], requests: Sequence[DownloadRequest], elapsed: float
) -> dict[str, Any]:
    """A JSON-able summary of a batch."""
    summary = BatchSummary(requests)
    for index, outcome in enumerate(results):
        summary.add(index, outcome)
    return summary.to_json(elapsed)


def _reason(error: BaseException, url: str | None) -> str:
    """The error message on one line, without the URL the summary already shows."""
    line = " ".join(str(error).split())
    if url and line.endswith(f" ({url})"):
        line = line[: -len(url) - 3]
    return line if len(line) <= 300 else line[:299] + "…"


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    """The human summary: one line of counts, then one line per failure."""
    from ..progress import plural
    from .progress import human_bytes

    out.write(
        f"{plural(summary['files'], 'file')}: {summary['done']} done "
        f"({summary['cached']} already stored), {summary['failed']} failed, "
        f"{summary['retried']} retried; {human_bytes(summary['bytes'])} transferred in "
        f"{summary['elapsed']:.2f} s ({human_bytes(summary['rate'])}/s)\n"
    )
    for failure in summary["failures"]:
        out.write(f"FAILED {failure['url']}: {failure['reason']}\n")


def print_verify_report(report: VerifyReport, out: TextIO) -> None:
    """The human verify report: one line of counts, then one line per finding."""
    from ..progress import plural
    from .progress import human_bytes

    repaired = set(report.repaired)
    unrecorded = set(report.unrecorded)
    out.write(
        f"checked {report.checked}: {report.ok} ok, {len(report.corrupt)} corrupt, "
        f"{len(report.missing)} missing, {len(report.unrecorded)} unrecorded, "
        f"{len(report.repaired)} repaired; {plural(len(report.partials), 'leftover partial')}\n"
    )
    for sha in report.corrupt:
        if sha not in unrecorded:
            out.write(f"CORRUPT {sha}" + (" (repaired)\n" if sha in repaired else "\n"))
    for sha in report.missing:
        out.write(f"MISSING {sha}" + (" (repaired)\n" if sha in repaired else "\n"))
    for sha in report.unrecorded:
        if sha in report.corrupt:
            note = "its content does not match its key"
        elif sha in repaired:
            note = "adopted"
        else:
            note = "its content matches its key: --repair records it"
        out.write(f"UNRECORDED {sha} ({note})\n")
    for sha, error in report.errors.items():
        out.write(f"REPAIR FAILED {sha}: {error}\n")
    for leftover in report.partials:
        origin = f", from {leftover.url}" if leftover.url else ""
        size = f"{human_bytes(leftover.size)}{origin}" if leftover.size else "size unknown"
        out.write(f"LEFTOVER {leftover.kind} {leftover.location} ({size})\n")
