"""Every script in examples/ runs, against a loopback server, and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pulp_aio_download.testing import FaultServer
from pulp_aio_download.testing.repo import generate_repository

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "first_download.py": [
        "async: ",
        "sync: run_batch 10 of 10 ok, 1 cached",
        "sync: download_sync ",
    ],
    "mirror_async.py": ["mirrored 25 of 25 files", "repository 'mirror' has 25 units"],
    "sync_task.py": [
        "task report: Downloading 25 files: 24/25 failed",
        "24 models made, 1 refused",
    ],
    "lazy_fetch.py": ["registered 25 files, 25 units, nothing downloaded", "cached=True"],
    "remotes_and_errors.py": ["wrong digest: DigestMismatch", "missing: HTTPStatusError 404"],
}


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")},
    )


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_a_local_server(
    name: str, threaded_server: FaultServer, tmp_path: Path
) -> None:
    repo = generate_repository(None, files=25, large=1, large_size=512 * 1024, gzip_files=1)
    base = repo.serve(threaded_server, "/repo/")
    proc = run_example(name, base, "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in EXPECTED[name]:
        assert text in proc.stdout, proc.stdout
    assert threaded_server.stats("/repo/PULP_MANIFEST").requests == 1
    assert (tmp_path / "data" / "catalog.sqlite3").exists()


def test_example_serves_its_own_sample_without_arguments(tmp_path: Path) -> None:
    proc = run_example("lazy_fetch.py", "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "registered 40 files" in proc.stdout
