"""TLS contexts against real HTTPS servers on 127.0.0.1 with trustme certificates."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from plugins.tls import ClientCertFiles, TLSServerFactory
from pulp_aio_download.config import TLSConfig
from pulp_aio_download.errors import ConfigError, TLSError
from pulp_aio_download.transports.tls import build_ssl_context, classify_ssl_error, tls_error


async def _get(url: str, context: ssl.SSLContext) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.text()


async def _failure(url: str, context: ssl.SSLContext) -> Exception:
    with pytest.raises((aiohttp.ClientError, OSError)) as info:
        await _get(url, context)
    assert isinstance(info.value, Exception)
    return info.value


async def test_custom_ca_file_verifies(tls_server: TLSServerFactory, tls_ca_file: Path) -> None:
    url = await tls_server()
    context = build_ssl_context(TLSConfig(ca_file=tls_ca_file))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert await _get(url + "/", context) == (200, "hello over tls")


async def test_custom_ca_data_verifies(tls_server: TLSServerFactory, tls_ca: trustme.CA) -> None:
    url = await tls_server()
    context = build_ssl_context(TLSConfig(ca_data=tls_ca.cert_pem.bytes().decode()))
    assert await _get(url + "/", context) == (200, "hello over tls")


async def test_localhost_name_verifies(tls_server: TLSServerFactory, tls_ca_file: Path) -> None:
    url = await tls_server()
    context = build_ssl_context(TLSConfig(ca_file=tls_ca_file))
    assert await _get(url.replace("127.0.0.1", "localhost") + "/", context) == (
        200,
        "hello over tls",
    )


async def test_unknown_ca_fails_with_reason(tls_server: TLSServerFactory) -> None:
    url = await tls_server()
    exc = await _failure(url + "/", build_ssl_context(TLSConfig()))
    assert classify_ssl_error(exc) == "unknown CA"
    error = tls_error(exc, url="https://user:secret@127.0.0.1/x")
    assert isinstance(error, TLSError)
    assert "unknown CA" in str(error)
    assert "secret" not in str(error)


async def test_other_ca_is_unknown(tls_server: TLSServerFactory, tmp_path: Path) -> None:
    url = await tls_server()
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    exc = await _failure(url + "/", build_ssl_context(TLSConfig(ca_file=other)))
    assert classify_ssl_error(exc) == "unknown CA"


async def test_hostname_mismatch(
    tls_server: TLSServerFactory, tls_ca: trustme.CA, tls_ca_file: Path
) -> None:
    url = await tls_server(cert=tls_ca.issue_cert("mirror.example.org"))
    exc = await _failure(url + "/", build_ssl_context(TLSConfig(ca_file=tls_ca_file)))
    assert classify_ssl_error(exc) == "hostname mismatch"


async def test_expired_certificate(
    tls_server: TLSServerFactory, tls_ca: trustme.CA, tls_ca_file: Path
) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    expired = tls_ca.issue_cert(
        "127.0.0.1", not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1)
    )
    url = await tls_server(cert=expired)
    exc = await _failure(url + "/", build_ssl_context(TLSConfig(ca_file=tls_ca_file)))
    assert classify_ssl_error(exc) == "certificate expired"


async def test_verify_false_accepts_unknown_ca_and_warns(
    tls_server: TLSServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    url = await tls_server()
    with caplog.at_level(logging.WARNING, logger="pulp_aio_download.transports.tls"):
        context = build_ssl_context(TLSConfig(verify=False))
    assert any("verification is disabled" in r.getMessage() for r in caplog.records)
    assert context.verify_mode == ssl.CERT_NONE
    assert not context.check_hostname
    assert await _get(url + "/", context) == (200, "hello over tls")


async def test_client_cert_required_works_with_one(
    tls_server: TLSServerFactory, tls_ca_file: Path, tls_client_cert: ClientCertFiles
) -> None:
    url = await tls_server(require_client_cert=True)
    combined = build_ssl_context(
        TLSConfig(ca_file=tls_ca_file, client_cert=tls_client_cert.cert_file)
    )
    assert await _get(url + "/", combined) == (200, "hello over tls")
    separate = build_ssl_context(
        TLSConfig(
            ca_file=tls_ca_file,
            client_cert=tls_client_cert.cert_file,
            client_key=tls_client_cert.key_file,
        )
    )
    assert await _get(url + "/", separate) == (200, "hello over tls")


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2])
async def test_client_cert_required_fails_without(
    tls_server: TLSServerFactory, tls_ca_file: Path, max_version: ssl.TLSVersion | None
) -> None:
    url = await tls_server(require_client_cert=True, max_version=max_version)
    exc = await _failure(url + "/", build_ssl_context(TLSConfig(ca_file=tls_ca_file)))
    # An asyncio server drops the connection without an alert; with TLS 1.3 the client
    # only notices when it reads the answer. Either way it is not a CA problem.
    assert classify_ssl_error(exc) in {
        "client certificate required",
        "handshake failure",
        "connection closed during handshake",
    }


async def test_client_cert_from_other_ca_rejected(
    tls_server: TLSServerFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    url = await tls_server(require_client_cert=True)
    stranger = trustme.CA().issue_cert("stranger@example.org")
    pem = tmp_path / "stranger.pem"
    pem.write_bytes(
        stranger.private_key_pem.bytes() + b"".join(b.bytes() for b in stranger.cert_chain_pems)
    )
    context = build_ssl_context(TLSConfig(ca_file=tls_ca_file, client_cert=pem))
    exc = await _failure(url + "/", context)
    assert classify_ssl_error(exc) != "unknown CA"  # it is the server that refused us


def test_min_version_and_ciphers_applied() -> None:
    context = build_ssl_context(TLSConfig(min_version="TLSv1.3", ciphers="ECDHE+AESGCM"))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names
    assert all("AESGCM" in n.replace("-", "").replace("_", "") or "GCM" in n for n in names)


def test_missing_ca_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.pem"
    with pytest.raises(ConfigError, match=r"ca_file.*nope/ca\.pem"):
        build_ssl_context(TLSConfig(ca_file=missing))


def test_garbage_ca_file_names_the_path(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"garbage\.pem"):
        build_ssl_context(TLSConfig(ca_file=garbage))


def test_bad_ca_data() -> None:
    with pytest.raises(ConfigError, match="ca_data"):
        build_ssl_context(TLSConfig(ca_data="-----BEGIN CERTIFICATE-----\nxx\n"))


def test_missing_client_cert_names_the_path(
    tmp_path: Path, tls_client_cert: ClientCertFiles
) -> None:
    with pytest.raises(ConfigError, match=r"client_cert.*missing\.pem"):
        build_ssl_context(TLSConfig(client_cert=tmp_path / "missing.pem"))
    # A certificate file without its key, and no key given: unusable.
    cert_only = tmp_path / "cert-only.pem"
    cert_only.write_bytes(b"".join(b.bytes() for b in tls_client_cert.cert.cert_chain_pems))
    with pytest.raises(ConfigError, match=r"cert-only\.pem"):
        build_ssl_context(TLSConfig(client_cert=cert_only))


def test_key_never_in_error_message(tmp_path: Path, tls_client_cert: ClientCertFiles) -> None:
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(trustme.CA().issue_cert("x.example").private_key_pem.bytes())
    cert_only = tmp_path / "cert-only.pem"
    cert_only.write_bytes(b"".join(b.bytes() for b in tls_client_cert.cert.cert_chain_pems))
    with pytest.raises(ConfigError) as info:
        build_ssl_context(TLSConfig(client_cert=cert_only, client_key=wrong_key))
    assert "PRIVATE KEY" not in str(info.value)
    assert "wrong.key" in str(info.value)


def test_bad_ciphers() -> None:
    with pytest.raises(ConfigError, match="ciphers"):
        build_ssl_context(TLSConfig(ciphers="NO-SUCH-CIPHER"))


def test_classify_without_ssl_error() -> None:
    assert classify_ssl_error(ConnectionResetError()) == "handshake failure"


async def test_client_cert_and_key_as_pem_text(
    tls_server: TLSServerFactory,
    tls_ca_file: Path,
    tls_client_cert: ClientCertFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the private copies live, briefly
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    url = await tls_server(require_client_cert=True)
    cert = b"".join(b.bytes() for b in tls_client_cert.cert.cert_chain_pems).decode()
    key = tls_client_cert.cert.private_key_pem.bytes().decode()
    config = TLSConfig(ca_file=tls_ca_file, client_cert_data=cert, client_key_data=key)
    context = await asyncio.to_thread(build_ssl_context, config)
    assert await _get(url + "/", context) == (200, "hello over tls")
    assert list(tmp_path.iterdir()) == []  # the PEM files are gone once the context is built
    assert "PRIVATE" not in repr(TLSConfig(client_cert_data=cert, client_key_data=key))


def test_pem_text_client_pair_is_checked() -> None:
    with pytest.raises(ConfigError, match="client_key_data needs"):
        TLSConfig(client_key_data="KEY")
    with pytest.raises(ConfigError, match="not both"):
        TLSConfig(client_cert="c.pem", client_cert_data="CERT")
    with pytest.raises(ConfigError, match="client_cert_data/client_key_data") as info:
        build_ssl_context(TLSConfig(client_cert_data="CERT", client_key_data="SECRET KEY"))
    assert "SECRET" not in str(info.value)
