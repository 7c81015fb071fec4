"""What a batch finds already stored: one storage pass and one catalog read per chunk.

A re-sync of a repository that is already stored is the most common sync there is. Asking
storage (a ``stat``) and the catalog (a read) about each file costs two thread hops per
file; :class:`Lookahead` asks about a whole chunk of a batch's requests at once
(:meth:`Storage.stat_many <pulp_aio_download.storage.Storage.stat_many>`, then
:meth:`Catalog.get_unit_files <pulp_aio_download.catalog.Catalog.get_unit_files>` for the
artifacts found), and looks the next chunk up while the workers go through this one. What
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
    from .models import DownloadRequest, UnitFile
    from .storage.base import Storage, StoredArtifact

__all__ = ["NOT_STORED", "Found", "Lookahead", "look_up"]

log = logging.getLogger(__name__)

#: Requests looked up together (the first chunk is waited for; later ones are looked up
#: while the workers go through the one before).
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Found:
    """What a lookup found of one sha256: its stored artifact (None: not stored) and its
    unit file (None: no record, or no catalog)."""

    stored: StoredArtifact | None
    record: UnitFile | None = None


#: A sha256 the lookup found not stored.
NOT_STORED = Found(None)

Looked = Mapping[str, Found]


async def look_up(
    storage: Storage, catalog: Catalog | None, sha256s: Sequence[str]
) -> Looked | None:
    """What storage and the catalog hold of ``sha256s``: every one of them is in the
    mapping; None when storage cannot tell in one pass (each file is then asked alone).

    A storage that can only tell what is absent (:meth:`Storage.absent`) gives the absent
    ones; the others are left out of the mapping (asked alone).
    """
    stats = await storage.stat_many(sha256s)
    if stats is None:
        absent = await storage.absent(sha256s)
        return None if absent is None else dict.fromkeys(absent, NOT_STORED)
    records = await catalog.get_unit_files(stats) if catalog is not None and stats else {}
    return {
        sha256: NOT_STORED
        if (stored := stats.get(sha256)) is None
        else Found(stored, records.get(sha256))
        for sha256 in sha256s
    }


class Lookahead:
    """The requests of a batch in order, each with what the lookup of its chunk found.

    The batch's workers share one: :meth:`next` hands out the next request, and waits only
    when its chunk is still being looked up. A lookup that fails is logged and taken as
    "unknown": those files are asked about one by one, where a failure is that file's.

    Args:
        requests: the batch.
        look_up: what storage and the catalog hold of a list of sha256s (see
            :func:`look_up`).
        chunk: requests per lookup (default :data:`CHUNK`).
    """

    def __init__(
        self,
        requests: Sequence[DownloadRequest],
        look_up: Callable[[list[str]], Awaitable[Looked | None]],
        *,
        chunk: int | None = None,
    ) -> None:
        self._requests = requests
        self._look_up = look_up
        self._chunk = chunk or CHUNK
        self._next = 0
        self._known: Looked | None = None
        self._known_until = 0  # requests before this index are covered by _known
        self._pending: tuple[int, asyncio.Task[Looked | None]] | None = None

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
                found = known.get(sha256) if known is not None and sha256 else None
                return index, request, found
            await self._install(self._known_until)

    async def _install(self, start: int) -> None:
        """Make the chunk from ``start`` the one handed out (its lookup is awaited), and
        start looking up the chunk after it."""
        task = self._task(start)
        known = await asyncio.shield(task)
        if self._known_until != start:  # another worker installed it meanwhile
            return
        self._pending = None
        self._known, self._known_until = known, start + self._chunk
        if self._known_until < len(self._requests):
            self._task(self._known_until)

    def _task(self, start: int) -> asyncio.Task[Looked | None]:
        if self._pending is not None and self._pending[0] == start:
            return self._pending[1]
        chunk = self._requests[start : start + self._chunk]
        sha256s = list(dict.fromkeys(r.sha256 for r in chunk if r.sha256))
        task = asyncio.ensure_future(self._safely(sha256s))
        self._pending = (start, task)
        return task

    async def _safely(self, sha256s: list[str]) -> Looked | None:
        if not sha256s:
            return {}
        try:
            return await self._look_up(sha256s)
        except Exception as exc:  # a hint only: each file is then asked alone
            log.debug("looking up %d stored files failed: %s", len(sha256s), exc)
            return None

    async def aclose(self) -> None:
        """Stop a lookup still running (the batch ended early)."""
        if self._pending is not None:
            task = self._pending[1]
            self._pending = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
