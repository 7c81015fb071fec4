"""``sync --workers N`` and ``run_batch(..., workers=N)``: real worker processes, a real
threaded FaultServer that counts the requests to every path, a real SQLite catalog.

* 2 and 4 workers mirror a manifest in which the same content appears under several
  URLs, far apart: every file stored with its digest, every unit recorded, each content
  transferred once (counted at the server), the merged JSON progress counting every file
  once;
* ``kill -9`` of the worker that is mid-transfer: the others take its files over, nothing
  half-done is left (no staging file, no claim, no record without its file), and a rerun
  finds everything stored;
* SIGINT to the parent stops every worker, cleanly;
* ``run_batch(workers=2)`` keeps the input order, with a failure in its place;
* the default count is capped by what is left to download;
* two ``sync --workers 2`` runs at once on one PostgreSQL catalog and one S3 bucket (two
  hosts) transfer every content once in all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import cli
from pulp_aio_download.testing import Fault, FaultServer

DISTINCT = 40
#: Lines whose content another line (far away in the manifest) also has, under its URL.
REPEATED = (0, 3, 7, 12, 20, 33)


def content(index: int, size: int = 3000) -> bytes:
    return hashlib.sha512(f"file {index}".encode()).digest() * (size // 64) + bytes([index])


def write_manifest(path: Path, server: FaultServer, files: list[bytes]) -> list[list[str]]:
    """One line per file, then one more line (another URL, far away) for each of
    ``REPEATED``; returns the paths of every content."""
    lines: list[dict[str, object]] = []
    paths: list[list[str]] = [[] for _ in files]

    def line(index: int, name: str) -> None:
        data = files[index]
        server.add(name, data)
        paths[index].append(name)
        lines.append(
            {
                "url": server.url(name),
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "unit": {
                    "type": "file",
                    "key": f"line{len(lines)}",
                    "relative_path": name.lstrip("/"),
                },
                "repository": "mirror",
            }
        )

    for index in range(len(files)):
        line(index, f"/repo/{index}.bin")
    for index in REPEATED:
        line(index, f"/mirror/copy-of-{index}.bin")
    path.write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    return paths


def stored(store: Path) -> list[Path]:
    return sorted(
        p
        for p in store.rglob("*")
        if p.is_file() and not {".staging", ".quarantine", ".partials"} & set(p.parts)
    )


def assert_nothing_half_done(data_dir: Path) -> None:
    """No staging file, no claim, every artifact valid under its key and recorded, and
    every recorded location holding its file."""
    store = data_dir / "artifacts"
    assert list((store / ".staging").iterdir()) == []
    artifacts = stored(store)
    for path in artifacts:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.parent.name + path.name
    with sqlite3.connect(data_dir / "catalog.sqlite3") as db:
        claims = db.execute("SELECT * FROM claims").fetchall()
        recorded = {
            sha for (sha,) in db.execute("SELECT sha256 FROM unit_files WHERE location IS NOT NULL")
        }
    db.close()
    assert claims == []
    assert recorded == {p.parent.name + p.name for p in artifacts}


def worker_pids(pid: int) -> list[int]:
    """The worker processes of the parent ``pid`` (Linux): its children spawned by
    multiprocessing (not its resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def owner_of_port(port: int, candidates: list[int]) -> int:
    """The process among ``candidates`` whose TCP socket has local ``port`` (Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for row in fh:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process of {candidates} has a socket on port {port}")


def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds, looked at every few milliseconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"not reached in {timeout} s: {what}")
        time.sleep(0.005)


@pytest.fixture
def popen() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts, killed (if still running) and reaped after it."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_mirror_a_manifest_transferring_each_content_once(
    threaded_server: FaultServer, tmp_path: Path, workers: int
) -> None:
    files = [content(i) for i in range(DISTINCT)]
    manifest = tmp_path / "manifest.jsonl"
    paths = write_manifest(manifest, threaded_server, files)
    data_dir = tmp_path / "data"
    done = subprocess.run(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--workers", str(workers),
            "--concurrency", "8", "--progress", "json", "--json", "-v"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"over {workers} worker processes" in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    summary = lines[-1]
    reports = lines[:-1]
    total = DISTINCT + len(REPEATED)
    assert summary["files"] == summary["done"] == total and summary["failed"] == 0
    # One transfer per content, whichever URL and whichever worker.
    for names in paths:
        assert sum(threaded_server.stats(name).requests for name in names) == 1, names
    # The merged progress counts every file once.
    assert reports and reports[-1]["state"] == "completed"
    assert reports[-1]["done"] == reports[-1]["total"] == total
    dones = [r["done"] for r in reports]
    assert dones == sorted(dones) and all(r["total"] == total for r in reports)
    assert reports[-1]["bytes_done"] == sum(len(files[i]) for i in range(DISTINCT)) + sum(
        len(files[i]) for i in REPEATED
    )
    store = data_dir / "artifacts"
    assert {p.parent.name + p.name for p in stored(store)} == {
        hashlib.sha256(data).hexdigest() for data in files
    }
    assert_nothing_half_done(data_dir)
    units = subprocess.run(
        cli("catalog", "units", "mirror", "--data-dir", str(data_dir)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert units.returncode == 0, units.stderr
    assert sorted(u["key"] for u in json.loads(units.stdout)) == sorted(
        f"line{i}" for i in range(total)
    )


def start_stalled_sync(
    server: FaultServer, tmp_path: Path, popen: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], Path, Path, str]:
    """A ``sync --workers 2`` whose one large file stalls after 2 MB on its first
    request (the next request is served whole); returns once a worker is mid-transfer."""
    files = [content(i) for i in range(DISTINCT)]
    large = content(99, 3_000_000)
    files.append(large)
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, server, files)
    stalled = f"/repo/{len(files) - 1}.bin"
    server.set_faults(stalled, [Fault(stall_after=2_000_000, stall_seconds=120), None])
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--workers", "2",
            "--concurrency", "4", "--progress", "none", "--json", "-v"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    popen.append(process)
    staging = data_dir / "artifacts" / ".staging"
    wait_for(
        lambda: (
            server.stats(stalled).bytes_sent >= 2_000_000
            and staging.is_dir()
            and any(staging.iterdir())
        ),
        "the large file staged and stalled mid-transfer",
    )
    return process, manifest, data_dir, stalled


def test_kill_9_of_a_worker_mid_transfer_leaves_nothing_half_done(
    threaded_server: FaultServer, tmp_path: Path, popen: list[subprocess.Popen[str]]
) -> None:
    process, manifest, data_dir, stalled = start_stalled_sync(threaded_server, tmp_path, popen)
    workers = worker_pids(process.pid)
    assert len(workers) == 2
    peer = threaded_server.requests_for(stalled)[0].peer
    assert peer is not None
    victim = owner_of_port(peer[1], workers)
    os.kill(victim, signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    # The other worker took the file over (a second request, served whole).
    assert process.returncode == 0, err
    assert "was killed by SIGKILL" in err
    summary = json.loads(out)
    assert summary["done"] == summary["files"] == DISTINCT + 1 + len(REPEATED)
    assert threaded_server.stats(stalled).requests == 2
    print("workers", workers, "killed", victim, err)
    assert_nothing_half_done(data_dir)

    rerun = subprocess.run(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--workers", "2",
            "--progress", "none", "--json"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    again = json.loads(rerun.stdout)
    assert again["cached"] == again["done"] == again["files"]
    verify = subprocess.run(
        cli("verify", "--data-dir", str(data_dir), "--json", "--progress", "none"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] == report["checked"] == DISTINCT + 1


def test_sigint_to_the_parent_stops_every_worker(
    threaded_server: FaultServer, tmp_path: Path, popen: list[subprocess.Popen[str]]
) -> None:
    process, _, data_dir, stalled = start_stalled_sync(threaded_server, tmp_path, popen)
    workers = worker_pids(process.pid)
    assert len(workers) == 2
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived its parent"
    assert threaded_server.stats(stalled).requests == 1
    assert_nothing_half_done(data_dir)


def test_run_batch_with_workers_keeps_the_input_order(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    files = [content(i) for i in range(30)]
    requests = []
    for i, data in enumerate(files):
        requests.append(
            pad.DownloadRequest(
                threaded_server.add(f"/batch/{i}", data),
                expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                expected_size=len(data),
            )
        )
    requests.insert(17, pad.DownloadRequest(threaded_server.url("/batch/missing")))
    reports: list[pad.ProgressReport] = []
    config = pad.EngineConfig(data_dir=tmp_path / "data", progress=reports.append)
    results = pad.run_batch(requests, config, workers=2)
    assert len(results) == len(requests)
    for request, outcome in zip(requests, results, strict=True):
        if request.url.endswith("/missing"):
            assert isinstance(outcome, pad.HTTPStatusError) and outcome.status == 404
            assert outcome.url == request.url
        else:
            assert isinstance(outcome, pad.DownloadResult), outcome
            assert outcome.url == request.url and outcome.path is not None
            assert outcome.sha256 == request.sha256
            assert hashlib.sha256(outcome.path.read_bytes()).hexdigest() == request.sha256
    final = reports[-1]
    assert (final.state, final.done, final.failed, final.total) == ("failed", 30, 1, 31)

    with pytest.raises(pad.HTTPStatusError) as raised:
        pad.run_batch(requests, config, return_exceptions=False, workers=2)
    assert raised.value.url == threaded_server.url("/batch/missing")
    assert list((tmp_path / "data" / "artifacts" / ".staging").iterdir()) == []


def test_run_batch_with_workers_and_no_data_dir_leaves_only_the_workers_stores(
    threaded_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a data dir each worker stores into a temporary directory of its own, as
    ``download_sync`` does; the parent leaves none of its own."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the workers' temporary directories too
    monkeypatch.setattr(tempfile, "tempdir", None)
    files = [content(i) for i in range(12)]
    requests = [
        pad.DownloadRequest(
            threaded_server.add(f"/temp/{i}", data),
            expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
        )
        for i, data in enumerate(files)
    ]
    results = pad.run_batch(requests, workers=2)
    roots = set()
    for data, outcome in zip(files, results, strict=True):
        assert isinstance(outcome, pad.DownloadResult), outcome
        assert outcome.path is not None and outcome.path.read_bytes() == data
        roots.add(outcome.path.parents[1])
    partials = tmp_path / f"pulp-aio-download-partials-{os.getuid()}"
    # One per worker that stored something (an empty one is removed), none of the parent.
    assert set(tmp_path.glob("pulp-aio-download-*")) - {partials} == roots


def test_a_resync_with_workers_serves_what_is_stored_first_and_reports_once(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    files = [content(i) for i in range(30)]
    requests = [
        pad.DownloadRequest(
            threaded_server.add(f"/again/{i}", data),
            expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
            expected_size=len(data),
        )
        for i, data in enumerate(files)
    ]
    config = pad.EngineConfig(data_dir=tmp_path / "data")
    first = pad.run_batch(requests, config, workers=2)
    assert all(isinstance(r, pad.DownloadResult) and not r.cached for r in first)
    fetched = len(threaded_server.requests)
    damaged = (4, 21)
    for index in damaged:
        path = first[index].path
        assert path is not None
        path.write_bytes(b"short")

    reports: list[pad.ProgressReport] = []
    config = pad.EngineConfig(data_dir=tmp_path / "data", progress=reports.append)
    again = pad.run_batch(requests, config, workers=2)

    assert [i for i, r in enumerate(again) if not r.cached] == list(damaged)
    assert len(threaded_server.requests) == fetched + len(damaged)
    for data, result in zip(files, again, strict=True):
        assert result.path is not None and result.path.read_bytes() == data
    # One stream for the batch: the stored files and those the workers fetched.
    assert {r.message for r in reports} == {"Downloading 30 files"}
    assert [r.state for r in reports].count("running") == len(reports) - 1
    final = reports[-1]
    assert (final.state, final.total, final.done, final.cached) == ("completed", 30, 30, 28)

    # Everything stored now: served without a worker, with no request.
    reports.clear()
    third = pad.run_batch(requests, config, workers=2)
    assert all(r.cached for r in third)
    assert len(threaded_server.requests) == fetched + len(damaged)
    assert (reports[-1].state, reports[-1].done, reports[-1].cached) == ("completed", 30, 30)


def test_workers_after_the_parent_served_from_storage_and_catalog_objects(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    # The parent opens and closes the configured objects to serve what is stored; the
    # workers then still get a working configuration.
    files = [content(i) for i in range(12)]
    requests = [
        pad.DownloadRequest(
            threaded_server.add(f"/objects/{i}", data),
            expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
        )
        for i, data in enumerate(files)
    ]

    def config() -> pad.EngineConfig:
        return pad.EngineConfig(
            storage=pad.LocalStorage(tmp_path / "store"),
            catalog=pad.SQLiteCatalog(tmp_path / "catalog.sqlite3"),
        )

    half = pad.run_batch(requests[:6], config(), workers=2)
    assert [r for r in half if not isinstance(r, pad.DownloadResult)] == []
    results = pad.run_batch(requests, config(), workers=2)
    assert [r.cached for r in results] == [True] * 6 + [False] * 6
    for data, result in zip(files, results, strict=True):
        assert result.path is not None and result.path.read_bytes() == data


def test_the_default_count_is_capped_by_what_is_left_to_download(
    threaded_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import pulp_aio_download.parallel.plan as plan

    monkeypatch.setattr(plan, "FILES_PER_WORKER", 5)
    monkeypatch.setattr(plan, "available_cores", lambda: 2)
    requests = []
    for i in range(20):
        data = content(i)
        requests.append(
            pad.DownloadRequest(
                threaded_server.add(f"/left/{i}", data),
                expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                expected_size=len(data),
            )
        )
    config = pad.EngineConfig(data_dir=tmp_path / "data")
    caplog.set_level("INFO", logger="pulp_aio_download.parallel")
    results = pad.run_batch(requests, config, workers=None)
    assert all(isinstance(r, pad.DownloadResult) for r in results)
    assert "20 files over 2 worker processes" in caplog.text
    caplog.clear()
    # Three files gone from the store: what is left is one worker's work.
    for result in results[:3]:
        assert result.path is not None
        result.path.unlink()
    again = pad.run_batch(requests, config, workers=None)
    assert [r.cached for r in again if isinstance(r, pad.DownloadResult)] == [False] * 3 + [
        True
    ] * 17
    assert "3 files over 1 worker processes" in caplog.text


async def test_two_hosts_with_workers_share_one_postgresql_catalog(
    tmp_path: Path,
    threaded_server: FaultServer,
    postgres_database: str,
    s3_bucket: tuple[str, str],
) -> None:
    """Two ``sync --workers 2`` runs at once (two hosts, as far as the catalog can tell)
    over overlapping manifests, one PostgreSQL catalog and one S3 bucket: every content is
    transferred once in all, by whichever worker of whichever run claimed it."""
    endpoint, bucket = s3_bucket
    files = [content(i) for i in range(120)]
    for i, data in enumerate(files):
        threaded_server.add(f"/hosts/f{i}.bin", data)
    indexes = {"a": range(0, 100), "b": range(20, 120)}
    commands = {}
    for name, wanted in indexes.items():
        manifest = tmp_path / f"{name}.jsonl"
        manifest.write_text(
            "".join(
                json.dumps(
                    {
                        "url": threaded_server.url(f"/hosts/f{i}.bin"),
                        "sha256": hashlib.sha256(files[i]).hexdigest(),
                        "size": len(files[i]),
                    }
                )
                + "\n"
                for i in wanted
            )
        )
        commands[name] = cli(
            "sync", str(manifest), "--storage", f"s3://{bucket}/hosts",
            "--s3-endpoint-url", endpoint, "--catalog", postgres_database,
            "--data-dir", str(tmp_path / name), "--workers", "2", "--concurrency", "8",
            "--progress", "none", "--json", "-v",
        )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")}
    procs = {
        name: subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, command in commands.items()
    }
    try:
        outputs = {
            name: await asyncio.to_thread(proc.communicate, timeout=180)
            for name, proc in procs.items()
        }
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    summaries = {}
    for name, proc in procs.items():
        out, err = outputs[name]
        assert proc.returncode == 0, err
        assert "over 2 worker processes" in err
        summaries[name] = json.loads(out)
    assert summaries["a"]["done"] == summaries["b"]["done"] == 100
    for i in range(120):
        assert threaded_server.stats(f"/hosts/f{i}.bin").requests == 1, f"f{i}.bin"
    # The 80 files both runs want were transferred by one and served to the other.
    assert summaries["a"]["cached"] + summaries["b"]["cached"] == 80
