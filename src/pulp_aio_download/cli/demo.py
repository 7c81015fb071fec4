"""``pulp-aio-download demo``: mirror a generated sample repository over loopback, offline.

A :class:`~pulp_aio_download.testing.FaultServer` on 127.0.0.1 serves a deterministic
sample repository (some hundreds of files, a few large ones, one gzip file served with
``Content-Encoding: gzip``, one file always served corrupt, one that answers 503 once).
The whole pipeline mirrors it into a data directory (a temporary one unless ``--data-dir``
is given): download, validation, content-addressed storage, the SQLite catalog, one unit
per file in repository ``sample``. Progress and the summary are shown as for ``sync``, then
two lines explain what happened.

Exit 0 when everything behaved as designed: the corrupt file refused with nothing stored
for it, every other file stored and recorded (the flaky one after a retry).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import DownloadRequest

__all__ = ["REPOSITORY", "run_demo"]

#: The repository the demo fills in the catalog.
REPOSITORY = "sample"

_PREFIX = "/sample/"


@dataclass
class _Mirrored:
    """What mirroring the sample repository gave: the results and what the catalog,
    the storage and the server say of the corrupt file."""

    base: str
    requests: list[DownloadRequest]
    results: list[Any]
    elapsed: float
    units: int
    corrupt_stored: bool
    corrupt_record: Any
    corrupt_attempts: int


async def run_demo(args: argparse.Namespace) -> int:
    """Run the demo with the command line's ``args``; returns the exit code."""
    from ..testing.repo import generate_repository
    from .options import UsageError
    from .progress import Progress, progress_mode

    nfiles: int = getattr(args, "files", 300)
    if nfiles < 6:
        raise UsageError("--files must be at least 6")
    args = copy.copy(args)
    if args.data_dir is None:
        args.data_dir = Path(tempfile.mkdtemp(prefix="pulp-aio-download-demo-"))
    display = Progress(progress_mode(getattr(args, "progress", None), sys.stderr))
    as_json = bool(getattr(args, "json", False))
    repo = generate_repository(
        None, files=nfiles, large=3, large_size=4 * 1024 * 1024, corrupt=1, flaky=1
    )
    try:
        mirrored = await _mirror(args, repo, display, as_json)
    finally:
        display.close()
    return _report(args, repo, mirrored, display.summary_stream, as_json)


async def _mirror(args: argparse.Namespace, repo: Any, display: Any, as_json: bool) -> _Mirrored:
    """Serve ``repo`` on loopback and mirror it with the engine the arguments configure."""
    from ..engine import DownloadEngine
    from ..testing import FaultServer
    from .manifest import parse_manifest_line
    from .options import engine_config
    from .progress import human_bytes

    corrupt = repo.corrupt[0]
    out = display.summary_stream
    async with FaultServer() as server:
        base = repo.serve(server, _PREFIX)
        if not as_json:
            out.write(
                f"Serving a sample repository of {len(repo.files)} files "
                f"({human_bytes(repo.total_size)}; 3 large, 1 corrupt, 1 flaky) at {base}\n"
                f"Mirroring it into {args.data_dir} (artifacts + SQLite catalog)\n"
            )
            out.flush()
        requests = []
        for entry in repo.jsonl_manifest(base, repository=REPOSITORY):
            request = parse_manifest_line(json.dumps(entry))
            assert request is not None
            requests.append(request)
        started = time.monotonic()
        async with DownloadEngine(engine_config(args, progress=display.callback)) as engine:
            try:
                results = await engine.download_many(requests, return_exceptions=True)
            finally:
                display.close()
            elapsed = time.monotonic() - started
            catalog = engine.catalog
            assert catalog is not None
            units = await catalog.repository_units(REPOSITORY)
            corrupt_stored = await engine.storage.stat(corrupt.sha256) is not None
            corrupt_record = await catalog.get_unit_file(corrupt.sha256)
        attempts = server.stats(_PREFIX + corrupt.relative_path).requests
    return _Mirrored(
        base, requests, results, elapsed, len(units), corrupt_stored, corrupt_record, attempts
    )


def _report(args: argparse.Namespace, repo: Any, m: _Mirrored, out: Any, as_json: bool) -> int:
    """Print the summary and the explanation; 0 when the demo behaved as designed."""
    from ..errors import ValidationError
    from ..models import DownloadResult
    from .summary import print_summary, summarize

    corrupt, flaky = repo.corrupt[0], repo.flaky[0]
    by_path = {f.relative_path: r for f, r in zip(repo.files, m.results, strict=True)}
    corrupt_result = by_path[corrupt.relative_path]
    flaky_result = by_path[flaky.relative_path]
    others_ok = all(
        isinstance(r, DownloadResult)
        for f, r in zip(repo.files, m.results, strict=True)
        if f is not corrupt
    )
    corrupt_ok = (
        isinstance(corrupt_result, ValidationError)
        and not m.corrupt_stored
        and (m.corrupt_record is None or m.corrupt_record.location is None)
    )
    as_designed = corrupt_ok and others_ok and m.units == len(repo.files) - 1
    explanation = [
        _explain_corrupt(corrupt.relative_path, corrupt_result, m.corrupt_attempts, corrupt_ok),
        _explain_flaky(flaky.relative_path, flaky_result, m.units, args.data_dir),
    ]
    summary = summarize(m.results, m.requests, m.elapsed)
    if as_json:
        summary["data_dir"] = str(args.data_dir)
        summary["units"] = m.units
        summary["as_designed"] = as_designed
        summary["corrupt"] = {
            "url": m.base + corrupt.relative_path,
            "error": type(corrupt_result).__name__,
            "stored": m.corrupt_stored,
        }
        summary["flaky"] = {
            "url": m.base + flaky.relative_path,
            "attempts": getattr(flaky_result, "attempts", None),
            "cached": getattr(flaky_result, "cached", None),
        }
        summary["explanation"] = explanation
        print(json.dumps(summary))
    else:
        print_summary(summary, out)
        out.write("\n" + "\n".join(explanation) + "\n")
        out.write(
            f"Look around: pulp-aio-download catalog units {REPOSITORY} "
            f"--data-dir {args.data_dir}\n"
        )
        if not as_designed:
            out.write("The demo did NOT behave as designed (see above).\n")
        out.flush()
    return 0 if as_designed else 1


def _explain_corrupt(name: str, result: Any, attempts: int, ok: bool) -> str:
    from ..errors import DigestMismatch, DownloadError

    if isinstance(result, DigestMismatch):
        why = f"{result.algorithm} mismatch"
    elif isinstance(result, DownloadError):
        why = type(result).__name__
    else:
        return f"Unexpected: the corrupt file {name} was accepted."
    stored = "nothing was stored or recorded for it" if ok else "but something was stored!"
    return f"The corrupt file {name} was refused ({why}, {attempts} attempts) and {stored}."


def _explain_flaky(name: str, result: Any, units: int, data_dir: Path) -> str:
    from ..models import DownloadResult

    tail = f"{units} units are in repository '{REPOSITORY}' of the catalog in {data_dir}."
    if not isinstance(result, DownloadResult):
        return f"The flaky file {name} failed: {result}. {tail}"
    if result.cached:
        return f"The flaky file {name} was already stored, so it needed no request; {tail}"
    if result.attempts > 1:
        return (
            f"The flaky file {name} got a 503 first and succeeded on attempt "
            f"{result.attempts} (retried); {tail}"
        )
    return f"The flaky file {name} succeeded at once; {tail}"
