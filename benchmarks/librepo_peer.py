"""The librepo peer: the manifest fetched by dnf's download engine (C, libcurl multi).

Run with the system Python (``/usr/bin/python3``), which has Debian's ``python3-librepo``;
the project's venv does not. One ``librepo.Handle`` allows N parallel downloads (at most
20, librepo's cap), all to the one mirror; every file is a ``librepo.PackageTarget`` with
``checksum_type=SHA256``, the checksum and ``expectedsize``, fetched by one
``librepo.download_packages`` call, as dnf fetches packages.

Usage: ``/usr/bin/python3 benchmarks/librepo_peer.py MANIFEST OUTPUT_DIR [--concurrency N]``.
Exit 0 when every file was downloaded and verified, 1 otherwise (failures on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

# librepo refuses more (LRO_MAXPARALLELDOWNLOADS_MAX); dnf's max_parallel_downloads has the
# same cap.
MAX_PARALLEL = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)

    import librepo  # the system Python's Debian package

    parallel = min(args.concurrency, MAX_PARALLEL)
    if parallel < args.concurrency:
        print(
            f"librepo_peer: librepo allows at most {MAX_PARALLEL} parallel downloads, "
            f"not {args.concurrency}",
            file=sys.stderr,
        )
    handle = librepo.Handle()
    handle.repotype = librepo.LR_YUMREPO
    handle.maxparalleldownloads = parallel
    handle.maxdownloadspermirror = parallel
    args.output_dir.mkdir(parents=True, exist_ok=True)
    targets = []
    with open(args.manifest) as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            name = os.path.basename(urlsplit(item["url"]).path)
            targets.append(
                librepo.PackageTarget(
                    item["url"],
                    dest=str(args.output_dir / name),
                    checksum_type=librepo.SHA256,
                    checksum=item["sha256"],
                    expectedsize=int(item.get("size") or 0),
                    handle=handle,
                )
            )
    librepo.download_packages(targets)
    failures = [t for t in targets if t.err]
    for t in failures:
        print(f"{t.relative_url}: {t.err}", file=sys.stderr)
    print(f"librepo_peer: {len(targets) - len(failures)}/{len(targets)} ok", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
