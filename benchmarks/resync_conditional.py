"""Re-sync of an unchanged ``PULP_MANIFEST`` URL with and without conditional GET.

The S workload (2,000 x 16 KiB) is served by a private nginx with a ``PULP_MANIFEST``
beside it; ``pulp-aio-download sync URL`` runs once to store everything, then the re-sync
(every file already stored) is timed ``--repeat`` times each way, alternating: the default
(the manifest's ``ETag`` / ``Last-Modified`` sent back, a 304 read from the store) and
``--no-conditional-get`` (the manifest fetched whole). Wall seconds of the whole process,
and the manifest's bytes on the wire from nginx's access log.

Usage: ``PYTHONPATH=src python benchmarks/resync_conditional.py [--workload S] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus as corpus_mod
from nginx import Nginx

_CLI = (sys.executable, "-m", "pulp_aio_download")


def _sync(url: str, data_dir: Path, *extra: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [*_CLI, "sync", url, "--data-dir", str(data_dir), "--progress", "none", "--json", *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"sync failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def _manifest_bytes(log: Path) -> list[tuple[int, int]]:
    """(status, body bytes) of every PULP_MANIFEST request in the access log."""
    out = []
    for line in log.read_text().splitlines():
        request, _, rest = line.partition('"')[2].partition('"')
        if request.split(" ")[1].endswith("/PULP_MANIFEST"):
            status, size = rest.split()[:2]
            out.append((int(status), int(size)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="S", choices=sorted(corpus_mod.WORKLOADS))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    corpus = corpus_mod.ensure_corpus(corpus_mod.WORKLOADS[args.workload])
    with tempfile.TemporaryDirectory(prefix="resync-") as tmp:
        www = Path(tmp) / "www"
        www.mkdir()
        os.symlink(corpus.path, www / corpus.workload.key)
        lines = [f"{corpus.workload.key}/{e.name},{e.sha256},{e.size}\n" for e in corpus.entries]
        (www / "PULP_MANIFEST").write_text("".join(lines))
        log = Path(tmp) / "access.log"
        with Nginx(www, access_log=log) as server:
            url = f"{server.base_url}/PULP_MANIFEST"
            data_dir = Path(tmp) / "data"
            first = _sync(url, data_dir)
            times: dict[str, list[float]] = {"conditional": [], "full": []}
            for _ in range(args.repeat):
                times["conditional"].append(_sync(url, data_dir))
                times["full"].append(_sync(url, data_dir, "--no-conditional-get"))
            fetched = _manifest_bytes(log)
    size = www_size = len("".join(lines).encode())
    print(f"workload {args.workload}: {len(corpus.entries)} files, PULP_MANIFEST {www_size} bytes")
    print(f"first sync: {first:.2f} s")
    for mode, values in times.items():
        print(
            f"re-sync, {mode:11s}: median {statistics.median(values):.3f} s, "
            f"min {min(values):.3f} s over {len(values)} runs"
        )
    conditional = [b for s, b in fetched[1::2]]
    full = [b for s, b in fetched[2::2]]
    print(f"manifest bytes sent: conditional {conditional[:3]}..., full {full[:3]}... (of {size})")
    print(f"statuses: {[s for s, _ in fetched]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
