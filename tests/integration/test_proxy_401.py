"""A proxy that refuses credentials with ``401`` is reported as a :class:`ProxyError`.

tinyproxy (a real one, tests/plugins/tinyproxy.py) answers wrong credentials with ``401``
and ``WWW-Authenticate``, exactly as an origin would; a 401 from the origin itself, through
the same proxy (or through proxy.py, which adds no ``Via``), stays an
:class:`HTTPStatusError`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

import pulp_aio_download as pad
from plugins.proxy import ProxyProcess
from plugins.tls import TLSServerFactory
from pulp_aio_download.testing import FaultServer

RETRY = pad.RetryPolicy(attempts=3, backoff=0.0, jitter=False)


def config(tmp_path: Path, proxy: pad.ProxyConfig | None, **remote: object) -> pad.EngineConfig:
    settings: dict[str, object] = {"proxy": proxy, "retry": RETRY, **remote}
    return pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"),
        remotes=[pad.RemoteConfig(**settings)],  # type: ignore[arg-type]
    )


def proxy_with(proxy: ProxyProcess, password: str | None) -> pad.ProxyConfig:
    if password is None:
        return pad.ProxyConfig(url=proxy.url)
    return pad.ProxyConfig(url=proxy.url, username=proxy.username, password=password)


def proxied_gets(proxy: ProxyProcess, path: str) -> int:
    """How many GETs for ``path`` tinyproxy logged."""
    return len(re.findall(rf"GET http://[^ ]+{re.escape(path)} HTTP", proxy.log_text()))


async def test_tinyproxy_401_is_a_proxy_error_not_retried(
    tinyproxy_auth: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/wrong-proxy-password", b"never served")
    async with pad.DownloadEngine(
        config(tmp_path, proxy_with(tinyproxy_auth, "bad-Pr0xy-pw"))
    ) as e:
        with pytest.raises(pad.ProxyError) as info:
            await e.download(url)
    error = info.value
    assert error.status == 401 and error.url == url
    assert str(error) == f"proxy authentication required (HTTP 401) ({url})"
    assert "bad-Pr0xy-pw" not in str(error) and "bad-Pr0xy-pw" not in repr(error)
    assert not isinstance(error, pad.HTTPStatusError)
    assert fault_server.requests_for("/wrong-proxy-password") == []  # the origin saw nothing
    assert proxied_gets(tinyproxy_auth, "/wrong-proxy-password") == 1  # not retried


async def test_tinyproxy_401_per_file_in_a_batch(
    tinyproxy_auth: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    urls = [fault_server.add(f"/batch-{i}", b"x") for i in range(3)]
    async with pad.DownloadEngine(
        config(tmp_path, proxy_with(tinyproxy_auth, "bad-Pr0xy-pw"))
    ) as e:
        results = await e.download_many(urls, return_exceptions=True)
    for url, result in zip(urls, results, strict=True):
        assert isinstance(result, pad.ProxyError) and result.status == 401, repr(result)
        assert result.url == url


async def test_tinyproxy_401_on_connect_is_a_proxy_error(
    tinyproxy_auth: ProxyProcess, tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    base = await tls_server()
    remote = {"tls": pad.TLSConfig(ca_file=tls_ca_file)}
    cfg = config(tmp_path, proxy_with(tinyproxy_auth, "bad-Pr0xy-pw"), **remote)
    async with pad.DownloadEngine(cfg) as engine:
        with pytest.raises(pad.ProxyError) as info:
            await engine.download(f"{base}/")
    assert info.value.status == 401 and info.value.url == f"{base}/"
    assert "proxy authentication required (HTTP 401)" in str(info.value)


async def test_tinyproxy_without_credentials_is_407(
    tinyproxy_auth: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/no-proxy-credentials", b"x")
    async with pad.DownloadEngine(config(tmp_path, proxy_with(tinyproxy_auth, None))) as e:
        with pytest.raises(pad.ProxyError) as info:
            await e.download(url)
    assert info.value.status == 407 and info.value.url == url


async def test_tinyproxy_with_the_right_credentials(
    tinyproxy_auth: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/through-tinyproxy", b"through tinyproxy")
    proxy = proxy_with(tinyproxy_auth, tinyproxy_auth.password)
    async with pad.DownloadEngine(config(tmp_path, proxy)) as engine:
        result = await engine.download(url)
    assert result.path is not None and result.path.read_bytes() == b"through tinyproxy"
    (request,) = fault_server.requests_for("/through-tinyproxy")
    assert "tinyproxy" in request.headers.get("Via", "")
    assert "Proxy-Authorization" not in request.headers


async def test_origin_401_through_tinyproxy_stays_the_origins(
    tinyproxy_auth: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/origin-auth", b"x", auth=("alice", "pw"))
    proxy = proxy_with(tinyproxy_auth, tinyproxy_auth.password)
    cfg = config(tmp_path, proxy, username="alice", password="not-pw")
    async with pad.DownloadEngine(cfg) as engine:
        with pytest.raises(pad.HTTPStatusError) as info:
            await engine.download(url)
    assert info.value.status == 401 and info.value.url == url
    assert len(fault_server.requests_for("/origin-auth")) == 1


async def test_origin_401_through_a_proxy_without_via_stays_the_origins(
    http_proxy: ProxyProcess, tmp_path: Path
) -> None:
    # proxy.py adds no Via to the answers it forwards: the engine asks the proxy (CONNECT
    # with the same credentials) whether it was the one refusing.
    seen: list[str | None] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Via"))
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="origin"'})

    app = web.Application()
    app.router.add_get("/x", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/x"
        proxy = proxy_with(http_proxy, http_proxy.password)
        async with pad.DownloadEngine(config(tmp_path, proxy)) as engine:
            with pytest.raises(pad.HTTPStatusError) as info:
                await engine.download(url)
    finally:
        await runner.cleanup()
    assert info.value.status == 401 and info.value.url == url
    assert len(seen) == 1 and "proxy.py" in (seen[0] or "")  # it went through the proxy
