"""``downloader.session``: a view of the engine's session of one remote.

pulpcore's content app closes ``downloader.session`` after every request, and plugins
(pulp_file's Git LFS batch call) send their own requests through it. The view sends them
through the engine's session of that remote (its whole network policy applies) and its
``close()`` leaves that session open: the engine owns it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["SessionView"]

SessionGetter = Callable[[], Awaitable[aiohttp.ClientSession]]


class _Request:
    """``session.get(...)``: awaitable, or an async context manager, as aiohttp's."""

    def __init__(self, session: SessionGetter, method: str, url: str, kwargs: Any) -> None:
        self._session = session
        self._args = (method, url, kwargs)
        self._response: aiohttp.ClientResponse | None = None

    async def _send(self) -> aiohttp.ClientResponse:
        method, url, kwargs = self._args
        session = await self._session()
        return await session.request(method, url, **kwargs)

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self._send().__await__()

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._response = await self._send()
        return self._response

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            self._response.release()


class SessionView:
    """What a pulpcore downloader's ``session`` attribute offers, on the engine's session."""

    def __init__(self, session: SessionGetter) -> None:
        self._session = session
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (the engine's session stays open)."""
        return self._closed

    def request(self, method: str, url: str, **kwargs: Any) -> _Request:
        """A request through the engine's session of the remote."""
        if self._closed:
            raise RuntimeError("Session is closed")
        return _Request(self._session, method, url, kwargs)

    def get(self, url: str, **kwargs: Any) -> _Request:
        """``GET url``."""
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> _Request:
        """``HEAD url``."""
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> _Request:
        """``POST url``."""
        return self.request("POST", url, **kwargs)

    async def close(self) -> None:
        """Close this view; the engine's session stays open for other downloads."""
        self._closed = True
