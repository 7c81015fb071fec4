"""What a batch finds already stored: one storage pass and one catalog read per chunk.

A re-sync of a repository that is already stored is the most common sync there is. Asking
storage (a ``stat``) and the catalog (a read) about each file costs two thread hops per
file; :class:`Lookahead` asks about a whole chunk of a batch's requests at once
(:meth:`Storage.stat_many <pulp_aio_download.storage.Storage.stat_many>` and
:meth:`Catalog.get_unit_files <pulp_aio_download.catalog.Catalog.get_unit_files>`, side by
side), and looks the next chunk up while the workers go through this one. What
it finds is a snapshot: the engine serves a file from it only after the checks it makes on
a stat and a record of its own (size, digests, changed since verified), and a file that
fails them goes the per-file way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog.base import Catalog
    from .models import ContentUnit, DownloadRequest, UnitFile
    from .storage.base import Storage, StoredArtifact

__all__ = ["NOT_STORED", "Found", "Lookahead", "Looked", "look_up"]

log = logging.getLogger(__name__)

#: Requests looked up together (the first chunk is waited for; the next ones are looked
#: up while the workers go through the one before).
CHUNK = 1000
#: Chunks looked up ahead of the one handed out.
AHEAD = 1


@dataclass(frozen=True, slots=True)
class Found:
    """What a lookup found of one request's file: its stored artifact (None: not stored),
    its unit file (None: no record, or no catalog) and, for a request that names a unit,
    that unit as the catalog holds it (None: not recorded, or not looked up)."""

    stored: StoredArtifact | None
    record: UnitFile | None = None
    unit: ContentUnit | None = None


#: A sha256 the lookup found not stored.
NOT_STORED = Found(None)

UnitKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Looked:
    """What the lookup of one chunk found: by sha256 (None: storage cannot tell, each file
    is asked alone; a sha256 left out is asked alone too), and the units by (type, key)."""

    files: Mapping[str, Found] | None
    units: Mapping[UnitKey, ContentUnit]


async def look_up(
    storage: Storage,
    catalog: Catalog | None,
    sha256s: Sequence[str],
    units: Sequence[UnitKey] = (),
) -> Looked:
    """What storage and the catalog hold of ``sha256s`` and of the units ``units``.

    Every sha256 is in ``files``, unless storage cannot tell in one pass (then ``files`` is
    None) or can only tell what is absent (:meth:`Storage.absent`: the others are left out).
    """
    records: Mapping[str, UnitFile] = {}
    found_units: Mapping[UnitKey, ContentUnit] = {}
    if catalog is None:
        stats = await storage.stat_many(sha256s)
    else:
        # All at once: the stats come from a worker thread, the rest from the catalog.
        stats, records, found_units = await asyncio.gather(
            storage.stat_many(sha256s),
            catalog.get_unit_files(sha256s),
            catalog.get_units(units) if units else _nothing(),
        )
    if stats is None:
        absent = await storage.absent(sha256s)
        files = None if absent is None else dict.fromkeys(absent, NOT_STORED)
        return Looked(files, found_units)
    return Looked(
        {
            sha256: NOT_STORED
            if (stored := stats.get(sha256)) is None
            else Found(stored, records.get(sha256))
            for sha256 in sha256s
        },
        found_units,
    )


async def _nothing() -> Mapping[UnitKey, ContentUnit]:
    return {}


class Lookahead:
    """The requests of a batch in order, each with what the lookup of its chunk found.

    The batch's workers share one: :meth:`next` hands out the next request, and waits only
    when its chunk is still being looked up. A lookup that fails is logged and taken as
    "unknown": those files are asked about one by one, where a failure is that file's.

    Args:
        requests: the batch.
        look_up: what storage and the catalog hold of a list of sha256s and of a list of
            units (see :func:`look_up`).
        chunk: requests per lookup (default :data:`CHUNK`).
    """

    def __init__(
        self,
        requests: Sequence[DownloadRequest],
        look_up: Callable[[list[str], list[UnitKey]], Awaitable[Looked]],
        *,
        chunk: int | None = None,
    ) -> None:
        self._requests = requests
        self._look_up = look_up
        self._chunk = chunk or CHUNK
        self._next = 0
        self._known: Looked | None = None
        self._known_until = 0  # requests before this index are covered by _known
        self._pending: dict[int, asyncio.Task[Looked | None]] = {}  # by first index

    async def next(self) -> tuple[int, DownloadRequest, Found | None] | None:
        """The next request (its index, the request, what its lookup found of it: None
        when unknown), or None when every request was handed out."""
        while True:
            index = self._next
            if index >= len(self._requests):
                return None
            if index < self._known_until:
                self._next = index + 1
                request = self._requests[index]
                sha256 = request.sha256
                known = self._known
                files = known.files if known is not None else None
                found = files.get(sha256) if files is not None and sha256 else None
                spec = request.unit
                if spec is not None and found is not None and found.stored is not None:
                    assert known is not None
                    unit = known.units.get((spec.type, spec.key))
                    if unit is not None:
                        found = Found(found.stored, found.record, unit)
                return index, request, found
            await self._install(self._known_until)

    def upcoming(self, count: int, max_size: int) -> list[str]:
        """The sha256s among the next ``count`` requests to be handed out (of the chunk
        being handed out) that its lookup found not stored and that expect at most
        ``max_size`` bytes: the small files a transfer is coming for (a hint: claims for a
        window of the batch)."""
        known = self._known
        files = known.files if known is not None else None
        if not files:
            return []
        stop = min(self._next + count, self._known_until, len(self._requests))
        found: list[str] = []
        for request in self._requests[self._next : stop]:
            sha256, size = request.sha256, request.expected_size
            if sha256 and size is not None and size <= max_size and files.get(sha256) is NOT_STORED:
                found.append(sha256)
        return found

    async def _install(self, start: int) -> None:
        """Make the chunk from ``start`` the one handed out (its lookup is awaited), and
        start looking up the chunk after it."""
        task = self._task(start)
        known = await asyncio.shield(task)
        if self._known_until != start:  # another worker installed it meanwhile
            return
        del self._pending[start]
        self._known, self._known_until = known, start + self._chunk
        for ahead in range(AHEAD):
            following = self._known_until + ahead * self._chunk
            if following < len(self._requests):
                self._task(following)

    def _task(self, start: int) -> asyncio.Task[Looked | None]:
        task = self._pending.get(start)
        if task is None:
            chunk = self._requests[start : start + self._chunk]
            sha256s = list(dict.fromkeys(r.sha256 for r in chunk if r.sha256))
            units = list(
                dict.fromkeys((r.unit.type, r.unit.key) for r in chunk if r.unit and r.sha256)
            )
            task = asyncio.ensure_future(self._safely(sha256s, units))
            self._pending[start] = task
        return task

    async def _safely(self, sha256s: list[str], units: list[UnitKey]) -> Looked | None:
        if not sha256s:
            return Looked({}, {})
        try:
            return await self._look_up(sha256s, units)
        except Exception as exc:  # a hint only: each file is then asked alone
            log.debug("looking up %d stored files failed: %s", len(sha256s), exc)
            return None

    async def aclose(self) -> None:
        """Stop the lookups still running (the batch ended early)."""
        tasks, self._pending = list(self._pending.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
