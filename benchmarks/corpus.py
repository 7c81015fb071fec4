"""Deterministic benchmark corpora and the client input files that fetch them.

A corpus is a flat directory of files with seeded pseudo-random content (every file
distinct, so content-addressed storage cannot deduplicate them) plus ``index.json``
listing ``name``, ``size`` and ``sha256``. It is generated once and cached under
``<root>/<key>/`` where the key names the workload and its parameters; a corpus whose
``index.json`` exists is reused as is.

The client inputs depend on the server's URL (a free port each run), so they are rendered
per run by :func:`write_client_inputs`:

* ``manifest.jsonl``: one ``{"url", "sha256", "size"}`` object a line (DESIGN.md section 7);
* ``aria2.txt``: an aria2c input file, ``out=`` and ``checksum=sha-256=...`` per entry;
* ``curl.cfg``: a curl config of ``url``/``output`` pairs for ``curl --parallel``.

Usage: ``python benchmarks/corpus.py S M --base-url http://127.0.0.1:8080 --out DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
DEFAULT_ROOT = Path(__file__).resolve().parent / "corpus"
_BLOCK = 1 * MiB
_FORMAT = 1


@dataclass(frozen=True)
class Workload:
    """A corpus shape: ``count`` files whose sizes come from :meth:`sizes`."""

    name: str
    count: int
    size: int
    # "fixed": every file is ``size`` bytes; "mixed": see :meth:`sizes`.
    kind: str = "fixed"
    big: int = 0
    seed: int = 20240601
    # How the server and the clients are set up for this workload (not part of the content,
    # so not of the key): seconds to first byte on every request, nginx's per-response
    # ``limit_rate``, and the concurrency every tool gets (None: the runner's --concurrency).
    delay: float = 0.0
    limit_rate: str | None = None
    concurrency: int | None = None

    @property
    def key(self) -> str:
        """The cache directory name: changes whenever the content would."""
        big = f"+{self.big}" if self.big else ""
        return f"{self.name}-{self.kind}-{self.count}x{self.size}{big}-s{self.seed}-v{_FORMAT}"

    def sizes(self) -> list[int]:
        """The size of every file, in order."""
        if self.kind == "fixed":
            return [self.size] * self.count
        # A repository-like blend: mostly small files log-uniform between 1 KiB and
        # ``size``, plus one ``big`` file per 2,000 files.
        rng = random.Random(self.seed)
        low, high = math.log(KiB), math.log(self.size)
        sizes = []
        for i in range(self.count):
            if i % 2000 == 1999:
                sizes.append(self.big)
            else:
                sizes.append(int(math.exp(rng.uniform(low, high))))
        return sizes

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes())


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("S", 2000, 16 * KiB),
        Workload("S20k", 20000, 16 * KiB),
        Workload("M", 200, 1 * MiB),
        Workload("L", 2, 512 * MiB),
        # 20,000 files, ~0.9 GiB: log-uniform 1-64 KiB files plus ten of 64 MiB.
        Workload("mixed", 20000, 64 * KiB, kind="mixed", big=64 * MiB),
        # A far mirror: 30 ms to first byte, 64 connections, so that concurrency and the
        # per-file cost decide, not loopback bandwidth (floor: 5,000 / 64 x 30 ms = 2.4 s).
        # nginx's limit_rate grants one second's worth (4 MiB) at once, so it slows only
        # bodies above 4 MiB, not these 64 KiB ones.
        Workload("WAN", 5000, 64 * KiB, delay=0.03, limit_rate="4m", concurrency=64),
        # One 1 GiB file from a server that caps each connection at 50 MB/s (a CDN's cap):
        # one stream against segmented downloads (opt-in: not in the default run).
        Workload("SEG", 1, 1024 * MiB, limit_rate="50m"),
    )
}

# Small shapes for a smoke run (``run.py --quick``).
QUICK_WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("S", 200, 16 * KiB),
        Workload("S20k", 1000, 16 * KiB),
        Workload("M", 20, 1 * MiB),
        Workload("L", 2, 16 * MiB),
        Workload("mixed", 2000, 64 * KiB, kind="mixed", big=4 * MiB),
        Workload("WAN", 500, 64 * KiB, delay=0.03, limit_rate="4m", concurrency=64),
        Workload("SEG", 1, 128 * MiB, limit_rate="10m"),
    )
}


def file_name(index: int) -> str:
    return f"f{index:06d}.bin"


def _content(workload: Workload, index: int, size: int) -> Iterator[bytes]:
    rng = random.Random(f"{workload.seed}/{workload.name}/{index}")
    left = size
    while left:
        n = min(left, _BLOCK)
        yield rng.randbytes(n)
        left -= n


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Corpus:
    """A generated corpus on disk."""

    workload: Workload
    root: Path  # the directory served by nginx (the parent of ``path``)
    entries: tuple[Entry, ...]

    @property
    def path(self) -> Path:
        return self.root / self.workload.key

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def url(self, base_url: str, entry: Entry) -> str:
        return f"{base_url.rstrip('/')}/{self.workload.key}/{entry.name}"


def ensure_corpus(workload: Workload, root: Path = DEFAULT_ROOT, *, quiet: bool = False) -> Corpus:
    """Return the corpus of ``workload`` under ``root``, generating it if not cached."""
    directory = root / workload.key
    index = directory / "index.json"
    if index.exists():
        data = json.loads(index.read_text())
        entries = tuple(Entry(**e) for e in data["entries"])
        return Corpus(workload, root, entries)
    if not quiet:
        print(
            f"corpus: generating {workload.key} ({workload.total_bytes / MiB:.0f} MiB)",
            file=sys.stderr,
        )
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, size in enumerate(workload.sizes()):
        name = file_name(i)
        digest = hashlib.sha256()
        with open(directory / name, "wb") as f:
            for block in _content(workload, i, size):
                digest.update(block)
                f.write(block)
        entries.append(Entry(name, size, digest.hexdigest()))
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps({"workload": workload.key, "entries": [e.__dict__ for e in entries]}))
    os.replace(tmp, index)
    return Corpus(workload, root, tuple(entries))


@dataclass(frozen=True)
class ClientInputs:
    manifest: Path
    aria2: Path
    curl: Path


def write_client_inputs(
    corpus: Corpus, base_url: str, directory: Path, output_dir: Path
) -> ClientInputs:
    """Write the manifest, aria2c input and curl config for ``corpus`` into ``directory``.

    ``output_dir`` is where aria2c and curl are told to write the files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    inputs = ClientInputs(
        directory / f"{corpus.workload.name}.manifest.jsonl",
        directory / f"{corpus.workload.name}.aria2.txt",
        directory / f"{corpus.workload.name}.curl.cfg",
    )
    manifest, aria2, curl = [], [], []
    for entry in corpus.entries:
        url = corpus.url(base_url, entry)
        manifest.append(json.dumps({"url": url, "sha256": entry.sha256, "size": entry.size}))
        aria2.append(
            f"{url}\n  dir={output_dir}\n  out={entry.name}\n  checksum=sha-256={entry.sha256}"
        )
        curl.append(f'url = "{url}"\noutput = "{output_dir / entry.name}"')
    inputs.manifest.write_text("\n".join(manifest) + "\n")
    inputs.aria2.write_text("\n".join(aria2) + "\n")
    inputs.curl.write_text("\n".join(curl) + "\n")
    return inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="+", choices=sorted(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="the small smoke-run shapes")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="corpus cache directory")
    parser.add_argument("--base-url", help="also write client inputs for this server URL")
    parser.add_argument("--out", type=Path, default=Path("."), help="where client inputs go")
    parser.add_argument("--output-dir", type=Path, default=Path("downloads"))
    args = parser.parse_args(argv)
    table = QUICK_WORKLOADS if args.quick else WORKLOADS
    for name in args.workloads:
        corpus = ensure_corpus(table[name], args.root)
        print(f"{corpus.path}: {len(corpus.entries)} files, {corpus.total_bytes} bytes")
        if args.base_url:
            inputs = write_client_inputs(corpus, args.base_url, args.out, args.output_dir)
            print(f"  {inputs.manifest}\n  {inputs.aria2}\n  {inputs.curl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
