"""Crashes and cancellations: nothing partial survives, and a rerun completes the job.

* ``kill -9`` of a real ``pulp-aio-download sync`` process in the middle of a batch of large
  (slowly served) and small files: no unvalidated file under a final key; the rerun stores
  every file once, leaves no staging file, and ``verify`` exits 0.
* SIGINT of the same process: it stops cleanly, without a rerun, leaving no staging file.
* Cancelling ``download_many`` (and the first error of ``run_batch`` with
  ``return_exceptions=False``): no staging file, only complete artifacts, catalog consistent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import cli, until
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.testing import Fault, FaultServer

if sys.version_info >= (3, 11):
    from asyncio import timeout as bound
else:  # pragma: no cover - Python 3.10: aiohttp depends on async-timeout there
    from async_timeout import timeout as bound

SMALL = 30
LARGE = 2


def make_files(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    small = [rng.randbytes(rng.randrange(1, 20_000)) for _ in range(SMALL)]
    large = [rng.randbytes(2_000_000 + i) for i in range(LARGE)]
    return large + small


def write_manifest(path: Path, server: FaultServer, files: list[bytes], slow: Fault) -> None:
    lines = []
    for i, data in enumerate(files):
        name = f"/repo/{i}.bin"
        # The first request of each file is slow; the rerun's requests are served at once.
        server.add(name, data, faults=[slow, None])
        lines.append(
            json.dumps(
                {
                    "url": server.url(name),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "unit": {"type": "file", "key": f"k{i}", "relative_path": f"f/{i}.bin"},
                    "repository": "crashy",
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")


def artifacts(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not {".staging", ".quarantine"} & set(p.parts)
    )


def assert_final_keys_valid(root: Path) -> None:
    """Whatever is under a final key is complete and valid (its name is its sha256)."""
    for path in artifacts(root):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.parent.name + path.name


def start_sync(manifest: Path, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--progress", "json",
            "--concurrency", "4"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_mid_batch(process: subprocess.Popen[str], data_dir: Path, *, done: int) -> None:
    """Read JSON progress until ``done`` files are finished while a large one is staging."""
    assert process.stdout is not None
    staging = data_dir / "artifacts" / ".staging"
    deadline = time.monotonic() + 30
    for line in process.stdout:
        report = json.loads(line)
        if report["done"] >= done and staging.is_dir() and any(staging.iterdir()):
            return
        if report["state"] != "running" or time.monotonic() > deadline:
            break
    process.kill()
    process.wait()
    pytest.fail("the batch finished (or stalled) before it could be interrupted mid-way")


def test_kill_9_mid_batch_then_rerun(threaded_server: FaultServer, tmp_path: Path) -> None:
    files = make_files(9)
    manifest = tmp_path / "manifest.jsonl"
    # 2 MB at 400 KB/s: the large files take ~5 s, the small ones finish early.
    write_manifest(manifest, threaded_server, files, Fault(trickle=400_000))
    data_dir = tmp_path / "data"
    process = start_sync(manifest, data_dir)
    try:
        wait_mid_batch(process, data_dir, done=SMALL // 2)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    store = data_dir / "artifacts"
    assert_final_keys_valid(store)
    assert len(artifacts(store)) < len(files)
    left = list((store / ".staging").iterdir())
    assert left, "the killed process left its staging files (the rerun must clean them)"

    rerun = subprocess.run(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--json", "--progress", "none"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["done"] == len(files) and summary["failed"] == 0
    assert summary["cached"] >= SMALL // 2
    assert list((store / ".staging").iterdir()) == []
    assert_final_keys_valid(store)
    assert len(artifacts(store)) == len({hashlib.sha256(d).digest() for d in files})

    verify = subprocess.run(
        cli("verify", "--data-dir", str(data_dir), "--json", "--progress", "none"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["checked"] == len(files) and report["ok"] == len(files)

    units = subprocess.run(
        cli("catalog", "units", "crashy", "--data-dir", str(data_dir)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert units.returncode == 0, units.stderr
    keys = [u["key"] for u in json.loads(units.stdout)]
    assert sorted(keys) == sorted(f"k{i}" for i in range(len(files)))  # no duplicates


def test_sigint_mid_batch_stops_cleanly(threaded_server: FaultServer, tmp_path: Path) -> None:
    files = make_files(10)
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, threaded_server, files, Fault(trickle=400_000))
    data_dir = tmp_path / "data"
    process = start_sync(manifest, data_dir)
    try:
        wait_mid_batch(process, data_dir, done=SMALL // 2)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert code != 0
    store = data_dir / "artifacts"
    assert list((store / ".staging").iterdir()) == []
    assert_final_keys_valid(store)
    assert len(artifacts(store)) < len(files)


# -- engine-level cancellation ---------------------------------------------------------


def requests_for(server: FaultServer, files: list[bytes], prefix: str) -> list[pad.DownloadRequest]:
    out = []
    for i, data in enumerate(files):
        server.add(f"/{prefix}/{i}", data)
        out.append(
            pad.DownloadRequest(
                server.url(f"/{prefix}/{i}"),
                expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                expected_size=len(data),
                unit=pad.UnitSpec("file", f"{prefix}{i}"),
                repository="r",
            )
        )
    return out


async def assert_consistent(data_dir: Path) -> None:
    store = data_dir / "artifacts"
    assert list((store / ".staging").iterdir()) == []
    assert_final_keys_valid(store)
    async with SQLiteCatalog(data_dir / "catalog.sqlite3") as catalog:
        recorded = {r.sha256 async for r in catalog.unit_files() if r.location is not None}
    # Every recorded location holds its file, and every artifact is recorded (a cancellation
    # between store and record rolls the store back).
    assert recorded == {p.parent.name + p.name for p in artifacts(store)}


async def test_cancelling_download_many_leaves_nothing_partial(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    rng = random.Random(11)
    files = [rng.randbytes(rng.randrange(100, 300_000)) for _ in range(40)]
    requests = requests_for(fault_server, files, "c")
    for i in range(20, 40):
        fault_server.set_faults(f"/c/{i}", Fault(stall_after=50_000))
    # Files longer than 50 000 bytes stall mid-body; the server counts what it sent them.
    stalling = [f"/c/{i}" for i in range(20, 40) if len(files[i]) > 50_000]

    def stalled() -> int:
        held = (fault_server.stats(path) for path in stalling)
        return sum(1 for s in held if s.inflight and s.bytes_sent == 50_000)

    data_dir = tmp_path / "data"
    async with pad.DownloadEngine(pad.EngineConfig(data_dir=data_dir, max_connections=8)) as engine:
        task = asyncio.ensure_future(engine.download_many(requests, return_exceptions=True))
        # Every slot holds a transfer the server stalled; the files before them are done or
        # in their hooks (storing, recording) when the cancellation comes.
        await until(lambda: stalled() == 8)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert engine.statistics().in_flight == 0
    await assert_consistent(data_dir)


async def test_first_error_cancels_the_rest_cleanly(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    rng = random.Random(12)
    files = [rng.randbytes(rng.randrange(100, 300_000)) for _ in range(30)]
    requests = requests_for(fault_server, files, "e")
    for i in range(1, 30):
        fault_server.set_faults(f"/e/{i}", Fault(stall_after=10_000))
    fault_server.set_faults("/e/0", Fault(status=404))
    data_dir = tmp_path / "data"
    config = pad.EngineConfig(data_dir=data_dir, max_connections=8)
    async with pad.DownloadEngine(config) as engine:
        with pytest.raises(pad.HTTPStatusError):
            async with bound(10):
                await engine.download_many(requests, return_exceptions=False)
    await assert_consistent(data_dir)


def test_run_batch_first_error_raises_and_leaves_nothing(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    rng = random.Random(13)
    files = [rng.randbytes(rng.randrange(100, 100_000)) for _ in range(20)]
    requests = []
    for i, data in enumerate(files):
        fault = Fault(status=410) if i == 3 else Fault(stall_after=1000)
        threaded_server.add(f"/rb/{i}", data, faults=fault)
        requests.append(
            pad.DownloadRequest(
                threaded_server.url(f"/rb/{i}"),
                expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
            )
        )
    data_dir = tmp_path / "data"
    started = time.monotonic()
    with pytest.raises(pad.HTTPStatusError) as info:
        pad.run_batch(requests, pad.EngineConfig(data_dir=data_dir), return_exceptions=False)
    assert info.value.status == 410
    assert time.monotonic() - started < 30  # the stalled transfers were cancelled, not awaited
    assert list((data_dir / "artifacts" / ".staging").iterdir()) == []
    assert artifacts(data_dir / "artifacts") == []
    assert os.path.exists(data_dir / "catalog.sqlite3")


async def test_rerun_takes_over_claims_of_a_dead_process(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    data = b"claimed by a dead worker"
    sha = hashlib.sha256(data).hexdigest()
    url = fault_server.add("/claimed", data)
    data_dir = tmp_path / "data"
    async with SQLiteCatalog(data_dir / "catalog.sqlite3") as catalog:
        owner = f"{socket.gethostname()}:{child.pid}:deadbeef"
        assert await catalog.claim(sha, owner, 300.0)
    async with pad.DownloadEngine(pad.EngineConfig(data_dir=data_dir)) as engine, bound(3):
        result = await engine.download(url, expected_digests={"sha256": sha})
    assert result.path is not None and result.path.read_bytes() == data


async def test_cancel_between_store_and_record_leaves_no_orphan(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    from pulp_aio_download.hooks import create_unit, record_unit_file, store

    entered = asyncio.Event()

    async def slow_hook(ctx: object) -> None:
        entered.set()
        await asyncio.sleep(3600)

    data = b"stored, then cancelled before it is recorded"
    sha = hashlib.sha256(data).hexdigest()
    url = fault_server.add("/orphan", data)
    config = pad.EngineConfig(
        data_dir=tmp_path / "data", hooks=[store, slow_hook, record_unit_file, create_unit]
    )
    async with pad.DownloadEngine(config) as engine:
        task = asyncio.ensure_future(engine.download(url, expected_digests={"sha256": sha}))
        await asyncio.wait_for(entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stored = await engine.storage.stat(sha)
        assert engine.catalog is not None
        recorded = await engine.catalog.get_unit_file(sha)
        assert (stored is None) == (recorded is None or recorded.location is None)


@pytest.mark.parametrize("durability", ["file", "none"])
async def test_cancelled_commit_publishes_nothing(tmp_path: Path, durability: str) -> None:
    from pulp_aio_download.storage.local import LocalStorage

    storage = LocalStorage(tmp_path / "store", durability=durability)
    await storage.open()
    data = b"committed in a worker thread while the caller was cancelled"
    sha = hashlib.sha256(data).hexdigest()
    staged = storage.new_staging_path()
    staged.write_bytes(data)
    task = asyncio.ensure_future(storage.commit(staged, sha, len(data)))
    await asyncio.sleep(0)  # the rename is now handed to a worker thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await storage.stat(sha) is None  # the rename happened, and was undone
    await storage.close()
