"""TLS fixtures: a trustme CA, certificates, and HTTPS aiohttp servers on 127.0.0.1.

* ``tls_ca`` — a session :class:`trustme.CA`; ``tls_ca_file`` — its certificate as a PEM file.
* ``tls_server_cert`` — a leaf certificate for ``127.0.0.1``, ``::1`` and ``localhost``.
* ``tls_client_cert`` — a client certificate issued by ``tls_ca``, as PEM files
  (``cert_file`` holds certificate and key, ``key_file`` the key alone).
* ``tls_server`` — a factory: ``url = await tls_server(app=None, require_client_cert=False,
  cert=None, client_ca=None, max_version=None)`` starts an HTTPS server and returns its
  base URL (no trailing slash); every server is stopped after the test. The default app
  answers ``GET /`` with ``hello over tls`` and ``GET /echo-headers`` with the request
  headers as JSON.
"""

from __future__ import annotations

import gc
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from aiohttp import web

TLSServerFactory = Callable[..., Awaitable[str]]


@dataclass(frozen=True)
class ClientCertFiles:
    """A client certificate on disk (mode 0600)."""

    cert_file: Path
    key_file: Path
    cert: trustme.LeafCert


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA certificate of ``tls_ca`` as a PEM file."""
    path = tmp_path_factory.mktemp("tls-ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def tls_server_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate for the loopback names, issued by ``tls_ca``."""
    return tls_ca.issue_cert("127.0.0.1", "::1", "localhost")


@pytest.fixture(scope="session")
def tls_client_cert(
    tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> ClientCertFiles:
    """A client certificate issued by ``tls_ca``, written to private PEM files."""
    cert = tls_ca.issue_cert("client@pulp-aio-download.test", common_name="test client")
    directory = tmp_path_factory.mktemp("tls-client")
    cert_file = directory / "client.pem"
    key_file = directory / "client.key"
    for path, blobs in (
        (cert_file, [cert.private_key_pem, *cert.cert_chain_pems]),
        (key_file, [cert.private_key_pem]),
    ):
        path.touch(mode=0o600)
        path.write_bytes(b"".join(blob.bytes() for blob in blobs))
    return ClientCertFiles(cert_file=cert_file, key_file=key_file, cert=cert)


def _default_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello over tls")

    async def echo_headers(request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/echo-headers", echo_headers)
    return app


@pytest.fixture
async def tls_server(
    tls_ca: trustme.CA, tls_server_cert: trustme.LeafCert
) -> AsyncIterator[TLSServerFactory]:
    """A factory starting HTTPS aiohttp servers on 127.0.0.1; returns each base URL."""
    runners: list[web.AppRunner] = []

    async def start(
        app: web.Application | None = None,
        *,
        require_client_cert: bool = False,
        cert: trustme.LeafCert | None = None,
        client_ca: trustme.CA | None = None,
        max_version: ssl.TLSVersion | None = None,
    ) -> str:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if max_version is not None:
            context.maximum_version = max_version
        (cert or tls_server_cert).configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            (client_ca or tls_ca).configure_trust(context)
        runner = web.AppRunner(app or _default_app(), handle_signals=False)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        return f"https://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        # A handshake that a client refused (the certificate tests) can leave the server's
        # half-open transport to the garbage collector: collected here, its ResourceWarning
        # is the test server's, not the code under test's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
