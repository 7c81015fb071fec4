"""One source, fetched into a staging file: attempts, backoff, resume, stall detection.

The slot (global semaphore, per-remote and per-host limits) is held only while bytes flow;
a download waiting to retry gives it back while it sleeps. A transfer that breaks after
some bytes continues with ``Range`` + ``If-Range`` keeping the running hash state; when the
server ignores the range, the validator changed, the ``206`` does not fit or the range is
refused (``416``) it restarts from byte 0 in the same attempt.

Across processes (see :mod:`.partials`): a large transfer keeps its bytes as a partial when
it is cancelled or its source fails; the next transfer of the same file adopts it,
re-hashes its bytes and continues from there. A resumed file that fails its digest is
fetched whole once more, outside the retry budget, so a bad partial never fails a download.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..admission.bandwidth import throttle
from ..errors import (
    ConnectionFailed,
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    SizeMismatch,
    StorageError,
    ValidationError,
)
from ..models import DownloadRequest, Source
from ..storage.partials import PartialStore, partial_key
from ..transports.base import Response, Transport, TransportRequest
from ..urls import redact_url
from .attempts import failed_attempt, reason
from .hashing import HashingWriter
from .repair import validate_or_repair
from .segments import fetch_segmented, segmentable
from .staged import Staged, handoff_staging_path
from .stall import StallWatch

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..admission import Admission
    from ..config import RemoteConfig
    from ..progress import ProgressTracker
    from ..storage.base import Storage

__all__ = ["Staged", "TransferStage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TransferStage:
    """What the transfer of one source needs, and nothing more.

    Attributes:
        transport: opens the responses (the engine's pool, or a test's fake).
        admission: the limits a transfer holds while its bytes flow, and the host health
            each attempt's outcome feeds.
        storage: where staging files are made.
        partials: the store of resumable partials (None: resume across processes off).
        chunk_size: bytes handed to the writer thread at once.
    """

    transport: Transport
    admission: Admission
    storage: Storage
    partials: PartialStore | None
    chunk_size: int

    async def fetch(
        self,
        request: DownloadRequest,
        source: Source,
        remote: RemoteConfig,
        tracker: ProgressTracker,
    ) -> Staged:
        """Fetch ``source`` into a validated staging file, retrying per ``remote``'s policy.

        The caller owns the returned staging file. On failure nothing is left behind
        (but a resumable partial, see :mod:`.partials`).
        """
        if segmentable(request, source, remote):  # large files over several connections
            staged = await fetch_segmented(self, request, source, remote, tracker)
            if staged is not None:
                return staged
        return await _fetch_source(_Attempt(self, request, source, remote, tracker))


class _Attempt:
    """The state kept across the attempts at one source."""

    def __init__(
        self,
        stage: TransferStage,
        request: DownloadRequest,
        source: Source,
        remote: RemoteConfig,
        tracker: ProgressTracker,
    ) -> None:
        self.stage = stage
        self.request = request
        self.source = source
        self.tracker = tracker
        self.remote = remote
        self.url = redact_url(source.url)
        self.writer: HashingWriter | None = None
        self.validator: str | None = None
        self.headers: Mapping[str, str] = {}
        self.final_url = self.url
        # A handed-off file is written in the caller's directory, not where partials live.
        handoff = request.handoff_dir is not None
        partials = stage.partials if source.scheme != "file" and not handoff else None
        self.partials: PartialStore | None = partials
        self.key = partial_key(request.sha256, self.url)
        #: the writer continues a partial adopted from an earlier process.
        self.adopted = False
        self.attempt = 0
        self.failure: DownloadError | None = None  # why the previous attempt failed

    async def new_writer(self, *, adopt: bool = False) -> HashingWriter:
        """A fresh writer; with ``adopt``, continuing this file's partial if one is left."""
        if self.writer is not None:
            await self.writer.abort()
        request = self.request
        storage = self.stage.storage
        handoff = request.handoff_dir
        staging = storage.new_staging_path() if handoff is None else handoff_staging_path(handoff)
        self.writer = HashingWriter(
            staging,
            request.algorithms,
            expected_size=request.expected_size,
            url=self.url,
            batch_size=self.stage.chunk_size,
            fsync=storage.fsync_staged or handoff is not None,
        )
        self.validator = None
        self.adopted = False
        partials = self.partials
        if adopt and partials and partials.worth_looking(self.key, request.expected_size):
            partial = await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(
                    partials.adopt,
                    self.key,
                    url=self.url,
                    staging_path=staging,
                    expected_size=request.expected_size,
                    expected_digests=request.expected_digests,
                ),
            )
            if partial is not None:
                try:
                    await self.writer.resume(partial)
                except StorageError as exc:
                    log.info("%s: cannot read partial (%s); fetching whole", self.url, exc)
                    await self.writer.abort()
                    return await self.new_writer()
                self.validator = partial.validator
                self.adopted = True
                log.info(
                    "%s: continuing a partial download at byte %d (left by an earlier process)",
                    self.url,
                    partial.flushed,
                )
        return self.writer

    async def once(self) -> None:
        """One attempt: open the source (resuming if possible) and stream the body."""
        writer = self.writer or await self.new_writer(adopt=True)
        await writer.flush()
        offset = writer.size if self.validator else 0
        if offset == 0 and writer.size:
            await writer.reset()
        resp = await self._open_fitting(writer, offset)
        try:
            self.headers = resp.headers
            self.final_url = redact_url(resp.url)
            self.validator = resp.validator or None
            self._attach_partial(resp, writer)
            self._check_length(resp, writer)
            await self._stream(resp, writer)
        finally:
            await resp.close()

    async def _open_fitting(self, writer: HashingWriter, offset: int) -> Response:
        """Open the source at ``offset``; whatever does not continue the bytes we have (a
        200, a 206 of another range, size or version, a 416) restarts from byte 0."""
        if offset:
            try:
                resp = await self._open(offset, self.validator)
            except HTTPStatusError as exc:
                if exc.status != 416:
                    raise
                log.debug("%s: range from byte %d refused (416), restarting", self.url, offset)
            else:
                misfit = self._misfit(resp, offset)
                if misfit is None:
                    log.info(
                        "%s: attempt %d of %d resumes at byte %d (after %s)",
                        self.url,
                        self.attempt,
                        self.remote.retry.attempts,
                        offset,
                        reason(self.failure),
                    )
                    return resp
                log.debug("%s: %s, restarting from byte 0", self.url, misfit)
                self.adopted = False  # the bytes are all new from here on
                if resp.status == 200:
                    await writer.reset()
                    return resp
                resp.abort()
                await resp.close()
            self.adopted = False
            await writer.reset()
        return await self._open(0, None)

    async def _open(self, offset: int, validator: str | None) -> Response:
        return await self.stage.transport.open(
            TransportRequest(
                self.source.url,
                self.remote,
                userinfo=self.source.userinfo,
                offset=offset,
                validator=validator,
                headers=self.request.headers,
            )
        )

    def _misfit(self, resp: Response, offset: int) -> str | None:
        if resp.offset != offset:
            return "range not honoured" if resp.status == 200 else "the 206 starts elsewhere"
        ours = self.validator
        if ours is not None:
            theirs = resp.headers.get("ETag" if ours.startswith('"') else "Last-Modified")
            if theirs is not None and theirs != ours:
                return "the file changed on the server"
        expected = self.request.expected_size
        total = _content_range_total(resp.headers)
        if expected is not None and total is not None and total != expected:
            return f"the server's file has {total} bytes, expected {expected}"
        return None

    def _attach_partial(self, resp: Response, writer: HashingWriter) -> None:
        """Make a large transfer resumable by a later process (see :mod:`.partials`)."""
        partials = self.partials
        if partials is None:
            return
        if writer.partial is not None:
            writer.partial.set_validator(self.validator)
            return
        total = self.request.expected_size
        if total is None:
            total = _announced_total(resp)
        if not partials.worth_keeping(total):
            return
        if not self.validator:
            log.debug(
                "%s: no ETag or Last-Modified: an interrupted transfer cannot be resumed "
                "by a later process",
                self.url,
            )
            return
        writer.partial = partials.new(
            self.key,
            url=self.url,
            staging_path=writer.path,
            validator=self.validator,
            expected_size=self.request.expected_size,
            expected_digests=self.request.expected_digests,
            total=total,
        )

    def _check_length(self, resp: Response, writer: HashingWriter) -> None:
        expected = self.request.expected_size
        length = resp.headers.get("Content-Length")
        if expected is None or length is None or resp.headers.get("Content-Encoding"):
            return
        try:
            announced = writer.size + int(length)
        except ValueError:
            return
        if announced > expected:
            resp.abort()
            raise SizeMismatch(
                expected=expected,
                actual=announced,
                url=self.url,
                message=f"server announces {announced} bytes, expected {expected}",
            )

    async def _stream(self, resp: Response, writer: HashingWriter) -> None:
        watch = StallWatch(self.remote.timeouts, resp, lambda: writer.size)
        caps = self.stage.admission.bandwidth(self.remote)
        self.tracker.start_transfer(writer)
        read, write = resp.read, writer.write
        try:
            if caps:
                while chunk := await read():
                    await throttle(caps, len(chunk), watch.hold)
                    await write(chunk)
            else:
                while chunk := await read():
                    await write(chunk)
        except SizeMismatch:
            resp.abort()
            raise
        except DownloadError as exc:
            if watch.stalled:
                raise watch.error(self.url) from exc
            raise
        finally:
            self.tracker.end_transfer(writer)
            watch.stop()
        if watch.stalled:
            raise watch.error(self.url)


async def _fetch_source(state: _Attempt) -> Staged:
    request, source, admission = state.request, state.source, state.stage.admission
    policy = state.remote.retry
    host = source.host
    attempt = 0
    keep = False
    try:
        while True:
            attempt += 1
            state.attempt = attempt
            started = time.monotonic()
            try:
                async with admission.slot(state.remote, host):
                    started = time.monotonic()  # the wait for the slot is not the host's
                    await state.once()
                assert state.writer is not None
                # A handed-off file is renamed into place, a repaired one written in
                # place: either must be on disk.
                on_disk = request.handoff_dir is not None or request.pieces is not None
                digests, size = await state.writer.finish(keep_small=not on_disk)
                digests = await _validated(state, digests, size)
            except DownloadError as error:
                if isinstance(error, ValidationError) and state.adopted:
                    # The bytes of the earlier process were wrong (or the file changed
                    # under the same validator): throw them away and fetch it whole.
                    log.warning(
                        "%s: the resumed download failed validation (%s); discarding the "
                        "partial and fetching the whole file",
                        state.url,
                        error,
                    )
                    await state.new_writer()
                    attempt -= 1
                    continue
                delay = failed_attempt(
                    admission, policy, host, error, attempt=attempt, started=started, what=state.url
                )
                if delay is None:
                    keep = _keeps_partial(error)
                    raise
                if isinstance(error, ValidationError):  # bad bytes: start a fresh file
                    await state.new_writer()
                state.failure = error
                await asyncio.sleep(delay)
                continue
            admission.observe(host, ok=True, nbytes=size, seconds=time.monotonic() - started)
            writer, state.writer = state.writer, None
            return Staged(
                writer.path,
                digests,
                size,
                state.headers,
                attempt,
                state.final_url,
                writer.carried,
                writer.body,
            )
    except BaseException as exc:
        if not isinstance(exc, Exception):  # cancelled, Ctrl-C: keep what we have
            keep = True
        raise
    finally:
        if state.writer is not None:
            await state.writer.abort(keep=keep)


async def _validated(state: _Attempt, digests: dict[str, str], size: int) -> dict[str, str]:
    writer, stage = state.writer, state.stage
    on_disk = writer.path if writer is not None and writer.body is None else None
    return await validate_or_repair(
        stage.transport,
        stage.admission,
        state.request,
        state.source,
        state.remote,
        (on_disk, digests, size),
        state.url,
    )


def _keeps_partial(error: DownloadError) -> bool:
    """Whether the bytes of a transfer that failed with ``error`` are worth keeping for a
    later process: yes when the source was unreachable or failing for a while, no when the
    bytes or the file are wrong, the disk failed, or the file is gone."""
    if isinstance(error, (ConnectionFailed, DownloadTimeout)):
        return True
    if isinstance(error, HTTPStatusError):
        return error.status in (408, 429) or error.status >= 500
    return False


def _content_range_total(headers: Mapping[str, str]) -> int | None:
    total = headers.get("Content-Range", "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _announced_total(resp: Response) -> int | None:
    if resp.status == 206:
        return _content_range_total(resp.headers)
    length = resp.headers.get("Content-Length")
    if length is None or not length.isdigit() or resp.headers.get("Content-Encoding"):
        return None
    return int(length)
