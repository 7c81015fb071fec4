"""``sync --segments N``: every remote of the run fetches large files in N ranges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

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


def _holes(kept: list[tuple[int, ...]], size: int) -> list[tuple[int, int]]:
    holes, pos = [], 0
    for start, end in [*kept, (size, size)]:
        if start > pos:
            holes.append((pos, start))
        pos = max(pos, end)
    return holes


def _merged(asked: Iterable[str]) -> list[tuple[int, int]]:
    """The bytes ``bytes=A-B`` ranges cover, as sorted half-open spans."""
    spans: list[tuple[int, int]] = []
    for first, last in sorted(
        tuple(int(v) for v in r.removeprefix("bytes=").split("-")) for r in asked
    ):
        if spans and first <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], last + 1))
        else:
            spans.append((first, last + 1))
    return spans


def _sidecar(data_dir: Path) -> dict[str, object] | None:
    for path in (data_dir / "artifacts" / ".partials").glob("*.json"):
        try:
            meta: dict[str, object] = json.loads(path.read_text())
        except (ValueError, FileNotFoundError):
            continue  # being replaced, or the download just finished
        return meta
    return None


def _on_disk(meta: dict[str, object] | None) -> int:
    ranges = meta["ranges"] if meta else []
    assert isinstance(ranges, list)
    return sum(b - a for a, b in ranges)


def test_kill_9_of_a_segmented_sync_then_rerun_fetches_only_the_holes(
    tmp_path: Path, nginx: Callable[..., NginxServer]
) -> None:
    data = os.urandom(16 * MiB)
    www = tmp_path / "www"
    www.mkdir()
    (www / "big.iso").write_bytes(data)
    server = nginx(www, rate=1 * MiB)  # 4 MiB ranges: about 3 s each after the first MiB
    line = {"url": f"{server.base_url}/big.iso", "sha256": sha256(data), "size": len(data)}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    (tmp_path / "remotes.toml").write_text("[remotes.default]\nsegment_threshold = 2097152\n")
    data_dir = tmp_path / "data"
    args = [
        "sync",
        str(tmp_path / "manifest.jsonl"),
        "--segments",
        "4",
        "--remotes",
        str(tmp_path / "remotes.toml"),
        "--data-dir",
        str(data_dir),
        "--progress",
        "none",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "pulp_aio_download", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _on_disk(_sidecar(data_dir)) < 2 * MiB:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("no partial of 2 MiB before the process ended")
            time.sleep(0.02)  # polling the sidecar, not synchronisation by sleep
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    meta = _sidecar(data_dir)
    assert meta is not None
    kept = [tuple(r) for r in meta["ranges"]]  # type: ignore[union-attr]
    carried = _on_disk(meta)
    assert 2 * MiB <= carried < len(data)
    before = len(server.wait_logged(4))  # logged once the dead client's connections closed

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    holes = _holes(kept, len(data))
    again = server.wait_sent(len(data) - carried, after=before)
    # Only the holes were asked for (each cut in one range or more).
    assert _merged(str(e["range"]) for e in again) == holes
    stored = data_dir / "artifacts" / sha256(data)[:2] / sha256(data)[2:]
    assert stored.read_bytes() == data
    assert list((data_dir / "artifacts" / ".partials").iterdir()) == []
    assert list((data_dir / "artifacts" / ".staging").iterdir()) == []
