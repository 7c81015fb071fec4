"""The HTTP/HTTPS transport: one ``aiohttp.ClientSession`` per remote on the shared connector.

aiohttp's exceptions become ours in one place, :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from .._version import __version__
from ..config import RemoteConfig
from ..errors import (
    ConfigError,
    ConnectionFailed,
    HTTPStatusError,
)
from ..retry import parse_retry_after
from ..urls import origin, redact_url, split_userinfo
from .auth import basic_auth_header
from .base import Response, TransportRequest
from .errors import ERROR_MAP, from_proxy, map_client_error, proxy_auth_error
from .tls import build_ssl_context

if TYPE_CHECKING:
    from .session import Slot

__all__ = [
    "ERROR_MAP",
    "HttpResponse",
    "HttpTransport",
    "default_user_agent",
    "map_client_error",
    "proxy_refuses_credentials",
]

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def default_user_agent() -> str:
    return f"pulp-aio-download/{__version__} aiohttp/{aiohttp.__version__}"


class HttpResponse(Response):
    """An aiohttp response being read."""

    def __init__(self, resp: aiohttp.ClientResponse, url: str, offset: int) -> None:
        self._resp = resp
        self.url = url
        self.status = resp.status
        self.headers = resp.headers
        self.offset = offset
        self._content = resp.content

    async def read(self) -> bytes:
        # readchunk hands over the buffered chunks one by one; readany would join them
        # (one more copy of every byte). (b"", True) only marks an HTTP chunk boundary.
        try:
            while True:
                data, boundary = await self._content.readchunk()
                if data or not boundary:
                    return data
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise map_client_error(exc, self.url) from exc

    def abort(self) -> None:
        self._resp.close()

    async def close(self) -> None:
        self._resp.release()


class HttpTransport:
    """Requests to one remote through its ``aiohttp.ClientSession`` on the shared connector.

    Redirects are followed here (not by aiohttp) so that the remote's policy applies:
    at most ``max_redirects``, no ``https`` → ``http`` unless allowed, and credentials
    (basic auth, the auth object's headers, URL userinfo) only for the request's origin.
    """

    def __init__(self, remote: RemoteConfig, connector: aiohttp.BaseConnector) -> None:
        self.remote = remote
        self.user_agent = remote.user_agent or default_user_agent()
        self._connector = connector
        t = remote.timeouts
        headers = {
            "User-Agent": self.user_agent,
            "Accept-Encoding": "identity",
            **remote.headers,
        }
        self.session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=t.total, connect=t.connect, sock_connect=t.sock_connect, sock_read=t.sock_read
            ),
            trust_env=remote.trust_env,
            headers=headers,
            raise_for_status=False,
        )
        self._ssl_context: ssl.SSLContext | None = None
        self._realm_session: aiohttp.ClientSession | None = None
        self._plugin_session: aiohttp.ClientSession | None = None
        #: The remote's HTTP proxy as a URL (credentials in its userinfo), or None (also
        #: for a SOCKS5 proxy, which is the connector's business: see .socks).
        self.explicit_proxy = (
            _proxy_url(remote.proxy.url, remote.proxy.username, remote.proxy.password)
            if remote.proxy and not remote.proxy.is_socks
            else None
        )
        self._env_proxies = urllib.request.getproxies_environment() if remote.trust_env else {}
        self._basic = (
            basic_auth_header(remote.username, remote.password or "")
            if remote.username is not None
            else None
        )

    async def close(self) -> None:
        for session in (self._plugin_session, self._realm_session, self.session):
            if session is not None:
                await session.close()

    def realm_session(self) -> aiohttp.ClientSession:
        """The session token requests of the remote's auth go through (TLS, proxy,
        timeouts, user agent; no credentials), on the shared connector."""
        if self._realm_session is None:
            from .session import build_realm_session

            self._realm_session = build_realm_session(self, self._connector)
        return self._realm_session

    def plugin_session(self, limits: Callable[[str], Sequence[Slot]]) -> aiohttp.ClientSession:
        """The remote's whole policy on a plain ``aiohttp.ClientSession`` (created once;
        ``limits(host)`` gives the slots each request holds until it is released)."""
        if self._plugin_session is None:
            from .session import build_plugin_session

            self._plugin_session = build_plugin_session(self, self._connector, limits)
        return self._plugin_session

    def ssl_for(self, url: str, proxy: Any) -> ssl.SSLContext | bool:
        """The ``ssl`` argument of a request to ``url`` through ``proxy``."""
        # Built on first use (once per remote): loading the system CAs costs tens of
        # milliseconds that a plain-http mirror never needs.
        if not url.startswith("https:") and not str(proxy or "").startswith("https:"):
            return True
        if self._ssl_context is None:
            self._ssl_context = build_ssl_context(self.remote.tls)
        return self._ssl_context

    async def _proxy_refused(
        self, resp: aiohttp.ClientResponse, proxy: URL | None, url: str
    ) -> bool:
        # A 401 without Via, to a plain-http request that carried proxy credentials: the
        # proxy's or the origin's? (See proxy_refuses_credentials.)
        if proxy is None or proxy.user is None or urlsplit(url).scheme != "http":
            return False
        if "Via" in resp.headers:
            return False
        resp.release()
        timeout = self.remote.timeouts.connect or self.remote.timeouts.sock_connect
        return await proxy_refuses_credentials(proxy, url, self.ssl_for(url, proxy), timeout)

    def proxy_for(self, url: str) -> URL | None:
        """The proxy (credentials in its userinfo) a request to ``url`` goes through."""
        if self.explicit_proxy is not None:
            return self.explicit_proxy
        if not self._env_proxies:
            return None
        parts = urlsplit(url)
        proxy = self._env_proxies.get(parts.scheme)
        if proxy is None or _proxy_bypass(parts.hostname or "", self._env_proxies):
            return None
        return URL(proxy)

    def auth_headers(self, url: str, userinfo: tuple[str, str | None] | None) -> dict[str, str]:
        """The credentials of a request to ``url`` (its own URL userinfo first)."""
        headers: dict[str, str] = {}
        if userinfo is not None:
            headers["Authorization"] = basic_auth_header(userinfo[0], userinfo[1] or "")
        elif self._basic is not None:
            headers["Authorization"] = self._basic
        if self.remote.auth is not None:
            self.remote.auth.apply(url, headers)
        return headers

    async def open(self, request: TransportRequest) -> HttpResponse:
        """Send a GET for ``request.url`` (from ``request.offset`` when non-zero) and return
        the response once its headers arrived. A non-2xx final status raises
        :class:`HTTPStatusError` (with ``retry_after`` when the server sent one)."""
        url, offset, length = request.url, request.offset, request.length
        current = url
        challenged = False
        redirects = 0
        while True:
            headers = self._headers_for(request, current)
            proxy = self.proxy_for(current)
            if proxy is not None and urlsplit(current).scheme == "http":
                # The proxy sees this request itself (no CONNECT tunnel). Some proxies
                # (proxy.py 2.4) pipe later requests of a kept-alive connection unparsed,
                # Proxy-Authorization included, to the origin: one request per connection.
                headers["Connection"] = "close"
            try:
                resp = await self.session.get(
                    current,
                    headers=headers,
                    allow_redirects=False,
                    proxy=proxy,
                    ssl=self.ssl_for(current, proxy),
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise map_client_error(exc, current, status_raised=False) from exc
            except ValueError as exc:
                raise ConfigError(f"invalid request: {redact_url(str(exc))}", url=current) from exc
            status = resp.status
            if status in _REDIRECTS and "Location" in resp.headers:
                resp.release()
                redirects += 1
                current = self._redirect_target(url, current, resp, redirects)
                continue
            if from_proxy(resp, proxy):
                resp.release()
                raise proxy_auth_error(current, status)
            if status == 401 and self.remote.auth is not None and not challenged:
                challenged = True
                from .session import answer_challenge

                try:
                    # Token requests: the remote's TLS, proxy and timeouts; the attempts
                    # of this transfer are their retries.
                    retry = await answer_challenge(
                        self.remote.auth, current, status, resp.headers, self.realm_session()
                    )
                finally:
                    resp.release()
                if retry:
                    continue
            if status == 401 and await self._proxy_refused(resp, proxy, current):
                raise proxy_auth_error(current, status)
            if not 200 <= status < 300:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                reason = resp.reason
                resp.release()
                raise HTTPStatusError(
                    status=status, reason=reason, url=current, retry_after=retry_after
                )
            got_offset = 0
            if status == 206 and (offset or length is not None):
                got_offset = _content_range_start(resp.headers)
            return HttpResponse(resp, current, got_offset)

    def _headers_for(self, request: TransportRequest, current: str) -> dict[str, str]:
        """The headers of a GET for ``current``: the remote's credentials and the request's
        headers at the request's origin (only the safe ones after a cross-origin redirect),
        and the range asked for."""
        headers: dict[str, str] = {}
        url = request.url
        if current is url or origin(current) == origin(url):  # no redirect: no parsing
            headers.update(self.auth_headers(current, request.userinfo))
            headers.update(request.headers)
        elif request.headers:
            headers.update(_cross_origin(request.headers))
        offset, length = request.offset, request.length
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{last}"
            if request.validator:
                headers["If-Range"] = request.validator
        return headers

    def _redirect_target(
        self, url: str, current: str, resp: aiohttp.ClientResponse, redirects: int
    ) -> str:
        """Where the redirect ``resp`` of ``current`` leads, once it is allowed."""
        # Credentials never come from a server: userinfo in a Location is dropped.
        target = split_userinfo(urljoin(current, resp.headers["Location"]))[0]
        if redirects > self.remote.max_redirects:
            raise HTTPStatusError(
                status=resp.status,
                url=url,
                message=f"too many redirects (more than {self.remote.max_redirects})",
            )
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"redirect to unsupported scheme {scheme!r}", url=current)
        if (
            urlsplit(current).scheme == "https"
            and scheme == "http"
            and not self.remote.allow_insecure_redirects
        ):
            raise ConnectionFailed(
                f"refused insecure redirect from https to {redact_url(target)}", url=current
            )
        log.debug("redirect %s -> %s", redact_url(current), redact_url(target))
        return target


async def proxy_refuses_credentials(
    proxy: URL, url: str, ssl_context: ssl.SSLContext | bool, timeout: float | None
) -> bool:
    """Ask ``proxy`` for a ``CONNECT`` tunnel to the host of ``url`` with the proxy's
    credentials: True when it answers 401 or 407 (its answer, unambiguously).

    tinyproxy refuses wrong credentials on a plain-http request with ``401`` and
    ``WWW-Authenticate``, as an origin would; a proxy should add ``Via`` to what it
    forwards (RFC 9110 section 7.6.3) but not all do (proxy.py does not), so a 401 without
    ``Via`` is settled this way. False when the proxy grants the tunnel, refuses it for
    another reason (ports it does not tunnel to) or cannot be asked.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = f"{parts.hostname}:{port}"
    if ":" in (parts.hostname or ""):
        target = f"[{parts.hostname}]:{port}"
    context = ssl_context if proxy.scheme == "https" else None
    request = (
        f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        f"Proxy-Authorization: {basic_auth_header(proxy.user or '', proxy.password or '')}"
        "\r\n\r\n"
    ).encode()

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port, ssl=context)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        line = await asyncio.wait_for(ask(), timeout or 30.0)
    except (OSError, asyncio.TimeoutError, ValueError):
        return False
    fields = line.split()
    return len(fields) >= 2 and fields[1] in (b"401", b"407")


# NO_PROXY matching of the standard library (not in typeshed).
_proxy_bypass: Any = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009


def _proxy_url(url: str, username: str | None, password: str | None) -> URL:
    # aiohttp turns proxy userinfo into Proxy-Authorization: on every plain-http request,
    # on the CONNECT of an https one (aiohttp.BasicAuth/proxy_auth are deprecated).
    proxy = URL(url)
    if username is not None:
        proxy = proxy.with_user(username).with_password(password or "")
    return proxy


_ORIGIN_ONLY = frozenset({"authorization", "cookie", "proxy-authorization"})


def _cross_origin(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's own headers that may follow a redirect to another origin."""
    return {k: v for k, v in headers.items() if k.lower() not in _ORIGIN_ONLY}


def _content_range_start(headers: Mapping[str, str]) -> int:
    value = headers.get("Content-Range", "")
    try:
        unit, _, rng = value.partition(" ")
        start = int(rng.partition("-")[0])
    except ValueError:
        return -1
    return start if unit == "bytes" else -1
