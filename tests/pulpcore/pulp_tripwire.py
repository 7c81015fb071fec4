"""Make pulpcore's own ``HttpDownloader`` fail, and say so, if anything ever uses it.

:func:`arm` replaces ``HttpDownloader._run`` (the one method every download of it goes
through) with one that appends a line to ``record`` and raises. With the adapter installed
the file must stay empty: the tests read it from the test process and the content app's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["arm", "calls"]


class PulpcoreDownloaderUsed(AssertionError):
    """pulpcore's HttpDownloader ran although the adapter is installed."""


def arm(record: Path) -> Callable[[], None]:
    """From now on, a run of pulpcore's ``HttpDownloader`` is recorded and fails.

    Returns the function that puts pulpcore's ``_run`` back.
    """
    from pulpcore.download.http import HttpDownloader

    original = HttpDownloader.__dict__["_run"]

    async def _run(self: Any, extra_data: dict[str, Any] | None = None) -> Any:
        with record.open("a") as sink:
            sink.write(f"{os.getpid()} {self.url}\n")
        raise PulpcoreDownloaderUsed(f"pulpcore's HttpDownloader was used for {self.url}")

    def disarm() -> None:
        HttpDownloader._run = original  # type: ignore[method-assign]

    HttpDownloader._run = _run  # type: ignore[method-assign]
    return disarm


def calls(record: Path) -> list[str]:
    """The recorded runs (pid and URL), oldest first."""
    return record.read_text().splitlines() if record.exists() else []
