"""Segmented downloads: one large file fetched as several ranges at once (aria2's ``--split``).

A remote with ``segments`` > 1 fetches a file of at least ``segment_threshold`` bytes whose
server answers ranges over up to ``segments`` connections at once, from its source and
the request's other http(s) sources of the same remote (mirrors share the work):

* Size. The request's ``expected_size``, else a probing ``Range: bytes=0-0`` whose ``206``
  gives the length (``Content-Range``); a smaller file, or a server that answers the probe
  with a ``200``, is one stream. With a known size the first range's request is the probe.
* Plan. What is not on disk yet (the whole file, or the holes a partial left) is cut into
  ranges of about ``remaining / segments`` bytes (at least :data:`MIN_SEGMENT`), taken in
  offset order by the workers. A worker left without a range splits the one with the
  most bytes still to come (a slower connection or mirror) and takes its second half.
* Each range is a bounded ``Range`` request under the same admission as a whole transfer
  (its own slot of the global, per-host and per-remote connection limits, and of the rate
  limit), retries and backoff (the slot given back while it waits), stall detection and
  auth. A range cut mid-way is asked again from the byte where
  it stopped; a mirror that fails hands its ranges to the request's own source.
* Writing: each range's chunks go to their offset of one staging file (``os.pwritev`` in
  a worker thread, one batch of about ``chunk_size`` bytes per range in memory).
* Hashing: the digests (sha256 and every requested one) are sequential, so a hashing
  cursor follows the contiguous prefix on disk and reads it back from the file (the page
  cache) in a worker thread. A range that runs ahead of the cursor neither waits nor is
  held in memory: memory is bounded by the batches whatever the file size.
* Agreement: every answer must be a ``206`` of the asked range, of the same total length,
  with the same validators (ETag, Last-Modified) as the first; a server that ignores
  ranges, a mirror with another version or a file changed mid-way makes the download drop
  its bytes and fetch the file as one stream. With no validator at all, ranges are used
  only when the request has digests to check the whole file by.
* The file is validated whole (size and digests) and handed to the hook chain as any
  staged file: publishing keeps its atomic guarantees.
* Resume: with a partial store the ranges on disk are checkpointed in the partial's
  sidecar (``ranges``, see :mod:`~pulp_aio_download.storage.partials`); a download that is
  interrupted (cancelled, crashed, its source down) leaves them, and the next one, in this
  process or another, fetches only the holes and re-hashes the rest from the file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from multidict import CIMultiDict

from .._tasks import finish_shielded
from ..admission.bandwidth import throttle
from ..errors import (
    ConnectionFailed,
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    StorageError,
    ValidationError,
)
from ..storage.partials import PartialFile, PartialStore, checkpoint_interval, partial_key
from ..transports.base import Response, Transport, TransportRequest
from ..urls import redact_url
from .attempts import failed_attempt, reason
from .hashing import write_all
from .repair import validate_or_repair
from .staged import Staged
from .stall import StallWatch

if TYPE_CHECKING:
    from ..admission import Admission
    from ..config import RemoteConfig
    from ..models import DownloadRequest, Source
    from ..progress import ProgressTracker
    from ..storage.base import Storage

__all__ = ["MIN_SEGMENT", "fetch_segmented", "segmentable"]

log = logging.getLogger(__name__)

MIN_SEGMENT = 1024 * 1024
"""The smallest range a file is cut into."""

_HTTP = frozenset({"http", "https"})
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_HASH_STEP = 64 * 1024 * 1024  # bytes hashed per worker-thread call
_READ_BACK = 1024 * 1024


class _Stage(Protocol):
    """What of the transfer stage a segmented download uses."""

    @property
    def transport(self) -> Transport: ...
    @property
    def admission(self) -> Admission: ...
    @property
    def storage(self) -> Storage: ...
    @property
    def partials(self) -> PartialStore | None: ...
    @property
    def chunk_size(self) -> int: ...


def segmentable(request: DownloadRequest, source: Source, remote: RemoteConfig) -> bool:
    """Whether ``source`` may be fetched in ranges (no I/O): the remote asks for segments,
    the source is http(s), the file is not handed off (``handoff_dir``), and the size is
    unknown or over the threshold."""
    if remote.segments < 2 or source.scheme not in _HTTP or request.handoff_dir is not None:
        return False
    size = request.expected_size
    return size is None or size >= max(remote.segment_threshold, 2 * MIN_SEGMENT)


async def fetch_segmented(
    stage: _Stage,
    request: DownloadRequest,
    source: Source,
    remote: RemoteConfig,
    tracker: ProgressTracker,
) -> Staged | None:
    """Fetch ``source`` (and its mirrors) in ranges into a validated staging file.

    Returns None when the file is to be fetched as one stream instead: too small, a
    server that does not answer ranges, validators that disagree (nothing is left
    behind then). Raises the :class:`DownloadError` of a range that failed for good.
    """
    return await _Segmented(stage, request, source, remote, tracker).run()


class _Fallback(Exception):
    """The file is fetched as one stream instead (the reason is the message)."""


class _Range:
    """A range of the file to fetch: ``[start, end)``; ``span`` is ``[start, written]``,
    the bytes of it on disk (shared with the download's list of spans); ``received``
    counts the bytes read from the connection too (written or not). A worker with nothing
    left to do may take the second half of what another range has still to receive: its
    ``end`` moves back then."""

    __slots__ = ("end", "received", "span", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.span = [start, start]
        self.received = start

    @property
    def pos(self) -> int:
        """The next byte to fetch."""
        return self.span[1]


class _Segmented:
    """One segmented download: its file, its spans on disk, its hashing cursor."""

    def __init__(
        self,
        stage: _Stage,
        request: DownloadRequest,
        source: Source,
        remote: RemoteConfig,
        tracker: ProgressTracker,
    ) -> None:
        self.stage = stage
        self.request = request
        self.remote = remote
        self.tracker = tracker
        self.loop = asyncio.get_running_loop()
        self.url = redact_url(source.url)
        self.final_url = self.url
        self.sources = _sources(request, source, remote)
        self.primary = source
        self.total: int | None = request.expected_size
        #: read by the progress tracker (a writer-like view of the whole file).
        self.expected_size = request.expected_size
        self.size = 0
        self.carried = 0
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.validator: str | None = None  # the partial's, or the first answer's
        self.known = False  # validators and total learned from a first answer
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.path: Path | None = None
        self.fd = -1
        self.key = partial_key(request.sha256, self.url)
        self.succeeded = False
        self.partial: PartialFile | None = None
        #: the spans on disk: the partial's ranges and every range's ``span``.
        self.spans: list[list[int]] = []
        names = list(request.algorithms)
        self.algorithms = names
        self.hashers = [hashlib.new(n) for n in names]
        self.hashed = 0
        self.advanced = asyncio.Event()
        self.attempts = 1
        self.dead: set[str] = set()  # mirrors that failed: their ranges go to the source
        self.active: set[_Range] = set()  # ranges receiving now (a free worker may split one)
        self._threads: set[asyncio.Future[Any]] = set()
        self._checkpoint: asyncio.Task[None] | None = None
        self._since_checkpoint = 0
        self._interval = 0

    # -- the download ---------------------------------------------------------------------

    async def run(self) -> Staged | None:
        keep = False
        try:
            if self.total is None and not await self._probe():
                return None
            assert self.total is not None
            if self.total < max(self.remote.segment_threshold, 2 * MIN_SEGMENT):
                return None
            await self._open_file()
            ranges = self._plan()
            self.tracker.start_transfer(self)
            try:
                await self._fetch_all(ranges)
            finally:
                self.tracker.end_transfer(self)
            digests = await self._validated(await self._finish())
            self.succeeded = True
        except _Fallback as reason:
            log.info("%s: %s; fetching it as one stream", self.url, reason)
            return None
        except ValidationError as error:
            if not self.carried:
                raise
            log.warning(
                "%s: the resumed download failed validation (%s); discarding the partial "
                "and fetching the whole file",
                self.url,
                error,
            )
            return None
        except BaseException as exc:
            keep = not isinstance(exc, Exception) or (
                isinstance(exc, DownloadError) and _keeps_partial(exc)
            )
            raise
        finally:
            await finish_shielded(self._cleanup(keep))
        path, self.path = self.path, None
        assert path is not None
        headers = self.headers
        headers.popall("Content-Range", None)
        headers["Content-Length"] = str(self.total)
        log.debug("%s: %d bytes fetched in ranges", self.url, self.total - self.carried)
        return Staged(
            path, digests, self.total, headers, self.attempts, self.final_url, self.carried
        )

    async def _validated(self, digests: dict[str, str]) -> dict[str, str]:
        assert self.total is not None
        stage = self.stage
        return await validate_or_repair(
            stage.transport,
            stage.admission,
            self.request,
            self.primary,
            self.remote,
            (self.path, digests, self.total),
            self.url,
        )

    async def _probe(self) -> bool:
        """Learn the size (and validators) with ``Range: bytes=0-0``; False: one stream."""
        probe = _Range(0, 1)

        async def ask(source: Source) -> None:
            resp = await self._open(source, probe)
            try:
                if resp.status != 206:
                    resp.abort()
                    raise _Fallback(f"the server answered {resp.status} to a range request")
                total = _content_range_total(resp.headers)
                if total is None:
                    raise _Fallback("the server's 206 gave no length")
                self.total = total
                self._agree(resp, source)
            finally:
                await resp.close()

        try:
            await self._attempts(self.primary, ask)
        except _Fallback as reason:
            log.debug("%s: %s; fetching it as one stream", self.url, reason)
            return False
        return True

    async def _open_file(self) -> None:
        """The staging file: a partial of an earlier download continued, or a new one."""
        assert self.total is not None
        storage, partials = self.stage.storage, self.stage.partials
        staging = storage.new_staging_path()
        key = self.key
        request = self.request
        if partials is not None and partials.worth_looking(key, request.expected_size):
            partial = await self._thread(
                functools.partial(
                    partials.adopt_ranges,
                    key,
                    url=self.url,
                    staging_path=staging,
                    expected_size=request.expected_size,
                    expected_digests=request.expected_digests,
                    total=self.total,
                )
            )
            ours = (self.etag, self.last_modified)
            if partial is not None and self.known and partial.validator not in ours:
                log.info("%s: the file changed since its partial was written", self.url)
                fd, partial.fd = partial.fd, -1
                await self._thread(
                    functools.partial(_keep_or_discard, fd, partial.data_path, partial, [])
                )
                partial = None
            if partial is not None:
                self.fd, partial.fd = partial.fd, -1
                self.path = partial.data_path
                self.partial = partial
                self.spans = [[a, b] for a, b in partial.ranges]
                self.carried = self.size = sum(b - a for a, b in partial.ranges)
                if self.validator is None:
                    self.validator = partial.validator
                    tag = partial.validator or ""
                    if tag.startswith('"'):
                        self.etag = tag
                    else:
                        self.last_modified = tag
                log.info(
                    "%s: continuing a partial segmented download: %d of %d bytes on disk",
                    self.url,
                    self.carried,
                    self.total,
                )
        if self.fd < 0:
            self.path = staging
            self.fd = await self._thread(functools.partial(_create, staging, self.total))
            self._new_partial()
        self._interval = checkpoint_interval(self.total)

    def _new_partial(self) -> None:
        """A partial for the new staging file, once a validator is known."""
        partials = self.stage.partials
        if (
            partials is None
            or self.partial is not None
            or self.fd < 0
            or not self.validator
            or not partials.worth_keeping(self.total)
        ):
            return
        assert self.path is not None
        self.partial = partials.new(
            self.key,
            url=self.url,
            staging_path=self.path,
            validator=self.validator,
            expected_size=self.request.expected_size,
            expected_digests=self.request.expected_digests,
            total=self.total,
        )

    def _plan(self) -> list[_Range]:
        """The holes of the file, cut into ranges of about ``remaining / segments``."""
        assert self.total is not None
        holes: list[tuple[int, int]] = []
        pos = 0
        for start, end in sorted((a, b) for a, b in self.spans):
            if start > pos:
                holes.append((pos, start))
            pos = max(pos, end)
        if pos < self.total:
            holes.append((pos, self.total))
        remaining = sum(b - a for a, b in holes)
        step = max(-(-remaining // self.remote.segments), MIN_SEGMENT)
        ranges: list[_Range] = []
        for start, end in holes:
            count = max(1, round((end - start) / step))
            size = -(-(end - start) // count)
            for first in range(start, end, size):
                piece = _Range(first, min(first + size, end))
                self.spans.append(piece.span)
                ranges.append(piece)
        return ranges

    async def _fetch_all(self, ranges: list[_Range]) -> None:
        """Run the workers and the hashing cursor until every byte is on disk and hashed."""
        queue = collections.deque(ranges)
        ready = asyncio.Event()
        if self.known:
            ready.set()
        workers = min(self.remote.segments, len(ranges))
        tasks = [asyncio.ensure_future(self._worker(i, queue, ready)) for i in range(workers)]
        hashing = asyncio.ensure_future(self._hash())
        self.advanced.set()
        try:
            await asyncio.wait([*tasks, hashing], return_when=asyncio.FIRST_EXCEPTION)
            for task in (*tasks, hashing):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    await task  # raises its exception
            await hashing
        finally:
            for task in (*tasks, hashing):
                task.cancel()
            await asyncio.gather(*tasks, hashing, return_exceptions=True)

    async def _worker(
        self, index: int, queue: collections.deque[_Range], ready: asyncio.Event
    ) -> None:
        if index:
            await ready.wait()  # the first answer tells whether ranges work at all
        source = self.sources[index % len(self.sources)]
        while True:
            piece = queue.popleft() if queue else self._split()
            if piece is None:
                return
            if source.url in self.dead:
                source = self.primary

            async def fetch(src: Source, piece: _Range = piece) -> None:
                await self._stream(src, piece, ready)

            try:
                await self._attempts(source, fetch)
            except DownloadError as error:
                if source is self.primary or isinstance(error, StorageError):
                    raise
                log.info(
                    "%s: mirror %s failed (%s); its ranges go to %s",
                    self.url,
                    redact_url(source.url),
                    reason(error),
                    redact_url(self.primary.url),
                )
                self.dead.add(source.url)
                source = self.primary
                await self._attempts(source, fetch)

    def _split(self) -> _Range | None:
        """The second half of what the range furthest from its end has still to receive
        (a slower connection or mirror), as a new range; None when none has two
        :data:`MIN_SEGMENT` left."""
        longest = max(self.active, key=lambda r: r.end - r.received, default=None)
        if longest is None or longest.end - longest.received < 2 * MIN_SEGMENT:
            return None
        middle = longest.received + (longest.end - longest.received) // 2
        piece = _Range(middle, longest.end)
        longest.end = middle  # its connection stops there (and is dropped)
        self.spans.append(piece.span)
        log.debug("%s: bytes %d-%d split off a range", self.url, middle, piece.end - 1)
        return piece

    async def _attempts(self, source: Source, fetch: Callable[[Source], Any]) -> None:
        """``fetch(source)`` under the source's slot, retried per the remote's policy."""
        admission, policy, host = self.stage.admission, self.remote.retry, source.host
        attempt = 0
        while True:
            attempt += 1
            started, before = time.monotonic(), self.size
            try:
                async with admission.slot(self.remote, host):
                    started = time.monotonic()  # the wait for the slot is not the host's
                    await fetch(source)
            except DownloadError as error:
                delay = failed_attempt(
                    admission,
                    policy,
                    host,
                    error,
                    attempt=attempt,
                    started=started,
                    what=f"{self.url}: a range from {redact_url(source.url)}",
                )
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            admission.observe(
                host, ok=True, nbytes=self.size - before, seconds=time.monotonic() - started
            )
            self.attempts = max(self.attempts, attempt)
            return

    async def _open(self, source: Source, piece: _Range) -> Response:
        return await self.stage.transport.open(
            TransportRequest(
                source.url,
                self.remote,
                userinfo=source.userinfo,
                offset=piece.pos,
                length=piece.end - piece.pos,
                headers=self.request.headers,
            )
        )

    def _agree(self, resp: Response, source: Source) -> None:
        """Check that ``resp`` is of the same file as every earlier answer (the first
        one sets what the others must match)."""
        etag = resp.headers.get("ETag")
        last_modified = resp.headers.get("Last-Modified")
        if not self.known:
            # Answers carry their validators: comparing them is what If-Range would do,
            # with a clear reason and no whole body sent back when they differ.
            if self.validator is not None and self.validator not in (etag, last_modified):
                raise _Fallback("the file changed since its partial was written")
            self.known = True
            self.etag, self.last_modified = etag, last_modified
            self.validator = resp.validator or None
            self.headers = CIMultiDict(resp.headers)
            self.final_url = redact_url(resp.url)
            if not (etag or last_modified) and not self.request.expected_digests:
                raise _Fallback(
                    "no ETag or Last-Modified to tell that its ranges are of one version"
                )
            self._new_partial()
            return
        common = False
        for ours, theirs in ((self.etag, etag), (self.last_modified, last_modified)):
            if ours is not None and theirs is not None:
                if ours != theirs:
                    raise _Fallback(
                        f"{redact_url(source.url)} has another version ({theirs}, not {ours})"
                    )
                common = True
        if not common and (self.etag or self.last_modified):
            raise _Fallback(f"{redact_url(source.url)} sends no validator to compare")

    def _check(self, resp: Response, piece: _Range, source: Source) -> None:
        if resp.status != 206:
            raise _Fallback(f"{redact_url(source.url)} answered {resp.status} to a range request")
        if resp.offset != piece.pos:
            raise _Fallback(f"{redact_url(source.url)} sent another range than asked")
        total = _content_range_total(resp.headers)
        if total != self.total:
            raise _Fallback(
                f"{redact_url(source.url)} has a file of {total} bytes, expected {self.total}"
            )
        self._agree(resp, source)

    async def _stream(self, source: Source, piece: _Range, ready: asyncio.Event) -> None:
        """One request for what is left of ``piece``, written at its offset."""
        if piece.pos >= piece.end:
            return
        try:
            resp = await self._open(source, piece)
        except HTTPStatusError as exc:
            if exc.status == 416:
                raise _Fallback(f"{redact_url(source.url)} refused the range (416)") from exc
            raise
        try:
            try:
                self._check(resp, piece, source)
            except _Fallback:
                resp.abort()
                raise
            ready.set()
            await self._read(resp, piece)
            if _content_range_end(resp.headers) != piece.end:
                resp.abort()  # the server sent more than asked: not reusable
        finally:
            await resp.close()

    async def _read(self, resp: Response, piece: _Range) -> None:
        batch: list[bytes] = []
        pending = 0  # bytes in ``batch``
        piece.received = piece.pos
        watch = StallWatch(self.remote.timeouts, resp, lambda: piece.received)
        caps = self.stage.admission.bandwidth(self.remote)
        limit = self.stage.chunk_size
        read = resp.read
        self.active.add(piece)
        try:
            while piece.received < piece.end:
                chunk = await read()
                if not chunk:
                    break
                if caps:
                    await throttle(caps, len(chunk), watch.hold)
                left = piece.end - piece.received  # the end may have moved back (a split)
                if len(chunk) > left:
                    chunk = chunk[:left]
                    resp.abort()  # more than we want: the connection is not reusable
                    if not chunk:
                        break
                piece.received += len(chunk)
                self.size += len(chunk)
                batch.append(chunk)
                pending += len(chunk)
                if pending >= limit:
                    await self._write(piece, batch, pending)
                    batch, pending = [], 0
        except DownloadError as error:
            if batch and not isinstance(error, StorageError):
                # The bytes that arrived before the break are good: keep them.
                await self._write(piece, batch, pending)
            raise
        finally:
            self.active.discard(piece)
            watch.stop()
        if batch:
            await self._write(piece, batch, pending)
        if watch.stalled:
            raise watch.error(self.url, "a range stalled")
        if piece.pos < piece.end:
            raise ConnectionFailed(
                f"a range ended at byte {piece.pos}, {piece.end - piece.pos} bytes short of "
                f"byte {piece.end}",
                url=self.url,
            )

    async def _write(self, piece: _Range, batch: list[bytes], nbytes: int) -> None:
        await self._thread(functools.partial(_pwrite_all, self.fd, batch, piece.pos, self.path))
        piece.span[1] += nbytes
        self.advanced.set()
        self._since_checkpoint += nbytes
        if (
            self.partial is not None
            and self._since_checkpoint >= self._interval
            and (self._checkpoint is None or self._checkpoint.done())
        ):
            self._since_checkpoint = 0
            self._checkpoint = asyncio.ensure_future(self._save())

    async def _save(self) -> None:
        """Checkpoint the partial: the spans on disk now, in its sidecar."""
        assert self.partial is not None
        assert self.path is not None
        moved = await self._thread(
            functools.partial(self.partial.checkpoint_ranges, self.fd, self._ranges(), self.path)
        )
        if moved is not None:
            self.path = moved

    def _ranges(self) -> list[tuple[int, int]]:
        """The spans on disk, merged."""
        out: list[tuple[int, int]] = []
        for start, end in sorted((a, b) for a, b in self.spans if b > a):
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        return out

    async def _hash(self) -> None:
        """The hashing cursor: hash the contiguous prefix on disk as it grows."""
        assert self.total is not None
        while self.hashed < self.total:
            await self.advanced.wait()
            self.advanced.clear()
            frontier = self.hashed
            for start, end in sorted((a, b) for a, b in self.spans):
                if start > frontier:
                    break
                frontier = max(frontier, end)
            while self.hashed < frontier:
                stop = min(frontier, self.hashed + _HASH_STEP)
                await self._thread(
                    functools.partial(_hash_range, self.fd, self.hashed, stop, self.hashers)
                )
                self.hashed = stop

    async def _finish(self) -> dict[str, str]:
        """Every byte is hashed: flush, close, move the file to its staging name."""
        if self._checkpoint is not None:
            await self._checkpoint
        partial, self.partial = self.partial, None
        fd, self.fd = self.fd, -1
        fsync = self.stage.storage.fsync_staged
        assert self.path is not None
        self.path = await self._thread(functools.partial(_close, fd, fsync, partial, self.path))
        return {name: h.hexdigest() for name, h in zip(self.algorithms, self.hashers, strict=True)}

    async def _cleanup(self, keep: bool) -> None:
        """After a failure, a fallback or a cancellation: wait for the threads using the
        file, then keep its ranges as a partial (``keep``) or remove it."""
        if self._checkpoint is not None:
            with contextlib.suppress(BaseException):
                await self._checkpoint
        while self._threads:
            await asyncio.wait(set(self._threads))
        if self.fd < 0:  # closed by _finish: the file is handed over, or failed validation
            path = self.path
            if path is not None and not self.succeeded:
                self.path = None
                await self.loop.run_in_executor(None, _unlink, path)
            return
        fd, self.fd = self.fd, -1
        partial, self.partial = self.partial, None
        path, self.path = self.path, None
        assert path is not None
        ranges = self._ranges()
        await self.loop.run_in_executor(
            None, functools.partial(_keep_or_discard, fd, path, partial, ranges if keep else [])
        )

    async def _thread(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` in a worker thread; a cancellation does not abandon it (the file
        it uses stays open until :meth:`_cleanup` has waited for it)."""
        future = self.loop.run_in_executor(None, call)
        self._threads.add(future)
        future.add_done_callback(self._threads.discard)
        return await asyncio.shield(future)


def _sources(request: DownloadRequest, source: Source, remote: RemoteConfig) -> list[Source]:
    """``source`` first, then the request's other http(s) sources of the same remote."""
    out = [source]
    seen = {source.url}
    for other in request.sources:
        if other.url in seen or other.scheme not in _HTTP:
            continue
        if (other.remote or request.remote or "default") != remote.name:
            continue
        seen.add(other.url)
        out.append(other)
    return out


def _keeps_partial(error: DownloadError) -> bool:
    """As for a one-stream transfer: keep the bytes when the source was unreachable or
    failing for a while, not when the bytes or the file are wrong or the disk failed."""
    if isinstance(error, (ConnectionFailed, DownloadTimeout)):
        return True
    if isinstance(error, HTTPStatusError):
        return error.status in (408, 429) or error.status >= 500
    return False


def _content_range_total(headers: Any) -> int | None:
    total = str(headers.get("Content-Range", "")).rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _content_range_end(headers: Any) -> int | None:
    """One past the last byte of a ``Content-Range``."""
    span = str(headers.get("Content-Range", "")).partition(" ")[2].partition("/")[0]
    last = span.partition("-")[2]
    return int(last) + 1 if last.isdigit() else None


# -- worker threads -------------------------------------------------------------------------


def _storage_error(path: Path | None, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    return StorageError(f"cannot write staging file {path}: {reason}")


def _create(path: Path, total: int) -> int:
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o644)
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    try:
        os.ftruncate(fd, total)  # the whole length, with holes where no range is yet
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise _storage_error(path, exc) from exc
    return fd


def _pwrite_all(fd: int, chunks: list[bytes], offset: int, path: Path | None) -> None:
    try:
        write_all(fd, chunks, offset)
    except OSError as exc:
        raise _storage_error(path, exc) from exc


def _hash_range(fd: int, start: int, stop: int, hashers: list[Any]) -> None:
    buf = bytearray(_READ_BACK)
    view = memoryview(buf)
    pos = start
    while pos < stop:
        n = os.preadv(fd, [view[: min(len(buf), stop - pos)]], pos)
        if n == 0:
            raise StorageError(f"the staging file ends at byte {pos}, expected {stop}")
        for hasher in hashers:
            hasher.update(view[:n])
        pos += n


def _close(fd: int, fsync: bool, partial: PartialFile | None, path: Path) -> Path:
    try:
        try:
            if fsync:
                os.fsync(fd)
            if partial is not None:
                path = partial.release()
        except OSError as exc:
            raise _storage_error(path, exc) from exc
    finally:
        os.close(fd)
    return path


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _keep_or_discard(
    fd: int, path: Path, partial: PartialFile | None, ranges: list[tuple[int, int]]
) -> None:
    try:
        if partial is not None and ranges:
            try:
                if partial.keep_ranges(fd, ranges, path):
                    return  # closing the fd (below) releases the lock for the next process
            except OSError:
                pass
        if partial is not None:
            partial.discard()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    finally:
        os.close(fd)
