"""A deterministic sample repository (Pulp-file-like) to serve from a :class:`FaultServer`.

Example::

    repo = generate_repository(None, files=50, corrupt=1, flaky=1)
    async with FaultServer() as srv:
        base = repo.serve(srv, prefix="/sample/")
        manifest_lines = repo.jsonl_manifest(base)   # the JSONL manifest of `sync`
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .server import Fault, FaultServer

__all__ = ["PULP_MANIFEST", "SampleFile", "SampleRepository", "generate_repository"]

#: The name of the manifest of Pulp's file plugin.
PULP_MANIFEST = "PULP_MANIFEST"

_DIRS = ("", "isos/", "packages/a/", "packages/b/", "docs/", "images/x86_64/")


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleFile:
    """One content file of a :class:`SampleRepository`.

    Exactly one of ``data`` (in-memory repository) and ``path`` (written to disk) is set.
    ``corrupt``: the server always serves it with one byte flipped (its sha256 is the true
    one, so a client must reject it). ``flaky``: the first request gets a 503, later ones
    succeed. ``gzip``: the file holds gzip data and is served with
    ``Content-Encoding: gzip``; its digest is over the gzip bytes.
    """

    relative_path: str
    sha256: str
    size: int
    data: bytes | None = field(default=None, repr=False)
    path: Path | None = None
    corrupt: bool = False
    flaky: bool = False
    gzip: bool = False

    def read_bytes(self) -> bytes:
        """The file's true content."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    @property
    def fault(self) -> Fault | list[Fault | None] | None:
        """The faults the server applies to this file (see :meth:`FaultServer.set_faults`)."""
        if self.corrupt:
            return Fault(flip_byte=self.size // 2, gzip=self.gzip)
        if self.flaky:
            return [Fault(status=503, retry_after=0, gzip=self.gzip)]
        if self.gzip:
            return Fault(gzip=True)
        return None


@dataclass(frozen=True, slots=True)
class SampleRepository:
    """A generated repository: its files, and the manifests that describe them."""

    files: tuple[SampleFile, ...]
    root: Path | None = None
    name: str = "sample"

    @property
    def total_size(self) -> int:
        """The sum of the file sizes."""
        return sum(f.size for f in self.files)

    @property
    def corrupt(self) -> tuple[SampleFile, ...]:
        """The files the server always serves with a flipped byte."""
        return tuple(f for f in self.files if f.corrupt)

    @property
    def flaky(self) -> tuple[SampleFile, ...]:
        """The files whose first request gets a 503."""
        return tuple(f for f in self.files if f.flaky)

    def pulp_manifest(self) -> str:
        """``PULP_MANIFEST`` text: one ``relative_path,sha256,size`` line per file."""
        return "".join(f"{f.relative_path},{f.sha256},{f.size}\n" for f in self.files)

    def jsonl_manifest(
        self, base_url: str | Sequence[str], *, repository: str | None = None
    ) -> list[dict[str, Any]]:
        """Manifest entries for the ``sync`` command (its JSONL format), one per file.

        ``base_url`` is the URL the repository is served under; with several base URLs
        (mirrors) each entry lists them as ``sources`` in that order of priority.
        """
        bases = [base_url] if isinstance(base_url, str) else list(base_url)
        if not bases:
            raise ValueError("at least one base URL is needed")
        bases = [b if b.endswith("/") else b + "/" for b in bases]
        repo = repository or self.name
        entries: list[dict[str, Any]] = []
        for f in self.files:
            entry: dict[str, Any] = {}
            if len(bases) == 1:
                entry["url"] = bases[0] + f.relative_path
            else:
                entry["sources"] = [
                    {"url": b + f.relative_path, "priority": len(bases) - i}
                    for i, b in enumerate(bases)
                ]
            entry.update(
                sha256=f.sha256,
                size=f.size,
                unit={
                    "type": "file",
                    "key": f"{f.relative_path}:{f.sha256}",
                    "relative_path": f.relative_path,
                },
                repository=repo,
            )
            entries.append(entry)
        return entries

    def write_jsonl(
        self,
        path: str | os.PathLike[str],
        base_url: str | Sequence[str],
        *,
        repository: str | None = None,
    ) -> Path:
        """Write :meth:`jsonl_manifest` to ``path`` (one JSON object a line)."""
        out = Path(path)
        lines = self.jsonl_manifest(base_url, repository=repository)
        out.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in lines))
        return out

    def serve(self, server: FaultServer, prefix: str = "/") -> str:
        """Register every file (with its faults) and ``PULP_MANIFEST`` on ``server``.

        Returns the base URL of the repository (ending in ``/``) once the server is started,
        else the path prefix.
        """
        prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        for f in self.files:
            url_path = prefix + f.relative_path
            if f.data is not None:
                server.add(url_path, f.data, faults=f.fault)
            else:
                assert f.path is not None
                server.add_file(url_path, f.path, faults=f.fault)
        server.add(prefix + PULP_MANIFEST, self.pulp_manifest().encode(), content_type="text/csv")
        return server.url(prefix) if server.port else prefix


def generate_repository(
    root: str | os.PathLike[str] | None,
    *,
    files: int = 300,
    large: int = 3,
    large_size: int = 4 * 1024 * 1024,
    gzip_files: int = 1,
    corrupt: int = 0,
    flaky: int = 0,
    seed: int = 0,
    name: str = "sample",
) -> SampleRepository:
    """Make a deterministic sample repository (the same ``seed`` gives the same bytes).

    ``files`` is the total number of content files, of which ``large`` are ``large_size``
    bytes, ``gzip_files`` are gzip data served with ``Content-Encoding: gzip``, and the rest
    are small (0 to 256 KiB). ``corrupt`` and ``flaky`` small files are marked (see
    :class:`SampleFile`). With ``root`` the files and ``PULP_MANIFEST`` are written there
    (``SampleFile.path``); with None they stay in memory (``SampleFile.data``).
    """
    for label, value in (("files", files), ("large", large), ("large_size", large_size)):
        if value < 0:
            raise ValueError(f"{label} must not be negative")
    for label, value in (("gzip_files", gzip_files), ("corrupt", corrupt), ("flaky", flaky)):
        if value < 0:
            raise ValueError(f"{label} must not be negative")
    if large + gzip_files + corrupt + flaky > files:
        raise ValueError("large + gzip_files + corrupt + flaky must not exceed files")
    rng = random.Random(seed)
    base = Path(root) if root is not None else None
    kinds = ["large"] * large + ["gzip"] * gzip_files + ["corrupt"] * corrupt
    kinds += ["flaky"] * flaky
    kinds += ["small"] * (files - len(kinds))
    rng.shuffle(kinds)
    out: list[SampleFile] = []
    for index, kind in enumerate(kinds):
        folder = _DIRS[index % len(_DIRS)]
        if kind == "large":
            data = rng.randbytes(large_size)
            rel = f"{folder}large-{index:04d}.iso"
        elif kind == "gzip":
            raw = rng.randbytes(rng.randint(1024, 64 * 1024))
            data = gzip.compress(raw, mtime=0)
            rel = f"{folder}file-{index:04d}.tar.gz"
        else:
            pick = rng.random()
            if pick < 0.03 and kind == "small":
                size = 0
            elif pick < 0.45:
                size = rng.randint(16, 4096)
            else:
                size = rng.randint(4096, 256 * 1024)
            data = rng.randbytes(size)
            rel = f"{folder}file-{index:04d}.bin"
        sha = hashlib.sha256(data).hexdigest()
        path: Path | None = None
        if base is not None:
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        out.append(
            SampleFile(
                relative_path=rel,
                sha256=sha,
                size=len(data),
                data=None if base is not None else data,
                path=path,
                corrupt=kind == "corrupt",
                flaky=kind == "flaky",
                gzip=kind == "gzip",
            )
        )
    repo = SampleRepository(tuple(out), base, name)
    if base is not None:
        (base / PULP_MANIFEST).write_text(repo.pulp_manifest())
    return repo
