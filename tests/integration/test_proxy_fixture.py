"""The proxy.py fixtures really forward, really authenticate, and keep credentials away.

Plain aiohttp requests (no engine) to local origin servers through a real proxy.py process.

What the origin sees: through plain http, the first request of a client connection arrives
with a ``Via: 1.1 proxy.py`` header and without ``Proxy-Authorization``; later requests on
the same kept-alive connection arrive *unparsed*, with the client's ``Proxy-Authorization``
(a proxy.py quirk, pinned by a test below; ``Connection: close`` avoids it). Through CONNECT
the origin sees only what the client sends inside the tunnel: no proxy header at all.
Credentials go in the proxy URL's userinfo: aiohttp turns that into ``Proxy-Authorization``
on every plain-http request and on the CONNECT of an https one. (``proxy_headers`` with a
``Proxy-Authorization`` is *not* sent for plain-http targets by aiohttp, and
``aiohttp.BasicAuth`` is deprecated since aiohttp 3.14.)
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from helpers import until
from plugins.proxy import ProxyProcess
from plugins.tls import TLSServerFactory
from pulp_aio_download.config import TLSConfig
from pulp_aio_download.transports.tls import build_ssl_context


def proxy_url(proxy: ProxyProcess, password: str | None = None) -> str:
    assert proxy.username is not None and proxy.password is not None
    url = URL(proxy.url).with_user(proxy.username).with_password(password or proxy.password)
    return str(url)


class Origin:
    """A plain-http origin that records the headers of every request it gets."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.url = ""

    async def handler(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        return web.Response(text="from origin")


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    result = Origin()
    app = web.Application()
    app.router.add_get("/{tail:.*}", result.handler)
    async with TestServer(app, host="127.0.0.1") as server:
        result.url = str(server.make_url("/file.bin"))
        yield result


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _no_proxy_credentials(headers: dict[str, str], proxy: ProxyProcess) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "proxy-authorization" not in lowered
    assert proxy.password is not None
    assert all(proxy.password not in v for v in headers.values())
    assert all(proxy.authorization != v for v in headers.values())


def test_fixture_object(http_proxy: ProxyProcess) -> None:
    assert URL(http_proxy.url).user is None  # the URL carries no credentials
    assert http_proxy.username and http_proxy.password
    assert http_proxy.password not in repr(http_proxy)


async def test_http_through_proxy_with_credentials(
    http_proxy: ProxyProcess, origin: Origin, session: aiohttp.ClientSession
) -> None:
    async with session.get(origin.url, proxy=proxy_url(http_proxy)) as response:
        assert response.status == 200
        assert await response.text() == "from origin"
    [headers] = origin.seen
    assert "proxy.py" in headers.get("Via", "")  # it really went through the proxy
    _no_proxy_credentials(headers, http_proxy)


async def test_connection_close_keeps_proxy_credentials_from_origin(
    http_proxy: ProxyProcess, origin: Origin, session: aiohttp.ClientSession
) -> None:
    for _ in range(3):
        async with session.get(
            origin.url, proxy=proxy_url(http_proxy), headers={"Connection": "close"}
        ) as response:
            assert response.status == 200
    assert len(origin.seen) == 3
    for headers in origin.seen:
        assert "proxy.py" in headers.get("Via", "")
        _no_proxy_credentials(headers, http_proxy)


async def test_proxy_py_pipes_kept_alive_requests_unparsed(
    http_proxy: ProxyProcess, origin: Origin, session: aiohttp.ClientSession
) -> None:
    """Known proxy.py 2.4 behaviour the engine must defend against (see module docstring).

    After the first plain-http request on a kept-alive client connection, proxy.py pipes
    the following requests to the origin without parsing them: no auth check, no ``Via``,
    and the client's ``Proxy-Authorization`` reaches the origin. A client that wants to keep
    proxy credentials from origins sends ``Connection: close`` on plain-http requests
    through a proxy (the test above). If this test starts failing, proxy.py fixed it.
    """
    for _ in range(2):
        async with session.get(origin.url, proxy=proxy_url(http_proxy)) as response:
            assert response.status == 200
    first, second = origin.seen
    assert "Via" in first
    assert "Proxy-Authorization" not in first
    assert "Via" not in second
    assert second.get("Proxy-Authorization") == http_proxy.authorization


async def test_http_without_or_with_wrong_credentials_is_407(
    http_proxy: ProxyProcess, origin: Origin, session: aiohttp.ClientSession
) -> None:
    async with session.get(origin.url, proxy=http_proxy.url) as response:
        assert response.status == 407
        assert response.headers.get("Proxy-Authenticate", "").startswith("Basic")
    async with session.get(origin.url, proxy=proxy_url(http_proxy, "wrong")) as response:
        assert response.status == 407
    assert origin.seen == []


async def test_https_connect_with_credentials(
    http_proxy: ProxyProcess, tls_server: TLSServerFactory, tls_ca_file: Path
) -> None:
    base = await tls_server()
    context = build_ssl_context(TLSConfig(ca_file=tls_ca_file))
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # the tunnel is kept alive between requests
            async with session.get(
                base + "/echo-headers", proxy=proxy_url(http_proxy), ssl=context
            ) as response:
                assert response.status == 200
                headers = json.loads(await response.text())
            _no_proxy_credentials(headers, http_proxy)
            assert "Via" not in headers  # inside the tunnel the proxy adds nothing
    # proxy.py logs a tunnel when it closes, which the closed session just did.
    expected = f"CONNECT 127.0.0.1:{URL(base).port}"
    await until(lambda: expected in http_proxy.log_text())


async def test_https_connect_without_credentials_is_407(
    http_proxy: ProxyProcess,
    tls_server: TLSServerFactory,
    tls_ca_file: Path,
    session: aiohttp.ClientSession,
) -> None:
    base = await tls_server()
    context: ssl.SSLContext = build_ssl_context(TLSConfig(ca_file=tls_ca_file))
    with pytest.raises(aiohttp.ClientHttpProxyError) as info:
        async with session.get(base + "/", proxy=http_proxy.url, ssl=context):
            pass
    assert info.value.status == 407
    with pytest.raises(aiohttp.ClientHttpProxyError) as info:
        async with session.get(base + "/", proxy=proxy_url(http_proxy, "nope"), ssl=context):
            pass
    assert info.value.status == 407


async def test_noauth_proxy_forwards(
    http_proxy_noauth: ProxyProcess, origin: Origin, session: aiohttp.ClientSession
) -> None:
    assert http_proxy_noauth.username is None
    async with session.get(origin.url, proxy=http_proxy_noauth.url) as response:
        assert response.status == 200
    assert "proxy.py" in origin.seen[0].get("Via", "")
