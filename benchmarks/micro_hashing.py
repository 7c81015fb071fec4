"""Micro-benchmark of the per-chunk path: ``HashingWriter`` against ``hashlib`` alone.

The same in-memory chunks (the sizes an HTTP body arrives in) are fed to:

* ``hashlib sha256``: ``update`` only, on the calling thread (the ceiling);
* ``hashlib sha256 + write``: ``update`` and a blocking ``write`` to a file, in the loop
  (what the raw aiohttp peer does per chunk);
* ``HashingWriter sha256``: ``pulp_aio_download.transfer.hashing.HashingWriter``, awaited per chunk
  from an event loop, ``finish()`` included (it fsyncs; cheap on tmpfs);
* ``hashlib sha512`` alone (the floor for two digests hashed in parallel), then
  ``hashlib sha256+sha512`` and ``HashingWriter sha256+sha512``: the cost of a second
  digest, inline versus in parallel (issue 7: two digests must cost <= 1.3x one).

Files go to ``--dir`` (default /dev/shm). The writer rows are skipped with a note while
``pulp_aio_download.transfer.hashing`` is not importable. Usage:
``python benchmarks/micro_hashing.py [--size-mib 256] [--chunks 16384,65536,262144]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1_000_000
MiB = 1024 * 1024
HERE = Path(__file__).resolve().parent


def make_chunks(chunk: int, total: int) -> list[bytes]:
    """``total`` bytes as chunks of ``chunk`` bytes, cycling 16 distinct random blocks."""
    rng = random.Random(chunk)
    pool = [rng.randbytes(chunk) for _ in range(16)]
    return [pool[i % len(pool)] for i in range(total // chunk)]


def hash_only(chunks: list[bytes], path: Path, algorithms: tuple[str, ...]) -> None:
    hashers = [hashlib.new(a) for a in algorithms]
    for chunk in chunks:
        for h in hashers:
            h.update(chunk)
    for h in hashers:
        h.hexdigest()


def hash_and_write(chunks: list[bytes], path: Path, algorithms: tuple[str, ...]) -> None:
    hashers = [hashlib.new(a) for a in algorithms]
    with open(path, "wb") as f:
        for chunk in chunks:
            for h in hashers:
                h.update(chunk)
            f.write(chunk)
    for h in hashers:
        h.hexdigest()


def writer_factory() -> tuple[Callable[[list[bytes], Path, tuple[str, ...]], None] | None, str]:
    """A runner of ``HashingWriter`` (or None and why it is not available)."""
    try:
        from pulp_aio_download.transfer.hashing import HashingWriter
    except ImportError as exc:
        return None, f"pulp_aio_download.transfer.hashing.HashingWriter not importable: {exc}"

    def run(chunks: list[bytes], path: Path, algorithms: tuple[str, ...]) -> None:
        async def main() -> None:
            writer: Any = HashingWriter(path, algorithms, expected_size=None)
            async with writer:
                for chunk in chunks:
                    await writer.write(chunk)
                await writer.finish()

        asyncio.run(main())

    return run, ""


def time_case(
    fn: Callable[[list[bytes], Path, tuple[str, ...]], None],
    chunks: list[bytes],
    directory: Path,
    algorithms: tuple[str, ...],
    repeat: int,
) -> float:
    """Median seconds of ``repeat`` runs (each into a fresh file)."""
    times = []
    for i in range(repeat):
        path = directory / f"micro-{os.getpid()}-{i}.bin"
        start = time.perf_counter()
        fn(chunks, path, algorithms)
        times.append(time.perf_counter() - start)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="bytes fed per case")
    parser.add_argument("--chunks", default="16384,65536,262144", help="chunk sizes in bytes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    writer, why = writer_factory()
    cases: list[
        tuple[str, Callable[[list[bytes], Path, tuple[str, ...]], None] | None, tuple[str, ...]]
    ] = [
        ("hashlib sha256", hash_only, ("sha256",)),
        ("hashlib sha256 + write", hash_and_write, ("sha256",)),
        ("hashlib sha512", hash_only, ("sha512",)),
        ("HashingWriter sha256", writer, ("sha256",)),
        ("hashlib sha256+sha512 + write", hash_and_write, ("sha256", "sha512")),
        ("HashingWriter sha256+sha512", writer, ("sha256", "sha512")),
    ]
    total = args.size_mib * MiB
    lines = [
        f"# Per-chunk path: {args.size_mib} MiB per case, median of {args.repeat}, "
        f"files in {args.dir}, MB = 10^6 bytes",
        "",
        "| chunk | case | MB/s | x hashlib sha256 |",
        "|---|---|---|---|",
    ]
    ratios: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pad-micro-", dir=args.dir) as tmp:
        for chunk in (int(c) for c in args.chunks.split(",")):
            chunks = make_chunks(chunk, total)
            base = None
            for name, fn, algorithms in cases:
                if fn is None:
                    lines.append(f"| {chunk // 1024} KiB | {name} | skipped | - |")
                    continue
                seconds = time_case(fn, chunks, Path(tmp), algorithms, args.repeat)
                base = base or seconds
                ratios.setdefault(chunk, {})[name] = seconds
                lines.append(
                    f"| {chunk // 1024} KiB | {name} | {total / seconds / MB:,.0f} "
                    f"| {base / seconds:.2f}x |"
                )
                print(f"micro: {chunk} {name}: {seconds:.3f} s", file=sys.stderr)
    lines.append("")
    for chunk, cost in ratios.items():
        one, two = cost.get("HashingWriter sha256"), cost.get("HashingWriter sha256+sha512")
        if one and two:
            lines.append(
                f"- {chunk // 1024} KiB chunks: HashingWriter sha256+sha512 costs "
                f"{two / one:.2f}x sha256 alone (target <= 1.3x)"
            )
    if why:
        lines.append(f"- HashingWriter rows skipped: {why}")
    report = "\n".join(lines) + "\n"
    print(report)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "micro_hashing.md").write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
