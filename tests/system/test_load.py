"""Load: a 20,000-request batch and a batch under ``ulimit -n 256``, measured from outside.

The batch runs ``run_batch`` in a child process; the test samples the child's open file
descriptors (``/proc/PID/fd``) and peak RSS (``VmHWM`` in ``/proc/PID/status``) while it
runs. Files come from a FaultServer in a thread of the test process.

Reproduce the figures of RELIABILITY.md with::

    python -m pytest -m slow tests/system/test_load.py -s
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pulp_aio_download.testing import FaultServer

CHILD = """
import json, sys, time
import pulp_aio_download as pad

spec = json.load(open(sys.argv[1]))
requests = [
    pad.DownloadRequest(url, expected_digests={"sha256": sha}, expected_size=size)
    for url, sha, size in spec["files"]
]
config = pad.EngineConfig(data_dir=spec["data_dir"], max_connections=spec["max_connections"])
started = time.monotonic()
results = pad.run_batch(requests, config)
elapsed = time.monotonic() - started
failures = [str(r) for r in results if isinstance(r, pad.DownloadError)]
print(json.dumps({"ok": len(results) - len(failures), "failures": failures[:5],
                  "failed": len(failures), "elapsed": elapsed}))
"""


@dataclass
class Measured:
    """What the sampler saw of the child, and what the child reported."""

    peak_fds: int
    peak_rss_kib: int
    seconds: float
    report: dict[str, object]


def _count_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run_measured(
    server: FaultServer,
    tmp_path: Path,
    count: int,
    *,
    max_connections: int,
    nofile: int | None = None,
) -> Measured:
    files = []
    for i in range(count):
        data = f"file {i:06d} of the load test\n".encode() * (1 + i % 40)
        url = server.add(f"/load/{i}", data)
        files.append([url, hashlib.sha256(data).hexdigest(), len(data)])
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {"files": files, "data_dir": str(tmp_path / "data"), "max_connections": max_connections}
        )
    )

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )
    peak_fds = 0
    peak_rss = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_fds, peak_rss
        while not stop.is_set():
            fds = _count_fds(child.pid)
            rss = _hwm_kib(child.pid)
            if fds is not None:
                peak_fds = max(peak_fds, fds)
            if rss is not None:
                peak_rss = max(peak_rss, rss)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, name="fd-sampler", daemon=True)
    sampler.start()
    try:
        out, err = child.communicate(timeout=600)
    finally:
        stop.set()
        sampler.join(5)
        if child.poll() is None:
            child.kill()
            child.wait()
    seconds = time.monotonic() - started
    assert child.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    staging = tmp_path / "data" / "artifacts" / ".staging"
    assert list(staging.iterdir()) == []
    return Measured(peak_fds, peak_rss, seconds, report)


def show(name: str, m: Measured, count: int) -> None:
    # Printed for RELIABILITY.md (run with -s to see it).
    print(
        f"\n[{name}] {count} files: ok={m.report['ok']} peak_fds={m.peak_fds} "
        f"peak_rss={m.peak_rss_kib / 1024:.1f} MiB wall={m.seconds:.1f} s "
        f"batch={float(m.report['elapsed']):.1f} s"  # type: ignore[arg-type]
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_20000_requests_keep_fds_and_memory_bounded(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    count = 20_000
    m = run_measured(threaded_server, tmp_path, count, max_connections=64)
    show("20k", m, count)
    assert m.report["ok"] == count and m.report["failed"] == 0, m.report["failures"]
    assert threaded_server.totals.requests == count
    assert threaded_server.totals.peak_inflight <= 64
    # 64 sockets + at most 64 staging files + catalog, executor and interpreter: not
    # 20,000 of anything.
    assert 0 < m.peak_fds < 256
    assert 0 < m.peak_rss_kib < 400 * 1024
    stored = [p for p in (tmp_path / "data" / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) == count


@pytest.mark.timeout(300)
def test_ulimit_256_does_not_break_64_connections(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    count = 3_000
    m = run_measured(threaded_server, tmp_path, count, max_connections=64, nofile=256)
    show("ulimit-256", m, count)
    assert m.report["ok"] == count and m.report["failed"] == 0, m.report["failures"]
    assert m.peak_fds <= 256
