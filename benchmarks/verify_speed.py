"""``verify`` throughput against single-thread hashlib on the same stored files.

Stores ``--files`` files of ``--size`` MiB through the library (file:// sources, full
pipeline), then times, interleaved, ``engine.verify()`` (re-hash every stored file against
its unit file) and a plain loop that reads each file and feeds one ``hashlib.sha256``.

Usage: ``python benchmarks/verify_speed.py [--files 8] [--size 64] [--repeat 3] [--dir DIR]``
(default directory on tmpfs, /dev/shm, so both sides read from memory).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024


def _make_sources(root: Path, files: int, size: int) -> list[tuple[Path, str]]:
    rng = random.Random(7)
    out = []
    for i in range(files):
        data = rng.randbytes(size)
        path = root / f"src{i}.bin"
        path.write_bytes(data)
        out.append((path, hashlib.sha256(data).hexdigest()))
    return out


def _hashlib_pass(paths: list[Path]) -> float:
    started = time.perf_counter()
    buf = bytearray(MiB)
    view = memoryview(buf)
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
        h.hexdigest()
    return time.perf_counter() - started


async def _ingest(data_dir: Path, sources: list[tuple[Path, str]], root: Path) -> list[Path]:
    import pulp_aio_download as pad

    config = pad.EngineConfig(data_dir=data_dir, allowed_file_roots=[root])
    async with pad.DownloadEngine(config) as engine:
        results = await engine.download_many(
            [pad.DownloadRequest(p.as_uri(), expected_digests={"sha256": h}) for p, h in sources]
        )
    return [r.path for r in results]


async def _verify(data_dir: Path) -> float:
    import pulp_aio_download as pad

    async with pad.DownloadEngine(pad.EngineConfig(data_dir=data_dir)) as engine:
        started = time.perf_counter()
        report = await engine.verify()
        elapsed = time.perf_counter() - started
    if report.ok != report.checked or report.corrupt:
        raise SystemExit(f"verify found problems: {report}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="MiB per file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pad-verify-", dir=args.dir))
    try:
        (work / "src").mkdir()
        sources = _make_sources(work / "src", args.files, args.size * MiB)
        stored = asyncio.run(_ingest(work / "data", sources, work / "src"))
        for path, _ in sources:
            os.unlink(path)
        total = args.files * args.size * MiB
        ours, base = [], []
        for _ in range(args.repeat):
            ours.append(asyncio.run(_verify(work / "data")))
            base.append(_hashlib_pass(stored))
        v, h = statistics.median(ours), statistics.median(base)
        print(
            f"{args.files} x {args.size} MiB: verify {total / v / 1e6:,.0f} MB/s, "
            f"hashlib one thread {total / h / 1e6:,.0f} MB/s, ratio {h / v:.2f}x "
            f"(medians of {args.repeat})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
