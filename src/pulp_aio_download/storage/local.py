"""Local filesystem storage: content-addressed, published by atomic rename."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._tasks import finish_shielded
from ..errors import ConfigError, StorageError
from ._durability import Commit, CommitQueue, syncfs
from .base import (
    Storage,
    StoredArtifact,
    artifact_key,
    pid_alive,
    sha256_of_key,
    write_staging_file,
)

if TYPE_CHECKING:
    from ..models import LeftoverFile

__all__ = ["LocalStorage"]

_STAGING = ".staging"
_QUARANTINE = ".quarantine"
_PARTIALS = ".partials"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


class LocalStorage(Storage):
    """Artifacts under ``root/ab/cdef…`` (sha256), staged in ``root/.staging`` on the same
    filesystem and published with ``os.replace`` once validated and durable.

    Staging files are named after the host and process that writes them; :meth:`open`
    removes those left by dead processes of this host. Resumable partials of interrupted
    large transfers live in ``root/.partials`` (the engine bounds them).

    Args:
        root: the directory of the artifacts (created if missing).
        durability: how an artifact is made crash-safe before :meth:`commit` returns (and
            so before the catalog records it):

            * ``"batch"`` (default): concurrent commits share a filesystem sync
              (``syncfs``) of the staged bytes, then the renames, then a second shared
              sync of the directory entries: two syncs per group of files instead of two
              fsyncs per file.
            * ``"file"``: fsync each staged file, rename, fsync its directory.
            * ``"none"``: no sync (tmpfs, throw-away data); a crash may lose recent files.
        read_only: only read (``verify`` without repair, lookups): :meth:`open` creates
            nothing and checks nothing is writable, and every change raises
            :class:`StorageError`; the directory may be on a read-only file system.

    In every mode a file appears under its final name only after validation, so a crash
    never leaves a partial artifact under a final key.

    Raises:
        StorageError: (from :meth:`open` and every operation) the directory cannot be
            created, written or read (permission, read-only file system, full disk).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durability: str = "batch",
        read_only: bool = False,
    ) -> None:
        if durability not in ("batch", "file", "none"):
            raise ConfigError(
                f"LocalStorage durability must be 'batch', 'file' or 'none', got {durability!r}"
            )
        self.root = Path(root)
        self.durability = durability
        self.read_only = read_only
        self.fsync_staged = durability == "file"
        self._staging = self.root / _STAGING
        self._name_staging()
        self._commits = CommitQueue(self._commit_batch)
        #: Filesystem syncs made by ``"batch"`` commits (each shared by a group of them).
        self.syncs = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._open_sync)

    def _open_sync(self) -> None:
        if self.read_only:
            if self.root.exists() and not self.root.is_dir():
                raise StorageError(f"cannot open storage {self.root}: not a directory")
            return
        try:
            self._staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage directory {self.root}: {exc}") from exc
        try:
            # The directory may exist on a read-only file system or be someone else's: find
            # out now, before any download, not when the first file is staged.
            probe = self._staging / f"{self._prefix}probe"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
            self.clean_staging()
        except OSError as exc:
            raise StorageError(f"cannot write to storage {self.root}: {exc}") from exc

    def clean_staging(self) -> list[Path]:
        """Remove staging files of dead processes of this host; return what was removed."""
        host = socket.gethostname()
        removed = []
        for entry in self._staging.iterdir():
            name = entry.name
            if not name.startswith(host + "-"):
                continue
            pid_text = name[len(host) + 1 :].partition("-")[0]
            if pid_text.isdigit() and not pid_alive(int(pid_text)):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
        return removed

    def staging_dir(self) -> Path:
        self._check_writable()
        return self._staging

    def partials_dir(self) -> Path | None:
        # Also when read-only: verify lists the partials (the engine then keeps none).
        return self.root / _PARTIALS

    def _leftover_partials_dir(self) -> Path:
        return self.root / _PARTIALS

    def _check_writable(self) -> None:
        if self.read_only:
            raise StorageError(f"storage {self.root} is opened read-only")

    async def artifacts(self) -> AsyncIterator[str]:
        """Every ``root/ab/cdef…`` file, in sha256 order, one directory listed at a time."""
        loop = asyncio.get_running_loop()
        for top in await loop.run_in_executor(None, self._list, self.root, 2, False):
            for name in await loop.run_in_executor(None, self._list, self.root / top, 62, True):
                sha = sha256_of_key(f"{top}/{name}")
                if sha is not None:
                    yield sha

    def _list(self, directory: Path, length: int, files: bool) -> list[str]:
        """The sorted names of ``length`` characters in ``directory`` that are regular files
        (``files``) or directories; dot names (staging, quarantine, partials) never are."""
        try:
            with os.scandir(directory) as entries:
                names = [
                    e.name
                    for e in entries
                    if len(e.name) == length
                    and (e.is_file(follow_symlinks=False) if files else e.is_dir())
                ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list storage directory {directory}: {exc}") from exc
        return sorted(names)

    async def _leftover_staging(self) -> list[LeftoverFile]:
        return await asyncio.get_running_loop().run_in_executor(None, self._leftover_staging_sync)

    def _leftover_staging_sync(self) -> list[LeftoverFile]:
        from ..models import LeftoverFile

        host = socket.gethostname()
        found = []
        try:
            entries = sorted(os.scandir(self._staging), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        for entry in entries:
            name = entry.name
            if name.startswith(host + "-"):
                pid_text = name[len(host) + 1 :].partition("-")[0]
                if pid_text.isdigit() and pid_alive(int(pid_text)):
                    continue  # a transfer in progress here (this process's too)
            with contextlib.suppress(FileNotFoundError):
                found.append(LeftoverFile("staging", entry.path, entry.stat().st_size))
        return found

    def new_staging_path(self) -> Path:
        """A fresh staging file name (not created)."""
        self._check_writable()
        return self._staging / f"{self._prefix}{next(self._counter)}.part"

    def _name_staging(self) -> None:
        # host-pid-random-N: unique across hosts sharing the directory and across runs, and
        # named after the process that writes (the cleanup of dead processes' files reads it).
        self._prefix = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}-"
        self._counter = itertools.count()

    def __getstate__(self) -> dict[str, object]:
        # The staging names are this process's own (and itertools.count pickles with a
        # DeprecationWarning since Python 3.12): an unpickled copy makes new ones.
        state = dict(self.__dict__)
        del state["_prefix"], state["_counter"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        # Unpickled in a worker process: its staging files get names of its own, never the
        # same as another worker's that got the same pickled storage.
        self.__dict__.update(state)
        self._name_staging()

    def path_of(self, sha256: str) -> Path:
        """The final path of artifact ``sha256`` (whether or not it exists)."""
        return self.root / artifact_key(sha256)

    async def commit(self, staged: Path, sha256: str, size: int) -> StoredArtifact:
        return await self._publish(Commit(staged, sha256, size))

    async def commit_body(
        self, body: Sequence[bytes], staged: Path, sha256: str, size: int
    ) -> StoredArtifact:
        """Write ``body`` under ``staged`` and publish it, in the same worker-thread job
        as every other commit of the moment (``"file"`` durability: one job of its own)."""
        self._check_writable()
        return await self._publish(Commit(staged, sha256, size, body))

    async def _publish(self, item: Commit) -> StoredArtifact:
        if self.durability == "file":  # fsyncs of their own: concurrently, in many threads
            work = asyncio.get_running_loop().run_in_executor(None, self._commit_one, item)
        else:
            work = self._commits.submit(item)
        try:
            stored: StoredArtifact = await asyncio.shield(work)
        except asyncio.CancelledError:
            await finish_shielded(self._undo_commit(work))
            raise
        return stored

    def _commit_one(self, item: Commit) -> StoredArtifact:
        if item.body is not None:
            write_staging_file(item.staged, item.body, fsync=True)
        return self._commit_sync(item.staged, item.sha256, item.size)

    def _commit_batch(self, items: list[Commit]) -> None:
        """Publish ``items`` (worker thread): write the bodies, sync (``"batch"``) so that
        every staged byte is on disk before any rename, rename, sync again so that the new
        names are before anyone records them. Sets every item's outcome."""
        sync = self.durability == "batch"
        ready = []
        for item in items:
            try:
                if item.body is not None:
                    write_staging_file(item.staged, item.body, fsync=False)
            except StorageError as exc:
                item.outcome = exc
            else:
                ready.append(item)
        if sync and ready and not self._sync(ready, "staged"):
            return
        published = []
        for item in ready:
            try:
                item.outcome = stored = self._commit_sync(item.staged, item.sha256, item.size)
            except StorageError as exc:
                item.outcome = exc
            else:
                if stored.created or stored.replaced:
                    published.append(item)
        if sync and published:
            self._sync(published, "published")

    def _sync(self, items: list[Commit], stage: str) -> bool:
        """syncfs; on failure each of ``items`` fails, leaving nothing behind (a staged
        file is removed, an artifact it created too: nothing records it)."""
        try:
            syncfs(self.root)
        except OSError as exc:
            for item in items:
                stored = item.outcome if stage == "published" else None
                if stored is not None and stored.created and stored.path is not None:
                    _discard_quietly(stored.path)
                _discard_quietly(item.staged)
                item.outcome = StorageError(f"cannot sync storage {self.root}: {exc}")
            return False
        self.syncs += 1
        return True

    async def _undo_commit(self, work: asyncio.Future[StoredArtifact]) -> None:
        # The caller of a cancelled commit never learns of the artifact (nothing records
        # it), so a rename that the worker thread made anyway is undone. A replaced
        # artifact stays: its validated bytes are better than what they replaced.
        with contextlib.suppress(Exception):
            stored = await work
            if stored.created and stored.path is not None:
                await asyncio.get_running_loop().run_in_executor(
                    None, _discard_quietly, stored.path
                )

    def _commit_sync(self, staged: Path, sha256: str, size: int) -> StoredArtifact:
        # The staged bytes are validated; a file already under the key may be damaged, and
        # telling would cost a re-read, so the rename always publishes the staged one (it
        # atomically replaces whatever was there: open readers keep the old inode).
        final = self.path_of(sha256)
        created = replaced = False
        try:
            existed = os.path.lexists(final)
            try:
                os.replace(staged, final)
            except FileNotFoundError:
                if not staged.exists():
                    raise
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
            created, replaced = not existed, existed
            if self.durability == "file":
                _fsync_dir(final.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                staged.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    final.unlink()
            raise StorageError(f"cannot store artifact {sha256} under {self.root}: {exc}") from exc
        return StoredArtifact(artifact_key(sha256), final, size, created, replaced)

    async def stat(self, sha256: str) -> StoredArtifact | None:
        path = self.path_of(sha256)
        try:
            st = await asyncio.get_running_loop().run_in_executor(None, os.stat, path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot stat artifact {sha256}: {exc}") from exc
        return StoredArtifact(artifact_key(sha256), path, st.st_size, changed_at=st.st_ctime)

    async def stat_many(self, sha256s: Iterable[str]) -> dict[str, StoredArtifact] | None:
        wanted = list(sha256s)
        return await asyncio.get_running_loop().run_in_executor(None, self._stat_many, wanted)

    def _stat_many(self, sha256s: list[str]) -> dict[str, StoredArtifact]:
        found = {}
        stat = os.stat
        for sha256 in sha256s:
            path = self.path_of(sha256)
            try:
                st = stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(f"cannot stat artifact {sha256}: {exc}") from exc
            found[sha256] = StoredArtifact(
                artifact_key(sha256), path, st.st_size, changed_at=st.st_ctime
            )
        return found

    async def absent(self, sha256s: Iterable[str]) -> set[str] | None:
        wanted = list(sha256s)
        exists = os.path.exists
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: {s for s in wanted if not exists(self.path_of(s))}
        )

    async def read(self, sha256: str, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        try:
            fh = await loop.run_in_executor(None, open, self.path_of(sha256), "rb")
        except OSError as exc:
            raise StorageError(f"cannot read artifact {sha256}: {exc}") from exc
        try:
            while True:
                try:
                    chunk = await loop.run_in_executor(None, fh.read, chunk_size)
                except OSError as exc:
                    raise StorageError(f"cannot read artifact {sha256}: {exc}") from exc
                if not chunk:
                    break
                yield chunk
        finally:
            await loop.run_in_executor(None, fh.close)

    async def digest(
        self, sha256: str, algorithms: Iterable[str]
    ) -> tuple[dict[str, str], int] | None:
        return await asyncio.get_running_loop().run_in_executor(
            None, self._digest_sync, sha256, tuple(algorithms)
        )

    def _digest_sync(
        self, sha256: str, algorithms: tuple[str, ...]
    ) -> tuple[dict[str, str], int] | None:
        hashers = [hashlib.new(name) for name in algorithms]
        size = 0
        buf = bytearray(1024 * 1024)
        view = memoryview(buf)
        try:
            with open(self.path_of(sha256), "rb", buffering=0) as fh:
                while n := fh.readinto(buf):
                    size += n
                    for h in hashers:
                        h.update(view[:n])
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read artifact {sha256}: {exc}") from exc
        return {name: h.hexdigest() for name, h in zip(algorithms, hashers, strict=True)}, size

    async def quarantine(self, sha256: str) -> None:
        self._check_writable()

        def move() -> None:
            target = self.root / _QUARANTINE / f"{sha256}-{int(time.time())}"
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path_of(sha256), target)

        try:
            await asyncio.get_running_loop().run_in_executor(None, move)
        except OSError as exc:
            raise StorageError(f"cannot quarantine artifact {sha256}: {exc}") from exc

    async def delete(self, sha256: str) -> None:
        self._check_writable()
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.path_of(sha256).unlink(missing_ok=True)
            )
        except OSError as exc:
            raise StorageError(f"cannot delete artifact {sha256}: {exc}") from exc
