"""The command line as a user runs it: a real process against a loopback server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_cli
from pulp_aio_download.testing import Fault, FaultServer


def test_get_prints_location_and_copies(threaded_server: FaultServer, tmp_path: Path) -> None:
    data = b"hello cli" * 1000
    url = threaded_server.add("/a.bin", data)
    out = tmp_path / "copy.bin"
    sha = hashlib.sha256(data).hexdigest()
    proc = run_cli(
        "get",
        url,
        "--sha256",
        sha,
        "--size",
        str(len(data)),
        "-o",
        str(out),
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert proc.returncode == 0, proc.stderr
    stored = Path(proc.stdout.strip())
    assert stored.read_bytes() == data and out.read_bytes() == data
    assert stored.is_relative_to(tmp_path / "d" / "artifacts")


def test_get_failure_exits_1(threaded_server: FaultServer, tmp_path: Path) -> None:
    url = threaded_server.add("/a.bin", b"abc")
    proc = run_cli("get", url, "--sha256", "0" * 64, "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 1
    assert "sha256 mismatch" in proc.stderr and url in proc.stderr


def test_get_bad_arguments_exit_2(tmp_path: Path) -> None:
    proc = run_cli("get", "http://127.0.0.1:9/x", "--sha256", "zz", "--data-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "malformed sha256" in proc.stderr


def test_get_max_speed_caps_the_transfer(threaded_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(1536 * 1024)
    url = threaded_server.add("/capped.bin", data)
    sha = hashlib.sha256(data).hexdigest()
    start = time.monotonic()
    proc = run_cli("get", url, "--sha256", sha, "--max-speed", "1M", "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    # 1.5 MiB at 1 MiB/s, measured around the whole process (start-up only adds to it).
    assert time.monotonic() - start >= 1.4
    assert Path(proc.stdout.strip()).read_bytes() == data


@pytest.mark.parametrize(
    ("value", "message"),
    [("fast", "is not a number of bytes"), ("0", "less than one byte"), ("-1M", "not a number")],
)
def test_max_speed_bad_value_exits_2(tmp_path: Path, value: str, message: str) -> None:
    proc = run_cli(
        "get", "http://127.0.0.1:9/x", f"--max-speed={value}", "--data-dir", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "--max-speed" in proc.stderr and message in proc.stderr


def _manifest(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def test_sync_mirrors_a_manifest(threaded_server: FaultServer, tmp_path: Path) -> None:
    entries = []
    for i in range(300):
        data = os.urandom(100 + i)
        url = threaded_server.add(f"/repo/{i}.bin", data)
        entries.append({"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    manifest = _manifest(tmp_path / "m.jsonl", ["# a comment", "", *entries])
    proc = run_cli(
        "sync",
        str(manifest),
        "--data-dir",
        str(tmp_path / "d"),
        "--json",
        "--progress",
        "none",
        "--concurrency",
        "8",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["files"] == summary["done"] == 300 and summary["failed"] == 0
    for entry in entries:
        sha = str(entry["sha256"])
        assert (tmp_path / "d" / "artifacts" / sha[:2] / sha[2:]).stat().st_size == entry["size"]
    assert threaded_server.totals.peak_inflight <= 8


def test_sync_lists_failures_and_exits_1(threaded_server: FaultServer, tmp_path: Path) -> None:
    good = threaded_server.add("/good", b"good")
    bad = threaded_server.add("/bad", b"", faults=Fault(status=404))
    manifest = _manifest(tmp_path / "m.jsonl", [{"url": good}, {"url": bad}])
    proc = run_cli("sync", str(manifest), "--data-dir", str(tmp_path / "d"), "--progress", "none")
    assert proc.returncode == 1
    assert f"FAILED {bad}: HTTP 404" in proc.stdout
    assert "2 files: 1 done" in proc.stdout


def test_sync_bad_manifest_exits_2_naming_the_line(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    good = threaded_server.add("/good", b"good")
    manifest = _manifest(tmp_path / "m.jsonl", [{"url": good}, {"url": good, "sha256": "nothex"}])
    proc = run_cli("sync", str(manifest), "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and "malformed sha256" in proc.stderr
    assert threaded_server.totals.requests == 0
    for bad_line, message in [
        ("{not json", "invalid JSON"),
        ('{"url": "gopher://x/y"}', "unsupported URL scheme"),
        ('{"url": "http://h/a", "colour": 1}', "unknown key(s) 'colour'"),
        (
            '{"url": "http://h/a", "unit": {"type": "f", "key": "k", "relative_path": "../x"}}',
            "must be relative",
        ),
    ]:
        manifest.write_text(bad_line + "\n")
        proc = run_cli("sync", str(manifest), "--data-dir", str(tmp_path / "d"))
        assert proc.returncode == 2, bad_line
        assert "line 1" in proc.stderr and message in proc.stderr


#: What a sync of a JSONL manifest with the default backends (local storage, SQLite) and no
#: live bar does not need: the bar, the other backends, the XML parser of Metalink
#: documents, the readers of other inputs, verify, the rate limiter, OpenTelemetry.
NOT_FOR_A_JSONL_SYNC = (
    "rich",
    "asyncpg",
    "aiobotocore",
    "botocore",
    "defusedxml",
    "xml.etree",
    "aiolimiter",
    "pulp_aio_download.catalog.postgres",
    "pulp_aio_download.storage.s3",
    "pulp_aio_download.metalink",
    "pulp_aio_download.pulp_manifest",
    "pulp_aio_download.verification",
    "opentelemetry",
)


@pytest.mark.parametrize("progress", ["none", "json"])
def test_sync_of_a_jsonl_manifest_imports_only_what_it_needs(
    threaded_server: FaultServer, tmp_path: Path, progress: str
) -> None:
    data = b"imported" * 100
    url = threaded_server.add("/i.bin", data)
    manifest = _manifest(
        tmp_path / "m.jsonl", [{"url": url, "sha256": hashlib.sha256(data).hexdigest()}]
    )
    argv = ["sync", str(manifest), "--data-dir", str(tmp_path / "d"), "--progress", progress]
    code = (
        "import sys; from pulp_aio_download.cli import main\n"
        f"code = main({argv!r})\n"
        f"loaded = sorted(m for m in {NOT_FOR_A_JSONL_SYNC!r} if m in sys.modules)\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
        "sys.exit(code or (3 if loaded else 0))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr
    stored = tmp_path / "d" / "artifacts" / hashlib.sha256(data).hexdigest()[:2]
    assert [p.read_bytes() for p in stored.iterdir()] == [data]  # it did download


def test_help_does_not_import_aiohttp() -> None:
    code = (
        "import sys; from pulp_aio_download.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sync" in proc.stdout
