"""``engine.session(name)``: a real ``aiohttp.ClientSession`` on the shared connector with
the remote's whole network policy on every request: proxy (and its credentials), TLS with
a private CA, basic credentials, the bearer challenge, headers, user agent, and the global
and per-remote connection limits. Real servers throughout: proxy.py, tinyproxy, trustme
HTTPS servers, a JWT token server, the FaultServer."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import NO_RETRY, basic, until
from plugins.proxy import ProxyProcess
from plugins.registry import ROBOT, RegistryFactory, read_jwt
from plugins.tls import TLSServerFactory
from pulp_aio_download.admission.limits import RemoteLimiterStatistics
from pulp_aio_download.auth import BearerTokenAuth
from pulp_aio_download.testing import FaultServer


def config(tmp_path: Path, *remotes: pad.RemoteConfig, **engine: object) -> pad.EngineConfig:
    return pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"),
        remotes=list(remotes) or [pad.RemoteConfig()],
        **engine,  # type: ignore[arg-type]
    )


def proxy_config(proxy: ProxyProcess) -> pad.ProxyConfig:
    return pad.ProxyConfig(url=proxy.url, username=proxy.username, password=proxy.password)


async def test_it_is_a_client_session_on_the_shared_connector(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/a", b"raw")
    remotes = (pad.RemoteConfig(), pad.RemoteConfig(name="other"))
    async with pad.DownloadEngine(config(tmp_path, *remotes)) as engine:
        session = engine.session()
        assert isinstance(session, aiohttp.ClientSession)
        assert session is engine.session("default")
        async with session.get(url) as resp:
            assert await resp.read() == b"raw"
        assert session.connector is engine.session("other").connector
    assert session.closed


async def test_requests_go_through_the_remote_proxy(
    http_proxy: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    urls = [fault_server.add(f"/meta{i}", f"metadata {i}".encode()) for i in range(3)]
    remote = pad.RemoteConfig(proxy=proxy_config(http_proxy))
    async with pad.DownloadEngine(config(tmp_path, remote)) as engine:
        session = engine.session()
        for i, url in enumerate(urls):
            async with session.get(url) as resp:
                assert resp.status == 200 and await resp.read() == f"metadata {i}".encode()
    assert len(fault_server.requests) == 3
    assert http_proxy.password is not None
    for request in fault_server.requests:
        assert "proxy.py" in request.headers.get("Via", "")  # the proxy forwarded it
        assert "Proxy-Authorization" not in request.headers
        assert http_proxy.password not in repr(dict(request.headers))


async def test_https_through_the_proxy_with_the_private_ca(
    tinyproxy_auth: ProxyProcess, tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    base = await tls_server()
    remote = pad.RemoteConfig(
        proxy=proxy_config(tinyproxy_auth), tls=pad.TLSConfig(ca_file=tls_ca_file)
    )
    offset = len(tinyproxy_auth.log_text())
    async with pad.DownloadEngine(config(tmp_path, remote)) as engine:
        resp = await engine.session().get(f"{base}/")
        assert await resp.text() == "hello over tls"
        resp.release()
    assert f"CONNECT {base.removeprefix('https://')}" in tinyproxy_auth.log_text()[offset:]
    # The engine closed the kept-alive tunnel; let the TLS close finish before the loop
    # ends (tinyproxy logs it), or its socket outlives the test.
    await until(lambda: "Closed connection between" in tinyproxy_auth.log_text()[offset:])


# The handshake the default remote refuses leaves the test server's half-open transport to
# the garbage collector (asyncio's server does not close it on Python 3.12), whose
# ResourceWarning may come at any moment of this test; the client's side closes its own.
@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
async def test_tls_with_a_private_ca(
    tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    base = await tls_server()
    trusting = pad.RemoteConfig(name="trusting", tls=pad.TLSConfig(ca_file=tls_ca_file))
    async with pad.DownloadEngine(config(tmp_path, trusting, pad.RemoteConfig())) as engine:
        async with engine.session("trusting").get(f"{base}/") as resp:
            assert await resp.text() == "hello over tls"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await engine.session("default").get(f"{base}/")


async def test_basic_credentials_only_for_the_origin_requested(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/private", b"secret metadata", auth=("alice", "pw"))
    async with FaultServer() as elsewhere:
        moved = elsewhere.add("/moved", b"moved metadata")

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(moved)

        remote = pad.RemoteConfig(username="alice", password="pw")
        async with pad.DownloadEngine(config(tmp_path, remote)) as engine:
            session = engine.session()
            async with session.get(url) as resp:
                assert resp.status == 200 and await resp.read() == b"secret metadata"
            # The caller's own Authorization wins.
            async with session.get(url, headers={"Authorization": basic("bob", "x")}) as resp:
                assert resp.status == 401
            # A redirect to another origin: no credentials there.
            redirector = web.Application()
            redirector.router.add_get("/go", redirect)
            runner = web.AppRunner(redirector, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                start = f"http://127.0.0.1:{runner.addresses[0][1]}/go"
                async with session.get(start) as resp:
                    assert await resp.read() == b"moved metadata"
            finally:
                await runner.cleanup()
        (moved_request,) = elsewhere.requests_for("/moved")
        assert "Authorization" not in moved_request.headers
    sent = [r.headers.get("Authorization") for r in fault_server.requests_for("/private")]
    assert sent == [basic("alice", "pw"), basic("bob", "x")]


async def test_the_bearer_challenge_is_answered(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry()
    manifest = registry.add("library/app", b'{"schemaVersion": 2}')
    other = registry.add("library/app", b"config blob")
    remote = pad.RemoteConfig(auth=BearerTokenAuth(*ROBOT))
    async with pad.DownloadEngine(config(tmp_path, remote)) as engine:
        session = engine.session()
        async with session.get(manifest) as resp:
            assert resp.status == 200 and await resp.json(content_type=None) == {"schemaVersion": 2}
        async with session.get(other) as resp:
            assert await resp.read() == b"config blob"
    assert len(registry.token_requests) == 1  # one token for the scope, reused
    first, retried, reused = registry.blob_auth
    assert first is None
    assert retried is not None and read_jwt(retried.removeprefix("Bearer ")) is not None
    assert reused == retried


async def test_a_failing_token_realm_raises_a_download_error(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry()
    url = registry.add("library/app", b"x")
    await registry.stop_realm()
    remote = pad.RemoteConfig(auth=BearerTokenAuth(*ROBOT), retry=NO_RETRY)
    async with pad.DownloadEngine(config(tmp_path, remote)) as engine:
        with pytest.raises(pad.ConnectionFailed) as info:
            await engine.session().get(url)
    assert info.value.url == url and f"token realm {registry.realm}/token" in str(info.value)


async def test_headers_and_user_agent(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/h", b"x")
    remote = pad.RemoteConfig(headers={"X-Mirror": "m1"}, user_agent="my-plugin/2")
    async with pad.DownloadEngine(config(tmp_path, remote)) as engine:
        resp = await engine.session().get(url)
        await resp.read()
    (request,) = fault_server.requests_for("/h")
    assert request.headers["X-Mirror"] == "m1" and request.headers["User-Agent"] == "my-plugin/2"


async def test_per_remote_limit_holds_until_the_response_is_released(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/slow", b"body" * 1000)
    big = fault_server.add("/big", b"b" * (16 * 1024 * 1024))  # more than one read buffer
    gate = fault_server.gate("/slow")
    remote = pad.RemoteConfig(max_connections=2)
    async with pad.DownloadEngine(config(tmp_path, remote)) as engine:
        session = engine.session()

        async def get() -> bytes:
            async with session.get(url) as resp:
                return await resp.read()

        tasks = [asyncio.ensure_future(get()) for _ in range(5)]
        await fault_server.wait_inflight(2, "/slow")

        def limiter() -> RemoteLimiterStatistics:
            return engine.statistics().remotes["default"]

        assert limiter().in_flight == 2
        # The three others wait for a slot, not for the server.
        assert fault_server.stats("/slow").requests == 2
        gate.set()
        bodies = await asyncio.gather(*tasks)
        assert bodies == [b"body" * 1000] * 5
        assert limiter().peak_in_flight == 2
        assert limiter().in_flight == 0
        assert fault_server.stats("/slow").peak_inflight == 2
        # A response closed unread gives its slot back too.
        resp = await session.get(big)
        assert limiter().in_flight == 1
        resp.close()
        assert limiter().in_flight == 0


async def test_global_limit_is_shared_with_downloads(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/held", b"metadata")
    artifact = fault_server.add("/artifact", b"artifact bytes")
    gate = fault_server.gate("/held")
    remotes = (pad.RemoteConfig(), pad.RemoteConfig(name="other"))
    async with pad.DownloadEngine(config(tmp_path, *remotes, max_connections=2)) as engine:
        first = asyncio.ensure_future(engine.session().get(url))
        second = asyncio.ensure_future(engine.session("other").get(url))
        await fault_server.wait_inflight(2, "/held")
        # Both global slots are held by the two plugin requests: a download waits for one.
        assert engine.statistics().saturated
        download = asyncio.ensure_future(engine.download(artifact))
        gate.set()
        for resp in await asyncio.gather(first, second):
            assert await resp.read() == b"metadata"
            resp.release()
        result = await download
    assert result.path is not None and result.path.read_bytes() == b"artifact bytes"
    (held, other_held) = fault_server.requests_for("/held")
    (artifact_request,) = fault_server.requests_for("/artifact")
    assert artifact_request.time >= max(held.time, other_held.time)


async def test_bytes_come_as_served(tmp_path: Path) -> None:
    packed = gzip.compress(b"<repomd/>")
    app = web.Application()

    async def gz(request: web.Request) -> web.Response:
        return web.Response(body=packed, headers={"Content-Encoding": "gzip"})

    app.router.add_get("/repomd.xml.gz", gz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/repomd.xml.gz"
        async with pad.DownloadEngine(config(tmp_path)) as engine:
            resp = await engine.session().get(url)
            assert await resp.read() == packed
            assert resp.request_info.headers["Accept-Encoding"] == "identity"
    finally:
        await runner.cleanup()
