"""Resume across processes: a killed or interrupted large transfer continues where it stopped.

Real ``pulp-aio-download`` processes are killed (``kill -9``, SIGINT) in the middle of a
throttled body served by a FaultServer in a thread of the test; the same command is run
again and the server's request log shows what it sent. Engine-level tests cover the
bounds at start (age, total size) and the lock between writers.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import cli, make_engine, remote_once, sha256, until, until_sync
from plugins.nginx import NginxServer
from pulp_aio_download.storage.partials import checkpoint_interval, partial_key
from pulp_aio_download.testing import Fault, FaultServer

MiB = 1024 * 1024
SIZE = 6 * MiB + 123  # above EngineConfig.partial_min_size (4 MiB)
RATE = 2 * MiB  # bytes/s: the first run is killed after about a second
CHUNK = 1 * MiB  # EngineConfig.chunk_size: the batch the writer may still hold


def partials_dir(data_dir: Path) -> Path:
    return data_dir / "artifacts" / ".partials"


def sidecars(data_dir: Path) -> dict[str, dict[str, object]]:
    """The sidecars of the partials in ``data_dir``, by key."""
    found = {}
    directory = partials_dir(data_dir)
    if directory.is_dir():
        for path in directory.glob("*.json"):
            found[path.name.removesuffix(".json")] = json.loads(path.read_text())
    return found


def length(meta: dict[str, object]) -> int:
    ranges = meta["ranges"]
    assert isinstance(ranges, list) and len(ranges) == 1 and ranges[0][0] == 0
    return int(ranges[0][1])


def wait_for_partials(
    process: subprocess.Popen[str], data_dir: Path, *, count: int = 1, at_least: int = 2 * MiB
) -> None:
    """Wait until ``count`` partials each have ``at_least`` bytes checkpointed."""

    def checkpointed() -> bool:
        found = sidecars(data_dir)
        if sum(1 for m in found.values() if length(m) >= at_least) >= count:
            return True
        assert process.poll() is None, f"no {count} partial(s) of {at_least} bytes"
        return False

    try:
        until_sync(checkpointed, timeout=60)
    except AssertionError:
        process.kill()
        process.wait()
        raise


def stop(process: subprocess.Popen[str], sig: int) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def start_get(url: str, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli("get", url, "--data-dir", str(data_dir), *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_get(url: str, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli("get", url, "--data-dir", str(data_dir), "-vv", *extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean(data_dir: Path) -> None:
    store = data_dir / "artifacts"
    assert list((store / ".staging").iterdir()) == []
    assert list(partials_dir(data_dir).iterdir()) == []


def stored(data_dir: Path, data: bytes) -> Path:
    digest = sha256(data)
    path = data_dir / "artifacts" / digest[:2] / digest[2:]
    assert path.read_bytes() == data
    return path


def killed_get(
    server: FaultServer, path: str, data: bytes, data_dir: Path, *extra: str
) -> tuple[int, int]:
    """Start a ``get`` of ``path`` (throttled), ``kill -9`` it mid-body; return the bytes
    the server sent and the length the partial's sidecar names."""
    process = start_get(server.url(path), data_dir, *extra)
    wait_for_partials(process, data_dir)
    assert stop(process, signal.SIGKILL) == -signal.SIGKILL
    (meta,) = sidecars(data_dir).values()
    kept = length(meta)
    assert 2 * MiB <= kept < len(data)
    assert (partials_dir(data_dir) / f"{meta['key']}.part").stat().st_size >= kept
    return server.stats(path).bytes_sent, kept


# -- kill -9 of get, then the same command -------------------------------------------


def test_kill_9_of_get_then_rerun_resumes_with_range(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    threaded_server.add("/big.iso", data, faults=[Fault(trickle=RATE), None])
    data_dir = tmp_path / "data"
    args = ("--sha256", sha256(data), "--size", str(len(data)))
    sent_first, kept = killed_get(threaded_server, "/big.iso", data, data_dir, *args)
    meta = sidecars(data_dir)[partial_key(sha256(data), "")]
    assert meta["url"] == threaded_server.url("/big.iso")
    assert meta["validator"] == f'"{sha256(data)}"'  # the FaultServer's strong ETag
    assert meta["expected_size"] == len(data)

    rerun = run_get(threaded_server.url("/big.iso"), data_dir, *args)
    assert rerun.returncode == 0, rerun.stderr
    first, second = threaded_server.requests_for("/big.iso")
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={kept}-"
    assert second.headers["If-Range"] == f'"{sha256(data)}"'
    assert threaded_server.stats("/big.iso").statuses == [200, 206]
    total = threaded_server.stats("/big.iso").bytes_sent
    assert total == sent_first + len(data) - kept
    # Fetched again: what was in flight (not yet written) plus the bytes after the last
    # checkpoint, which is at most one checkpoint interval behind.
    assert total - len(data) <= checkpoint_interval(len(data)) + CHUNK + 1 * MiB
    assert rerun.stdout.strip().endswith(stored(data_dir, data).name)
    assert "continuing a partial download at byte" in rerun.stderr
    assert_clean(data_dir)


def test_kill_9_of_get_against_nginx_then_rerun_resumes(
    nginx: Callable[..., NginxServer], tmp_path: Path
) -> None:
    """The same with a real third-party server: Debian's nginx, throttled by limit_rate."""
    www = tmp_path / "www"
    www.mkdir()
    data = os.urandom(SIZE)
    (www / "big.iso").write_bytes(data)
    server = nginx(www, rate=RATE)
    url = f"{server.base_url}/big.iso"
    data_dir = tmp_path / "data"
    args = ("--sha256", sha256(data), "--size", str(len(data)))
    process = start_get(url, data_dir, *args)
    wait_for_partials(process, data_dir)
    assert stop(process, signal.SIGKILL) == -signal.SIGKILL
    (meta,) = sidecars(data_dir).values()
    kept = length(meta)
    assert isinstance(meta["validator"], str) and meta["validator"].startswith('"')  # ETag
    (first,) = server.wait_logged(1)  # logged once the dead client's connection closed

    rerun = run_get(url, data_dir, *args)
    assert rerun.returncode == 0, rerun.stderr
    first, second = server.wait_logged(2)
    assert (first["status"], first["range"]) == (200, "")
    assert (second["status"], second["range"]) == (206, f"bytes={kept}-")
    assert second["if_range"] == meta["validator"]
    assert second["body_bytes"] == len(data) - kept
    served = int(first["body_bytes"]) + int(second["body_bytes"])  # type: ignore[call-overload]
    assert served - len(data) <= checkpoint_interval(len(data)) + CHUNK + 1 * MiB
    stored(data_dir, data)
    assert_clean(data_dir)


def test_file_replaced_on_the_server_restarts_from_zero(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    old, new = os.urandom(SIZE), os.urandom(SIZE)
    threaded_server.add("/latest.iso", old, faults=[Fault(trickle=RATE)])
    data_dir = tmp_path / "data"
    killed_get(threaded_server, "/latest.iso", old, data_dir)  # by URL: no --sha256
    threaded_server.add("/latest.iso", new)  # another version: another ETag
    out = tmp_path / "out.iso"
    rerun = run_get(threaded_server.url("/latest.iso"), data_dir, "-o", str(out))
    assert rerun.returncode == 0, rerun.stderr
    second = threaded_server.requests_for("/latest.iso")[1]
    assert second.headers["If-Range"] == f'"{sha256(old)}"'
    assert threaded_server.stats("/latest.iso").statuses == [200, 200]
    assert out.read_bytes() == new
    stored(data_dir, new)
    assert_clean(data_dir)


def test_server_ignoring_ranges_restarts_from_zero(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    threaded_server.add("/a.iso", data, faults=[Fault(trickle=RATE)])
    data_dir = tmp_path / "data"
    args = ("--sha256", sha256(data))
    killed_get(threaded_server, "/a.iso", data, data_dir, *args)
    threaded_server.add("/a.iso", data, ignore_range=True)
    rerun = run_get(threaded_server.url("/a.iso"), data_dir, *args)
    assert rerun.returncode == 0, rerun.stderr
    assert threaded_server.requests_for("/a.iso")[1].headers["Range"].startswith("bytes=")
    assert threaded_server.stats("/a.iso").statuses == [200, 200]
    assert "range not honoured" in rerun.stderr
    stored(data_dir, data)
    assert_clean(data_dir)


def test_no_validator_no_partial_and_a_full_restart(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    unvalidated = {"ETag": 'W/"weak"', "Last-Modified": ""}
    threaded_server.add(
        "/a.iso",
        data,
        faults=[Fault(trickle=RATE, headers=unvalidated), Fault(headers=unvalidated)],
    )
    data_dir = tmp_path / "data"
    args = ("--sha256", sha256(data), "--size", str(len(data)))
    process = start_get(threaded_server.url("/a.iso"), data_dir, "-vv", *args)
    staging = data_dir / "artifacts" / ".staging"

    def staged_past_2_mib() -> bool:
        assert process.poll() is None
        return staging.is_dir() and any(p.stat().st_size > 2 * MiB for p in staging.iterdir())

    until_sync(staged_past_2_mib, timeout=30)
    assert stop(process, signal.SIGINT) != 0
    assert sidecars(data_dir) == {}  # nothing to resume from
    rerun = run_get(threaded_server.url("/a.iso"), data_dir, *args)
    assert rerun.returncode == 0, rerun.stderr
    assert "Range" not in threaded_server.requests_for("/a.iso")[1].headers
    assert "no ETag or Last-Modified" in rerun.stderr
    stored(data_dir, data)
    assert_clean(data_dir)


def test_flipped_byte_in_the_partial_is_refetched_whole_in_one_call(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    threaded_server.add("/a.iso", data, faults=[Fault(trickle=RATE)])
    data_dir = tmp_path / "data"
    # One attempt only: the whole fetch after the digest failure is not a retry.
    remotes = tmp_path / "remotes.toml"
    remotes.write_text("[remotes.one]\nretry = { attempts = 1 }\n")
    args = ("--sha256", sha256(data), "--remotes", str(remotes), "--remote", "one")
    killed_get(threaded_server, "/a.iso", data, data_dir, *args)
    (part,) = partials_dir(data_dir).glob("*.part")
    with part.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    rerun = run_get(threaded_server.url("/a.iso"), data_dir, *args)
    assert rerun.returncode == 0, rerun.stderr
    requests = threaded_server.requests_for("/a.iso")
    assert [("Range" in r.headers) for r in requests] == [False, True, False]
    assert threaded_server.stats("/a.iso").statuses == [200, 206, 200]
    assert rerun.stderr.count("failed validation") == 1
    stored(data_dir, data)
    assert_clean(data_dir)


# -- sync: several large files ------------------------------------------------------


def write_manifest(path: Path, server: FaultServer, files: list[bytes], first: Fault) -> None:
    lines = []
    for i, data in enumerate(files):
        name = f"/big/{i}.bin"
        server.add(name, data, faults=[first])
        lines.append(
            json.dumps({"url": server.url(name), "sha256": sha256(data), "size": len(data)})
        )
    path.write_text("\n".join(lines) + "\n")


def start_sync(manifest: Path, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--progress", "none"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rerun_sync(manifest: Path, data_dir: Path) -> dict[str, int]:
    rerun = subprocess.run(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--json", "--progress", "none"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    summary: dict[str, int] = json.loads(rerun.stdout)
    return summary


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "sigint"])
def test_interrupted_sync_resumes_every_large_file(
    threaded_server: FaultServer, tmp_path: Path, sig: int
) -> None:
    files = [os.urandom(SIZE + i) for i in range(3)]
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, threaded_server, files, Fault(trickle=RATE))
    data_dir = tmp_path / "data"
    process = start_sync(manifest, data_dir)
    wait_for_partials(process, data_dir, count=len(files))
    code = stop(process, sig)
    assert code != 0
    kept = {key: length(meta) for key, meta in sidecars(data_dir).items()}
    assert len(kept) == len(files)
    if sig == signal.SIGINT:
        # Ctrl-C writes a last checkpoint: exactly what was received is kept.
        for data in files:
            part = partials_dir(data_dir) / f"{partial_key(sha256(data), '')}.part"
            assert part.stat().st_size == kept[partial_key(sha256(data), "")]
    sent_first = {i: threaded_server.stats(f"/big/{i}.bin").bytes_sent for i in range(3)}

    summary = rerun_sync(manifest, data_dir)
    assert summary["done"] == len(files) and summary["failed"] == 0
    for i, data in enumerate(files):
        start = kept[partial_key(sha256(data), "")]
        second = threaded_server.requests_for(f"/big/{i}.bin")[1]
        assert second.headers["Range"] == f"bytes={start}-"
        stats = threaded_server.stats(f"/big/{i}.bin")
        assert stats.statuses == [200, 206]
        assert stats.bytes_sent == sent_first[i] + len(data) - start
        if sig == signal.SIGINT:
            assert sent_first[i] - start <= CHUNK + 1 * MiB  # only what was in flight
        stored(data_dir, data)
    assert_clean(data_dir)


# -- engine level: bounds at start, the lock, cancellation ------------------------------


async def leave_partial(server: FaultServer, tmp_path: Path, name: str, data: bytes) -> Path:
    """Cancel a download of ``name`` once it has a partial; return the partial's path."""
    server.add(name, data, faults=[Fault(trickle=4 * MiB)])
    directory = tmp_path / "store" / ".partials"
    part = directory / f"{partial_key(sha256(data), '')}.part"
    async with make_engine(tmp_path) as e:
        task = asyncio.ensure_future(
            e.download(server.url(name), expected_digests={"sha256": sha256(data)})
        )
        await until(lambda: task.done() or (part.exists() and part.with_suffix(".json").exists()))
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert part.exists()
    return part


async def test_cancellation_keeps_the_partial_and_the_next_engine_continues_it(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    part = await leave_partial(fault_server, tmp_path, "/a.iso", data)
    meta = json.loads(part.with_suffix(".json").read_text())
    kept = length(meta)
    assert part.stat().st_size == kept > 0  # the last checkpoint is exact
    assert list((tmp_path / "store" / ".staging").iterdir()) == []
    async with make_engine(tmp_path) as e:
        result = await e.download(
            fault_server.url("/a.iso"), expected_digests={"sha256": sha256(data)}
        )
    assert result.path is not None and result.path.read_bytes() == data
    assert fault_server.requests_for("/a.iso")[1].headers["Range"] == f"bytes={kept}-"
    assert list((tmp_path / "store" / ".partials").iterdir()) == []


async def test_stale_and_oversized_partials_are_removed_at_start(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    old, older, new = (os.urandom(SIZE) for _ in range(3))
    p_old = await leave_partial(fault_server, tmp_path, "/old", old)
    p_older = await leave_partial(fault_server, tmp_path, "/older", older)
    p_new = await leave_partial(fault_server, tmp_path, "/new", new)
    now = time.time()
    os.utime(p_older, (now - 4 * 86400, now - 4 * 86400))  # beyond the default 3 days
    os.utime(p_old, (now - 2 * 86400, now - 2 * 86400))
    async with make_engine(tmp_path):
        pass
    assert not p_older.exists() and not p_older.with_suffix(".json").exists()
    assert p_old.exists() and p_new.exists()
    # A cap below the two that are left: the oldest goes, the newest stays.
    async with make_engine(tmp_path, partial_max_bytes=p_new.stat().st_size):
        pass
    assert not p_old.exists() and not p_old.with_suffix(".json").exists()
    assert p_new.exists() and p_new.with_suffix(".json").exists()


async def test_a_partial_locked_by_another_writer_is_neither_used_nor_replaced(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    part = await leave_partial(fault_server, tmp_path, "/a.iso", data)
    before = part.read_bytes()
    fd = os.open(part, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a live writer of another process holds it
        async with make_engine(tmp_path) as e:
            result = await e.download(
                fault_server.url("/a.iso"), expected_digests={"sha256": sha256(data)}
            )
        assert result.path is not None and result.path.read_bytes() == data
        assert "Range" not in fault_server.requests_for("/a.iso")[1].headers
        assert part.read_bytes() == before  # untouched
        assert os.fstat(fd).st_ino == part.stat().st_ino
    finally:
        os.close(fd)


async def test_small_files_never_make_partials(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)  # below partial_min_size
    fault_server.add("/small", data, faults=[Fault(truncate_at=2 * MiB)])
    async with make_engine(tmp_path, remote_once()) as e:
        with pytest.raises(pad.ConnectionFailed):
            await e.download(fault_server.url("/small"), expected_digests={"sha256": sha256(data)})
    assert list((tmp_path / "store" / ".partials").iterdir()) == []
    assert list((tmp_path / "store" / ".staging").iterdir()) == []


async def test_a_failed_source_keeps_the_partial_a_gone_file_removes_it(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    part = await leave_partial(fault_server, tmp_path, "/a.iso", data)
    kept = length(json.loads(part.with_suffix(".json").read_text()))
    digests = {"sha256": sha256(data)}
    # Cut again on the only attempt: the source is failing, the bytes are worth keeping.
    fault_server.set_faults("/a.iso", [Fault(truncate_at=MiB)])
    async with make_engine(tmp_path, remote_once()) as e:
        with pytest.raises(pad.ConnectionFailed):
            await e.download(fault_server.url("/a.iso"), expected_digests=digests)
    assert length(json.loads(part.with_suffix(".json").read_text())) == kept + MiB
    assert part.stat().st_size == kept + MiB
    # Gone from the server: the partial goes too.
    fault_server.set_faults("/a.iso", [Fault(status=404)])
    async with make_engine(tmp_path, remote_once()) as e:
        with pytest.raises(pad.HTTPStatusError):
            await e.download(fault_server.url("/a.iso"), expected_digests=digests)
    assert list((tmp_path / "store" / ".partials").iterdir()) == []
    assert list((tmp_path / "store" / ".staging").iterdir()) == []


@pytest.mark.parametrize(
    "settings",
    [
        {"partial_min_size": -1},
        {"partial_min_size": True},
        {"partial_max_bytes": 1.5},
        {"partial_max_bytes": None},
        {"partial_max_age": -3},
    ],
)
def test_partial_settings_are_validated(settings: dict[str, object]) -> None:
    (name,) = settings
    with pytest.raises(pad.ConfigError, match=f"EngineConfig.{name}"):
        pad.EngineConfig(**settings)  # type: ignore[arg-type]


async def test_a_read_only_store_keeps_its_partials_untouched(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    part = await leave_partial(fault_server, tmp_path, "/a.iso", data)
    old = time.time() - 30 * 86400
    os.utime(part, (old, old))  # stale: a writable engine would remove it
    storage = pad.LocalStorage(tmp_path / "store", read_only=True)
    async with pad.DownloadEngine(pad.EngineConfig(storage=storage)):
        assert storage.partials_dir() == part.parent  # verify lists them from there
    assert part.exists() and part.with_suffix(".json").exists()
