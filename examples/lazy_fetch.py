"""Lazy content: record what a repository holds now, fetch the bytes when asked.

    python examples/lazy_fetch.py [BASE_URL] [--data-dir DIR]

``engine.register`` records each file's unit file (digests, size, sources) and its unit
without transferring anything, like Pulp's on_demand policy; ``engine.fetch(sha256)`` later
downloads one file from its recorded sources and validates it. A second fetch is served
from storage with no request.
"""

from __future__ import annotations

import asyncio
import sys

from _sample import parse_args, parse_pulp_manifest, repository

import pulp_aio_download as pad


async def main() -> int:
    args = parse_args(__doc__ or "")
    async with repository(args.base_url) as base:
        config = pad.EngineConfig(data_dir=args.data_dir)
        async with pad.DownloadEngine(config) as engine:
            async with engine.session().get(base.rstrip("/") + "/PULP_MANIFEST") as resp:
                entries = parse_pulp_manifest(await resp.text(), base)
            for url, path, sha256, size in entries:
                await engine.register(
                    url,
                    expected_digests={"sha256": sha256},
                    expected_size=size,
                    unit=pad.UnitSpec("file", f"{path}:{sha256}", relative_path=path),
                    repository="lazy",
                )
            catalog = engine.catalog
            assert catalog is not None
            units = await catalog.repository_units("lazy")
            print(f"registered {len(entries)} files, {len(units)} units, nothing downloaded")
            _, path, sha256, _ = max(entries, key=lambda e: e[3])
            assert await engine.storage.stat(sha256) is None
            first = await engine.fetch(sha256)  # e.g. when a client asks for `path`
            print(f"fetched {path} on demand from {first.url}: {first.size} bytes")
            again = await engine.fetch(sha256)
            print(f"second fetch served from storage: cached={again.cached}")
            record = await catalog.get_unit_file(sha256)
            assert record is not None
            assert record.location == first.location
    return 0 if again.cached and not first.cached else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
