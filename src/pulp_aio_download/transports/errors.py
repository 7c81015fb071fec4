"""The one place aiohttp's exceptions are translated into ours, most specific first.

:func:`map_client_error` is used by every part of the transport layer (the HTTP transport,
the plugin sessions, the token realm of :class:`~.auth.BearerTokenAuth`).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import client_exceptions
from yarl import URL

from ..errors import (
    ConfigError,
    ConnectionFailed,
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    ProxyError,
)
from ..urls import redact_url
from .tls import tls_error

__all__ = ["ERROR_MAP", "SocksProxyError", "from_proxy", "map_client_error", "proxy_auth_error"]


class SocksProxyError(aiohttp.ClientConnectionError):
    """A SOCKS5 proxy could not be reached, refused its credentials, or could not connect
    to the target (raised by the SOCKS connector of :mod:`.socks`). ``message`` names the
    proxy (host:port), never its credentials."""

    def __init__(self, message: str, *, auth_refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.auth_refused = auth_refused


def _timeout(kind: str) -> Any:
    def make(exc: BaseException, url: str) -> DownloadError:
        return DownloadTimeout(f"{kind} timeout expired", url=url, timeout=kind)

    return make


def _simple(cls: type[DownloadError], what: str) -> Any:
    def make(exc: BaseException, url: str) -> DownloadError:
        detail = str(exc) or type(exc).__name__
        return cls(f"{what}: {redact_url(detail) if '://' in detail else detail}", url=url)

    return make


def _proxy_status(exc: BaseException, url: str) -> DownloadError:
    status = getattr(exc, "status", None)
    if status in (401, 407):
        return proxy_auth_error(url, status)
    return ProxyError(f"proxy refused the request (HTTP {status})", url=url, status=status)


def proxy_auth_error(url: str, status: int = 407) -> ProxyError:
    """The error of a proxy's ``407`` (or ``401``, as tinyproxy sends for wrong
    credentials): wrong or missing proxy credentials (never retried)."""
    return ProxyError(f"proxy authentication required (HTTP {status})", url=url, status=status)


def _socks(exc: BaseException, url: str) -> DownloadError:
    assert isinstance(exc, SocksProxyError)
    return ProxyError(exc.message, url=url, auth_refused=exc.auth_refused)


def _status(exc: BaseException, url: str) -> DownloadError:
    return HTTPStatusError(status=getattr(exc, "status", 0) or 0, url=url)


_CLIENT_CERT_HINT = "; if the server requires a TLS client certificate, set TLSConfig.client_cert"


def _cannot_connect(exc: BaseException, url: str) -> DownloadError:
    assert isinstance(exc, aiohttp.ClientConnectorError)
    os_error = exc.os_error
    detail = os_error.strerror or str(os_error) or type(os_error).__name__
    where = f"{exc.host}:{exc.port}"
    if exc.ssl is not False and isinstance(os_error, ConnectionResetError):
        # TCP was up (a refused connection is ConnectionRefusedError): the server cut the
        # TLS handshake off without an alert, as servers requiring a client certificate
        # do with TLS 1.2, or when no TLS version or cipher is shared. A server may also
        # just have dropped the connection: a ConnectionFailed, retried, not a TLSError.
        return ConnectionFailed(
            f"TLS handshake cut off: {where} reset the connection (it may require a "
            "client certificate, or a TLS version or cipher not offered)",
            url=url,
        )
    return ConnectionFailed(f"cannot connect to {where}: {detail}", url=url)


def _disconnected(exc: BaseException, url: str) -> DownloadError:
    message = "server disconnected"
    if urlsplit(url).scheme == "https":
        # TLS 1.3 servers requiring a client certificate close the connection after the
        # handshake, with no alert we could read: the same as any early disconnect.
        message += _CLIENT_CERT_HINT
    return ConnectionFailed(message, url=url)


#: aiohttp exception → our error, most specific first. Every ``aiohttp.ClientError``
#: subclass has its own entry (a test enumerates them), so a new aiohttp exception is a
#: conscious decision rather than a silent fall into the catch-all ``ClientError`` entry.
ERROR_MAP: tuple[tuple[type[BaseException], Any], ...] = (
    (aiohttp.ClientHttpProxyError, _proxy_status),
    (SocksProxyError, _socks),
    (aiohttp.ClientProxyConnectionError, _simple(ProxyError, "cannot connect to the proxy")),
    (aiohttp.ClientConnectorCertificateError, tls_error),
    (aiohttp.ClientConnectorSSLError, tls_error),
    (aiohttp.ClientSSLError, tls_error),
    (aiohttp.ServerFingerprintMismatch, tls_error),
    (aiohttp.ConnectionTimeoutError, _timeout("connect")),
    (aiohttp.SocketTimeoutError, _timeout("sock_read")),
    (aiohttp.ServerTimeoutError, _timeout("sock_read")),
    (aiohttp.ClientConnectorDNSError, _simple(ConnectionFailed, "cannot resolve host")),
    (client_exceptions.UnixClientConnectorError, _simple(ConnectionFailed, "cannot connect")),
    (aiohttp.ClientConnectorError, _cannot_connect),
    (aiohttp.ServerDisconnectedError, _disconnected),
    (aiohttp.ServerConnectionError, _simple(ConnectionFailed, "server connection error")),
    (aiohttp.ClientConnectionResetError, _simple(ConnectionFailed, "connection reset")),
    (aiohttp.ClientOSError, _simple(ConnectionFailed, "connection error")),
    (aiohttp.ClientConnectionError, _simple(ConnectionFailed, "connection error")),
    (aiohttp.ClientPayloadError, _simple(ConnectionFailed, "body transfer broken")),
    (aiohttp.TooManyRedirects, _simple(HTTPStatusError, "too many redirects")),
    (aiohttp.InvalidUrlRedirectClientError, _simple(ConfigError, "invalid redirect")),
    (aiohttp.NonHttpUrlRedirectClientError, _simple(ConfigError, "redirect to a non-HTTP URL")),
    (aiohttp.RedirectClientError, _simple(ConfigError, "invalid redirect")),
    (aiohttp.InvalidUrlClientError, _simple(ConfigError, "invalid URL")),
    (aiohttp.InvalidURL, _simple(ConfigError, "invalid URL")),
    (aiohttp.NonHttpUrlClientError, _simple(ConfigError, "not an HTTP URL")),
    (aiohttp.ContentTypeError, _status),
    (aiohttp.WSServerHandshakeError, _status),
    (aiohttp.ClientResponseError, _status),
    (aiohttp.UploadAbortedError, _simple(ConnectionFailed, "upload aborted")),
    (ssl.SSLError, tls_error),
    (asyncio.TimeoutError, _timeout("total")),
    # Before 3.11 the builtin TimeoutError is an OSError apart from asyncio's.
    (TimeoutError, _timeout("total")),
    (aiohttp.ClientError, _simple(ConnectionFailed, "client error")),
    (OSError, _simple(ConnectionFailed, "connection error")),
)


def _unparsable(exc: BaseException, url: str) -> DownloadError:
    assert isinstance(exc, aiohttp.ClientResponseError)
    detail = (str(exc.message) or type(exc).__name__).splitlines()[0][:120]
    return ConnectionFailed(f"invalid HTTP response status line or headers: {detail}", url=url)


def map_client_error(exc: BaseException, url: str, *, status_raised: bool = True) -> DownloadError:
    """Translate an aiohttp (or socket/ssl) exception raised for ``url``.

    ``status_raised=False`` for a request sent with ``raise_for_status`` off: a
    ``ClientResponseError`` is then its response failing to parse (a header too large, a
    malformed status line), never an HTTP status the server sent. Proxy errors
    (``ClientHttpProxyError``, a subclass) keep their meaning either way.
    """
    if isinstance(exc, DownloadError):
        return exc
    for cls, make in ERROR_MAP:
        if isinstance(exc, cls):
            if cls is aiohttp.ClientResponseError and not status_raised:
                make = _unparsable
            error: DownloadError = make(exc, url)
            return error
    return ConnectionFailed(f"{type(exc).__name__}: {exc}", url=url)


def from_proxy(resp: aiohttp.ClientResponse, proxy: URL | None) -> bool:
    """Whether a response to a request sent through ``proxy`` (None: sent directly) is
    the proxy refusing its credentials rather than the origin's answer.

    A 407 always is. A 401 is when the request went through a proxy and the response
    carries ``Proxy-Authenticate`` (tinyproxy answers wrong credentials so) on plain http;
    through a ``CONNECT`` tunnel (https) the proxy's refusal of the tunnel raised already.
    """
    if resp.status == 407:
        return True
    return (
        resp.status == 401
        and proxy is not None
        and resp.url.scheme == "http"
        and "Proxy-Authenticate" in resp.headers
    )
