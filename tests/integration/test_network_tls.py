"""TLS per remote through the engine, against HTTPS servers with trustme certificates."""

from __future__ import annotations

import hashlib
import logging
import ssl
from pathlib import Path

import pytest
import trustme
from aiohttp import web

import pulp_aio_download as pad
from helpers import make_engine, remote_once
from plugins.tls import ClientCertFiles, TLSServerFactory

BODY = b"hello over tls"


async def get(tmp_path: Path, url: str, tls: pad.TLSConfig) -> pad.DownloadResult:
    async with make_engine(tmp_path, remote_once(tls=tls)) as e:
        result = await e.download(
            url, expected_digests={"sha256": hashlib.sha256(BODY).hexdigest()}
        )
    assert result.path is not None and result.path.read_bytes() == BODY
    return result


async def test_custom_ca_file(
    tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    await get(tmp_path, await tls_server() + "/", pad.TLSConfig(ca_file=tls_ca_file))


async def test_custom_ca_data(
    tls_server: TLSServerFactory, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    ca_data = tls_ca.cert_pem.bytes().decode()
    await get(tmp_path, await tls_server() + "/", pad.TLSConfig(ca_data=ca_data))


async def test_unknown_ca_is_tls_error(tls_server: TLSServerFactory, tmp_path: Path) -> None:
    url = await tls_server() + "/"
    async with make_engine(tmp_path, remote_once(tls=pad.TLSConfig())) as e:
        with pytest.raises(pad.TLSError, match="unknown CA") as info:
            await e.download(url)
    assert url in str(info.value)


async def test_hostname_mismatch_is_tls_error(
    tls_server: TLSServerFactory, tls_ca: trustme.CA, tls_ca_file: Path, tmp_path: Path
) -> None:
    url = await tls_server(cert=tls_ca.issue_cert("elsewhere.example")) + "/"
    async with make_engine(tmp_path, remote_once(tls=pad.TLSConfig(ca_file=tls_ca_file))) as e:
        with pytest.raises(pad.TLSError, match="hostname mismatch"):
            await e.download(url)


async def test_min_version_not_met_is_tls_error(
    tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    url = await tls_server(max_version=ssl.TLSVersion.TLSv1_2) + "/"
    tls = pad.TLSConfig(ca_file=tls_ca_file, min_version="TLSv1.3")
    async with make_engine(tmp_path, remote_once(tls=tls)) as e:
        with pytest.raises(pad.ConnectionFailed, match="TLS version"):
            await e.download(url)
    await get(tmp_path, url, pad.TLSConfig(ca_file=tls_ca_file, min_version="TLSv1.2"))


async def test_ciphers_applied(
    tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    """The server reports the cipher it negotiated: one of those TLSConfig.ciphers allows."""

    async def negotiated(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        assert ssl_object is not None
        name, version, _ = ssl_object.cipher()
        return web.Response(text=f"{name} {version}")

    app = web.Application()
    app.router.add_get("/cipher", negotiated)
    url = await tls_server(app, max_version=ssl.TLSVersion.TLSv1_2) + "/cipher"
    seen: dict[str, list[str]] = {}
    for ciphers in ("ECDHE+AESGCM", "ECDHE+CHACHA20"):
        async with make_engine(
            tmp_path / ciphers, remote_once(tls=pad.TLSConfig(ca_file=tls_ca_file, ciphers=ciphers))
        ) as e:
            result = await e.download(url)
        assert result.path is not None
        seen[ciphers] = result.path.read_text().split()
    assert seen["ECDHE+AESGCM"][1] == seen["ECDHE+CHACHA20"][1] == "TLSv1.2"
    assert "GCM" in seen["ECDHE+AESGCM"][0] and "CHACHA20" not in seen["ECDHE+AESGCM"][0]
    assert "CHACHA20" in seen["ECDHE+CHACHA20"][0]


async def test_verify_false_works_and_warns(
    tls_server: TLSServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pulp_aio_download")
    await get(tmp_path, await tls_server() + "/", pad.TLSConfig(verify=False))
    assert any("verification is disabled" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
async def test_client_certificate_required(
    tls_server: TLSServerFactory,
    tls_ca_file: Path,
    tls_client_cert: ClientCertFiles,
    tmp_path: Path,
    max_version: ssl.TLSVersion | None,
) -> None:
    url = await tls_server(require_client_cert=True, max_version=max_version) + "/"
    with_cert = pad.TLSConfig(
        ca_file=tls_ca_file,
        client_cert=tls_client_cert.cert_file,
        client_key=tls_client_cert.key_file,
    )
    await get(tmp_path / "ok", url, with_cert)
    # Without one the server drops the connection without a TLS alert we could read
    # (TLS 1.2: a reset during the handshake; TLS 1.3: a disconnect after it), which looks
    # like any dropped connection: ConnectionFailed (retried), saying what to check.
    async with make_engine(
        tmp_path / "ko", remote_once(tls=pad.TLSConfig(ca_file=tls_ca_file))
    ) as e:
        with pytest.raises(pad.ConnectionFailed, match="client certificate") as info:
            await e.download(url)
    assert not isinstance(info.value, pad.TLSError)


async def test_one_ssl_context_per_remote(
    tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    base = await tls_server()
    tls = pad.TLSConfig(ca_file=tls_ca_file)
    async with make_engine(tmp_path, remote_once(tls=tls)) as e:
        await e.download(base + "/", expected_digests={"sha256": hashlib.sha256(BODY).hexdigest()})
        transport = e._pool.http(e.config.remote("default"))
        context = transport.ssl_for(base + "/", None)
        await e.download(base + "/echo-headers")
        assert e._pool.http(e.config.remote("default")).ssl_for(base + "/", None) is context
        assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
