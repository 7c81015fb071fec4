"""Proxies through the engine: a real proxy.py process with basic auth, http and https
(CONNECT), wrong credentials, an unreachable proxy, the environment (trust_env), and the
origin never seeing proxy credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import make_engine, remote_once, sha256, until
from plugins.proxy import ProxyProcess
from plugins.tls import TLSServerFactory
from pulp_aio_download.testing import FaultServer

PROXY_HEADERS = ("Proxy-Authorization", "Proxy-Authenticate", "Proxy-Connection")


def proxy_config(proxy: ProxyProcess, password: str | None = None) -> pad.ProxyConfig:
    return pad.ProxyConfig(
        url=proxy.url, username=proxy.username, password=password or proxy.password
    )


def assert_no_proxy_credentials(headers: object, proxy: ProxyProcess) -> None:
    text = repr(dict(headers)) if not isinstance(headers, dict) else repr(headers)  # type: ignore[call-overload]
    for name in PROXY_HEADERS:
        assert name.lower() not in text.lower()
    assert proxy.password is not None and proxy.password not in text
    assert proxy.authorization is not None and proxy.authorization.split()[1] not in text


async def test_http_through_proxy_with_auth(
    http_proxy: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    files = {f"/f{i}": f"through the proxy {i}".encode() * 100 for i in range(3)}
    urls = [fault_server.add(path, data) for path, data in files.items()]
    async with make_engine(tmp_path, remote_once(proxy=proxy_config(http_proxy))) as e:
        for url, data in zip(urls, files.values(), strict=True):
            result = await e.download(url, expected_digests={"sha256": sha256(data)})
            assert result.path is not None and result.path.read_bytes() == data
    assert len(fault_server.requests) == 3
    for request in fault_server.requests:
        assert "proxy.py" in request.headers.get("Via", "")  # really through the proxy
        assert_no_proxy_credentials(request.headers, http_proxy)


async def test_https_through_connect(
    http_proxy: ProxyProcess, tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    seen: list[dict[str, str]] = []

    def body(name: str) -> bytes:
        return f"tunnelled {name}".encode() * 500

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(body=body(request.match_info["name"]))

    app = web.Application()
    app.router.add_get("/{name}", handler)
    base = await tls_server(app)
    tls = pad.TLSConfig(ca_file=tls_ca_file)
    async with make_engine(tmp_path, remote_once(proxy=proxy_config(http_proxy), tls=tls)) as e:
        for i in range(3):
            await e.download(f"{base}/f{i}", expected_digests={"sha256": sha256(body(f"f{i}"))})
    assert len(seen) == 3
    for headers in seen:
        assert_no_proxy_credentials(headers, http_proxy)
    # The proxy logs a tunnel when it closes: the kept-alive tunnel closed with the engine.
    tunnel = f"CONNECT {base.removeprefix('https://')}"
    await until(lambda: tunnel in http_proxy.log_text())


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_wrong_proxy_password_is_proxy_error(
    http_proxy: ProxyProcess,
    fault_server: FaultServer,
    tls_server: TLSServerFactory,
    tls_ca_file: Path,
    tmp_path: Path,
    scheme: str,
) -> None:
    url = fault_server.add("/a", b"x") if scheme == "http" else await tls_server() + "/"
    retry = pad.RetryPolicy(attempts=3, backoff=0)  # 407 is never retried
    async with make_engine(
        tmp_path,
        remote_once(
            proxy=proxy_config(http_proxy, password="wrong-password"),
            tls=pad.TLSConfig(ca_file=tls_ca_file),
            retry=retry,
        ),
    ) as e:
        with pytest.raises(pad.ProxyError, match="407") as info:
            await e.download(url)
    assert "wrong-password" not in str(info.value)
    assert fault_server.stats("/a").requests == 0


async def test_unreachable_proxy_is_proxy_error(fault_server: FaultServer, tmp_path: Path) -> None:
    async with FaultServer() as gone:
        dead = gone.base_url
    url = fault_server.add("/a", b"x")
    async with make_engine(
        tmp_path, remote_once(proxy=pad.ProxyConfig(url=dead, username="u", password="pw"))
    ) as e:
        with pytest.raises(pad.ProxyError, match="proxy") as info:
            await e.download(url)
    assert "pw" not in str(info.value).replace("proxy", "")
    assert fault_server.stats("/a").requests == 0


async def test_proxy_credentials_on_every_request(tmp_path: Path) -> None:
    """A recording server in the proxy's place: every request carries Proxy-Authorization
    (a squid proxy answers 407 to a kept-alive request without it)."""
    async with FaultServer() as recorder:
        for i in range(3):
            recorder.add(f"/f{i}", b"f%d" % i)
        proxy = pad.ProxyConfig(url=recorder.base_url, username="svc", password="pw")
        async with make_engine(tmp_path, remote_once(proxy=proxy)) as e:
            for i in range(3):
                # The origin name is never resolved: the request goes to the proxy.
                await e.download(f"http://origin.invalid/f{i}")
        assert len(recorder.requests) == 3
        for request in recorder.requests:
            assert request.headers["Proxy-Authorization"] == "Basic c3ZjOnB3"
            assert request.headers["Host"] == "origin.invalid"


async def test_trust_env_uses_environment_proxy(
    http_proxy: ProxyProcess,
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    host_port = http_proxy.url.removeprefix("http://")
    monkeypatch.setenv(
        "HTTP_PROXY", f"http://{http_proxy.username}:{http_proxy.password}@{host_port}"
    )
    url = fault_server.add("/a", b"via env")
    async with make_engine(tmp_path, remote_once(trust_env=True)) as e:
        await e.download(url)
    [request] = fault_server.requests_for("/a")
    assert "proxy.py" in request.headers.get("Via", "")
    assert_no_proxy_credentials(request.headers, http_proxy)

    # NO_PROXY exempts the host; without trust_env the environment is ignored.
    fault_server.add("/b", b"direct")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with make_engine(tmp_path / "2", remote_once(trust_env=True)) as e:
        await e.download(fault_server.url("/b"))
    monkeypatch.delenv("NO_PROXY")
    fault_server.add("/c", b"ignored env")
    async with make_engine(tmp_path / "3", remote_once()) as e:
        await e.download(fault_server.url("/c"))
    for path in ("/b", "/c"):
        assert "Via" not in fault_server.requests_for(path)[0].headers
