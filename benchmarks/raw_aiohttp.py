"""The "raw aiohttp" peer: the simplest correct concurrent downloader one would write.

N workers share one ``ClientSession``; each streams a body into ``NAME.part`` while
computing sha256, checks size and digest, and renames the file to ``NAME``. No catalog, no
progress, no fsync, no retries. It is the floor a full pipeline is compared with.

Usage: ``python benchmarks/raw_aiohttp.py MANIFEST OUTPUT_DIR [--concurrency N]``; the
manifest is JSONL with ``url``, ``sha256`` and ``size``. Exit 0 when every file is valid,
1 otherwise (the failures are listed on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

CHUNK = 1024 * 1024


async def fetch_one(
    session: aiohttp.ClientSession, url: str, sha256: str, size: int | None, out: Path
) -> None:
    name = os.path.basename(urlsplit(url).path) or hashlib.sha256(url.encode()).hexdigest()
    final = out / name
    part = out / (name + ".part")
    digest = hashlib.sha256()
    received = 0
    try:
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
            response.raise_for_status()
            with open(part, "wb") as f:
                async for chunk in response.content.iter_chunked(CHUNK):
                    received += len(chunk)
                    if size is not None and received > size:
                        raise ValueError(f"{url}: body exceeds {size} bytes")
                    digest.update(chunk)
                    f.write(chunk)
        if size is not None and received != size:
            raise ValueError(f"{url}: expected {size} bytes, got {received}")
        actual = digest.hexdigest()
        if actual != sha256:
            raise ValueError(f"{url}: sha256 {actual} != expected {sha256}")
        os.replace(part, final)
    except BaseException:
        try:
            os.unlink(part)
        except FileNotFoundError:
            pass
        raise


async def worker(
    session: aiohttp.ClientSession,
    queue: asyncio.Queue[dict[str, object]],
    out: Path,
    failures: list[str],
) -> int:
    done = 0
    while True:
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            return done
        url = str(item["url"])
        size = item.get("size")
        try:
            await fetch_one(
                session, url, str(item["sha256"]), int(size) if size is not None else None, out
            )
            done += 1
        except (aiohttp.ClientError, OSError, ValueError, asyncio.TimeoutError) as exc:
            failures.append(f"{url}: {exc!r}")


async def run(manifest: Path, out: Path, concurrency: int) -> int:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    with open(manifest) as f:
        for line in f:
            if line.strip():
                queue.put_nowait(json.loads(line))
    total = queue.qsize()
    out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        counts = await asyncio.gather(
            *(worker(session, queue, out, failures) for _ in range(concurrency))
        )
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"raw_aiohttp: {sum(counts)}/{total} ok, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.manifest, args.output_dir, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
