"""The aiohttp-socks connector, its errors made aiohttp's. Imported only once the ``socks``
extra is known to be installed (see :mod:`.socks`)."""

from __future__ import annotations

import os
import ssl
import sys
from typing import Any

import aiohttp
from aiohttp_socks import ProxyConnectionError, ProxyConnector, ProxyError, ProxyTimeoutError
from python_socks import ProxyType

from .errors import SocksProxyError

__all__ = ["SocksConnector"]

#: What python-socks says when a SOCKS5 proxy refuses the credentials (RFC 1929 status
#: not 0) or wants credentials and none were offered (method 0xFF). A test against a real
#: SOCKS5 server checks that these are still the words.
_AUTH_REFUSED = frozenset(
    {
        "Username and password authentication failure",
        "No acceptable authentication methods were offered",
    }
)


class SocksConnector(ProxyConnector):
    """A SOCKS5 :class:`ProxyConnector` raising :class:`SocksProxyError` (and aiohttp's
    timeout and TLS errors) instead of aiohttp-socks' own exceptions."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        rdns: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            proxy_type=ProxyType.SOCKS5,
            username=username,
            password=password,
            rdns=rdns,
            **kwargs,
        )
        self._where = where(host, port)

    async def _wrap_create_connection(
        self, *args: Any, req: aiohttp.ClientRequest, **kwargs: Any
    ) -> Any:
        if sys.version_info < (3, 11) and kwargs.get("ssl"):
            return await self._tunnel_then_tls(*args, req=req, **kwargs)
        return await self._tunnel(*args, req=req, **kwargs)

    async def _tunnel_then_tls(self, *args: Any, req: aiohttp.ClientRequest, **kwargs: Any) -> Any:
        """Python 3.10: the tunnel, then aiohttp's own TLS upgrade over it. python-socks'
        upgrade there, when the handshake fails (an unknown CA), waits on a close that
        never comes until the connect timeout, and the TLS error is lost."""
        transport, _ = await self._tunnel(*args, req=req, **{**kwargs, "ssl": None})
        timeout: aiohttp.ClientTimeout = kwargs["timeout"]
        return await self._start_tls_connection(transport, req, timeout)

    async def _tunnel(self, *args: Any, req: aiohttp.ClientRequest, **kwargs: Any) -> Any:
        proxy = self._where
        try:
            return await super()._wrap_create_connection(*args, req=req, **kwargs)
        except ProxyConnectionError as exc:
            detail = _os_reason(exc)
            raise SocksProxyError(f"cannot connect to the SOCKS5 proxy {proxy}: {detail}") from exc
        except ProxyTimeoutError as exc:
            raise aiohttp.ConnectionTimeoutError(
                f"SOCKS5 proxy {proxy}: no connection to {_target(req)} in time"
            ) from exc
        except ProxyError as exc:
            reason = str(exc)
            if reason in _AUTH_REFUSED:
                raise SocksProxyError(
                    f"the SOCKS5 proxy {proxy} refused authentication (wrong or missing "
                    "ProxyConfig.username/password)",
                    auth_refused=True,
                ) from exc
            if exc.error_code is not None:
                raise SocksProxyError(
                    f"the SOCKS5 proxy {proxy} could not connect to {_target(req)}: {reason}"
                ) from exc
            raise SocksProxyError(
                f"the SOCKS5 proxy {proxy} answered outside the protocol: {reason}"
            ) from exc
        except ssl.SSLError as exc:
            # The TLS handshake with the target, inside the tunnel: reported as aiohttp
            # reports one on a direct connection.
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc


def _target(req: aiohttp.ClientRequest) -> str:
    return where(req.url.raw_host or "", req.port or 0)


def _os_reason(exc: BaseException) -> str:
    """The socket's own reason ("Connection refused") at the bottom of the chain."""
    reason = "connection failed"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            reason = os.strerror(cause.errno)
        cause = cause.__cause__
    return reason


def where(host: str, port: int) -> str:
    """``host:port`` as a message shows it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
