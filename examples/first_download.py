"""First downloads: one file from async code, then a batch and one file from sync code.

    python examples/first_download.py [BASE_URL] [--data-dir DIR]

The getting-started page of the documentation walks through this script. Without a URL it
serves a generated sample repository on 127.0.0.1, so it runs offline.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from _sample import parse_args, parse_pulp_manifest, repository_in_thread

import pulp_aio_download as pad

Entry = tuple[str, str, str, int]  # url, relative path, sha256, size


async def first_async_download(base: str, data_dir: Path) -> list[Entry]:
    """One file through the whole pipeline: fetch, validate, store, record."""
    config = pad.EngineConfig(data_dir=data_dir)  # data_dir/artifacts + catalog.sqlite3
    async with pad.DownloadEngine(config) as engine:
        # The repository's own index, through the engine's shared connection pool.
        async with engine.session().get(f"{base}PULP_MANIFEST") as response:
            entries = parse_pulp_manifest(await response.text(), base)
        url, path, sha256, size = entries[0]
        result = await engine.download(
            url,
            expected_digests={"sha256": sha256},  # validated while the body streams
            expected_size=size,  # a longer body is cut short and refused
            unit=pad.UnitSpec("file", path, relative_path=path),
            repository="first",
        )
    print(f"async: {path} stored at {result.path} ({result.size} bytes, cached={result.cached})")
    return entries


def first_sync_downloads(entries: list[Entry], data_dir: Path) -> None:
    """A batch with ``run_batch`` and one file with ``download_sync``, from plain code."""
    # No event loop here: the helpers run their own (and refuse to run inside one).
    requests = [
        pad.DownloadRequest(url, expected_digests={"sha256": sha256}, expected_size=size)
        for url, _, sha256, size in entries[:10]
    ]
    config = pad.EngineConfig(data_dir=data_dir, max_connections=8)
    results = pad.run_batch(requests, config=config)  # one result per request, in order
    failed = [r for r in results if isinstance(r, pad.DownloadError)]
    cached = sum(1 for r in results if isinstance(r, pad.DownloadResult) and r.cached)
    print(f"sync: run_batch {len(results) - len(failed)} of {len(results)} ok, {cached} cached")

    url, _, sha256, _ = entries[-1]
    one = pad.download_sync(url, config=config, expected_digests={"sha256": sha256})
    print(f"sync: download_sync {one.size} bytes, sha256 {one.sha256[:12]}…")


def main() -> int:
    args = parse_args(__doc__ or "")
    with repository_in_thread(args.base_url) as base_url:
        base = base_url if base_url.endswith("/") else base_url + "/"
        entries = asyncio.run(first_async_download(base, args.data_dir))
        first_sync_downloads(entries, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
