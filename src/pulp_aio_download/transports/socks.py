"""SOCKS5 proxies: one shared connector per proxy, its failures as aiohttp errors. Internal.

aiohttp speaks only HTTP proxies; aiohttp-socks (the ``socks`` extra) brings a
:class:`aiohttp.TCPConnector` subclass that opens every connection through a SOCKS5 proxy.
The :class:`~.pool.TransportPool` keeps one such connector per distinct proxy (URL and
credentials), process-wide like the direct one, created on first use and closed with the
engine; every remote using that proxy shares it. The engine's limits are its own (the global
semaphore, the per-remote and per-host slots of :mod:`~pulp_aio_download.admission`), taken
before a connection is asked for, so they bound traffic through a SOCKS proxy exactly as
they bound direct traffic; each connector gets the same ``limit``/``limit_per_host`` as the
direct one as a backstop.

aiohttp-socks raises its own exceptions, which are no ``aiohttp.ClientError``: the connector
here turns them into :class:`~.errors.SocksProxyError` (an ``aiohttp.ClientConnectionError``, so a
plugin's ``engine.session(name)`` sees an aiohttp error as it would for an HTTP proxy),
which :mod:`.errors` maps to :class:`~pulp_aio_download.ProxyError`. Messages name the
proxy by host and port, never its credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from .._extras import require
from ..config import SOCKS_DEFAULT_PORT

if TYPE_CHECKING:
    from ..config import EngineConfig, ProxyConfig

__all__ = ["proxy_key", "socks_connector"]


ProxyKey = tuple[str, str, int, str | None, str | None]


def proxy_key(proxy: ProxyConfig) -> ProxyKey:
    """What makes two remotes' SOCKS proxies the same one (their connector is shared)."""
    parts = urlsplit(proxy.url)
    return (
        parts.scheme,
        parts.hostname or "",
        parts.port or SOCKS_DEFAULT_PORT,
        proxy.username,
        proxy.password,
    )


def socks_connector(proxy: ProxyConfig, config: EngineConfig) -> aiohttp.TCPConnector:
    """A connector sending every connection through ``proxy`` (``socks5`` or ``socks5h``).

    Raises:
        ConfigError: aiohttp-socks is not installed (the ``socks`` extra).
    """
    require("aiohttp_socks", extra="socks", needed_by="a SOCKS5 proxy")
    from ._socks_connector import SocksConnector

    scheme, host, port, username, password = proxy_key(proxy)
    return SocksConnector(
        host=host,
        port=port,
        username=username,
        password=password,
        rdns=scheme == "socks5h",
        limit=config.max_connections,
        limit_per_host=config.max_connections_per_host,
    )
