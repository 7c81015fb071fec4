"""The transport interface the engine talks to: open a URL, read chunks."""

from __future__ import annotations

import abc
from collections.abc import Mapping

__all__ = ["Response"]


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
