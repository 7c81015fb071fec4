"""Bytes fetched again after ``kill -9`` of a download at 30 %, 60 % and 90 % of a large file.

For each kill point: a fresh data dir; ``pulp-aio-download get URL --sha256 --size`` of a
``--size`` MB random file served by a private nginx throttled with ``limit_rate``; the
process is killed with SIGKILL once the bytes on disk (staging file or partial) reach the
point, plus a random delay of up to two checkpoints' worth of time (seeded); the same
command is run again and must exit 0. nginx's access log gives the body bytes it sent for
each of the two requests (the first is the killed 200, the second the 206 of the rerun).

Columns:

* ``on disk``: bytes in the partial's data file right after the kill (``D``);
* ``resumed at``: the length its sidecar names, where the rerun's ``Range`` starts (``L``);
* ``sent 1`` / ``sent 2``: body bytes nginx sent to the killed run and to the rerun;
* ``in flight``: ``sent 1 - D``, bytes sent that never reached the file (socket buffers,
  the batch the writer held): lost whatever the client does;
* ``re-fetched``: ``sent 1 + sent 2 - size``, every byte served twice;
* ``beyond in flight``: ``re-fetched - in flight`` = ``D - L``, the torn tail cut back to
  the last checkpoint; the target is at most 1 % of the file.

Usage: ``python benchmarks/resume_kill.py [--size 300] [--rate 40m] [--points 30,60,90]
[--dir DIR]`` (needs nginx: ``bash benchmarks/install.sh``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nginx import Nginx

from pulp_aio_download.storage.partials import checkpoint_interval

MB = 1000 * 1000


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * 1024 * 1024))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def on_disk(data_dir: Path) -> int:
    total = 0
    for sub in (".staging", ".partials"):
        directory = data_dir / "artifacts" / sub
        if directory.is_dir():
            for entry in os.scandir(directory):
                if entry.name.endswith(".part"):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:
                        pass
    return total


def sidecar_length(data_dir: Path) -> int:
    found = list((data_dir / "artifacts" / ".partials").glob("*.json"))
    if not found:
        return 0
    ranges = json.loads(found[0].read_text())["ranges"]
    return int(ranges[0][1]) if ranges else 0


def body_bytes(access_log: Path) -> list[tuple[int, int]]:
    """(status, body bytes sent) of every request in a combined-format access log."""
    out = []
    for line in access_log.read_text().splitlines():
        status, sent = line.partition('"')[2].partition('"')[2].split()[:2]
        out.append((int(status), int(sent)))
    return out


def wait_logged(access_log: Path, count: int, timeout: float = 30.0) -> list[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while True:
        entries = body_bytes(access_log) if access_log.exists() else []
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def one_point(
    server: Nginx,
    access_log: Path,
    work: Path,
    point: int,
    size: int,
    sha: str,
    *,
    rng: random.Random,
    jitter: float,
) -> dict[str, int]:
    data_dir = work / f"data-{point}"
    shutil.rmtree(data_dir, ignore_errors=True)
    logged = len(body_bytes(access_log)) if access_log.exists() else 0
    command = [
        sys.executable, "-m", "pulp_aio_download", "get", f"{server.base_url}/big.iso",
        "--sha256", sha, "--size", str(size), "--data-dir", str(data_dir),
    ]  # fmt: skip
    target = size * point // 100
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while on_disk(data_dir) < target:
            if process.poll() is not None:
                raise RuntimeError(f"get ended before {point} %: {process.stderr!r}")
            time.sleep(0.005)
        # The poll notices the file grow right after a batch is written (and checkpointed):
        # a random extra delay puts the kill anywhere between two checkpoints.
        time.sleep(rng.uniform(0.0, jitter))
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    disk = on_disk(data_dir)
    resumed_at = sidecar_length(data_dir)
    wait_logged(access_log, logged + 1)
    started = time.monotonic()
    rerun = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if rerun.returncode != 0:
        raise RuntimeError(f"the rerun failed: {rerun.stderr}")
    entries = wait_logged(access_log, logged + 2)[logged:]
    (status1, sent1), (status2, sent2) = entries
    if (status1, status2) != (200, 206) or sent2 != size - resumed_at:
        raise RuntimeError(f"unexpected requests: {entries}, resumed at {resumed_at}")
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "point": point,
        "on_disk": disk,
        "resumed_at": resumed_at,
        "sent1": sent1,
        "sent2": sent2,
        "in_flight": sent1 - disk,
        "refetched": sent1 + sent2 - size,
        "beyond": disk - resumed_at,
        "rerun_ms": int(seconds * 1000),
    }


def _rate_bytes(rate: str) -> float:
    units = {"k": 1024, "m": 1024 * 1024, "g": 1024**3}
    unit = units.get(rate[-1:].lower(), 1)
    return float(rate[:-1] if unit != 1 else rate) * unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=300, help="file size in MB (default 300)")
    parser.add_argument("--rate", default="40m", help="nginx limit_rate (default 40m)")
    parser.add_argument("--points", default="30,60,90", help="kill points in percent")
    parser.add_argument("--dir", type=Path, default=None, help="work directory")
    parser.add_argument("--seed", type=int, default=12, help="seed of the kill delays")
    args = parser.parse_args()
    size = args.size * MB
    rng = random.Random(args.seed)
    # Up to two checkpoint intervals' worth of time at the throttled rate.
    jitter = 2 * checkpoint_interval(size) / _rate_bytes(args.rate)
    work = Path(tempfile.mkdtemp(prefix="pad-resume-", dir=args.dir))
    try:
        www = work / "www"
        www.mkdir()
        sha = make_file(www / "big.iso", size)
        access_log = work / "access.log"
        rows = []
        with Nginx(www, access_log=access_log, limit_rate=args.rate) as server:
            for point in (int(p) for p in args.points.split(",")):
                row = one_point(server, access_log, work, point, size, sha, rng=rng, jitter=jitter)
                rows.append(row)
                print(f"kill at {point} %: {rows[-1]}", file=sys.stderr)
        print(f"{args.size} MB file, nginx limit_rate {args.rate}; kill -9 of `get`, then rerun")
        print()
        print(
            "| kill at | on disk | resumed at | sent 1 | sent 2 | in flight | re-fetched "
            "| beyond in flight | rerun |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['point']} % | {r['on_disk']:,} | {r['resumed_at']:,} | {r['sent1']:,} "
                f"| {r['sent2']:,} | {r['in_flight']:,} | {r['refetched']:,} "
                f"| {r['beyond']:,} ({100 * r['beyond'] / size:.2f} %) | {r['rerun_ms']} ms |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
