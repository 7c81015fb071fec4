"""The storage interface: content-addressed, atomic publication of validated files."""

from __future__ import annotations

import abc
import logging
import os
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StorageError

if TYPE_CHECKING:
    from ..models import LeftoverFile

__all__ = [
    "Storage",
    "StoredArtifact",
    "artifact_key",
    "pid_alive",
    "sha256_of_key",
    "write_staging_file",
]

_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{62})")


def artifact_key(sha256: str) -> str:
    """The storage key of an artifact: ``ab/cdef…`` (Pulp's layout)."""
    return f"{sha256[:2]}/{sha256[2:]}"


def sha256_of_key(key: str) -> str | None:
    """The sha256 an artifact key ``ab/cdef…`` names; None for any other name."""
    match = _KEY.fullmatch(key)
    return match[1] + match[2] if match else None


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """Where a stored artifact lives: its ``location`` (storage key or URI) and, for local
    storage, its ``path``.

    ``created`` is True when :meth:`Storage.commit` published it under a key that held
    nothing; ``replaced`` when it published it over an artifact that was already stored
    (found damaged, or not known to be identical). ``changed_at`` (from :meth:`Storage.stat`)
    is when the stored bytes last changed, in epoch seconds of the store's clock, or None
    when the backend cannot tell: a file changed after it was last verified is re-hashed
    before it is served from the cache.
    """

    location: str
    path: Path | None
    size: int | None = None
    created: bool = False
    replaced: bool = False
    changed_at: float | None = None


class Storage(abc.ABC):
    """Where validated artifacts are published, keyed by sha256.

    The engine streams a download into a *staging file* under :meth:`staging_dir` (always a
    local directory; for local storage on the same filesystem as the artifacts) and, once
    size and digests are validated, calls :meth:`commit`. An artifact becomes visible under
    its final key only through :meth:`commit`, atomically: a crash never leaves a partial or
    unvalidated artifact under a final key.
    """

    #: Whether the engine must fsync each staging file before :meth:`commit`. Backends
    #: that make files durable themselves (in batches, or remotely) set it to False.
    fsync_staged: bool = True

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Create directories/clients. Called once by the engine before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients. The stored artifacts stay."""

    @abc.abstractmethod
    def staging_dir(self) -> Path:
        """A local directory for staging files (created by :meth:`open`)."""

    def new_staging_path(self) -> Path:
        """A fresh staging file name under :meth:`staging_dir` (not created)."""
        import os
        import uuid

        return self.staging_dir() / f"{os.getpid()}-{uuid.uuid4().hex}.part"

    def partials_dir(self) -> Path | None:
        """A stable local directory for resumable partials (see
        :mod:`~pulp_aio_download.partials`), on the filesystem of :meth:`staging_dir`;
        None when the backend keeps none (interrupted transfers then start over)."""
        return None

    @abc.abstractmethod
    async def commit(self, staged: Path, sha256: str, size: int) -> StoredArtifact:
        """Publish the validated ``staged`` file as artifact ``sha256``.

        The staged file is consumed (moved or uploaded, then removed). The staged bytes
        were validated, so they win: an artifact already stored under the key is replaced
        atomically (readers see the old bytes or the new, never a mix) unless the backend
        knows it holds exactly these bytes, in which case the staged file is discarded.
        A damaged artifact (truncated, a flipped byte) is so healed by the next validated
        transfer of its sha256.

        Raises:
            StorageError: the artifact could not be stored; nothing is left under its key.
        """

    async def commit_body(
        self, body: Sequence[bytes], staged: Path, sha256: str, size: int
    ) -> StoredArtifact:
        """Publish the validated bytes ``body`` of a small file as artifact ``sha256``, as
        :meth:`commit` publishes a staged file; ``staged`` is the staging name to write
        them under first (not created yet).

        The default writes the staging file (:meth:`stage_body`) and calls :meth:`commit`;
        a backend that can write and publish in one step overrides it.

        Raises:
            StorageError: the artifact could not be stored; nothing is left under its key
                or under ``staged``.
        """
        await self.stage_body(body, staged)
        return await self.commit(staged, sha256, size)

    async def stage_body(self, body: Sequence[bytes], staged: Path) -> None:
        """Write ``body`` to the new staging file ``staged`` (fsynced when
        :attr:`fsync_staged`), in a worker thread.

        Raises:
            StorageError: it could not be written (nothing is left under ``staged``).
        """
        import asyncio

        await asyncio.get_running_loop().run_in_executor(
            None, write_staging_file, staged, body, self.fsync_staged
        )

    @abc.abstractmethod
    async def stat(self, sha256: str) -> StoredArtifact | None:
        """The stored artifact ``sha256``, or None when it is not stored."""

    async def stat_many(self, sha256s: Iterable[str]) -> dict[str, StoredArtifact] | None:
        """:meth:`stat` of many artifacts in one pass: the stored ones among ``sha256s``
        by sha256 (one that is not there is left out); None when the backend cannot tell
        cheaply (the engine then falls back on :meth:`absent`, then :meth:`stat` per file).

        A snapshot for batches, like :meth:`absent`: the engine serves an artifact from it
        only with the checks :meth:`stat` would get, and a commit still finds one stored
        since.
        """
        return None

    async def absent(self, sha256s: Iterable[str]) -> set[str] | None:
        """The artifacts of ``sha256s`` that are not stored, found in one pass; None when
        the backend cannot tell cheaply (the engine then asks :meth:`stat` per file).

        A hint for batches: an artifact stored after this call is still found by the
        commit, which then keeps the stored one.
        """
        return None

    @abc.abstractmethod
    def read(self, sha256: str, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        """Stream the bytes of a stored artifact (StorageError if missing)."""

    def artifacts(self) -> AsyncIterator[str]:
        """The sha256 of every artifact stored under a final key, in ascending order as far
        as the backend lists in order (``verify`` does not rely on it), streamed: memory
        does not grow with the store. Quarantined, staged and partial files are not
        artifacts.

        Raises:
            NotImplementedError: the backend cannot list (``verify`` then cannot report
                unrecorded files).
            StorageError: the listing failed.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its artifacts")

    async def leftovers(self) -> list[LeftoverFile]:
        """What interrupted downloads left behind, for ``verify`` to report: the resumable
        partials in :meth:`partials_dir`, plus what :meth:`_leftover_staging` finds.
        Nothing is removed."""
        import asyncio

        from ..models import LeftoverFile
        from .partials import list_partials

        directory = self._leftover_partials_dir()
        found = []
        try:
            if directory is not None:
                partials = await asyncio.get_running_loop().run_in_executor(
                    None, list_partials, directory
                )
                found = [
                    LeftoverFile("partial", str(p.path), p.length or p.size, p.url)
                    for p in partials
                ]
            return found + await self._leftover_staging()
        except (OSError, StorageError) as exc:
            # A report about leftovers never fails the verify that asked for it.
            logging.getLogger(__name__).warning("cannot list leftovers of %r: %s", self, exc)
            return found

    def _leftover_partials_dir(self) -> Path | None:
        """Where :meth:`leftovers` looks for partials (a read-only store still has them)."""
        return self.partials_dir()

    async def _leftover_staging(self) -> list[LeftoverFile]:
        """Staging files (or uploads) that no live process of this host is writing."""
        return []

    @abc.abstractmethod
    async def quarantine(self, sha256: str) -> None:
        """Move a (corrupt) artifact aside so it no longer answers under its key."""

    @abc.abstractmethod
    async def delete(self, sha256: str) -> None:
        """Remove an artifact (no error if it is absent)."""

    async def digest(
        self, sha256: str, algorithms: Iterable[str]
    ) -> tuple[dict[str, str], int] | None:
        """Re-hash a stored artifact: ``({algorithm: hex}, size)``, or None if missing.

        The default streams :meth:`read` and hashes in a worker thread; backends with a
        local file override it to hash straight from disk.
        """
        import asyncio
        import hashlib

        if await self.stat(sha256) is None:
            return None
        hashers = {name: hashlib.new(name) for name in algorithms}
        size = 0
        loop = asyncio.get_running_loop()

        def update(chunk: bytes) -> None:
            for h in hashers.values():
                h.update(chunk)

        async for chunk in self.read(sha256):
            size += len(chunk)
            await loop.run_in_executor(None, update, chunk)
        return {name: h.hexdigest() for name, h in hashers.items()}, size


_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def write_staging_file(path: Path, body: Sequence[bytes], fsync: bool) -> None:
    """Create ``path`` with the bytes of ``body`` (fsynced when ``fsync``); on failure
    nothing is left under it.

    Raises:
        StorageError: the file could not be written (full disk, permissions).
    """
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot write staging file {path}: {exc.strerror or exc}") from exc
    try:
        try:
            views = [memoryview(b) for b in body]
            while views:
                written = os.writev(fd, views[:1024])  # IOV_MAX on Linux
                while views and written >= len(views[0]):
                    written -= len(views.pop(0))
                if written:
                    views[0] = views[0][written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise StorageError(f"cannot write staging file {path}: {exc.strerror or exc}") from exc


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (the staging files of a dead one go)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
