"""Security checks: where credentials go, and where they never appear.

* Credentials (remote basic auth, an auth object, URL userinfo) reach only the origin of the
  request: never another origin a redirect leads to, never plain http after https.
* TLS certificates are verified unless a remote turns it off.
* Secrets are absent from ``repr()`` of every config and request object, from exceptions
  (also pickled), from DEBUG logs of successful and failing downloads, and from the bytes
  of the SQLite catalog (database, WAL and shared-memory files).
"""

from __future__ import annotations

import base64
import logging
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import pulp_aio_download as pad
from pulp_aio_download.testing import Fault, FaultServer

USER = "alice"
SECRET = "Zq9-remote-s3cret"
PROXY_SECRET = "Xy7-proxy-s3cret"
TOKEN_SECRET = "Tk5-token-s3cret"
SECRETS = (SECRET, PROXY_SECRET, TOKEN_SECRET)


def leaks(text: str | bytes) -> list[str]:
    """The secrets (or their basic-auth encodings) found in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    found = []
    for secret in SECRETS:
        encoded = base64.b64encode(f"{USER}:{secret}".encode()).decode()
        found += [s for s in (secret, encoded) if s in text]
    return found


@pytest.fixture
async def other_origin() -> AsyncIterator[FaultServer]:
    """A second server: another port on 127.0.0.1 is another origin."""
    async with FaultServer() as server:
        server.add("/target", b"the target")
        yield server


def credential_remotes() -> dict[str, pad.RemoteConfig]:
    return {
        "basic": pad.RemoteConfig(name="basic", username=USER, password=SECRET),
        "authobj": pad.RemoteConfig(name="authobj", auth=pad.BasicAuth(USER, SECRET)),
        "default": pad.RemoteConfig(),
    }


@pytest.mark.parametrize("how", ["basic", "authobj", "userinfo"])
async def test_credentials_stay_with_their_origin_across_redirects(
    fault_server: FaultServer, other_origin: FaultServer, tmp_path: Path, how: str
) -> None:
    target = other_origin.url("/target")
    fault_server.add("/start", b"", faults=Fault(redirect_to=target))
    url = fault_server.url("/start")
    remote = None if how == "userinfo" else how
    if how == "userinfo":
        url = url.replace("http://", f"http://{USER}:{SECRET}@")
    config = pad.EngineConfig(data_dir=tmp_path / "data", remotes=credential_remotes())
    async with pad.DownloadEngine(config) as engine:
        result = await engine.download(url, remote=remote)
    assert result.path is not None and result.path.read_bytes() == b"the target"
    first = fault_server.requests_for("/start")[0]
    assert leaks(first.headers.get("Authorization", "")), "the origin gets the credentials"
    for request in other_origin.requests:
        assert "Authorization" not in request.headers
        assert not leaks(repr(dict(request.headers)))


async def test_https_to_http_downgrade_is_refused_and_never_sent_credentials(
    tls_server: object, tls_ca_file: Path, other_origin: FaultServer, tmp_path: Path
) -> None:
    target = other_origin.url("/target")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    app = web.Application()
    app.router.add_get("/start", redirect)
    base = await tls_server(app)  # type: ignore[operator]
    tls = pad.TLSConfig(ca_file=tls_ca_file)
    strict = pad.RemoteConfig(name="strict", username=USER, password=SECRET, tls=tls)
    lax = pad.RemoteConfig(
        name="lax", username=USER, password=SECRET, tls=tls, allow_insecure_redirects=True
    )
    config = pad.EngineConfig(data_dir=tmp_path / "data", remotes={"strict": strict, "lax": lax})
    async with pad.DownloadEngine(config) as engine:
        with pytest.raises(pad.DownloadError, match="insecure redirect") as info:
            await engine.download(f"{base}/start", remote="strict")
        assert not leaks(str(info.value))
        assert other_origin.requests == []
        # Allowed by the remote: followed, but the credentials stay on the https origin.
        result = await engine.download(f"{base}/start", remote="lax")
    assert result.path is not None and result.path.read_bytes() == b"the target"
    assert [r.headers.get("Authorization") for r in other_origin.requests] == [None]


async def test_tls_is_verified_by_default(
    tls_server: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base = await tls_server()  # type: ignore[operator]
    config = pad.EngineConfig(data_dir=tmp_path / "data")
    async with pad.DownloadEngine(config) as engine:
        with pytest.raises(pad.TLSError, match="unknown CA"):
            await engine.download(base + "/")
    assert not any((tmp_path / "data" / "artifacts").rglob("??/*"))
    assert pad.RemoteConfig().tls.verify is True


# -- reprs, exceptions, logs, catalog ----------------------------------------------------


def secret_objects() -> list[object]:
    proxy = pad.ProxyConfig(url=f"http://{USER}:{PROXY_SECRET}@127.0.0.1:3128")
    remote = pad.RemoteConfig(
        name="r",
        username=USER,
        password=SECRET,
        proxy=proxy,
        auth=pad.BasicAuth(USER, TOKEN_SECRET),
        headers={"Authorization": f"Bearer {TOKEN_SECRET}"},
        tls=pad.TLSConfig(ca_data="-----BEGIN CERTIFICATE-----" + SECRET),
    )
    source = pad.Source(f"https://{USER}:{SECRET}@127.0.0.1/x")
    request = pad.DownloadRequest(
        f"https://{USER}:{SECRET}@127.0.0.1/x",
        sources=[f"http://{USER}:{TOKEN_SECRET}@127.0.0.1/y"],
    )
    return [
        proxy,
        remote,
        source,
        request,
        pad.EngineConfig(remotes={"r": remote}),
        pad.ProxyConfig(url="http://127.0.0.1:3128", username=USER, password=PROXY_SECRET),
        pad.BasicAuth(USER, SECRET),
    ]


@pytest.mark.parametrize("obj", secret_objects(), ids=lambda o: type(o).__name__)
def test_reprs_hide_secrets(obj: object) -> None:
    assert not leaks(repr(obj)), repr(obj)
    assert not leaks(str(obj)), str(obj)


@pytest.mark.parametrize(
    "error",
    [
        pad.DownloadError("boom", url=f"http://{USER}:{SECRET}@h/x"),
        pad.ConnectionFailed("reset", url=f"https://{USER}:{SECRET}@h/x"),
        pad.HTTPStatusError(status=401, url=f"http://{USER}:{SECRET}@h/x"),
        pad.DigestMismatch(
            algorithm="sha256", expected="a", actual="b", url=f"http://u:{SECRET}@h"
        ),
        pad.AllSourcesFailed([pad.TLSError("bad", url=f"https://{USER}:{SECRET}@h/x")]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_exceptions_hide_secrets_also_when_pickled(error: pad.DownloadError) -> None:
    for text in (str(error), repr(error), repr(error.args), str(error.url)):
        assert not leaks(text), text
    assert not leaks(pickle.dumps(error))
    assert not leaks(repr(pickle.loads(pickle.dumps(error))))


def test_bad_urls_with_credentials_are_refused_without_echoing_them() -> None:
    for url in (
        f"ftp://{USER}:{SECRET}@127.0.0.1/x",
        f"http://{USER}:{SECRET}@/x",
        f"http://{USER}:{SECRET}@[::1/x",
    ):
        with pytest.raises(pad.ConfigError) as info:
            pad.DownloadRequest(url)
        assert not leaks(str(info.value)), str(info.value)


async def test_no_secret_in_logs_or_catalog_bytes(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fault_server.add("/basic", b"basic content", auth=(USER, SECRET))
    fault_server.add("/userinfo", b"userinfo content", auth=(USER, SECRET))
    fault_server.add("/flaky", b"flaky content", auth=(USER, SECRET), faults=[Fault(status=503)])
    fault_server.add("/denied", b"x", auth=(USER, "not-the-secret"))
    creds = f"{USER}:{SECRET}@127.0.0.1:{fault_server.port}"
    remotes = {
        "basic": pad.RemoteConfig(
            name="basic",
            username=USER,
            password=SECRET,
            retry=pad.RetryPolicy(attempts=2, backoff=0.01),
        ),
        "default": pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0.01)),
    }
    data_dir = tmp_path / "data"
    requests = [
        pad.DownloadRequest(
            fault_server.url("/basic"),
            remote="basic",
            unit=pad.UnitSpec("file", "b", relative_path="b.bin"),
            repository="repo",
        ),
        pad.DownloadRequest(f"http://{creds}/userinfo"),
        pad.DownloadRequest(fault_server.url("/flaky"), remote="basic"),
        pad.DownloadRequest(f"http://{creds}/denied"),
    ]
    config = pad.EngineConfig(data_dir=data_dir, remotes=remotes)
    async with pad.DownloadEngine(config) as engine:
        results = await engine.download_many(requests, return_exceptions=True)
        assert [type(r).__name__ for r in results] == [
            "DownloadResult",
            "DownloadResult",
            "DownloadResult",
            "HTTPStatusError",
        ]
        assert not leaks(str(results[3])) and not leaks(repr(results[3]))
        lazy = pad.DownloadRequest(
            f"http://{creds}/lazy", expected_digests={"sha256": "ab" * 32}, expected_size=1
        )
        await engine.register(lazy)
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file("ab" * 32)
        assert record is not None and not leaks(repr(record)) and not leaks(str(record.to_json()))
        report = await engine.verify()
        assert report.clean
        # The catalog is still open here: its WAL holds the latest writes.
        files = sorted(data_dir.glob("catalog.sqlite3*"))
        assert files
        for path in files:
            assert not leaks(path.read_bytes()), path
    for path in sorted(data_dir.glob("catalog.sqlite3*")):
        assert not leaks(path.read_bytes()), path
    assert caplog.records
    for record_ in caplog.records:
        assert not leaks(record_.getMessage()), record_.getMessage()
        if record_.exc_info:
            assert not leaks(logging.Formatter().formatException(record_.exc_info))
