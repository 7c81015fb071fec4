"""Hostile input: nothing from a URL, manifest, unit or server gets out of its box.

Path escapes in ``relative_path``, ``file://`` URLs outside the allowed roots (also through
symbolic links and percent-encoding), unknown schemes, invalid digests, credentials in URLs
(redacted from every message and log line), a gzip bomb (stored as served, never expanded)
and a server that sends far more than ``expected_size`` (stopped at the limit).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import until
from pulp_aio_download.cli.manifest import ManifestError, parse_manifest_line
from pulp_aio_download.storage.local import LocalStorage
from pulp_aio_download.testing import Fault, FaultServer

if sys.version_info >= (3, 11):
    from asyncio import timeout as bound
else:  # pragma: no cover - Python 3.10: aiohttp depends on async-timeout there
    from async_timeout import timeout as bound

SECRET = "pa55-W0RD-hostile"
USER = "mallory"

ESCAPING_PATHS = [
    "../etc/passwd",
    "a/../../b",
    "a/b/../../../c",
    "/etc/passwd",
    "//server/share",
    "a\x00b",
    "..",
    "a\\..\\..\\b",
    "C:/Windows/system32",
    "",
]


# -- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ESCAPING_PATHS)
def test_unit_relative_path_cannot_escape(path: str) -> None:
    with pytest.raises(pad.ConfigError, match="relative_path"):
        pad.UnitSpec("file", "k", relative_path=path)


@pytest.mark.parametrize("path", ESCAPING_PATHS)
def test_manifest_relative_path_cannot_escape(path: str) -> None:
    line = json.dumps(
        {"url": "http://127.0.0.1/x", "unit": {"type": "t", "key": "k", "relative_path": path}}
    )
    with pytest.raises(ManifestError) as info:
        parse_manifest_line(line, line=3)
    assert info.value.line == 3 and "relative_path" in str(info.value)


def test_harmless_relative_paths_are_normalised() -> None:
    assert pad.UnitSpec("t", "k", relative_path="a/./b//c").relative_path == "a/b/c"
    assert pad.UnitSpec("t", "k", relative_path="..a/b..").relative_path == "..a/b.."


def test_cli_refuses_an_escaping_manifest_before_any_download(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    url = threaded_server.add("/ok", b"fine")
    good = {"url": url, "unit": {"type": "t", "key": "k", "relative_path": "ok.bin"}}
    bad = {"url": url, "unit": {"type": "t", "key": "k2", "relative_path": "../../evil"}}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pulp_aio_download", "sync", str(manifest),
         "--data-dir", str(tmp_path / "data"), "--progress", "none"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "line 2" in done.stderr and "relative_path" in done.stderr
    assert threaded_server.requests == []
    assert not (tmp_path / "data" / "artifacts").exists() or not any(
        p.is_file() for p in (tmp_path / "data" / "artifacts").rglob("*")
    )


@pytest.mark.parametrize("sha", ["../../etc/passwd" + "0" * 48, "A" * 63 + "/", "0" * 64 + "\x00"])
def test_a_digest_cannot_become_a_path(sha: str) -> None:
    with pytest.raises(pad.ConfigError, match="malformed sha256"):
        pad.DownloadRequest("http://127.0.0.1/x", expected_digests={"sha256": sha})


# -- file:// -------------------------------------------------------------------------------


@pytest.fixture
def file_roots(tmp_path: Path) -> tuple[Path, Path]:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "inside.bin").write_bytes(b"inside")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"top secret")
    (allowed / "link").symlink_to(outside)
    (allowed / "dirlink").symlink_to(tmp_path)
    return allowed, outside


@pytest.mark.parametrize(
    "relative",
    [
        "../secret.txt",
        "%2e%2e/secret.txt",
        "link",
        "dirlink/secret.txt",
        "sub/../../secret.txt",
        "inside.bin%00.txt",
    ],
)
async def test_file_urls_outside_the_roots_are_refused_before_io(
    file_roots: tuple[Path, Path], tmp_path: Path, relative: str
) -> None:
    allowed, _ = file_roots
    url = f"file://{allowed}/{relative}"
    config = pad.EngineConfig(
        storage=LocalStorage(tmp_path / "store"), allowed_file_roots=[allowed]
    )
    async with pad.DownloadEngine(config) as engine:
        with pytest.raises(pad.ConfigError):
            await engine.download(url)
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


@pytest.mark.parametrize(
    "url", ["file://otherhost/etc/passwd", "file:///etc/passwd", "file:///proc/self/environ"]
)
async def test_file_urls_without_allowed_roots_or_remote_hosts_are_refused(
    tmp_path: Path, url: str
) -> None:
    async with pad.DownloadEngine(pad.EngineConfig(storage=LocalStorage(tmp_path / "s"))) as engine:
        with pytest.raises(pad.ConfigError):
            await engine.download(url)


async def test_file_url_inside_the_root_works(
    file_roots: tuple[Path, Path], tmp_path: Path
) -> None:
    allowed, _ = file_roots
    config = pad.EngineConfig(
        storage=LocalStorage(tmp_path / "store"), allowed_file_roots=[allowed]
    )
    async with pad.DownloadEngine(config) as engine:
        result = await engine.download(f"file://{allowed}/inside.bin")
    assert result.path is not None and result.path.read_bytes() == b"inside"


async def test_redirect_to_a_file_url_is_refused(
    fault_server: FaultServer, file_roots: tuple[Path, Path], tmp_path: Path
) -> None:
    _, outside = file_roots
    url = fault_server.add("/r", b"x", faults=Fault(redirect_to=f"file://{outside}"))
    config = pad.EngineConfig(
        storage=LocalStorage(tmp_path / "store"), allowed_file_roots=[outside.parent]
    )
    async with pad.DownloadEngine(config) as engine:
        with pytest.raises(pad.DownloadError, match="scheme"):
            await engine.download(url)
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


# -- schemes and digests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x",
        "gopher://127.0.0.1/x",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "s3://bucket/key",
        "HTTP//127.0.0.1/x",
        "http:///nohost",
        "127.0.0.1/x",
        "",
    ],
)
def test_unknown_schemes_and_hostless_urls_are_config_errors(url: str) -> None:
    with pytest.raises(pad.ConfigError):
        pad.DownloadRequest(url)


@pytest.mark.parametrize(
    "digests",
    [
        {"sha256": "xyz"},
        {"sha256": "0" * 63},
        {"sha256": "0" * 65},
        {"sha256": "g" * 64},
        {"sha256": 123},
        {"crc32": "00000000"},
        {"sha3_256": "0" * 64},
        {"md5": "0" * 64},
    ],
)
def test_invalid_digests_are_config_errors(digests: dict[str, object]) -> None:
    with pytest.raises(pad.ConfigError):
        pad.DownloadRequest("http://127.0.0.1/x", expected_digests=digests)  # type: ignore[arg-type]


# -- credentials in URLs: redacted everywhere -----------------------------------------------


def assert_no_secret(text: str) -> None:
    token = __import__("base64").b64encode(f"{USER}:{SECRET}".encode()).decode()
    assert SECRET not in text and token not in text, text


def error_texts(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), repr(error.args), repr(getattr(error, "url", ""))]
    texts.append(pickle.dumps(error).decode("latin-1"))
    for inner in getattr(error, "errors", ()):
        texts += error_texts(inner)
    if error.__cause__ is not None:
        texts += [str(error.__cause__), repr(error.__cause__)]
    return texts


async def test_credentials_in_failing_urls_never_reach_messages_or_logs(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fault_server.add("/auth", b"protected", auth=(USER, "another-password"))
    fault_server.add("/gone", b"x", faults=Fault(status=404))
    fault_server.add(
        "/hop",
        b"x",
        faults=Fault(redirect_to=f"http://{USER}:{SECRET}@127.0.0.1:{fault_server.port}/gone"),
    )
    fault_server.add("/flaky", b"x", faults=Fault(status=503))
    creds = f"{USER}:{SECRET}@127.0.0.1:{fault_server.port}"
    with socksafe() as closed_port:
        urls = [
            f"http://{creds}/auth",  # 401 with the wrong password
            f"http://{creds}/flaky",  # retried 503s, logged at DEBUG
            f"http://{USER}:{SECRET}@127.0.0.1:{closed_port}/x",  # connection refused
            f"https://{creds}/auth",  # TLS to a plain HTTP server
        ]
        remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0.01))
        config = pad.EngineConfig(
            data_dir=tmp_path / "data", remotes={"default": remote}, max_connections=2
        )
        async with pad.DownloadEngine(config) as engine:
            results = await engine.download_many(
                [*urls, pad.DownloadRequest(sources=urls[:3])], return_exceptions=True
            )
    assert all(isinstance(r, pad.DownloadError) for r in results), results
    for result in results:
        for text in error_texts(result):
            assert_no_secret(text)
    assert caplog.records, "the failures should have been logged at DEBUG"
    for record in caplog.records:
        assert_no_secret(record.getMessage())
        if record.exc_info:
            assert_no_secret(logging.Formatter().formatException(record.exc_info))
    # and what the server received was a proper Authorization header, not a leak elsewhere
    assert fault_server.requests_for("/auth")[0].headers["Authorization"].startswith("Basic ")


class socksafe:
    """A loopback port with nothing listening (bound, not listening: connections refused)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# -- hostile bodies ---------------------------------------------------------------------------

BOMB_ZEROS = 1 << 30  # 1 GiB of zeros once expanded


def gzip_bomb() -> bytes:
    """~1 MB of gzip that expands to 1 GiB: one 16 MiB member repeated (gzip readers
    expand every member of a multi-member file)."""
    member = gzip.compress(bytes(16 << 20), compresslevel=9)
    return member * (BOMB_ZEROS // (16 << 20))


def test_gzip_bomb_is_stored_as_served_and_never_expanded(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 2 << 20
    sha = hashlib.sha256(bomb).hexdigest()
    url = threaded_server.add("/bomb.gz", bomb, faults=Fault(gzip=True))
    data_dir = tmp_path / "data"
    script = (
        "import re, sys, pulp_aio_download as pad\n"
        "r = pad.download_sync(sys.argv[1], pad.EngineConfig(data_dir=sys.argv[2]),"
        " expected_digests={'sha256': sys.argv[3]})\n"
        "status = open('/proc/self/status').read()\n"
        "print(r.path, re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url, str(data_dir), sha],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path, peak_kib = done.stdout.split()
    assert Path(path).read_bytes() == bomb  # the bytes as served, not the 1 GiB they expand to
    assert threaded_server.requests_for("/bomb.gz")[0].headers["Accept-Encoding"] == "identity"
    assert int(peak_kib) < 150 * 1024  # peak RSS of the whole process, far below 1 GiB


async def test_gzip_bomb_expanded_size_never_counts(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    compressed = zlib.compress(bytes(10 << 20), 9)  # 10 MiB of zeros as ~10 KB
    url = fault_server.add("/z", compressed, faults=Fault(gzip=True))
    config = pad.EngineConfig(storage=LocalStorage(tmp_path / "store"))
    async with pad.DownloadEngine(config) as engine:
        result = await engine.download(url, expected_size=len(compressed))
    assert result.size == len(compressed)
    assert result.path is not None and result.path.read_bytes() == compressed
    assert result.headers.get("Content-Encoding") == "gzip"


@pytest.mark.parametrize("with_length", [False, True], ids=["no-length", "overrun-length"])
async def test_endless_body_is_stopped_at_the_expected_size(
    fault_server: FaultServer, tmp_path: Path, with_length: bool
) -> None:
    data = os.urandom(100_000)
    overrun = 64 << 20  # the server would send 64 MiB more
    url = fault_server.add(
        "/endless", data, faults=Fault(extra_bytes=overrun, extra_with_length=with_length)
    )
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=1))
    config = pad.EngineConfig(storage=LocalStorage(tmp_path / "store"), remotes={"default": remote})
    async with pad.DownloadEngine(config) as engine, bound(20):
        if with_length:
            # Content-Length is the file's: the extra bytes are never stored. When they
            # reach aiohttp's parser together with the headers it refuses the response
            # instead (timing-dependent); either way nothing wrong is stored.
            outcome: pad.DownloadResult | pad.DownloadError
            try:
                outcome = await engine.download(url, expected_size=len(data))
            except pad.ConnectionFailed as exc:
                outcome = exc
            if isinstance(outcome, pad.DownloadResult):
                assert outcome.path is not None and outcome.path.read_bytes() == data
            else:
                assert "invalid HTTP response" in str(outcome)
                assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))
            return
        with pytest.raises(pad.SizeMismatch) as info:
            await engine.download(url, expected_size=len(data))
    assert info.value.expected == len(data)
    assert len(data) < info.value.actual <= len(data) + (4 << 20)
    assert "stopped after" in str(info.value)
    await until(lambda: fault_server.stats("/endless").client_disconnected)  # the client hung up
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


async def test_redirect_location_with_credentials_is_a_download_error(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fault_server.add("/gone", b"x", faults=Fault(status=404))
    fault_server.add(
        "/hop",
        b"x",
        faults=Fault(redirect_to=f"http://{USER}:{SECRET}@127.0.0.1:{fault_server.port}/gone"),
    )
    fault_server.add("/fine", b"fine")
    urls = [f"http://{USER}:{SECRET}@127.0.0.1:{fault_server.port}/hop", fault_server.url("/fine")]
    async with pad.DownloadEngine(pad.EngineConfig(data_dir=tmp_path / "data")) as engine:
        results = await engine.download_many(urls, return_exceptions=True)
    assert isinstance(results[0], pad.HTTPStatusError) and results[0].status == 404
    assert isinstance(results[1], pad.DownloadResult)
    for text in error_texts(results[0]):
        assert_no_secret(text)
    for record in caplog.records:
        assert_no_secret(record.getMessage())
