"""Bitrot detection and repair: re-hash stored files against their unit files, find the
stored files no record locates, list what interrupted downloads left behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .errors import DownloadError
from .models import DownloadResult, ProgressReport, UnitFile, VerifyReport
from .progress import ProgressTracker

if TYPE_CHECKING:
    from .catalog.base import Catalog
    from .storage.base import Storage

__all__ = ["verify_stored"]

log = logging.getLogger(__name__)


async def verify_stored(
    storage: Storage,
    catalog: Catalog,
    fetch: Callable[[str], Awaitable[DownloadResult]],
    *,
    progress: Callable[[ProgressReport], Any] | None,
    progress_interval: float,
    repair: bool,
    concurrency: int,
) -> VerifyReport:
    """Re-hash every stored file (``concurrency`` at once) and report.

    A recorded file is *corrupt* when its size or any recorded digest differs, *missing*
    when storage no longer has it. A stored file that no record locates (no record, or one
    without a location: a process killed between storing and recording) is *unrecorded*;
    it is hashed too, and is also *corrupt* when its content does not hash to its key.

    With ``repair``: a corrupt recorded file is quarantined and, like a missing one, fetched
    again from its recorded sources; an unrecorded file whose content matches its key is
    adopted (recorded with that location, size and digest, verified now); an unrecorded
    file whose content does not match is quarantined (moved aside, never deleted: nothing
    records where it could be fetched again) and, when a record names sources for its
    sha256, fetched again from them. A good file gets ``verified_at``. Leftover partials
    and staging files are listed, never removed. Files are fetched with ``fetch(sha256)``
    (the engine's, counting in no progress stream of its own); progress goes to
    ``progress`` (code ``verify``).
    """
    tracker = ProgressTracker(
        progress,
        code="verify",
        message="Verifying stored files",
        interval=progress_interval,
    )
    checked = ok = 0
    corrupt: list[str] = []
    missing: list[str] = []
    unrecorded: list[str] = []
    repaired: list[str] = []
    errors: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)

    async def refetch(sha256: str, size: int | None) -> None:
        try:
            await fetch(sha256)
        except DownloadError as exc:
            errors[sha256] = str(exc)
            tracker.file_failed()
        else:
            repaired.append(sha256)
            await catalog.mark_verified(sha256, datetime.now(timezone.utc))
            tracker.file_done(size or 0)

    async def check(record: UnitFile) -> None:
        nonlocal checked, ok
        async with gate:
            algorithms = sorted({"sha256", *record.digests})
            found = await storage.digest(record.sha256, algorithms)
        checked += 1
        bad: list[str] | None = None
        if found is None:
            bad = missing
        elif not _matches(record, *found):
            bad = corrupt
        if bad is None:
            ok += 1
            if not catalog.read_only:  # a read-only catalog is checked, never touched
                await catalog.mark_verified(record.sha256, datetime.now(timezone.utc))
            tracker.file_done(record.size or 0)
            return
        bad.append(record.sha256)
        if not repair:
            # A plain check changes nothing: the next run (or --repair) finds it again.
            tracker.file_failed()
            return
        if bad is corrupt:
            await storage.quarantine(record.sha256)
        await refetch(record.sha256, record.size)

    async def check_unrecorded(sha256: str) -> None:
        nonlocal checked
        # Double-checked: a listing and a catalog page are not one snapshot.
        record = await catalog.get_unit_file(sha256)
        if record is not None and record.location is not None:
            return
        async with gate:
            stored = await storage.stat(sha256)
            algorithms = sorted({"sha256", *(record.digests if record else ())})
            found = await storage.digest(sha256, algorithms) if stored else None
        if stored is None or found is None:
            return  # gone meanwhile (a delete or quarantine by another process)
        checked += 1
        unrecorded.append(sha256)
        digests, size = found
        good = digests["sha256"] == sha256 and (record is None or _matches(record, *found))
        if not good:
            corrupt.append(sha256)
        if not repair:
            tracker.file_failed()
            return
        if good:
            now = datetime.now(timezone.utc)
            await catalog.record_unit_file(
                UnitFile(
                    sha256=sha256,
                    size=size,
                    digests=digests,
                    location=stored.location,
                    created_at=now,
                    verified_at=now,
                )
            )
            log.info("adopted %s (%d bytes), stored without a record", stored.location, size)
            repaired.append(sha256)
            tracker.file_done(size)
            return
        await storage.quarantine(sha256)
        if record is not None and record.sources:
            await refetch(sha256, record.size)
            return
        errors[sha256] = (
            f"not adopted: its content hashes to {digests['sha256']}, not to its key; moved "
            "to the quarantine (no record names a source to fetch it from again)"
        )
        tracker.file_failed()

    tasks: set[asyncio.Task[None]] = set()

    async def spawn(work: Coroutine[Any, Any, None]) -> None:
        tasks.add(asyncio.ensure_future(work))
        for task in [t for t in tasks if t.done()]:
            tasks.discard(task)
            task.result()
        if len(tasks) >= concurrency * 4:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)

    stored = _Lookahead(_artifacts(storage))
    try:
        # A merge of two sha256-ordered streams: the records and the stored files.
        async for record in catalog.unit_files():
            async for sha in stored.below(record.sha256):
                tracker.add(1)
                await spawn(check_unrecorded(sha))
            located = await stored.take(record.sha256)
            if record.location is None:
                if located:
                    tracker.add(1, record.size)
                    await spawn(check_unrecorded(record.sha256))
                continue
            tracker.add(1, record.size)
            await spawn(check(record))
        async for sha in stored.below(None):
            tracker.add(1)
            await spawn(check_unrecorded(sha))
        if tasks:
            await asyncio.gather(*tasks)
        partials = tuple(await storage.leftovers())
    finally:
        for task in tasks:
            task.cancel()
        await tracker.finish()
    return VerifyReport(
        checked=checked,
        ok=ok,
        corrupt=tuple(sorted(corrupt)),
        missing=tuple(sorted(missing)),
        unrecorded=tuple(sorted(unrecorded)),
        repaired=tuple(sorted(repaired)),
        errors=errors,
        partials=partials,
    )


def _matches(record: UnitFile, digests: dict[str, str], size: int) -> bool:
    """Whether stored bytes (``digests``, ``size``) are what ``record`` says."""
    return (
        (record.size is None or size == record.size)
        and all(digests[a] == v for a, v in record.digests.items())
        and digests["sha256"] == record.sha256
    )


async def _artifacts(storage: Storage) -> AsyncIterator[str]:
    try:
        async for sha in storage.artifacts():
            yield sha
    except NotImplementedError:
        log.warning("%r cannot list its files: unrecorded files are not looked for", storage)


class _Lookahead:
    """An ordered stream of sha256 read one ahead, for the merge with the records."""

    def __init__(self, stream: AsyncIterator[str]) -> None:
        self._stream = stream
        self._next: str | None = None
        self._started = False

    async def _peek(self) -> str | None:
        if not self._started:
            self._started = True
            await self._advance()
        return self._next

    async def _advance(self) -> None:
        try:
            self._next = await self._stream.__anext__()
        except StopAsyncIteration:
            self._next = None

    async def below(self, bound: str | None) -> AsyncIterator[str]:
        """Yield (and consume) the next items smaller than ``bound`` (None: all left)."""
        while (item := await self._peek()) is not None and (bound is None or item < bound):
            await self._advance()
            yield item

    async def take(self, sha256: str) -> bool:
        """Consume the next item if it is ``sha256``; whether it was."""
        if await self._peek() == sha256:
            await self._advance()
            return True
        return False
