"""Redirects: chains, max_redirects, credentials only for the origin, no https → http."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import make_engine, remote_once, sha256
from plugins.tls import TLSServerFactory
from pulp_aio_download.testing import Fault, FaultServer


def chain(server: FaultServer, data: bytes, hops: int) -> str:
    """/r0 → /r1 → ... → /file; returns the URL of /r0."""
    server.add("/file", data)
    for i in range(hops):
        target = "/file" if i == hops - 1 else f"/r{i + 1}"
        server.add(
            f"/r{i}",
            b"",
            faults=Fault(redirect_to=target, redirect_status=(301, 302, 303, 307, 308)[i % 5]),
        )
    return server.url("/r0")


async def test_redirect_chain_followed(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"at the end of the chain"
    url = chain(fault_server, data, 5)
    async with make_engine(tmp_path, remote_once()) as e:
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data
    assert result.url == fault_server.url("/file")  # the source actually used
    assert [r.path for r in fault_server.requests] == [*(f"/r{i}" for i in range(5)), "/file"]


async def test_max_redirects(fault_server: FaultServer, tmp_path: Path) -> None:
    url = chain(fault_server, b"x", 3)
    async with make_engine(tmp_path, remote_once(max_redirects=2)) as e:
        with pytest.raises(pad.HTTPStatusError, match="too many redirects"):
            await e.download(url)
    assert fault_server.stats("/file").requests == 0
    async with make_engine(tmp_path, remote_once(max_redirects=3)) as e:
        await e.download(url)


async def test_credentials_only_for_the_origin(tmp_path: Path) -> None:
    data = b"mirrored elsewhere"
    async with FaultServer() as origin, FaultServer() as other:
        other.add("/file", data)
        url = origin.add("/file", b"", faults=Fault(redirect_to=other.url("/file")))
        origin.add("/same", b"", faults=Fault(redirect_to="/file2"))
        origin.add("/file2", data)
        async with make_engine(tmp_path, remote_once(username="alice", password="s3cret")) as e:
            await e.download(url)
            await e.download(origin.url("/same"))
        assert origin.requests_for("/file")[0].headers["Authorization"].startswith("Basic ")
        # Same origin: the credentials follow the redirect.
        assert "Authorization" in origin.requests_for("/file2")[0].headers
        # Another origin (another port): never.
        assert "Authorization" not in other.requests_for("/file")[0].headers


async def test_url_userinfo_not_forwarded(tmp_path: Path) -> None:
    async with FaultServer() as origin, FaultServer() as other:
        other.add("/file", b"data")
        origin.add("/file", b"", faults=Fault(redirect_to=other.url("/file")))
        url = f"http://bob:pw@127.0.0.1:{origin.port}/file"
        async with make_engine(tmp_path, remote_once()) as e:
            await e.download(url)
        assert "Authorization" in origin.requests_for("/file")[0].headers
        assert "Authorization" not in other.requests_for("/file")[0].headers


async def test_https_to_http_refused_unless_allowed(
    fault_server: FaultServer, tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    data = b"plain text mirror"
    target = fault_server.add("/file", data)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    app = web.Application()
    app.router.add_get("/file", redirect)
    base = await tls_server(app)
    tls = pad.TLSConfig(ca_file=tls_ca_file)
    async with make_engine(tmp_path, remote_once(tls=tls)) as e:
        with pytest.raises(pad.ConnectionFailed, match="refused insecure redirect") as info:
            await e.download(base + "/file")
    assert base in str(info.value)
    assert fault_server.stats("/file").requests == 0
    async with make_engine(tmp_path, remote_once(tls=tls, allow_insecure_redirects=True)) as e:
        result = await e.download(base + "/file", expected_digests={"sha256": sha256(data)})
    assert result.url == target


async def test_redirect_to_other_scheme_refused(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"", faults=Fault(redirect_to="ftp://127.0.0.1/x"))
    async with make_engine(tmp_path, remote_once()) as e:
        with pytest.raises(pad.ConfigError, match="unsupported scheme"):
            await e.download(url)
