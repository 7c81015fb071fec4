"""The transport pool: one shared connector, one HTTP transport per remote, ``file://``.

The pool is the engine's :class:`~.base.Transport`: it sends each request to the transport
of its URL scheme and remote. Every remote's ``aiohttp.ClientSession`` runs on the one
process-wide ``aiohttp.TCPConnector`` the pool owns (``max_connections`` in total,
``max_connections_per_host`` per host), created on first use, so an engine that only reads
local files or its cache never opens one. A remote with a SOCKS5 proxy runs on that proxy's
connector instead: one per distinct proxy, also process-wide, lazy and closed with the pool
(see :mod:`.socks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .base import Response, TransportRequest
from .file import FileTransport

if TYPE_CHECKING:
    import aiohttp

    from ..config import EngineConfig, RemoteConfig
    from .http import HttpTransport
    from .session import Slot
    from .socks import ProxyKey

__all__ = ["TransportPool"]


class TransportPool:
    """The transports of one engine, and the connector they share.

    Args:
        config: the engine's settings (limits, chunk size, allowed file roots).
    """

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._connector: aiohttp.TCPConnector | None = None
        self._socks: dict[ProxyKey, aiohttp.TCPConnector] = {}
        self._http: dict[str, HttpTransport] = {}
        self.files = FileTransport(
            tuple(Path(r) for r in config.allowed_file_roots), chunk_size=config.chunk_size
        )

    def connector(self) -> aiohttp.TCPConnector:
        """The shared connector (created on first use)."""
        if self._connector is None:
            import aiohttp

            self._connector = aiohttp.TCPConnector(
                limit=self._config.max_connections,
                limit_per_host=self._config.max_connections_per_host,
            )
        return self._connector

    def connector_for(self, remote: RemoteConfig) -> aiohttp.TCPConnector:
        """The connector of ``remote``: its SOCKS5 proxy's, or the shared direct one."""
        if remote.proxy is None or not remote.proxy.is_socks:
            return self.connector()
        from .socks import proxy_key, socks_connector

        key = proxy_key(remote.proxy)
        connector = self._socks.get(key)
        if connector is None:
            connector = self._socks[key] = socks_connector(remote.proxy, self._config)
        return connector

    def http(self, remote: RemoteConfig) -> HttpTransport:
        """The HTTP transport of ``remote`` (created on first use)."""
        transport = self._http.get(remote.name)
        if transport is None:
            from .http import HttpTransport

            transport = HttpTransport(remote, self.connector_for(remote))
            self._http[remote.name] = transport
        return transport

    def session(
        self, remote: RemoteConfig, limits: Callable[[str], Sequence[Slot]]
    ) -> aiohttp.ClientSession:
        """The plugin-facing ``aiohttp.ClientSession`` of ``remote`` (see
        :meth:`~pulp_aio_download.DownloadEngine.session`)."""
        return self.http(remote).plugin_session(limits)

    async def open(self, request: TransportRequest) -> Response:
        """Open ``request`` through the transport of its scheme and remote."""
        if request.url.startswith("file:"):
            return await self.files.open(request)
        return await self.http(request.remote).open(request)

    async def close(self) -> None:
        """Close every session, then the connectors."""
        try:
            for transport in self._http.values():
                await transport.close()
        finally:
            self._http.clear()
            connectors = [*self._socks.values()]
            if self._connector is not None:
                connectors.append(self._connector)
            self._socks.clear()
            self._connector = None
            for connector in connectors:
                await connector.close()
