"""``sync --segments N``: every remote of the run fetches large files in N ranges."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from helpers import run_cli, sha256
from plugins.nginx import NginxServer

MiB = 1024 * 1024


def _setup(tmp_path: Path, nginx: Callable[..., NginxServer]) -> tuple[NginxServer, bytes]:
    data = os.urandom(4 * MiB)
    www = tmp_path / "www"
    www.mkdir()
    (www / "big.iso").write_bytes(data)
    server = nginx(www)
    line = {"url": f"{server.base_url}/big.iso", "sha256": sha256(data), "size": len(data)}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    # The threshold of the default remote, lowered so that 4 MiB is "large".
    (tmp_path / "remotes.toml").write_text("[remotes.default]\nsegment_threshold = 2097152\n")
    return server, data


def test_sync_segments_fetches_each_large_file_in_ranges(
    tmp_path: Path, nginx: Callable[..., NginxServer]
) -> None:
    server, data = _setup(tmp_path, nginx)
    done = run_cli(
        "sync",
        str(tmp_path / "manifest.jsonl"),
        "--segments",
        "4",
        "--remotes",
        str(tmp_path / "remotes.toml"),
        "--data-dir",
        str(tmp_path / "data"),
        "--progress",
        "none",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failed"] == 0
    stored = tmp_path / "data" / "artifacts" / sha256(data)[:2] / sha256(data)[2:]
    assert stored.read_bytes() == data
    entries = server.wait_logged(4)
    step = len(data) // 4
    assert sorted(str(e["range"]) for e in entries) == [
        f"bytes={a}-{a + step - 1}" for a in range(0, len(data), step)
    ]


def test_without_segments_the_file_is_one_stream(
    tmp_path: Path, nginx: Callable[..., NginxServer]
) -> None:
    server, data = _setup(tmp_path, nginx)
    done = run_cli(
        "sync",
        str(tmp_path / "manifest.jsonl"),
        "--remotes",
        str(tmp_path / "remotes.toml"),
        "--data-dir",
        str(tmp_path / "data"),
        "--progress",
        "none",
    )
    assert done.returncode == 0, done.stderr
    (entry,) = server.wait_logged(1)
    assert entry["range"] == "" and entry["body_bytes"] == len(data)


def test_segments_below_one_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text("")
    done = run_cli(
        "sync", str(tmp_path / "manifest.jsonl"), "--segments", "0", "--data-dir", str(tmp_path)
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "pulp-aio-download: error: --segments must be at least 1"
