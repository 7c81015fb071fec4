"""A transport whose responses the test gives: an engine on it opens no socket.

Modelled on httpx's ``MockTransport``: a handler receives each
:class:`~pulp_aio_download.transports.base.TransportRequest` and returns a
:class:`FakeResponse` (or raises a :class:`~pulp_aio_download.DownloadError` to fail the
attempt, as a broken connection would)::

    from pulp_aio_download.testing import FakeResponse, FakeTransport

    def handler(request):
        if request.url.endswith("/missing"):
            return FakeResponse(404)
        return FakeResponse(200, b"content")

    async with pad.DownloadEngine(config, transport=FakeTransport(handler)) as engine:
        result = await engine.download("https://example.invalid/x.rpm")

A mapping of URL to bytes is the shorthand of a server that has those files (a 404 for
any other URL, ``Range`` requests answered with a ``206``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ..errors import ConnectionFailed, HTTPStatusError
from ..retry import parse_retry_after
from ..transports.base import Response, TransportRequest

__all__ = ["FakeResponse", "FakeTransport", "Handler"]


@dataclass(frozen=True, slots=True)
class FakeResponse:
    """A response given by a test.

    Attributes:
        status: the HTTP status; outside 2xx, opening it raises :class:`HTTPStatusError`
            (with ``retry_after`` from a ``Retry-After`` header).
        body: the bytes of the body (for a ``206``: the bytes from the request's offset).
        headers: response headers; ``Content-Length`` is added when absent.
        chunk_size: the size of the chunks the body is read in.
        cut_after: end the body with a :class:`ConnectionFailed` after this many bytes,
            as a connection reset mid-body would (None: the whole body).
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunk_size: int = 64 * 1024
    cut_after: int | None = None


Handler = Callable[[TransportRequest], "FakeResponse | Awaitable[FakeResponse]"]
"""What a :class:`FakeTransport` asks for each request (a plain or an async callable)."""


class _FakeStream(Response):
    def __init__(self, url: str, given: FakeResponse, offset: int) -> None:
        self.url = url
        self.status = given.status
        headers = dict(given.headers)
        headers.setdefault("Content-Length", str(len(given.body)))
        self.headers = headers
        self.offset = offset
        self._body = given.body if given.cut_after is None else given.body[: given.cut_after]
        self._cut = given.cut_after is not None
        self._chunk = given.chunk_size
        self._position = 0
        self._aborted = False

    async def read(self) -> bytes:
        if self._aborted:
            raise ConnectionFailed("connection aborted", url=self.url)
        chunk = self._body[self._position : self._position + self._chunk]
        self._position += len(chunk)
        if not chunk and self._cut:
            raise ConnectionFailed("body transfer broken: connection reset", url=self.url)
        return chunk

    def abort(self) -> None:
        self._aborted = True

    async def close(self) -> None:
        self._body = b""


class FakeTransport:
    """A :class:`~pulp_aio_download.transports.base.Transport` answering from a handler.

    Args:
        handler: called with each request; returns a :class:`FakeResponse`. Or a mapping
            of URL to body bytes.

    Attributes:
        requests: every request opened, in order.
    """

    def __init__(self, handler: Handler | Mapping[str, bytes]) -> None:
        self._handler: Handler = (
            _serve_files(dict(handler)) if isinstance(handler, Mapping) else handler
        )
        self.requests: list[TransportRequest] = []
        self.closed = False

    async def open(self, request: TransportRequest) -> Response:
        """Ask the handler for the response to ``request``."""
        self.requests.append(request)
        answer = self._handler(request)
        given = await answer if inspect.isawaitable(answer) else answer
        assert isinstance(given, FakeResponse), f"the handler returned {given!r}"
        if not 200 <= given.status < 300:
            raise HTTPStatusError(
                status=given.status,
                url=request.url,
                retry_after=parse_retry_after(given.headers.get("Retry-After")),
            )
        offset = request.offset if given.status == 206 else 0
        return _FakeStream(request.url, given, offset)

    async def close(self) -> None:
        """Nothing to release; marks the transport closed."""
        self.closed = True


def _serve_files(files: dict[str, bytes]) -> Handler:
    def serve(request: TransportRequest) -> FakeResponse:
        body = files.get(request.url)
        if body is None:
            return FakeResponse(404)
        if request.offset and request.offset < len(body):
            last = len(body) - 1
            return FakeResponse(
                206,
                body[request.offset :],
                {"Content-Range": f"bytes {request.offset}-{last}/{len(body)}"},
            )
        return FakeResponse(200, body)

    return serve
