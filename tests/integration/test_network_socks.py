"""SOCKS5 and socks5h proxies through the engine, against a real SOCKS5 server (microsocks,
tests/plugins/socks.py): with and without credentials, given in the fields or the URL;
wrong credentials, a proxy that is down, a segmented and a concurrent batch, https through
the tunnel, the plugin session, and who resolves the host name.

How a test knows the bytes went through the proxy: microsocks binds its outgoing
connections to 127.0.0.2, so the origin sees the request come from there (a direct one
comes from 127.0.0.1), and it logs each tunnel with the host as the client named it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import free_port, make_engine, remote_once, sha256
from plugins.socks import OUTGOING, SOCKS_ONLY_HOST, SocksProcess
from plugins.tls import TLSServerFactory
from pulp_aio_download.testing import FaultServer

NO_RETRY = pad.RetryPolicy(attempts=1)


def via_localhost(url: str) -> str:
    """``url`` naming the origin ``localhost``: a name, for the proxy or us to resolve."""
    return url.replace("//127.0.0.1:", "//localhost:")


def socks(proxy: SocksProcess, scheme: str, how: str = "fields") -> pad.ProxyConfig:
    """The ProxyConfig of ``proxy``: its credentials in the fields, in the URL, or none."""
    if how == "url":
        return pad.ProxyConfig(url=proxy.url(scheme, credentials=True))
    if how == "fields" and proxy.username is not None:
        return pad.ProxyConfig(
            url=proxy.url(scheme), username=proxy.username, password=proxy.password
        )
    return pad.ProxyConfig(url=proxy.url(scheme))


def assert_through_proxy(server: FaultServer, path: str) -> None:
    requests = server.requests_for(path)
    assert requests, f"the origin saw no request for {path}"
    for request in requests:
        assert request.peer is not None and request.peer[0] == OUTGOING, request.peer


def assert_no_secret(error: BaseException, secret: str) -> None:
    for text in (str(error), repr(error), repr(error.args)):
        assert secret not in text


@pytest.mark.parametrize(
    ("scheme", "how"),
    [("socks5h", "fields"), ("socks5h", "url"), ("socks5", "fields"), ("socks5", "url")],
)
async def test_download_with_credentials(
    socks_proxy: SocksProcess, fault_server: FaultServer, tmp_path: Path, scheme: str, how: str
) -> None:
    data = f"through {scheme} ({how})".encode() * 3000
    path = f"/auth-{scheme}-{how}"
    url = via_localhost(fault_server.add(path, data))
    port = url.split(":")[2].split("/")[0]
    before = len(socks_proxy.tunnels())
    proxy = socks(socks_proxy, scheme, how)
    assert proxy.username == socks_proxy.username and proxy.password == socks_proxy.password
    assert socks_proxy.password not in repr(proxy) and "@" not in proxy.url
    async with make_engine(tmp_path, remote_once(proxy=proxy)) as e:
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data
    assert result.size == len(data) and result.digests["sha256"] == sha256(data)
    assert_through_proxy(fault_server, path)
    # socks5h: the proxy got the name; socks5: the address we resolved it to.
    expected = f"localhost:{port}" if scheme == "socks5h" else f"127.0.0.1:{port}"
    assert socks_proxy.tunnels()[before:] == [expected]


@pytest.mark.parametrize("scheme", ["socks5h", "socks5"])
async def test_download_without_credentials(
    socks_proxy_noauth: SocksProcess, fault_server: FaultServer, tmp_path: Path, scheme: str
) -> None:
    data = b"no credentials needed\n" * 5000
    path = f"/noauth-{scheme}"
    url = via_localhost(fault_server.add(path, data))
    async with make_engine(tmp_path, remote_once(proxy=socks_proxy_noauth.url(scheme))) as e:
        result = await e.download(url, expected_size=len(data))
    assert result.path is not None and result.path.read_bytes() == data
    assert result.digests["sha256"] == sha256(data)
    assert_through_proxy(fault_server, path)


async def test_socks5h_the_proxy_resolves_the_host_name(
    socks_proxy_own_hosts: SocksProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    """A name only the proxy's /etc/hosts knows (its own mount namespace): downloaded
    through socks5h, it can only have been resolved by the proxy. (We do not show that a
    socks5:// download of it fails here: our failed lookup would ask the machine's DNS
    server, which is not on loopback.)"""
    assert SOCKS_ONLY_HOST not in Path("/etc/hosts").read_text()
    data = b"resolved by the proxy\n" * 1000
    url = fault_server.add("/only-the-proxy-knows", data)
    url = url.replace("//127.0.0.1:", f"//{SOCKS_ONLY_HOST}:")
    proxy = socks_proxy_own_hosts.url("socks5h")
    async with make_engine(tmp_path, remote_once(proxy=proxy)) as e:
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data
    assert result.url == url
    (request,) = fault_server.requests_for("/only-the-proxy-knows")
    assert request.peer is not None and request.peer[0] == OUTGOING
    assert request.headers["Host"] == url.split("/")[2]
    assert socks_proxy_own_hosts.tunnels()[-1] == url.split("/")[2]


@pytest.mark.parametrize("password", ["wr0ng-s0cks-pw", None])
async def test_wrong_or_missing_credentials_are_a_proxy_error_not_retried(
    socks_proxy: SocksProcess, fault_server: FaultServer, tmp_path: Path, password: str | None
) -> None:
    url = fault_server.add("/refused", b"never served")
    if password is None:
        proxy = pad.ProxyConfig(url=socks_proxy.url("socks5h"))
    else:
        proxy = pad.ProxyConfig(
            url=socks_proxy.url("socks5h"), username=socks_proxy.username, password=password
        )
    retry = pad.RetryPolicy(attempts=3, backoff=0.0, jitter=False)
    async with make_engine(tmp_path, pad.RemoteConfig(proxy=proxy, retry=retry)) as e:
        with pytest.raises(pad.ProxyError) as info:
            await e.download(url)
    error = info.value
    where = f"{socks_proxy.host}:{socks_proxy.port}"
    assert str(error) == (
        f"the SOCKS5 proxy {where} refused authentication (wrong or missing "
        f"ProxyConfig.username/password) ({url})"
    )
    assert error.auth_refused and error.status is None and error.url == url
    assert error.attempts == 1  # wrong credentials do not become right: not retried
    assert socks_proxy.password is not None
    assert_no_secret(error, socks_proxy.password)
    if password is not None:
        assert_no_secret(error, password)
    assert fault_server.requests == []
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


async def test_proxy_down_is_a_proxy_error_retried(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    port = free_port()
    url = fault_server.add("/proxy-down", b"never served")
    proxy = pad.ProxyConfig(url=f"socks5h://127.0.0.1:{port}", username="u", password="pw-down")
    retry = pad.RetryPolicy(attempts=2, backoff=0.0, jitter=False)
    async with make_engine(tmp_path, pad.RemoteConfig(proxy=proxy, retry=retry)) as e:
        with pytest.raises(pad.ProxyError) as info:
            await e.download(url)
    error = info.value
    assert str(error) == (
        f"cannot connect to the SOCKS5 proxy 127.0.0.1:{port}: Connection refused; "
        f"gave up after 2 attempts ({url})"
    )
    assert not error.auth_refused and error.attempts == 2  # a proxy may come back
    assert_no_secret(error, "pw-down")
    assert fault_server.requests == []


async def test_concurrent_batch_under_the_engine_limit(
    socks_proxy: SocksProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    files = {f"/batch/{i}": f"file {i} ".encode() * (2000 + i) for i in range(12)}
    urls = [via_localhost(fault_server.add(path, data)) for path, data in files.items()]
    requests = [
        pad.DownloadRequest(url=url, expected_digests={"sha256": sha256(data)})
        for url, data in zip(urls, files.values(), strict=True)
    ]
    remote = remote_once(proxy=socks(socks_proxy, "socks5h"))
    async with make_engine(tmp_path, remote, max_connections=3) as e:
        fault_server.gate()
        batch = asyncio.create_task(e.download_many(requests))
        # The engine's global limit holds through the proxy's connector: three at once.
        await fault_server.wait_inflight(3)
        await asyncio.sleep(0.2)
        assert fault_server.totals.inflight == 3
        fault_server.release()
        results = await batch
    for result, data in zip(results, files.values(), strict=True):
        assert result.path is not None and result.path.read_bytes() == data
    for path in files:
        assert_through_proxy(fault_server, path)
    assert fault_server.totals.peak_inflight == 3


async def test_segmented_download_through_the_proxy(
    socks_proxy: SocksProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (4 * 4096 + 7)  # a bit over 4 MiB: four ranges of 1 MiB+
    url = via_localhost(fault_server.add("/big.iso", data))
    remote = remote_once(proxy=socks(socks_proxy, "socks5h"), segments=4, segment_threshold=0)
    async with make_engine(tmp_path, remote) as e:
        result = await e.download(
            url, expected_size=len(data), expected_digests={"sha256": sha256(data)}
        )
    assert result.path is not None and result.path.read_bytes() == data
    requests = fault_server.requests_for("/big.iso")
    ranges = sorted(r.headers.get("Range", "") for r in requests)
    assert len([r for r in ranges if r.startswith("bytes=")]) == 4, ranges
    assert_through_proxy(fault_server, "/big.iso")
    assert len({r.peer for r in requests}) == 4  # four tunnels at once


async def test_https_through_socks5h(
    socks_proxy: SocksProcess, tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append(str(peer[0]) if peer else "")
        return web.Response(body=b"tls inside the tunnel\n" * 500)

    app = web.Application()
    app.router.add_get("/secure", handler)
    base = via_localhost(await tls_server(app))
    remote = remote_once(
        proxy=socks(socks_proxy, "socks5h"), tls=pad.TLSConfig(ca_file=tls_ca_file)
    )
    async with make_engine(tmp_path, remote) as e:
        result = await e.download(f"{base}/secure")
    assert result.path is not None
    assert result.path.read_bytes() == b"tls inside the tunnel\n" * 500
    assert seen == [OUTGOING]
    # Without our CA the certificate is refused, inside the tunnel as outside: a TLSError,
    # at once (Python 3.10 once waited out the connect timeout, then said "timeout").
    remote = remote_once(proxy=socks(socks_proxy, "socks5h"))
    loop = asyncio.get_running_loop()
    async with make_engine(tmp_path, remote) as e:
        started = loop.time()
        with pytest.raises(pad.TLSError, match="unknown CA"):
            await e.download(f"{base}/secure")
        assert loop.time() - started < 10


async def test_plugin_session_goes_through_the_proxy(
    socks_proxy: SocksProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = via_localhost(fault_server.add("/repomd.xml", b"<repomd/>"))
    remote = remote_once(name="socksy", proxy=socks(socks_proxy, "socks5h"))
    async with make_engine(tmp_path, remote) as e:
        session = e.session("socksy")
        async with session.get(url) as resp:
            assert resp.status == 200 and await resp.read() == b"<repomd/>"
    assert_through_proxy(fault_server, "/repomd.xml")


async def test_plugin_session_sees_an_aiohttp_error(
    socks_proxy: SocksProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/meta", b"x")
    proxy = pad.ProxyConfig(url=socks_proxy.url(), username="sockuser", password="nope-pw")
    async with make_engine(tmp_path, remote_once(name="socksy", proxy=proxy)) as e:
        with pytest.raises(aiohttp.ClientConnectionError) as info:
            await e.session("socksy").get(url)
    assert "refused authentication" in str(info.value)
    assert_no_secret(info.value, "nope-pw")


async def test_one_connector_per_distinct_proxy_closed_with_the_engine(
    socks_proxy: SocksProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = via_localhost(fault_server.add("/shared", b"shared"))
    same = socks(socks_proxy, "socks5h")
    remotes = [
        remote_once(name="a", proxy=same),
        remote_once(name="b", proxy=pad.ProxyConfig(url=socks_proxy.url(credentials=True))),
        remote_once(name="c", proxy=socks(socks_proxy, "socks5")),
    ]
    async with make_engine(tmp_path, *remotes) as e:
        for name in ("a", "b", "c"):
            await e.download(url, remote=name)
        pool = e._pool
        connectors = {name: pool.connector_for(e.config.remotes[name]) for name in "abc"}
        assert connectors["a"] is connectors["b"]  # the same proxy: one connector
        assert connectors["c"] is not connectors["a"]  # socks5 is another proxy setting
        assert connectors["a"] is not pool.connector()
    assert all(c.closed for c in connectors.values())
