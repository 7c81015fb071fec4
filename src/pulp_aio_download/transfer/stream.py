"""Bytes as they arrive: the body of one download handed to the caller chunk by chunk.

:meth:`DownloadEngine.stream() <pulp_aio_download.DownloadEngine.stream>` opens a
:class:`DownloadStream` once the response headers are in, after the same admission
(global, per-remote and per-host slots, rate limit), source choice and retries before the
first byte as a download. The slot is held until the stream is closed. Iterating yields
the body as it comes, under stall detection and the bandwidth caps; after the last chunk
the size and digests are checked (:class:`DigestMismatch`, :class:`SizeMismatch`). A
failure after the first chunk was handed out is not retried: the caller has the bytes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..admission.bandwidth import Bandwidth, throttle
from ..errors import (
    AllSourcesFailed,
    CatalogError,
    ConfigError,
    DownloadError,
    HookError,
    SizeMismatch,
    StorageError,
)
from ..transports.base import TransportRequest
from ..urls import redact_url
from .attempts import failed_attempt
from .hashing import HashingWriter, verify_digests
from .staged import Staged
from .stall import StallWatch

if TYPE_CHECKING:
    from ..admission import Admission
    from ..config import RemoteConfig
    from ..models import DownloadRequest, DownloadResult, Source
    from ..progress import ProgressTracker
    from ..transports.base import Response
    from .stage import TransferStage

__all__ = ["DownloadStream"]

log = logging.getLogger(__name__)

#: Hashing up to this many bytes (a chunk's size times its algorithms) runs on the event
#: loop; more goes to a thread, so six digests of a 64 KiB chunk do not stall the loop.
_INLINE = 64 * 1024
_FILE_CHUNK = 1024 * 1024

#: Failures of the commit after the last chunk that say nothing of the host.
_NOT_THE_HOSTS = (StorageError, HookError, CatalogError, ConfigError)

Commit = Callable[[Staged, "Source"], Awaitable["DownloadResult"]]


class DownloadStream:
    """One download's body, chunk by chunk, as :meth:`DownloadEngine.stream` hands it out.

    Attributes:
        status: the response status (200, or 206 for a ``Range`` passed through).
        headers: the response headers.
        url: the URL the bytes come from (after redirects; without credentials).
        cached: True when the stored file is streamed (no network I/O).
        size: bytes handed out so far.
        digests: sha256 and every expected and ``compute_digests`` algorithm, once the
            last chunk was read and checked (None before, and for a ``Range``).
        result: with ``store=True``, the :class:`DownloadResult` once the bytes were
            stored and recorded (None before, and without ``store``).
        attempts: attempts made at the source before its headers came.

    Iterate with ``async for chunk in stream``. Retries and fail-over happen only before
    the response headers are in (before the stream is entered): once it is, nothing is
    retried, and a failure is raised from the iteration as its :class:`DownloadError`
    (iterating again raises the same error; a failed stream never looks complete). Use
    only inside ``async with engine.stream(...)``: leaving it early closes the response,
    gives the slot back and leaves no staging file; it does not count against the host's
    health (the caller went away, not the server).
    """

    def __init__(
        self,
        request: DownloadRequest,
        *,
        expected_size: int | None = None,
        validate: bool = True,
    ) -> None:
        self.request = request
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self.url = request.url
        self.cached = False
        self.size = 0
        self.digests: dict[str, str] | None = None
        self.result: DownloadResult | None = None
        self.attempts = 0
        self.expected_size = expected_size if expected_size is not None else request.expected_size
        self._validate = validate
        self._next: Callable[[], Awaitable[bytes]] | None = None
        self._end: Callable[[], Awaitable[None]] | None = None
        self._close: list[Callable[[], Awaitable[None]]] = []
        self._finished = False
        self._error: DownloadError | None = None

    def __aiter__(self) -> DownloadStream:
        return self

    async def __anext__(self) -> bytes:
        if self._error is not None:
            raise self._error  # a failed stream stays failed: it does not look complete
        if self._finished or self._next is None:
            raise StopAsyncIteration
        try:
            chunk = await self._next()
            if chunk:
                self.size += len(chunk)
                return chunk
            self._finished = True
            if self._end is not None:
                await self._end()
        except DownloadError as exc:
            self._error = exc
            raise
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the response, give the slot back, remove what was not stored."""
        while self._close:
            close = self._close.pop()
            try:
                await close()
            except Exception as exc:  # a cleanup failure must not hide the caller's error
                log.debug("%s: closing the stream: %s", redact_url(self.url), exc)

    def __repr__(self) -> str:
        return f"<DownloadStream {redact_url(self.url)} status={self.status} size={self.size}>"

    # -- from the store ------------------------------------------------------------------
    async def open_file(self, path: Path, result: DownloadResult) -> None:
        """Stream the stored file ``path`` (a cached hit: ``result``), no network I/O."""
        loop = asyncio.get_running_loop()
        handle = await loop.run_in_executor(None, open, path, "rb")

        async def close() -> None:
            await loop.run_in_executor(None, handle.close)

        self._close.append(close)
        self.status = 200
        self.headers = {"Content-Length": str(result.size)}
        self.cached = True
        self.result = result
        self.digests = dict(result.digests)
        self.attempts = 0

        async def read() -> bytes:
            data: bytes = await loop.run_in_executor(None, handle.read, _FILE_CHUNK)
            return data

        self._next = read

    # -- from the network ----------------------------------------------------------------
    async def open_network(
        self,
        stage: TransferStage,
        sources: Sequence[tuple[Source, RemoteConfig]],
        tracker: ProgressTracker,
        commit: Commit | None,
    ) -> None:
        """Open the first source that answers (its retries first, then the next source)
        and prepare the body's iteration; ``commit``: store and record the bytes."""
        errors: list[DownloadError] = []
        for source, remote in sources:
            try:
                resp = await self._connect(stage, source, remote)
            except DownloadError as exc:
                errors.append(exc)
                continue
            self._prepare(stage, source, remote, resp, tracker, commit)
            return
        if len(errors) == 1 and len(self.request.sources) == 1:
            raise errors[0]
        raise AllSourcesFailed(errors, url=self.request.url)

    async def _connect(
        self, stage: TransferStage, source: Source, remote: RemoteConfig
    ) -> Response:
        """``source``'s response, with the remote's retries before the first byte; its slot
        stays held (given back by :meth:`aclose`)."""
        admission, policy, host = stage.admission, remote.retry, source.host
        attempt = 0
        while True:
            attempt += 1
            slot = admission.slot(remote, host)
            await slot.__aenter__()
            started = time.monotonic()
            try:
                resp = await stage.transport.open(
                    TransportRequest(
                        source.url, remote, userinfo=source.userinfo, headers=self.request.headers
                    )
                )
            except DownloadError as error:
                await slot.__aexit__(None, None, None)
                delay = failed_attempt(
                    admission,
                    policy,
                    host,
                    error,
                    attempt=attempt,
                    started=started,
                    what=redact_url(source.url),
                )
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            except BaseException:
                await slot.__aexit__(None, None, None)
                raise
            self.attempts = attempt
            self._close.append(functools.partial(self._release, admission, slot, host, started))
            return resp

    async def _release(
        self,
        admission: Admission,
        slot: AbstractAsyncContextManager[None],
        host: str,
        started: float,
    ) -> None:
        await slot.__aexit__(None, None, None)
        error = self._error
        if (not self._finished and error is None) or isinstance(error, _NOT_THE_HOSTS):
            return  # the caller left early, or our side failed: the host did nothing wrong
        admission.observe(
            host,
            ok=error is None,
            nbytes=self.size,
            seconds=time.monotonic() - started,
            status=getattr(error, "status", None),
            error=error,
        )

    def _prepare(
        self,
        stage: TransferStage,
        source: Source,
        remote: RemoteConfig,
        resp: Response,
        tracker: ProgressTracker,
        commit: Commit | None,
    ) -> None:
        self.status, self.headers, self.url = resp.status, resp.headers, redact_url(resp.url)
        writer = self._writer(stage) if commit is not None and self._validate else None
        hashers = (
            [hashlib.new(a) for a in self.request.algorithms]
            if self._validate and writer is None
            else []
        )
        body = _Body(self, resp, StallWatch(remote.timeouts, resp, lambda: self.size), writer)
        body.caps, body.hashers = stage.admission.bandwidth(remote), hashers
        body.tracker, body.commit, body.source = tracker, commit, source
        tracker.start_transfer(self)
        self._committed = False
        self._close.append(body.close)
        self._next, self._end = body.read, body.end

    _committed: bool

    def _writer(self, stage: TransferStage) -> HashingWriter:
        storage = stage.storage
        return HashingWriter(
            storage.new_staging_path(),
            self.request.algorithms,
            expected_size=self.request.expected_size,
            url=redact_url(self.request.url),
            batch_size=stage.chunk_size,
            fsync=storage.fsync_staged,
        )


class _Body:
    """The body of one streamed response: its chunks read under stall detection, the
    bandwidth caps and the expected size, hashed or staged, validated at the end."""

    caps: tuple[Bandwidth, ...]
    hashers: list[Any]
    tracker: ProgressTracker
    commit: Commit | None
    source: Source

    def __init__(
        self,
        stream: DownloadStream,
        resp: Response,
        watch: StallWatch,
        writer: HashingWriter | None,
    ) -> None:
        self.stream, self.resp, self.watch, self.writer = stream, resp, watch, writer
        self.expected = stream.expected_size if stream._validate else None
        self.loop = asyncio.get_running_loop()

    async def read(self) -> bytes:
        stream, resp, watch = self.stream, self.resp, self.watch
        try:
            chunk = await resp.read()
        except DownloadError as exc:
            raise (watch.error(stream.url) if watch.stalled else exc) from exc
        if watch.stalled:
            raise watch.error(stream.url)
        if not chunk:
            return chunk
        if self.caps:
            await throttle(self.caps, len(chunk), watch.hold)
        expected = self.expected
        if expected is not None and stream.size + len(chunk) > expected:
            resp.abort()
            raise SizeMismatch(
                expected=expected,
                actual=stream.size + len(chunk),
                url=stream.url,
                message=f"body exceeds the expected {expected} bytes",
            )
        if self.writer is not None:
            await self.writer.write(chunk)
        elif len(chunk) * len(self.hashers) <= _INLINE:
            _feed(self.hashers, chunk)
        else:
            await self.loop.run_in_executor(None, _feed, self.hashers, chunk)
        return chunk

    async def end(self) -> None:
        stream, writer = self.stream, self.writer
        if not stream._validate:
            return
        if writer is not None:
            digests, size = await writer.finish()
        else:
            algorithms = stream.request.algorithms
            digests = {a: h.hexdigest() for a, h in zip(algorithms, self.hashers, strict=True)}
            size = stream.size
        verify_digests(
            digests,
            stream.request.expected_digests,
            url=stream.url,
            size=size,
            expected_size=stream.request.expected_size,
        )
        stream.digests = digests
        if writer is not None and self.commit is not None:
            staged = Staged(
                writer.path, digests, size, dict(stream.headers), stream.attempts, stream.url
            )
            stream._committed = True  # the commit owns the staging file now
            stream.result = await self.commit(staged, self.source)

    async def close(self) -> None:
        stream = self.stream
        self.tracker.end_transfer(stream)
        self.watch.stop()
        if not stream._finished:
            self.resp.abort()  # the rest of the body is not wanted: not reusable
        await self.resp.close()
        if self.writer is not None and not stream._committed:
            await self.writer.abort()


def _feed(hashers: Sequence[Any], chunk: bytes) -> None:
    for hasher in hashers:
        hasher.update(chunk)
