"""The library peer: the manifest fetched through ``pulp_aio_download.run_batch``.

The full pipeline (validation, content-addressed storage, SQLite catalog) with progress off,
as a plugin's sync task code would call it.

Usage: ``python benchmarks/lib_batch.py MANIFEST DATA_DIR [--concurrency N]``. Exit 0 when
every download succeeded, 1 otherwise (the failures are listed on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)

    import pulp_aio_download as pad

    requests = []
    with open(args.manifest) as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            requests.append(
                pad.DownloadRequest(
                    item["url"],
                    expected_digests={"sha256": item["sha256"]},
                    expected_size=item.get("size"),
                )
            )
    config = pad.EngineConfig(data_dir=args.data_dir, max_connections=args.concurrency)
    results = pad.run_batch(requests, config=config, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        print(f"{type(failure).__name__}: {failure}", file=sys.stderr)
    print(f"lib_batch: {len(results) - len(failures)}/{len(results)} ok", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
