"""Mirror a Pulp-file-like repository from async code, with progress and a summary.

    python examples/mirror_async.py [BASE_URL] [--data-dir DIR]

Reads BASE_URL/PULP_MANIFEST through the engine's own aiohttp session (the shared
connection pool), downloads every file with its sha256 and size, records one ``file`` unit
per file in repository ``mirror``, and prints what happened.
"""

from __future__ import annotations

import asyncio
import sys

from _sample import parse_args, parse_pulp_manifest, repository

import pulp_aio_download as pad


def show(report: pad.ProgressReport) -> None:
    """The engine calls this a few times a second at most, and once at the end."""
    print(
        f"[{report.state}] {report.done + report.failed}/{report.total} files, "
        f"{report.bytes_done}/{report.bytes_total} bytes, {report.rate / 1e6:.1f} MB/s",
        file=sys.stderr,
    )


async def main() -> int:
    args = parse_args(__doc__ or "")
    async with repository(args.base_url) as base:
        config = pad.EngineConfig(data_dir=args.data_dir, max_connections=16, progress=show)
        async with pad.DownloadEngine(config) as engine:
            manifest_url = base.rstrip("/") + "/PULP_MANIFEST"
            async with engine.session().get(manifest_url) as resp:
                resp.raise_for_status()
                entries = parse_pulp_manifest(await resp.text(), base)
            requests = [
                pad.DownloadRequest(
                    url,
                    expected_digests={"sha256": sha256},
                    expected_size=size,
                    unit=pad.UnitSpec("file", f"{path}:{sha256}", relative_path=path),
                    repository="mirror",
                )
                for url, path, sha256, size in entries
            ]
            results = await engine.download_many(requests, return_exceptions=True)
            assert engine.catalog is not None
            units = await engine.catalog.repository_units("mirror")
    failed = [r for r in results if isinstance(r, pad.DownloadError)]
    for error in failed:
        print(f"FAILED {error.url}: {error}")
    print(f"mirrored {len(results) - len(failed)} of {len(results)} files into {args.data_dir}")
    print(f"repository 'mirror' has {len(units)} units")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
