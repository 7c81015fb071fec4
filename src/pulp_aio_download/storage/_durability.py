"""Group commit: one ``syncfs`` and one thread hop shared by every file committed at about
the same time.

fsync per file costs a journal commit per file on ext4. A :class:`CommitQueue` hands the
commits that :class:`~.local.LocalStorage` is asked for while one batch runs to a worker
thread together, as one job (write the small files kept in memory, ``syncfs(2)``, rename,
``syncfs``), so N concurrent commits cost one or two syncs and one thread hop instead of two
or three each.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StorageError

__all__ = ["Commit", "CommitQueue", "syncfs"]

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    _syncfs = getattr(_libc, "syncfs", None)
except OSError:  # pragma: no cover - no C library to load
    _syncfs = None


def syncfs(directory: Path) -> None:
    """Flush the filesystem holding ``directory`` (``os.sync()`` where syncfs is missing)."""
    if _syncfs is None:  # pragma: no cover - non-Linux
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(directory))
    finally:
        os.close(fd)


@dataclass(eq=False, slots=True)
class Commit:
    """One artifact to publish: the staged file (or, with ``body``, the bytes to write
    under that staging name first) and, once the worker thread is done, its ``outcome``:
    the :class:`~.base.StoredArtifact` or the :class:`StorageError`."""

    staged: Path
    sha256: str
    size: int
    body: Sequence[bytes] | None = None
    outcome: Any = None


class CommitQueue:
    """Run the commits requested meanwhile as one batch in a worker thread.

    Args:
        run: does a whole batch in the worker thread, setting every item's ``outcome``.
    """

    def __init__(self, run: Callable[[list[Commit]], None]) -> None:
        self._run_batch = run
        self._queue: list[tuple[Commit, asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None

    def submit(self, item: Commit) -> asyncio.Future[Any]:
        """Queue ``item``; the future gives its outcome (or raises its StorageError)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._run())
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                job = loop.run_in_executor(None, self._run_batch, [item for item, _ in batch])
                try:
                    await asyncio.shield(job)
                except asyncio.CancelledError:
                    # The thread goes on: its outcomes are what the waiters need (to undo
                    # a rename nobody will record).
                    await asyncio.wait([job])
                    _deliver(batch, job)
                    raise
                _deliver(batch, job)
        finally:
            self._runner = None


def _deliver(batch: list[tuple[Commit, asyncio.Future[Any]]], job: asyncio.Future[None]) -> None:
    failure = job.exception()
    for item, future in batch:
        if future.done():
            continue
        outcome = item.outcome
        if failure is not None and outcome is None:
            outcome = StorageError(f"cannot store artifact {item.sha256}: {failure}")
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        elif outcome is None:
            future.set_exception(StorageError(f"artifact {item.sha256} was not committed"))
        else:
            future.set_result(outcome)
