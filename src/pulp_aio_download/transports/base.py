"""The transport seam: one operation, open a response byte stream for a request.

The transfer stage talks to a :class:`Transport` only: :class:`~.http.HttpTransport`
(aiohttp), :class:`~.file.FileTransport` (``file://``), the :class:`~.pool.TransportPool`
that picks one of them by URL scheme and remote, or a test's
:class:`~pulp_aio_download.testing.FakeTransport`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..config import RemoteConfig

__all__ = ["Response", "Transport", "TransportRequest"]


@dataclass(frozen=True, slots=True)
class TransportRequest:
    """What a transport is asked to open.

    Attributes:
        url: the URL, without credentials.
        remote: the :class:`RemoteConfig` whose network policy applies.
        userinfo: credentials the URL carried (user, password), sent to its origin only.
        offset: the first byte wanted (``Range: bytes=offset-``); 0 for the whole body.
        length: bytes wanted from ``offset`` (``Range: bytes=offset-(offset+length-1)``),
            or None for the rest of the file. A transport may send more than asked (a
            server that ignores ranges): the caller reads what it needs.
        validator: the ETag or Last-Modified the bytes before ``offset`` came with
            (``If-Range``), or None.
        headers: headers of this request only, over the remote's (``Authorization`` and
            ``Cookie`` go only to the URL's own origin, not after a redirect elsewhere).
    """

    url: str
    remote: RemoteConfig
    userinfo: tuple[str, str | None] | None = field(default=None, repr=False)
    offset: int = 0
    validator: str | None = None
    length: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class Response(abc.ABC):
    """An open response: status, headers, and the body as chunks.

    ``offset`` is the byte position of the first body byte (non-zero for a honoured
    ``Range`` request).
    """

    status: int
    headers: Mapping[str, str]
    url: str
    offset: int = 0

    @abc.abstractmethod
    async def read(self) -> bytes:
        """The next chunk of the body (any size), ``b""`` at the end."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the connection now (a stall or an over-long body); reads then fail."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the response (the connection is reused only if the body was read)."""

    @property
    def validator(self) -> str | None:
        """The ETag (strong only) or Last-Modified of the response, for ``If-Range``."""
        etag = self.headers.get("ETag")
        if etag and not etag.startswith("W/"):
            return etag
        return self.headers.get("Last-Modified")


@runtime_checkable
class Transport(Protocol):
    """Opens a response for a request; the one thing the transfer stage asks of the network.

    ``open`` returns once the status and headers are in, with the body still to be read.
    A final status outside 2xx raises :class:`~pulp_aio_download.HTTPStatusError` (with
    ``retry_after`` when the server sent one); any other failure raises the matching
    :class:`~pulp_aio_download.DownloadError`, never a library's own exception.
    """

    async def open(self, request: TransportRequest) -> Response:
        """Send ``request`` and return the response, its body unread."""
        ...

    async def close(self) -> None:
        """Release what the transport holds (sessions, connections)."""
        ...
