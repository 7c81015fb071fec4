"""One source, fetched into a staging file: attempts, backoff, resume, stall detection.

The slot (global semaphore, per-remote and per-host limits) is held only while bytes flow;
a download waiting to retry gives it back while it sleeps. A transfer that breaks after
some bytes continues with ``Range`` + ``If-Range`` keeping the running hash state; when the
server ignores the range or the validator changed it restarts from byte 0.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import (
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    SizeMismatch,
    StorageError,
    ValidationError,
)
from .hashing import HashingWriter, verify_digests
from .models import DownloadRequest, Source
from .retry import backoff_delay, is_retryable_error
from .transports.base import Response
from .urls import redact_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .engine import DownloadEngine
    from .progress import ProgressTracker

__all__ = ["Staged", "fetch_source"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Staged:
    """A validated staging file, ready for the hook chain."""

    path: Path
    digests: dict[str, str]
    size: int
    headers: Mapping[str, str]
    attempts: int
    url: str


class _Attempt:
    """The state kept across the attempts at one source."""

    def __init__(
        self,
        engine: DownloadEngine,
        request: DownloadRequest,
        source: Source,
        tracker: ProgressTracker,
    ) -> None:
        self.engine = engine
        self.request = request
        self.source = source
        self.tracker = tracker
        self.remote = engine.config.remote(source.remote or request.remote)
        self.url = redact_url(source.url)
        self.writer: HashingWriter | None = None
        self.validator: str | None = None
        self.headers: Mapping[str, str] = {}
        self.final_url = self.url

    async def new_writer(self) -> HashingWriter:
        if self.writer is not None:
            await self.writer.abort()
        self.writer = HashingWriter(
            self.engine.storage.new_staging_path(),
            self.request.expected_digests,
            expected_size=self.request.expected_size,
            url=self.url,
            batch_size=self.engine.config.chunk_size,
            fsync=self.engine.storage.fsync_staged,
        )
        self.validator = None
        return self.writer

    async def once(self) -> None:
        """One attempt: open the source (resuming if possible) and stream the body."""
        writer = self.writer or await self.new_writer()
        await writer.flush()
        offset = writer.size if self.validator else 0
        if offset == 0 and writer.size:
            await writer.reset()
        resp = await self.engine._open(
            self.source, self.remote, offset=offset, validator=self.validator
        )
        try:
            if offset and resp.offset != offset:
                log.debug("%s: range not honoured, restarting from byte 0", self.url)
                await writer.reset()
            elif offset:
                log.debug("%s: resuming at byte %d", self.url, offset)
            self.headers = resp.headers
            self.final_url = redact_url(resp.url)
            self.validator = resp.validator
            self._check_length(resp, writer)
            await self._stream(resp, writer)
        finally:
            await resp.close()

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
        timeouts = self.remote.timeouts
        loop = asyncio.get_running_loop()
        stalled = False
        handle: asyncio.TimerHandle | None = None
        if timeouts.min_speed:
            # A sliding window sampled four times per window: a stall is noticed at most a
            # quarter window after the last window-worth of time fell below min_speed.
            min_speed, window = timeouts.min_speed, timeouts.stall_window
            step = window / 4
            samples = collections.deque([(loop.time(), writer.size)])

            def check() -> None:
                nonlocal stalled, handle
                now, size = loop.time(), writer.size
                samples.append((now, size))
                while len(samples) > 2 and samples[1][0] <= now - window:
                    samples.popleft()
                since, base = samples[0]
                if now - since >= window * 0.999 and size - base < min_speed * (now - since):
                    stalled = True
                    resp.abort()
                else:
                    handle = loop.call_later(step, check)

            handle = loop.call_later(step, check)
        self.tracker.start_transfer(writer)
        read, write = resp.read, writer.write
        try:
            while chunk := await read():
                await write(chunk)
        except SizeMismatch:
            resp.abort()
            raise
        except DownloadError as exc:
            if stalled:
                raise self._stall_error() from exc
            raise
        finally:
            self.tracker.end_transfer(writer)
            if handle is not None:
                handle.cancel()
        if stalled:
            raise self._stall_error()

    def _stall_error(self) -> DownloadTimeout:
        t = self.remote.timeouts
        return DownloadTimeout(
            f"stalled: less than {t.min_speed:g} bytes/s over {t.stall_window:g} s",
            url=self.url,
            timeout="stall",
        )


async def fetch_source(
    engine: DownloadEngine, request: DownloadRequest, source: Source, tracker: ProgressTracker
) -> Staged:
    """Fetch ``source`` into a validated staging file, retrying per the remote's policy.

    The caller owns the returned staging file. On failure nothing is left behind.
    """
    state = _Attempt(engine, request, source, tracker)
    policy = state.remote.retry
    host = source.host
    attempt = 0
    try:
        while True:
            attempt += 1
            started = time.monotonic()
            retry_after: float | None = None
            try:
                async with engine._slot(state.remote, host):
                    await state.once()
                assert state.writer is not None
                digests, size = await state.writer.finish()
                verify_digests(
                    digests,
                    request.expected_digests,
                    url=state.url,
                    size=size,
                    expected_size=request.expected_size,
                )
            except DownloadError as error:
                if not isinstance(error, StorageError):  # our disk, not the host's fault
                    engine._observe(host, ok=False, status=getattr(error, "status", None))
                if not is_retryable_error(policy, error) or attempt >= policy.attempts:
                    raise
                if isinstance(error, ValidationError):  # bad bytes: start a fresh file
                    await state.new_writer()
                if isinstance(error, HTTPStatusError):
                    retry_after = error.retry_after
                delay = backoff_delay(policy, attempt, retry_after=retry_after)
                log.debug(
                    "%s: attempt %d/%d failed (%s); retrying in %.2f s",
                    state.url,
                    attempt,
                    policy.attempts,
                    error,
                    delay,
                )
                tracker.retry()
                await asyncio.sleep(delay)
                continue
            engine._observe(host, ok=True, nbytes=size, seconds=time.monotonic() - started)
            writer, state.writer = state.writer, None
            return Staged(writer.path, digests, size, state.headers, attempt, state.final_url)
    finally:
        if state.writer is not None:
            await state.writer.abort()
