"""The hashing writer: stream chunks into a staging file while computing digests.

The per-chunk path is kept to a list append and two integer additions. Chunks are handed
to worker threads in batches of about ``batch_size`` bytes: one thread writes the batch with
``os.writev`` and feeds it to sha256, every further digest is fed by its own thread at the
same time (hashlib releases the GIL on large updates), and the next batch is received
while the previous one is written and hashed. A small last batch (at most ``SMALL_BODY``) is
written and fed to every digest by one thread: a file of 16 KiB costs one thread hop. At most
two batches are held in memory, so memory does not grow with the file size and the event
loop never blocks on disk or hashing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._tasks import finish_shielded
from ..errors import DigestMismatch, SizeMismatch, StorageError

if TYPE_CHECKING:
    from ..storage.partials import PartialFile

__all__ = ["HashingWriter", "verify_digests", "write_all"]

#: The largest file :meth:`HashingWriter.finish` may hash in the event loop and keep in
#: memory (``keep_small``): about 40 µs of sha256, less than a thread hop costs.
SMALL_BODY = 64 * 1024

_SHA256_ONLY = ("sha256",)
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_IOV_MAX = getattr(os, "sysconf", lambda _: 1024)("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def write_all(fd: int, chunks: list[bytes], offset: int | None = None) -> None:
    """Write every byte of ``chunks`` at the file position, or at ``offset`` when given
    (``os.writev`` and ``os.pwritev`` may write less than asked)."""
    views: list[Any] = list(chunks)
    while views:
        batch = views[:_IOV_MAX]
        if offset is None:
            written = os.writev(fd, batch)
        else:
            written = os.pwritev(fd, batch, offset)
            offset += written
        while written and views:
            head = views[0]
            if written >= len(head):
                written -= len(head)
                views.pop(0)
            else:
                views[0] = memoryview(head)[written:]
                written = 0


def _feed(hasher: Any, chunks: list[bytes]) -> None:
    update = hasher.update
    for chunk in chunks:
        update(chunk)


def verify_digests(
    actual: Mapping[str, str],
    expected: Mapping[str, str],
    *,
    url: str | None = None,
    size: int | None = None,
    expected_size: int | None = None,
) -> None:
    """Raise :class:`SizeMismatch` or :class:`DigestMismatch` if ``actual`` differs."""
    if expected_size is not None and size is not None and size != expected_size:
        raise SizeMismatch(expected=expected_size, actual=size, url=url)
    for algorithm, value in expected.items():
        got = actual.get(algorithm)
        if got != value:
            raise DigestMismatch(algorithm=algorithm, expected=value, actual=str(got), url=url)


class HashingWriter:
    """Write a download to ``path`` while computing digests and counting bytes.

    Args:
        path: the staging file to create (it must not exist).
        algorithms: digest algorithms to compute; sha256 is always added.
        expected_size: when set, :meth:`write` raises :class:`SizeMismatch` as soon as more
            bytes than this arrive, so an over-long body is cut short.
        url: named in errors.
        batch_size: bytes handed to the worker threads at once.
        executor: where writing and hashing run (the loop's default executor if None).
        fsync: fsync the file in :meth:`finish` (off when the storage makes files durable
            in batches, see :class:`LocalStorage`).

    Use as ``async with HashingWriter(...) as w: await w.write(chunk) ...; await w.finish()``.
    Leaving the block without :meth:`finish` (an error, a cancellation) closes and removes
    the staging file.

    With a :attr:`partial` attached (large files, see :mod:`~pulp_aio_download.partials`),
    the worker thread checkpoints it after each batch, :meth:`finish` moves the file back
    to its staging name, and :meth:`abort` with ``keep=True`` keeps it for a later process.
    """

    __slots__ = (
        "_batch",
        "_batch_bytes",
        "_batch_size",
        "_executor",
        "_extra",
        "_fd",
        "_finished",
        "_loop",
        "_pending",
        "_primary",
        "algorithms",
        "body",
        "carried",
        "expected_size",
        "fsync",
        "partial",
        "path",
        "size",
        "url",
    )

    def __init__(
        self,
        path: Path,
        algorithms: Iterable[str] = (),
        *,
        expected_size: int | None = None,
        url: str | None = None,
        batch_size: int = 1024 * 1024,
        executor: Executor | None = None,
        fsync: bool = True,
    ) -> None:
        if algorithms == _SHA256_ONLY or algorithms == ():
            names: tuple[str, ...] = _SHA256_ONLY  # the common request: no set, no sort
        else:
            names = ("sha256", *sorted(set(algorithms).difference(("sha256",))))
        self.algorithms = names
        self.path = path
        self.expected_size = expected_size
        self.url = url
        self.fsync = fsync
        self.size = 0
        #: Bytes of the file an earlier process fetched (an adopted partial): not
        #: transferred by this one.
        self.carried = 0
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._batch_size = batch_size
        self._executor = executor
        self._fd = -1
        self._pending: asyncio.Future[Any] | None = None
        self._finished = False
        self._loop = asyncio.get_running_loop()
        self._primary: Any = hashlib.sha256()
        self._extra: list[Any] = [hashlib.new(n) for n in names[1:]] if len(names) > 1 else []
        self.partial: PartialFile | None = None
        #: The whole file, when :meth:`finish` kept a small one in memory (nothing on disk).
        self.body: tuple[bytes, ...] | None = None

    async def __aenter__(self) -> HashingWriter:
        # The staging file itself is created by the first batch written (in a worker
        # thread), so a small file costs one thread hop in all.
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._finished:
            await self.abort()

    async def write(self, chunk: bytes) -> None:
        """Add ``chunk`` to the file and the digests."""
        size = self.size + len(chunk)
        self.size = size
        if self.expected_size is not None and size > self.expected_size:
            raise SizeMismatch(
                expected=self.expected_size,
                actual=size,
                url=self.url,
                message=(
                    f"body exceeds the expected size of {self.expected_size} bytes "
                    f"(stopped after {size})"
                ),
            )
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        # The last bytes of a file of known size wait for finish(): written, hashed and
        # closed in one thread hop (a file of one batch, e.g. 1 MiB, costs one hop, not two).
        if self._batch_bytes >= self._batch_size and size != self.expected_size:
            await self._submit()

    async def _submit(self) -> None:
        batch = self._batch
        self._batch = []
        self._batch_bytes = 0
        if self._pending is not None:
            await self._pending
        loop, executor = self._loop, self._executor
        primary = loop.run_in_executor(executor, self._write_and_hash, batch, self.size)
        if self._extra:
            extra = [loop.run_in_executor(executor, _feed, h, batch) for h in self._extra]
            self._pending = asyncio.gather(primary, *extra)
        else:
            self._pending = primary

    def _write_and_hash(self, batch: list[bytes], size: int) -> None:
        try:
            if self._fd < 0:
                self._fd = os.open(self.path, _OPEN_FLAGS, 0o644)
            write_all(self._fd, batch)
        except OSError as exc:
            raise self._storage_error(exc) from exc
        _feed(self._primary, batch)
        if self.partial is not None:
            moved = self.partial.written(self._fd, size, self.path)
            if moved is not None:
                self.path = moved

    def _storage_error(self, exc: OSError) -> StorageError:
        # A full or failing disk is a StorageError of this download, not a crash of the batch.
        reason = exc.strerror or str(exc)
        return StorageError(f"cannot write staging file {self.path}: {reason}", url=self.url)

    def _write_hash_close(self, batch: list[bytes], every_digest: bool = False) -> None:
        try:
            self._write_and_hash(batch, self.size)
            if every_digest:
                for hasher in self._extra:
                    _feed(hasher, batch)
            try:
                if self._fd >= 0 and self.fsync:
                    os.fsync(self._fd)
                if self.partial is not None:
                    self.path = self.partial.release()
            except OSError as exc:
                raise self._storage_error(exc) from exc
        finally:
            fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)

    async def flush(self) -> None:
        """Wait until every byte received so far is written and hashed."""
        if self._batch:
            await self._submit()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def finish(self, *, keep_small: bool = False) -> tuple[dict[str, str], int]:
        """Write what is left, fsync and close the file; return ``({algorithm: hex}, size)``.

        With ``keep_small``, a file of at most :data:`SMALL_BODY` bytes that is all still
        in memory is hashed here, in the event loop, and kept as :attr:`body` instead:
        nothing is written (the storage writes and publishes it in one step), no thread
        hop is spent.
        """
        if (
            keep_small
            and self._fd < 0
            and self._pending is None
            and self.partial is None
            and self._batch_bytes <= SMALL_BODY
        ):
            body, self._batch = tuple(self._batch), []
            self._batch_bytes = 0
            for hasher in (self._primary, *self._extra):
                _feed(hasher, body)  # type: ignore[arg-type]
            self.body = body
            self._finished = True
            return self._digests(), self.size
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        batch, self._batch = self._batch, []
        # A small last batch: every digest in the one thread that writes it. Spreading
        # it over a thread per digest costs more in hops and GIL hand-overs than it saves.
        small = self._batch_bytes <= SMALL_BODY
        self._batch_bytes = 0
        loop, executor = self._loop, self._executor
        last = loop.run_in_executor(executor, self._write_hash_close, batch, small)
        if self._extra and batch and not small:
            await asyncio.gather(
                last, *(loop.run_in_executor(executor, _feed, h, batch) for h in self._extra)
            )
        else:
            await last
        self._finished = True
        return self._digests(), self.size

    def _digests(self) -> dict[str, str]:
        digests = {"sha256": self._primary.hexdigest()}
        for name, hasher in zip(self.algorithms[1:], self._extra, strict=True):
            digests[name] = hasher.hexdigest()
        return digests

    async def resume(self, partial: PartialFile) -> None:
        """Continue ``partial`` (adopted from an earlier process): take its file over and
        re-hash the bytes it has, in one sequential read in a worker thread."""
        self._fd, partial.fd = partial.fd, -1
        self.path = partial.data_path
        self.partial = partial
        self.size = partial.flushed  # what a cancellation now would keep
        self.carried = partial.flushed
        work = self._loop.run_in_executor(self._executor, self._rehash, partial.flushed)
        try:
            # The thread reads the fd: it must finish before anyone may close it.
            await asyncio.shield(work)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await work
            raise
        except OSError as exc:
            raise self._storage_error(exc) from exc

    def _rehash(self, length: int) -> None:
        hashers = [self._primary, *self._extra]
        buf = bytearray(1024 * 1024)
        view = memoryview(buf)
        pos = 0
        while pos < length:
            n = os.preadv(self._fd, [view[: min(len(buf), length - pos)]], pos)
            if n == 0:
                raise OSError(f"partial ends at byte {pos}, expected {length}")
            for h in hashers:
                h.update(view[:n])
            pos += n

    async def reset(self) -> None:
        """Start over from byte 0 (a server that ignored a Range request)."""
        await self.flush()
        if self._fd >= 0:
            fd = self._fd
            await self._loop.run_in_executor(self._executor, _truncate, fd, self.partial)
        self.size = 0
        self.carried = 0
        self._primary = hashlib.sha256()
        self._extra = [hashlib.new(n) for n in self.algorithms[1:]]

    async def abort(self, *, keep: bool = False) -> None:
        """Close and remove the staging file; safe to call more than once and under
        cancellation (the cleanup is shielded and always completes).

        With ``keep`` and a :attr:`partial` attached, the bytes received so far are
        written, checkpointed and kept as a partial instead."""
        if self._finished:
            keep = False
        self._finished = True
        if self.body is not None:  # a small file kept in memory: nothing on disk
            self.body = None
            return
        await finish_shielded(self._cleanup(keep))

    async def _cleanup(self, keep: bool) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            # The fd must outlive a batch still in a worker thread: a closed and reused fd
            # number would let that batch land in another file.
            try:
                await pending
            except Exception:
                keep = False
        partial, self.partial = self.partial, None
        if keep and partial is not None and self._fd >= 0:
            batch, self._batch = self._batch, []
            if await self._loop.run_in_executor(self._executor, self._keep, partial, batch):
                return
        fd, self._fd = self._fd, -1
        await self._loop.run_in_executor(self._executor, _discard, fd, self.path, partial)

    def _keep(self, partial: PartialFile, batch: list[bytes]) -> bool:
        try:
            write_all(self._fd, batch)
            kept = partial.keep(self._fd, self.size, self.path)
        except OSError:
            kept = False
        if kept:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the lock: the partial is free for the next process
        return kept


def _truncate(fd: int, partial: PartialFile | None) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    if partial is not None:
        partial.reset()


def _discard(fd: int, path: Path, partial: PartialFile | None = None) -> None:
    if partial is not None:
        partial.discard()
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
