"""A fault-injecting HTTP file server on loopback, for tests, benchmarks and ``demo``.

:class:`FaultServer` serves registered files with correct HTTP (Content-Length, strong ETag,
Last-Modified, HEAD, single ``Range`` with ``If-Range``) and, per path, misbehaves on
request: a :class:`Fault` says how one response goes wrong (truncated body, flipped byte,
error status with ``Retry-After``, stall, trickle, gzip-encoded bytes, no answer, redirect,
huge headers, extra bytes). It records every request and counts in-flight requests, so
tests can check the headers a client sent and the concurrency it used.

Example::

    async with FaultServer() as srv:
        srv.add("/a.bin", data, faults=[Fault(truncate_at=100), Fault(status=429), None])
        url = srv.url("/a.bin")      # 1st request truncated, 2nd 429, then good
        ...
        assert srv.stats("/a.bin").requests == 3
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import email.utils
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path, PurePosixPath

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["Fault", "FaultServer", "PathStats", "RecordedRequest"]

_DEFAULT_CHUNK = 256 * 1024
_RAW_HIGH_WATER = 1024 * 1024
_STALL_FOREVER = 3600.0
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """How one response goes wrong. Leave every field at its default for a good response.

    Byte counts (``truncate_at``, ``truncate_no_length``, ``stall_after``) count body bytes
    of *this* response; ``flip_byte`` is an absolute offset in the file, so it also hits a
    ranged (resumed) request whose range covers it.

    Attributes:
        status: answer with this status and a short text body instead of the file.
        retry_after: with ``status``: a ``Retry-After`` of seconds (int/float), an HTTP-date
            string, or a datetime (sent as an HTTP-date).
        truncate_at: send the headers with the full Content-Length, this many body bytes,
            then close the connection.
        truncate_no_length: send no Content-Length (and no chunking), this many body bytes,
            then close the connection: the body looks complete to the client.
        flip_byte: serve the right length with the byte at this file offset inverted.
        stall_after: send this many body bytes, then nothing for ``stall_seconds``
            (default: until the server closes), then close.
        trickle: send the body at about this many bytes per second.
        gzip: add ``Content-Encoding: gzip`` to the bytes as stored (which should already be
            gzip data), to prove a client does not decompress them.
        never_answer: accept the request and send nothing until the server closes.
        redirect_to: answer ``redirect_status`` with this ``Location`` (a URL or a path).
        huge_headers: add a header whose value is this many bytes long.
        extra_bytes: send this many bytes after the body, then close the connection;
            with ``extra_with_length`` the Content-Length is the file's (the extra bytes
            overrun it), otherwise no Content-Length is sent.
        headers: extra response headers (e.g. ``WWW-Authenticate``).
        ignore_range: answer 200 with the full body whatever ``Range`` says.
        delay: seconds to wait before answering.
    """

    status: int | None = None
    retry_after: float | str | datetime | None = None
    truncate_at: int | None = None
    truncate_no_length: int | None = None
    flip_byte: int | None = None
    stall_after: int | None = None
    stall_seconds: float | None = None
    trickle: float | None = None
    gzip: bool = False
    never_answer: bool = False
    redirect_to: str | None = None
    redirect_status: int = 302
    huge_headers: int = 0
    extra_bytes: int | None = None
    extra_with_length: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    ignore_range: bool = False
    delay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("truncate_at", "truncate_no_length", "flip_byte", "stall_after"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"Fault.{name} must be a non-negative int, got {value!r}")
        if self.extra_bytes is not None and (
            not isinstance(self.extra_bytes, int) or self.extra_bytes < 1
        ):
            raise ValueError(f"Fault.extra_bytes must be a positive int, got {self.extra_bytes!r}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be an HTTP status, got {self.status!r}")
        if not 300 <= self.redirect_status <= 399:
            raise ValueError(f"Fault.redirect_status must be 3xx, got {self.redirect_status!r}")
        if self.trickle is not None and not self.trickle > 0:
            raise ValueError(f"Fault.trickle must be positive bytes/s, got {self.trickle!r}")
        if self.huge_headers < 0 or self.delay < 0:
            raise ValueError("Fault.huge_headers and Fault.delay must not be negative")
        if self.retry_after is not None and self.status is None:
            raise ValueError("Fault.retry_after needs Fault.status")
        raw = [
            self.truncate_at is not None,
            self.truncate_no_length is not None,
            self.stall_after is not None,
            self.extra_bytes is not None,
        ]
        if sum(raw) > 1:
            raise ValueError(
                "choose one of truncate_at, truncate_no_length, stall_after, extra_bytes"
            )

    @property
    def _raw(self) -> bool:
        return (
            self.truncate_at is not None
            or self.truncate_no_length is not None
            or self.stall_after is not None
            or self.extra_bytes is not None
        )


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it.

    ``index`` is its 0-based position among the requests to the same path; ``fault`` is the
    fault applied to it (None for a good answer); ``peer`` is the client's (host, port), so
    equal peers mean one kept-alive connection. ``headers`` are left out of the repr, as
    they may carry credentials.
    """

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str] = field(repr=False)
    index: int
    fault: Fault | None
    peer: tuple[str, int] | None
    time: float


@dataclass(slots=True)
class PathStats:
    """Counters for one path (or, from :attr:`FaultServer.totals`, for the whole server).

    ``disconnects`` counts responses the client abandoned before the server finished them.
    """

    requests: int = 0
    inflight: int = 0
    peak_inflight: int = 0
    bytes_sent: int = 0
    disconnects: int = 0
    statuses: list[int] = field(default_factory=list)

    @property
    def client_disconnected(self) -> bool:
        """True when a client went away before a response was complete."""
        return self.disconnects > 0


class _Body:
    """The bytes of one served file: in memory, or a file on disk read in slices."""

    def __init__(
        self,
        *,
        data: bytes | None = None,
        path: Path | None = None,
        stat: os.stat_result | None = None,
        last_modified: float | None = None,
    ) -> None:
        self.data = data
        self.path = path
        self._sha256: str | None = None
        if data is not None:
            self.size = len(data)
            self._sha256 = hashlib.sha256(data).hexdigest()
            mtime = time.time() if last_modified is None else last_modified
        else:
            if path is None:
                raise ValueError("a body needs data or a path")
            st = stat if stat is not None else path.stat()
            self.size = st.st_size
            mtime = st.st_mtime if last_modified is None else last_modified
        self.last_modified = email.utils.formatdate(int(mtime), usegmt=True)

    async def sha256(self) -> str:
        if self._sha256 is None:
            assert self.path is not None
            self._sha256 = await asyncio.to_thread(_hash_file, self.path)
        return self._sha256

    async def read(self, offset: int, length: int) -> bytes | memoryview:
        if self.data is not None:
            return memoryview(self.data)[offset : offset + length]
        assert self.path is not None
        return await asyncio.to_thread(_read_slice, self.path, offset, length)


def _stat_under(root: Path, rel: PurePosixPath) -> tuple[Path, os.stat_result] | None:
    candidate = root.joinpath(*rel.parts).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate, candidate.stat()


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


def _read_slice(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length)


@dataclass(slots=True)
class _Entry:
    body: _Body
    auth: tuple[str, str] | None = None
    ignore_range: bool = False
    content_type: str = "application/octet-stream"


@dataclass(slots=True)
class _Plan:
    status: int
    start: int
    end: int
    headers: dict[str, str]


def _normalize(path: str) -> str:
    return "/" + path.lstrip("/")


def _format_retry_after(value: float | str | datetime) -> str:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return email.utils.format_datetime(when.astimezone(timezone.utc), usegmt=True)
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _count_status(stats: tuple[PathStats, PathStats], code: int) -> None:
    for s in stats:
        s.statuses.append(code)


def _fault_headers(fault: Fault) -> dict[str, str]:
    extra = dict(fault.headers)
    if fault.huge_headers:
        extra["X-Huge-Header"] = "x" * fault.huge_headers
    return extra


class FaultServer:
    """An HTTP server on 127.0.0.1 (port 0) that serves files and injects faults.

    Use it as an async context manager::

        async with FaultServer() as srv:
            srv.add("/repo/a.bin", b"...", faults=Fault(flip_byte=3))
            async with session.get(srv.url("/repo/a.bin")) as resp: ...

    Files come from :meth:`add` (bytes), :meth:`add_file` (one file on disk) or a
    directory (``root``, served under ``/``). ``faults`` for a path is either one
    :class:`Fault` applied to every request, or a sequence consumed one per request
    (``None`` items are good answers) after which requests are answered normally. Every
    request to the path (any method) consumes one, except requests refused by basic auth.

    Counters: :attr:`requests`, :meth:`stats` per path, :attr:`totals` for the server.
    :meth:`gate` holds responses until released, and :meth:`wait_inflight` waits until a
    number of requests are held, to measure client concurrency without timing.

    ``ignore_range=True`` makes the server answer every request with a full 200.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        ignore_range: bool = False,
        chunk_size: int = _DEFAULT_CHUNK,
        host: str = "127.0.0.1",
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.root = Path(root).resolve() if root is not None else None
        self.ignore_range = ignore_range
        self.chunk_size = chunk_size
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.totals = PathStats()
        self._entries: dict[str, _Entry] = {}
        self._dir_bodies: dict[str, tuple[tuple[int, int], _Body]] = {}
        self._always: dict[str, Fault] = {}
        self._queued: dict[str, collections.deque[Fault | None]] = {}
        self._stats: dict[str, PathStats] = {}
        self._gates: dict[str | None, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._closed: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to a free port and start serving."""
        if self._runner is not None:
            raise RuntimeError("FaultServer already started")
        self._closing = False
        self._closed = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving; held, stalled and silent responses are cut off."""
        if self._runner is None:
            return
        self._closing = True
        assert self._closed is not None
        self._closed.set()
        for gate in self._gates.values():
            gate.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> FaultServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if not self.port:
            raise RuntimeError("FaultServer is not started")
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """The full URL of ``path`` on this server."""
        return self.base_url + _normalize(path)

    # -- content and faults ----------------------------------------------------------

    def add(
        self,
        path: str,
        data: bytes,
        *,
        faults: Fault | Sequence[Fault | None] | None = None,
        auth: tuple[str, str] | None = None,
        ignore_range: bool = False,
        last_modified: float | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Serve ``data`` at ``path``; return its URL (once started; else the path).

        ``auth`` is a (user, password) pair the request must present with basic auth.
        ``last_modified`` is a POSIX timestamp (default: now).
        """
        body = _Body(data=bytes(data), last_modified=last_modified)
        return self._register(path, _Entry(body, auth, ignore_range, content_type), faults)

    def add_file(
        self,
        path: str,
        file: str | os.PathLike[str],
        *,
        faults: Fault | Sequence[Fault | None] | None = None,
        auth: tuple[str, str] | None = None,
        ignore_range: bool = False,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Serve the file on disk ``file`` at ``path`` (read in slices, never whole)."""
        body = _Body(path=Path(file))
        return self._register(path, _Entry(body, auth, ignore_range, content_type), faults)

    def _register(
        self, path: str, entry: _Entry, faults: Fault | Sequence[Fault | None] | None
    ) -> str:
        key = _normalize(path)
        self._entries[key] = entry
        self.set_faults(key, faults)
        return self.url(key) if self.port else key

    def remove(self, path: str) -> None:
        """Stop serving ``path`` (it answers 404 afterwards)."""
        key = _normalize(path)
        self._entries.pop(key, None)
        self.set_faults(key, None)

    def set_faults(self, path: str, faults: Fault | Sequence[Fault | None] | None) -> None:
        """Replace the faults of ``path``: one Fault for every request, or a sequence
        consumed one per request (then good answers), or None."""
        key = _normalize(path)
        self._always.pop(key, None)
        self._queued.pop(key, None)
        if isinstance(faults, Fault):
            self._always[key] = faults
        elif faults is not None:
            items = list(faults)
            for item in items:
                if item is not None and not isinstance(item, Fault):
                    raise TypeError(f"faults must be Fault or None, got {item!r}")
            self._queued[key] = collections.deque(items)

    def _next_fault(self, key: str) -> Fault | None:
        queue = self._queued.get(key)
        if queue:
            return queue.popleft()
        return self._always.get(key)

    async def _lookup(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None or self.root is None:
            return entry
        rel = PurePosixPath(key.lstrip("/"))
        if not rel.parts or ".." in rel.parts:
            return None
        found = await asyncio.to_thread(_stat_under, self.root, rel)
        if found is None:
            return None
        candidate, st = found
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self._dir_bodies.get(key)
        if cached is None or cached[0] != stamp:
            cached = (stamp, _Body(path=candidate, stat=st))
            self._dir_bodies[key] = cached
        return _Entry(cached[1])

    # -- gates and counters ----------------------------------------------------------

    def gate(self, path: str | None = None) -> asyncio.Event:
        """Hold responses (to ``path``, or to every path) until the returned event is set.

        Held requests count as in flight. :meth:`release` opens every gate.
        """
        key = None if path is None else _normalize(path)
        event = self._gates.get(key)
        if event is None or event.is_set():
            event = asyncio.Event()
            self._gates[key] = event
        return event

    def release(self) -> None:
        """Open every gate."""
        for event in self._gates.values():
            event.set()
        self._gates.clear()

    async def wait_inflight(
        self, count: int, path: str | None = None, *, timeout: float = 10.0
    ) -> None:
        """Wait until at least ``count`` requests (to ``path`` or overall) are in flight.

        Raises:
            TimeoutError: not reached within ``timeout`` seconds.
        """
        stats = self.totals if path is None else self.stats(path)
        deadline = time.monotonic() + timeout
        while stats.inflight < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{stats.inflight} requests in flight after {timeout}s, wanted {count}"
                )
            await asyncio.sleep(0.005)

    def stats(self, path: str) -> PathStats:
        """The counters of ``path`` (all zero if it was never requested)."""
        key = _normalize(path)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = PathStats()
        return stats

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to ``path``, oldest first."""
        key = _normalize(path)
        return [r for r in self.requests if r.path == key]

    def reset_counters(self) -> None:
        """Forget recorded requests and zero every counter (in-flight counts are kept)."""
        self.requests.clear()
        self.totals = PathStats(inflight=self.totals.inflight)
        self._stats = {k: PathStats(inflight=v.inflight) for k, v in self._stats.items()}

    # -- request handling ------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        key = request.path
        stats = (self.stats(key), self.totals)
        index = stats[0].requests
        for s in stats:
            s.requests += 1
            s.inflight += 1
            s.peak_inflight = max(s.peak_inflight, s.inflight)
        try:
            return await self._respond(request, key, index, stats)
        except asyncio.CancelledError:
            # handler_cancellation: the client closed the connection before we finished.
            if not self._closing:
                for s in stats:
                    s.disconnects += 1
            raise
        finally:
            for s in stats:
                s.inflight -= 1

    async def _respond(
        self,
        request: web.Request,
        key: str,
        index: int,
        stats: tuple[PathStats, PathStats],
    ) -> web.StreamResponse:
        entry = await self._lookup(key)
        fault: Fault | None = None
        authorized = entry is None or entry.auth is None or _check_basic(request, entry.auth)
        if entry is not None and authorized:
            fault = self._next_fault(key)
        self._record(request, key, index, fault)
        for gate_key in (None, key):
            gate = self._gates.get(gate_key)
            if gate is not None:
                await gate.wait()
        if fault is not None and fault.delay:
            await self._sleep(fault.delay)
        early = await self._answer_without_body(request, entry, authorized, fault, stats)
        if early is not None:
            return early
        assert entry is not None
        return await self._serve_body(request, entry, fault or Fault(), stats)

    def _record(self, request: web.Request, key: str, index: int, fault: Fault | None) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=key,
                query_string=request.query_string,
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                index=index,
                fault=fault,
                peer=(str(peer[0]), int(peer[1])) if peer else None,
                time=time.time(),
            )
        )

    async def _answer_without_body(
        self,
        request: web.Request,
        entry: _Entry | None,
        authorized: bool,
        fault: Fault | None,
        stats: tuple[PathStats, PathStats],
    ) -> web.StreamResponse | None:
        """The answer when it is not the file: 404, 401, an injected status, a redirect
        or no answer at all (None: serve the file)."""
        if entry is None:
            _count_status(stats, 404)
            return web.Response(status=404, text="not found\n")
        if not authorized:
            _count_status(stats, 401)
            return web.Response(
                status=401,
                text="unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="faultserver"'},
            )
        if fault is None:
            return None
        extra = _fault_headers(fault)
        if fault.never_answer:
            await self._sleep(None)
            _close(request)
            return web.Response()
        if fault.status is not None:
            if fault.retry_after is not None:
                extra["Retry-After"] = _format_retry_after(fault.retry_after)
            _count_status(stats, fault.status)
            return web.Response(
                status=fault.status, text=f"{fault.status} (fault injected)\n", headers=extra
            )
        if fault.redirect_to is not None:
            _count_status(stats, fault.redirect_status)
            extra["Location"] = fault.redirect_to
            return web.Response(status=fault.redirect_status, headers=extra)
        return None

    async def _serve_body(
        self,
        request: web.Request,
        entry: _Entry,
        fault: Fault,
        stats: tuple[PathStats, PathStats],
    ) -> web.StreamResponse:
        body = entry.body
        etag = f'"{await body.sha256()}"'
        ignore = self.ignore_range or entry.ignore_range or fault.ignore_range
        plan = _plan(request, body.size, etag, body.last_modified, ignore)
        headers: dict[str, str] = {
            "Content-Type": entry.content_type,
            "ETag": etag,
            "Last-Modified": body.last_modified,
            **({} if ignore else {"Accept-Ranges": "bytes"}),
            **plan.headers,
            **_fault_headers(fault),
        }
        if fault.gzip:
            headers["Content-Encoding"] = "gzip"
        _count_status(stats, plan.status)
        if plan.status == 416:
            return web.Response(status=416, headers=headers)
        head = request.method == "HEAD"
        if fault._raw:
            await self._raw_response(request, entry, fault, plan, headers, head, stats)
            return web.Response()

        resp = web.StreamResponse(status=plan.status, headers=headers)
        resp.content_length = plan.end - plan.start
        await resp.prepare(request)
        if not head:
            try:
                async for piece in self._slices(body, plan.start, plan.end, fault):
                    await resp.write(piece)
                    for s in stats:
                        s.bytes_sent += len(piece)
            except ConnectionError:
                if not self._closing:
                    for s in stats:
                        s.disconnects += 1
                return resp
        await resp.write_eof()
        return resp

    async def _slices(
        self, body: _Body, start: int, end: int, fault: Fault
    ) -> AsyncIterator[bytes | memoryview]:
        step = self.chunk_size
        pause = 0.0
        if fault.trickle is not None:
            step = max(1, min(step, int(fault.trickle * 0.05)))
            pause = step / fault.trickle
        pos = start
        while pos < end:
            if self._closing:
                raise ConnectionResetError("server closing")
            piece = await body.read(pos, min(step, end - pos))
            if not piece:
                break
            flip = fault.flip_byte
            if flip is not None and pos <= flip < pos + len(piece):
                changed = bytearray(piece)
                changed[flip - pos] ^= 0xFF
                piece = bytes(changed)
            yield piece
            pos += len(piece)
            if pause and pos < end:
                await self._sleep(pause)

    async def _raw_response(
        self,
        request: web.Request,
        entry: _Entry,
        fault: Fault,
        plan: _Plan,
        headers: dict[str, str],
        head: bool,
        stats: tuple[PathStats, PathStats],
    ) -> None:
        """Write a deliberately broken response straight to the socket, then close it."""
        transport = request.transport
        if transport is None:
            return
        length = plan.end - plan.start
        send = length
        with_length = True
        if fault.truncate_at is not None:
            send = min(fault.truncate_at, length)
        elif fault.truncate_no_length is not None:
            send = min(fault.truncate_no_length, length)
            with_length = False
        elif fault.stall_after is not None:
            send = min(fault.stall_after, length)
        elif fault.extra_bytes is not None:
            with_length = fault.extra_with_length
        lines = [f"HTTP/1.1 {plan.status} {HTTPStatus(plan.status).phrase}"]
        headers = {
            **headers,
            "Date": email.utils.formatdate(usegmt=True),
            "Connection": "close",
        }
        if with_length:
            headers["Content-Length"] = str(length)
        lines += [f"{name}: {value}" for name, value in headers.items()]
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head:
            parts = self._slices(entry.body, plan.start, plan.start + send, fault)
            try:
                async for piece in parts:
                    await self._raw_write(request, piece, stats)
                if fault.extra_bytes is not None:
                    await self._raw_write(request, b"\xa5" * fault.extra_bytes, stats)
            except ConnectionError:
                if not self._closing:
                    for s in stats:
                        s.disconnects += 1
                _close(request)
                return
            if fault.stall_after is not None:
                await self._sleep(fault.stall_seconds)
        _close(request)

    async def _raw_write(
        self, request: web.Request, data: bytes | memoryview, stats: Iterable[PathStats]
    ) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client went away")
        transport.write(data)
        for s in stats:
            s.bytes_sent += len(data)
        while transport.get_write_buffer_size() > _RAW_HIGH_WATER:
            if transport.is_closing():
                raise ConnectionResetError("client went away")
            await asyncio.sleep(0.001)

    async def _sleep(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: a long time), cut short when the server closes."""
        assert self._closed is not None
        try:
            await asyncio.wait_for(
                self._closed.wait(), _STALL_FOREVER if seconds is None else seconds
            )
        except asyncio.TimeoutError:
            pass


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def _check_basic(request: web.Request, expected: tuple[str, str]) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    return bool(sep) and (user, password) == expected


def _plan(request: web.Request, size: int, etag: str, last_modified: str, ignore: bool) -> _Plan:
    """Decide status and byte range from Range / If-Range (RFC 9110 section 14)."""
    full = _Plan(200, 0, size, {})
    value = request.headers.get("Range")
    if ignore or value is None or request.method not in ("GET", "HEAD"):
        return full
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() not in (etag, last_modified):
        return full
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return full
    first, last = match.groups()
    if not first and not last:
        return full
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            return _Plan(416, 0, 0, {"Content-Range": f"bytes */{size}"})
        start, end = max(0, size - suffix), size
    else:
        start = int(first)
        if last and int(last) < start:
            return full
        if start >= size:
            return _Plan(416, 0, 0, {"Content-Range": f"bytes */{size}"})
        end = min(int(last) + 1, size) if last else size
    return _Plan(206, start, end, {"Content-Range": f"bytes {start}-{end - 1}/{size}"})
