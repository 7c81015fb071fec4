"""Resumable partials: a large transfer's bytes kept across processes, with a sidecar. Internal.

A transfer whose file is at least ``EngineConfig.partial_min_size`` bytes (or of unknown
size) and whose server gave a validator (a strong ETag, else Last-Modified) becomes a
*partial* once it has written its first checkpoint's worth of bytes. In
:meth:`Storage.partials_dir <pulp_aio_download.storage.base.Storage.partials_dir>`
(always local, never under a final key, never served)::

    <key>.part   the bytes received, from byte 0 (locked with fcntl.flock by its writer)
    <key>.json   the sidecar (below), replaced atomically at every checkpoint

``key`` is ``sha256-<expected sha256>``, or ``url-<sha256 of the URL>`` without one. The
sidecar (version 1)::

    {"version": 1, "key": "sha256-…", "url": "https://host/x.iso" (no credentials),
     "validator": "\\"etag\\"", "expected_size": 314572800 | null,
     "expected_digests": {"sha256": "…"}, "total": 314572800 | null,
     "ranges": [[0, 125829120]], "updated": 1764625000.0}

``ranges`` lists the half-open byte ranges known to be on disk: the data file was flushed
(``fdatasync``) before the sidecar naming them was written, so bytes past the ranges (a
torn tail after a crash) are cut back on resume. A one-stream transfer writes one range
from byte 0 and continues the leading range from byte 0 (:meth:`PartialStore.adopt`); a
segmented download (:mod:`~pulp_aio_download.transfer.segments`) writes several, sorted
and disjoint, into a file of the whole length with holes, and fetches only the holes when
it continues them (:meth:`PartialStore.adopt_ranges`).

Checkpoints come every ``clamp(total / 256, 1 MiB, 16 MiB)`` bytes (4 MiB when the size is
unknown), so at most 0.4 % of a large file is fetched again after a crash beyond what was
in flight; smaller files never write a sidecar, take a lock or pay an ``fdatasync``.
Cancellation (Ctrl-C) writes a last checkpoint at the exact length received.

A request of known size (at least ``partial_min_size``) looks on disk for its partial; one
of unknown size only when the engine found that partial at start or wrote it itself, so a
small file never costs a lookup.

Two writers never share a partial: a writer holds ``flock(LOCK_EX)`` on the data file for
as long as it writes; a partial that is locked is neither adopted nor replaced, and a new
partial is published with ``os.link`` (which never replaces an existing name).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PartialFile",
    "PartialInfo",
    "PartialStore",
    "checkpoint_interval",
    "list_partials",
    "partial_key",
]

log = logging.getLogger(__name__)

"""Total size of the kept partials; the oldest beyond it are removed when an engine starts."""

VERSION = 1
_MIB = 1024 * 1024
_DATA = ".part"
_META = ".json"
_OPEN = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)


def partial_key(sha256: str | None, url: str) -> str:
    """The name of the partial of a file: by expected sha256, else by URL."""
    if sha256:
        return f"sha256-{sha256}"
    return "url-" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def checkpoint_interval(total: int | None) -> int:
    """Bytes between two checkpoints of a partial whose file has ``total`` bytes."""
    if total is None:
        return 4 * _MIB
    return min(max(total // 256, _MIB), 16 * _MIB)


def _sync_data(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _open_locked(path: Path) -> int | None:
    """Open and lock the file at ``path``; None if absent or locked by another writer."""
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError:
        return None
    try:
        if not _try_lock(fd):
            os.close(fd)
            return None
        # The name may have been replaced between open and lock: only the file still
        # under the name counts.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            os.close(fd)
            return None
    except FileNotFoundError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(frozen=True, slots=True)
class PartialInfo:
    """One partial on disk, as listed by :func:`list_partials`.

    ``length`` is the byte length its sidecar says is on disk (0 when the sidecar is
    missing or unreadable; ``url`` is None then too); ``updated`` is the data file's
    modification time (its last write).
    """

    key: str
    path: Path
    size: int
    length: int
    url: str | None
    updated: float


def _read_meta(path: Path) -> dict[str, object] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("version") == VERSION else None


def _leading_length(meta: Mapping[str, object]) -> int:
    ranges = meta.get("ranges")
    if not isinstance(ranges, list) or not ranges:
        return 0
    first = ranges[0]
    if (
        not isinstance(first, list)
        or len(first) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in first)
        or first[0] != 0
        or first[1] < 0
    ):
        return 0
    return int(first[1])


def _ranges(meta: Mapping[str, object], total: int | None = None) -> list[tuple[int, int]] | None:
    """The sidecar's ranges, checked: sorted, disjoint, non-empty, within ``total`` when
    given. None when they are malformed."""
    ranges = meta.get("ranges")
    if not isinstance(ranges, list):
        return None
    out: list[tuple[int, int]] = []
    end = 0
    for item in ranges:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            return None
        start, stop = item
        if start < end or stop <= start or (total is not None and stop > total):
            return None
        out.append((start, stop))
        end = stop
    return out


def _length_on_disk(meta: Mapping[str, object]) -> int:
    ranges = _ranges(meta)
    return sum(b - a for a, b in ranges) if ranges else 0


def list_partials(directory: Path) -> list[PartialInfo]:
    """The partials in ``directory`` (a storage's partials dir), oldest first."""
    found: list[PartialInfo] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    for entry in entries:
        if not entry.name.endswith(_DATA):
            continue
        key = entry.name[: -len(_DATA)]
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        meta = _read_meta(directory / f"{key}{_META}")
        url = meta.get("url") if meta else None
        found.append(
            PartialInfo(
                key=key,
                path=Path(entry.path),
                size=st.st_size,
                length=_length_on_disk(meta) if meta else 0,
                url=url if isinstance(url, str) else None,
                updated=st.st_mtime,
            )
        )
    found.sort(key=lambda p: p.updated)
    return found


class PartialStore:
    """The partials of one engine's storage: pruning at start, adoption, new partials.

    Args:
        directory: the storage's partials directory (created here).
        min_size: files smaller than this are never kept.
        max_age: seconds after which an untouched partial is removed by :meth:`prune`.
        max_bytes: total size beyond which :meth:`prune` removes the oldest partials.
        sync: ``fdatasync`` the data before each sidecar (off for throw-away storage).
    """

    def __init__(
        self, directory: Path, *, min_size: int, max_age: float, max_bytes: int, sync: bool
    ) -> None:
        self.directory = directory
        self.min_size = min_size
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.sync = sync
        #: keys of the partials known to this process (found by prune, or written here).
        self.known: set[str] = set()

    def data_path(self, key: str) -> Path:
        return self.directory / f"{key}{_DATA}"

    def meta_path(self, key: str) -> Path:
        return self.directory / f"{key}{_META}"

    def worth_keeping(self, total: int | None) -> bool:
        """Whether a file of ``total`` bytes (None: unknown) may become a partial."""
        return total is None or total >= self.min_size

    def worth_looking(self, key: str, expected_size: int | None) -> bool:
        """Whether to look on disk for partial ``key`` (no I/O for small files)."""
        if expected_size is None:
            return key in self.known
        return expected_size >= self.min_size

    # -- start --------------------------------------------------------------------------

    def prune(self, now: float | None = None) -> list[Path]:
        """Remove partials older than ``max_age``, unreadable ones, and the oldest beyond
        ``max_bytes`` in total; skip those another writer holds. Return what was removed.

        Runs in a worker thread when an engine starts.
        """
        now = time.time() if now is None else now
        self.directory.mkdir(parents=True, exist_ok=True)
        removed: list[Path] = []
        keep: list[PartialInfo] = []
        for info in list_partials(self.directory):
            stale = now - info.updated > self.max_age or info.length == 0
            if stale and self._remove(info.key):
                removed.append(info.path)
            else:
                keep.append(info)
        total = sum(p.size for p in keep)
        for info in list(keep):  # oldest first
            if total <= self.max_bytes:
                break
            if self._remove(info.key):
                removed.append(info.path)
                keep.remove(info)
                total -= info.size
        for entry in os.scandir(self.directory):  # sidecars (or temporaries) left alone
            key = entry.name.split(".", 1)[0]
            if not entry.name.endswith(_DATA) and not self.data_path(key).exists():
                _unlink(Path(entry.path))
        self.known = {p.key for p in keep}
        if removed:
            log.info("removed %d stale partial download(s) from %s", len(removed), self.directory)
        return removed

    def _remove(self, key: str) -> bool:
        fd = _open_locked(self.data_path(key))
        if fd is None:
            return not self.data_path(key).exists()
        try:
            _unlink(self.meta_path(key))
            _unlink(self.data_path(key))
        finally:
            os.close(fd)
        self.known.discard(key)
        return True

    # -- transfers ----------------------------------------------------------------------

    def adopt(
        self,
        key: str,
        *,
        url: str,
        staging_path: Path,
        expected_size: int | None,
        expected_digests: Mapping[str, str],
    ) -> PartialFile | None:
        """Take over partial ``key`` left by an earlier process: lock it, check its sidecar,
        cut a torn tail back. None when there is none, it is in use, or it does not fit
        (it is then removed). Runs in a worker thread; the caller owns the returned
        ``fd``; once complete the file moves to ``staging_path``."""
        path = self.data_path(key)
        fd = _open_locked(path)
        if fd is None:
            if path.exists():
                log.debug("%s: partial %s is being written by another process", url, key)
            return None
        try:
            meta = _read_meta(self.meta_path(key))
            reason = self._unfit(meta, key, url, expected_size, expected_digests)
            length = _leading_length(meta) if meta else 0
            if reason is None:
                on_disk = os.fstat(fd).st_size
                if on_disk < length:
                    reason = f"{on_disk} bytes on disk, sidecar says {length}"
            if reason is not None:
                log.debug("%s: discarding partial %s (%s)", url, key, reason)
                _unlink(self.meta_path(key))
                _unlink(path)
                os.close(fd)
                self.known.discard(key)
                return None
            assert meta is not None
            os.ftruncate(fd, length)  # the torn tail past the last checkpoint
            os.lseek(fd, length, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        total = meta.get("total")
        partial = self.new(
            key,
            url=url,
            staging_path=staging_path,
            validator=str(meta["validator"]),
            expected_size=expected_size,
            expected_digests=expected_digests,
            total=total if isinstance(total, int) else expected_size,
        )
        partial.promoted = True
        partial.flushed = length
        partial.next_checkpoint = length + partial.interval
        partial.fd = fd
        self.known.add(key)
        return partial

    def _unfit(
        self,
        meta: Mapping[str, object] | None,
        key: str,
        url: str,
        expected_size: int | None,
        expected_digests: Mapping[str, str],
    ) -> str | None:
        reason = self._foreign(meta, key, url, expected_size, expected_digests)
        if reason is not None:
            return reason
        assert meta is not None
        length = _leading_length(meta)
        if length == 0:
            return "no bytes recorded"
        if expected_size is not None and length >= expected_size:
            return "as long as the whole file"
        return None

    def _foreign(
        self,
        meta: Mapping[str, object] | None,
        key: str,
        url: str,
        expected_size: int | None,
        expected_digests: Mapping[str, str],
    ) -> str | None:
        """Why the sidecar ``meta`` is not of this request's file, or None."""
        if meta is None:
            return "no readable sidecar"
        if meta.get("key") != key:
            return "sidecar of another file"
        if not key.startswith("sha256-") and meta.get("url") != url:
            return "another URL"
        validator = meta.get("validator")
        if not isinstance(validator, str) or not validator:
            return "no validator"
        if meta.get("expected_size") != expected_size:
            return "another expected size"
        recorded = meta.get("expected_digests")
        if not isinstance(recorded, dict) or any(
            recorded.get(a) not in (None, v) for a, v in expected_digests.items()
        ):
            return "other expected digests"
        return None

    def adopt_ranges(
        self,
        key: str,
        *,
        url: str,
        staging_path: Path,
        expected_size: int | None,
        expected_digests: Mapping[str, str],
        total: int,
    ) -> PartialFile | None:
        """Take over partial ``key`` for a segmented download of a ``total``-byte file:
        lock it and check its sidecar; its :attr:`PartialFile.ranges` are the bytes on
        disk, the rest are holes to fetch. None when there is none, it is in use, or it
        does not fit (it is then removed). Runs in a worker thread; the caller owns the
        returned ``fd``; once complete the file moves to ``staging_path``."""
        path = self.data_path(key)
        fd = _open_locked(path)
        if fd is None:
            if path.exists():
                log.debug("%s: partial %s is being written by another process", url, key)
            return None
        try:
            meta = _read_meta(self.meta_path(key))
            reason = self._foreign(meta, key, url, expected_size, expected_digests)
            ranges = _ranges(meta, total) if meta is not None else None
            if reason is None:
                assert meta is not None
                length = sum(b - a for a, b in ranges or ())
                if meta.get("total") != total:
                    reason = f"a file of {meta.get('total')} bytes, not {total}"
                elif not ranges:
                    reason = "no bytes recorded"
                elif length >= total:
                    reason = "as long as the whole file"
                elif os.fstat(fd).st_size < ranges[-1][1]:
                    reason = "its data file is shorter than its ranges"
            if reason is not None:
                log.debug("%s: discarding partial %s (%s)", url, key, reason)
                _unlink(self.meta_path(key))
                _unlink(path)
                os.close(fd)
                self.known.discard(key)
                return None
            assert meta is not None
            assert ranges
        except BaseException:
            os.close(fd)
            raise
        partial = self.new(
            key,
            url=url,
            staging_path=staging_path,
            validator=str(meta["validator"]),
            expected_size=expected_size,
            expected_digests=expected_digests,
            total=total,
        )
        partial.promoted = True
        partial.ranges = ranges
        partial.flushed = length
        partial.fd = fd
        self.known.add(key)
        return partial

    def new(
        self,
        key: str,
        *,
        url: str,
        staging_path: Path,
        validator: str,
        expected_size: int | None,
        expected_digests: Mapping[str, str],
        total: int | None,
    ) -> PartialFile:
        """A partial for a transfer into ``staging_path``, published at its first
        checkpoint."""
        partial = PartialFile(
            self,
            key,
            url=url,
            staging_path=staging_path,
            expected_size=expected_size,
            expected_digests=expected_digests,
            total=total,
        )
        partial.validator = validator
        return partial


class PartialFile:
    """The partial of one transfer, driven by the :class:`HashingWriter` writing it.

    Every method but :meth:`set_validator` runs in the writer's worker thread, one at a
    time (the writer never has two batches in flight).
    """

    def __init__(
        self,
        store: PartialStore,
        key: str,
        *,
        url: str,
        staging_path: Path,
        expected_size: int | None,
        expected_digests: Mapping[str, str],
        total: int | None,
    ) -> None:
        self.store = store
        self.key = key
        self.url = url
        self.staging_path = staging_path
        self.expected_size = expected_size
        self.expected_digests = dict(expected_digests)
        self.total = total
        self.interval = checkpoint_interval(total)
        self.validator: str | None = None
        #: published under the partials directory (our data file carries its name).
        self.promoted = False
        #: bytes known to be on disk (named by the sidecar).
        self.flushed = 0
        self.next_checkpoint = self.interval
        #: the adopted file's descriptor (handed to the writer, which owns it then).
        self.fd = -1
        #: the ranges on disk of a partial adopted by :meth:`PartialStore.adopt_ranges`.
        self.ranges: list[tuple[int, int]] = []
        self._failed = False

    @property
    def data_path(self) -> Path:
        return self.store.data_path(self.key)

    def set_validator(self, validator: str | None) -> None:
        """The validator of the response now being written (called on the event loop
        between two responses, when no batch is in flight)."""
        self.validator = validator

    def written(self, fd: int, size: int, path: Path) -> Path | None:
        """``size`` bytes are in the file behind ``fd``: checkpoint when due. Returns the
        file's new path when it was published as a partial just now."""
        if size < self.next_checkpoint or self._failed:
            return None
        moved = self._checkpoint(fd, size, path)
        self.next_checkpoint = size + self.interval
        return moved

    def _checkpoint(self, fd: int, size: int, path: Path) -> Path | None:
        return self.checkpoint_ranges(fd, [(0, size)] if size else [], path)

    def checkpoint_ranges(self, fd: int, ranges: list[tuple[int, int]], path: Path) -> Path | None:
        """``ranges`` (sorted, disjoint) of the file behind ``fd`` are written: publish the
        file as a partial if it is not yet, flush it, and write the sidecar naming them.
        Returns the file's new path when it was published just now. Runs in a worker
        thread, one call at a time."""
        if self.validator is None or self._failed:
            return None
        moved = None
        try:
            if not self.promoted:
                if not self._publish(fd, path):
                    self._failed = True
                    return None
                moved = self.data_path
            if self.store.sync:
                _sync_data(fd)
            self._write_meta(ranges)
        except OSError as exc:
            # The partial is a convenience: a disk that refuses it must not fail the
            # download (the data file's own writes report real disk errors).
            log.debug("%s: cannot checkpoint partial %s: %s", self.url, self.key, exc)
            self._failed = True
        return moved

    def _publish(self, fd: int, path: Path) -> bool:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # our own file: never contended
        target = self.data_path
        for _ in range(2):
            try:
                os.link(path, target)
            except FileExistsError:
                other = _open_locked(target)
                if other is None:
                    log.debug("%s: partial %s is in use by another process", self.url, self.key)
                    return False
                try:  # an abandoned partial of the same file: ours replaces it
                    _unlink(self.store.meta_path(self.key))
                    _unlink(target)
                finally:
                    os.close(other)
                continue
            _unlink(path)
            self.promoted = True
            self.store.known.add(self.key)
            return True
        return False

    def _write_meta(self, ranges: list[tuple[int, int]]) -> None:
        meta = {
            "version": VERSION,
            "key": self.key,
            "url": self.url,
            "validator": self.validator,
            "expected_size": self.expected_size,
            "expected_digests": self.expected_digests,
            "total": self.total,
            "ranges": [[a, b] for a, b in ranges],
            "updated": time.time(),
        }
        final = self.store.meta_path(self.key)
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_text(json.dumps(meta, separators=(",", ":")))
        os.replace(tmp, final)
        self.flushed = sum(b - a for a, b in ranges)

    def reset(self) -> None:
        """The file was cut to 0 bytes (the server sent the whole file again)."""
        self.next_checkpoint = self.interval
        if self.promoted and not self._failed:
            try:
                self._write_meta([])
            except OSError:
                self._failed = True

    def release(self) -> Path:
        """The file is complete: move it back to its staging name (for validation and
        commit, as any staged file) and drop the sidecar. Returns the file's path."""
        if not self.promoted:
            return self.staging_path
        _unlink(self.store.meta_path(self.key))
        os.rename(self.data_path, self.staging_path)
        self.promoted = False
        self.store.known.discard(self.key)
        return self.staging_path

    def keep(self, fd: int, size: int, path: Path) -> bool:
        """The transfer stops unfinished (cancelled, or the source is unreachable): write
        a last checkpoint at ``size``. True when the partial is kept."""
        if size == 0 or self.validator is None or self._failed:
            return False
        if self.expected_size is not None and size >= self.expected_size:
            return False
        self._checkpoint(fd, size, path)
        return self.promoted and not self._failed

    def keep_ranges(self, fd: int, ranges: list[tuple[int, int]], path: Path) -> bool:
        """A segmented download stops unfinished: write a last checkpoint naming
        ``ranges``. True when the partial is kept."""
        if not ranges or self.validator is None or self._failed:
            return False
        if self.total is not None and sum(b - a for a, b in ranges) >= self.total:
            return False
        self.checkpoint_ranges(fd, ranges, path)
        return self.promoted and not self._failed

    def discard(self) -> None:
        """Remove the partial (bad bytes, or a failure that makes it useless)."""
        if self.promoted:
            _unlink(self.store.meta_path(self.key))
            _unlink(self.data_path)
            self.promoted = False
        self.store.known.discard(self.key)
