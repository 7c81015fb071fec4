"""``pulp-aio-download demo``: offline, the whole pipeline, exit 0 when it behaved as designed."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")}
    return subprocess.run(
        [sys.executable, "-m", "pulp_aio_download", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_demo_mirrors_refuses_the_corrupt_file_and_retries_the_flaky_one(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "d"
    proc = run_demo("--progress", "none", "--json", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["as_designed"] is True
    assert summary["files"] == 300 and summary["failed"] == 1 and summary["done"] == 299
    assert summary["retried"] >= 1
    [failure] = summary["failures"]
    assert failure["url"] == summary["corrupt"]["url"]
    assert failure["error"] == "DigestMismatch" and "sha256 mismatch" in failure["reason"]
    assert summary["corrupt"]["stored"] is False
    assert summary["flaky"]["attempts"] == 2
    assert summary["units"] == 299
    assert "refused (sha256 mismatch" in summary["explanation"][0]
    assert "succeeded on attempt 2" in summary["explanation"][1]
    # The pipeline's products: artifacts on disk and the SQLite catalog.
    artifacts = [p for p in (data_dir / "artifacts").rglob("*") if p.is_file()]
    with contextlib.closing(sqlite3.connect(data_dir / "catalog.sqlite3")) as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert tables
    assert len(artifacts) >= 290  # a few small files are identical (empty), stored once


def test_demo_text_output_and_a_second_run_from_the_store(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "d")
    first = run_demo("--files", "30", "--progress", "none", "--data-dir", data_dir)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert out.startswith("Serving a sample repository of 30 files")
    assert "30 files: 29 done" in out and "1 failed" in out
    assert "FAILED http://127.0.0.1:" in out
    assert "The corrupt file" in out and "nothing was stored or recorded for it" in out
    assert "The flaky file" in out and "(retried)" in out
    second = run_demo("--files", "30", "--progress", "none", "--data-dir", data_dir)
    assert second.returncode == 0, second.stderr
    assert "already stored, so it needed no request" in second.stdout
    assert "\x1b" not in first.stdout + first.stderr + second.stdout + second.stderr


def test_demo_rejects_too_few_files(tmp_path: Path) -> None:
    proc = run_demo("--files", "3", "--data-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "--files must be at least 6" in proc.stderr
