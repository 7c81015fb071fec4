"""Bitrot detection and repair: re-hash stored files against their unit files."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .errors import DownloadError
from .models import UnitFile, VerifyReport
from .progress import ProgressTracker, batch_tracker

if TYPE_CHECKING:
    from .catalog.base import Catalog
    from .engine import DownloadEngine

__all__ = ["verify_stored"]


async def verify_stored(
    engine: DownloadEngine, catalog: Catalog, *, repair: bool, concurrency: int
) -> VerifyReport:
    """Re-hash every stored file of ``catalog`` (``concurrency`` at once) and report.

    A file is *corrupt* when its size or any recorded digest differs, *missing* when
    storage no longer has it. With ``repair`` a corrupt file is quarantined and, like a
    missing one, fetched again from its recorded sources; a good file gets ``verified_at``.
    """
    tracker = ProgressTracker(
        engine.config.progress,
        code="verify",
        message="Verifying stored files",
        interval=engine.config.progress_interval,
    )
    checked = ok = 0
    corrupt: list[str] = []
    missing: list[str] = []
    repaired: list[str] = []
    errors: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    # Repairs are counted by this run's tracker, not reported as a separate stream.
    token = batch_tracker.set(ProgressTracker(None))

    async def check(record: UnitFile) -> None:
        nonlocal checked, ok
        async with gate:
            algorithms = sorted({"sha256", *record.digests})
            found = await engine.storage.digest(record.sha256, algorithms)
        checked += 1
        bad: list[str] | None = None
        if found is None:
            bad = missing
        else:
            digests, size = found
            good = size == record.size if record.size is not None else True
            good = good and all(digests[a] == v for a, v in record.digests.items())
            good = good and digests["sha256"] == record.sha256
            if not good:
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
            await engine.storage.quarantine(record.sha256)
        try:
            await engine.fetch(record.sha256)
        except DownloadError as exc:
            errors[record.sha256] = str(exc)
            tracker.file_failed()
        else:
            repaired.append(record.sha256)
            await catalog.mark_verified(record.sha256, datetime.now(timezone.utc))
            tracker.file_done(record.size or 0)

    tasks: set[asyncio.Task[None]] = set()
    try:
        async for record in catalog.unit_files():
            if record.location is None:
                continue
            tracker.add(1, record.size)
            task = asyncio.ensure_future(check(record))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if len(tasks) >= concurrency * 4:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        batch_tracker.reset(token)
        await tracker.finish()
    return VerifyReport(
        checked=checked,
        ok=ok,
        corrupt=tuple(sorted(corrupt)),
        missing=tuple(sorted(missing)),
        repaired=tuple(sorted(repaired)),
        errors=errors,
    )
