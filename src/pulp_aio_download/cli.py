"""The command line: ``pulp-aio-download`` (also ``python -m pulp_aio_download``).

Exit codes: 0 success, 1 some download/verification failed (listed), 2 bad arguments, bad
input (named), or a data dir, store or catalog that cannot be opened for what the command
needs, before anything is downloaded. Failures are reported in one line, never a
traceback. Heavy modules (aiohttp) are imported only when a command runs, so ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .config import EngineConfig
    from .engine import DownloadEngine
    from .hooks import Hook
    from .models import DownloadRequest, ProgressReport, VerifyReport

__all__ = ["default_data_dir", "main"]

DATA_DIR_ENV = "PULP_AIO_DOWNLOAD_DATA_DIR"


def default_data_dir() -> Path:
    """``$PULP_AIO_DOWNLOAD_DATA_DIR``, else ``$XDG_DATA_HOME/pulp-aio-download``
    (``~/.local/share/pulp-aio-download``)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pulp-aio-download"


class UsageError(Exception):
    """Bad arguments or input: exit 2 with this message."""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data directory (default: ${DATA_DIR_ENV} or ~/.local/share/pulp-aio-download)",
    )
    group.add_argument(
        "--storage", help="a directory, or s3://bucket/prefix (default: DATA_DIR/artifacts)"
    )
    group.add_argument("--s3-endpoint-url", help="endpoint of an S3-compatible store")
    group.add_argument(
        "--catalog", help="a SQLite file, or postgresql://... (default: DATA_DIR/catalog.sqlite3)"
    )
    group.add_argument("--remotes", type=Path, help="TOML file with [remotes.NAME] tables")
    group.add_argument(
        "--allow-file-root",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="allow file:// sources under DIR (repeatable)",
    )
    group.add_argument(
        "--concurrency", type=int, default=None, help="connections at once (default 64)"
    )
    group.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="pulp-aio-download",
        description="Download, validate, store and record repository content.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    get = sub.add_parser("get", help="download one file and print its stored location")
    get.add_argument("url", help="an http://, https:// or file:// URL")
    get.add_argument("--sha256", help="expected sha256 (hex)")
    get.add_argument("--size", type=int, help="expected size in bytes")
    get.add_argument("-o", "--output", type=Path, help="also copy the file here")
    get.add_argument("--remote", help="name of a remote from --remotes")
    get.add_argument(
        "--progress", choices=("bar", "json", "none"), default=None, help="as for sync"
    )
    _common(get)

    sync = sub.add_parser(
        "sync", help="download a JSONL manifest, a Metalink document or a PULP_MANIFEST"
    )
    sync.add_argument(
        "manifest",
        help="a path or http(s) URL: JSONL, Metalink 4 or 3.0 (*.meta4, *.metalink, or by "
        "content) or a PULP_MANIFEST",
    )
    sync.add_argument(
        "--location",
        action="append",
        default=[],
        metavar="CODE[,CODE...]",
        help="Metalink: mirrors in these locations (e.g. de) are tried first (repeatable)",
    )
    sync.add_argument(
        "--base-url",
        metavar="URL",
        help="PULP_MANIFEST given as a path: the URL its paths are relative to "
        "(default: the manifest's directory)",
    )
    sync.add_argument(
        "--repository",
        metavar="NAME",
        help="PULP_MANIFEST / Metalink: the repository of the units "
        "(PULP_MANIFEST default: the manifest's directory name)",
    )
    sync.add_argument(
        "--remote",
        metavar="NAME",
        help="remote (from --remotes) that fetches a manifest URL, and the files of a "
        "Metalink document or PULP_MANIFEST",
    )
    sync.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default=None,
        help="bar (default on a terminal), json lines on stdout, or none",
    )
    sync.add_argument("--json", action="store_true", help="print the summary as JSON")
    _common(sync)

    verify = sub.add_parser("verify", help="re-hash stored files against the catalog")
    verify.add_argument("--repair", action="store_true", help="re-fetch corrupt/missing files")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--progress", choices=("bar", "json", "none"), default=None, help="as for sync"
    )
    _common(verify)

    catalog = sub.add_parser("catalog", help="print catalog records as JSON")
    csub = catalog.add_subparsers(dest="catalog_command", metavar="WHAT")
    csub.required = True
    show = csub.add_parser("show", help="the unit file of a sha256")
    show.add_argument("sha256", help="the sha256 of the file (hex, any case)")
    _common(show)
    units = csub.add_parser("units", help="the units of a repository")
    units.add_argument("repository", help="the name of the repository")
    _common(units)

    demo = sub.add_parser("demo", help="mirror a generated sample repository, offline")
    demo.add_argument("--files", type=int, default=300, help="number of files (default 300)")
    demo.add_argument(
        "--progress", choices=("bar", "json", "none"), default=None, help="as for sync"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    _common(demo)
    return parser


_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")


class _RedactingFormatter(logging.Formatter):
    """A last line of defence: URL userinfo never reaches a log line."""

    def format(self, record: logging.LogRecord) -> str:
        return _USERINFO.sub("***@", super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (the live bar redirects it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging(verbose: int) -> None:
    """``-v`` shows the library's INFO lines, ``-vv`` DEBUG, on stderr."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger("pulp_aio_download")
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def engine_config(
    args: argparse.Namespace, *, read_only: bool = False, **extra: Any
) -> EngineConfig:
    """The :class:`EngineConfig` the common options describe.

    ``read_only`` (commands that only read): the local store and the SQLite or PostgreSQL
    catalog are opened for reading only, so the command works on a read-only data dir.
    """
    from .config import EngineConfig
    from .errors import ConfigError

    data_dir: Path = args.data_dir or default_data_dir()
    storage = None
    if args.storage or read_only:
        uri = args.storage or str(data_dir / "artifacts")
        storage = _storage_from_uri(uri, args.s3_endpoint_url, read_only)
    catalog = None
    if args.catalog or read_only:
        catalog = _catalog_from_uri(args.catalog or str(data_dir / "catalog.sqlite3"), read_only)
    remotes = {}
    if args.remotes is not None:
        from .remotes_file import load_remotes

        remotes = load_remotes(args.remotes)
    kwargs: dict[str, Any] = {}
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        kwargs["max_connections"] = args.concurrency
    try:
        return EngineConfig(
            data_dir=data_dir,
            storage=storage,
            catalog=catalog,
            remotes=remotes,
            allowed_file_roots=[*args.allow_file_root, *extra.pop("allowed_file_roots", [])],
            **kwargs,
            **extra,
        )
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _storage_from_uri(uri: str, endpoint_url: str | None, read_only: bool = False) -> Any:
    if uri.startswith("s3://"):
        from .storage.s3 import S3Storage

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise UsageError(f"--storage {uri!r}: no bucket")
        return S3Storage(bucket, prefix=prefix, endpoint_url=endpoint_url)
    if "://" in uri:
        raise UsageError(f"--storage {uri!r}: expected a directory or s3://bucket/prefix")
    from .storage.local import LocalStorage

    return LocalStorage(uri, read_only=read_only)


def _catalog_from_uri(uri: str, read_only: bool = False) -> Any:
    if uri.startswith(("postgresql://", "postgres://")):
        from .catalog.postgres import PostgresCatalog

        return PostgresCatalog(uri, read_only=read_only)
    if "://" in uri:
        from .urls import redact_url

        raise UsageError(
            f"--catalog: expected a SQLite file path or postgresql://..., got {redact_url(uri)!r}"
        )
    from .catalog.sqlite import SQLiteCatalog

    return SQLiteCatalog(uri, read_only=read_only)


@contextlib.asynccontextmanager
async def open_engine(
    config: EngineConfig, *, probe_store: bool = True
) -> AsyncIterator[DownloadEngine]:
    """The started engine of a command; storage or a catalog that cannot be opened (or,
    with ``probe_store``, a store that does not answer) is a :class:`UsageError` (exit 2,
    one line), before anything is downloaded."""
    from .engine import DownloadEngine
    from .errors import CatalogError, StorageError

    engine = DownloadEngine(config)
    try:
        await engine.start()
    except (StorageError, CatalogError) as exc:
        raise UsageError(str(exc)) from None
    try:
        try:
            # A store that cannot be reached (an S3 endpoint down) is found now, not per file.
            if probe_store:
                await engine.storage.stat("0" * 64)
        except StorageError as exc:
            raise UsageError(str(exc)) from None
        yield engine
    finally:
        await engine.close()


# -- progress and summaries ------------------------------------------------------------


def _progress_mode(requested: str | None, stream: TextIO) -> str:
    """``--progress`` as given, else ``bar`` when ``stream`` is a terminal, else ``none``."""
    if requested is not None:
        return requested
    try:
        return "bar" if stream.isatty() else "none"
    except (AttributeError, ValueError):
        return "none"


class _Progress:
    """The progress callback of one command, and what to close after it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        # Taken before the live bar starts, which swaps sys.stdout for a proxy.
        self.summary_stream: TextIO = sys.stderr if mode == "json" else sys.stdout
        self.bar: Any = None
        self.callback: Any = None
        if mode == "json":
            self.callback = _json_progress(sys.stdout)
        elif mode == "bar":
            from .cli_progress import ProgressBar

            self.bar = ProgressBar(sys.stderr)
            self.callback = self.bar.update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _json_progress(out: TextIO) -> Any:
    def emit(report: ProgressReport) -> None:
        out.write(json.dumps(report.to_json()) + "\n")
        out.flush()

    return emit


class BatchSummary:
    """Counts a batch's outcomes as they arrive (nothing else is kept), for the summary.

    ``retried`` and ``bytes`` mean what they mean in the progress reports: files whose
    source needed more than one attempt (done or failed), and bytes transferred (files
    the store already had count for nothing, and so for the rate).
    """

    def __init__(self, requests: Sequence[DownloadRequest]) -> None:
        self.requests = requests
        self.done = self.cached = self.retried = self.bytes = 0
        self.failures: list[tuple[int, dict[str, Any]]] = []

    def add(self, index: int, outcome: Any) -> None:
        from .errors import DownloadError
        from .progress import was_retried

        if was_retried(outcome):
            self.retried += 1
        if isinstance(outcome, DownloadError):
            url = self.requests[index].url
            failure = {
                "url": url,
                "error": type(outcome).__name__,
                "reason": _reason(outcome, url),
                "attempts": outcome.attempts,
            }
            self.failures.append((index, failure))
            return
        self.done += 1
        if outcome.cached:
            self.cached += 1
        self.bytes += outcome.transferred

    def to_json(self, elapsed: float) -> dict[str, Any]:
        return {
            "files": len(self.requests),
            "done": self.done,
            "cached": self.cached,
            "failed": len(self.failures),
            "retried": self.retried,
            "bytes": self.bytes,
            "elapsed": round(elapsed, 3),
            "rate": round(self.bytes / elapsed, 1) if elapsed > 0 else 0.0,
            "failures": [failure for _, failure in sorted(self.failures, key=lambda f: f[0])],
        }


def summarize(
    results: Sequence[Any], requests: Sequence[DownloadRequest], elapsed: float
) -> dict[str, Any]:
    """A JSON-able summary of a batch."""
    summary = BatchSummary(requests)
    for index, outcome in enumerate(results):
        summary.add(index, outcome)
    return summary.to_json(elapsed)


def _reason(error: BaseException, url: str | None) -> str:
    """The error message on one line, without the URL the summary already shows."""
    line = " ".join(str(error).split())
    if url and line.endswith(f" ({url})"):
        line = line[: -len(url) - 3]
    return line if len(line) <= 300 else line[:299] + "…"


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    """The human summary: one line of counts, then one line per failure."""
    from .cli_progress import human_bytes
    from .progress import plural

    out.write(
        f"{plural(summary['files'], 'file')}: {summary['done']} done "
        f"({summary['cached']} already stored), {summary['failed']} failed, "
        f"{summary['retried']} retried; {human_bytes(summary['bytes'])} transferred in "
        f"{summary['elapsed']:.2f} s ({human_bytes(summary['rate'])}/s)\n"
    )
    for failure in summary["failures"]:
        out.write(f"FAILED {failure['url']}: {failure['reason']}\n")


def print_verify_report(report: VerifyReport, out: TextIO) -> None:
    """The human verify report: one line of counts, then one line per finding."""
    from .cli_progress import human_bytes
    from .progress import plural

    repaired = set(report.repaired)
    unrecorded = set(report.unrecorded)
    out.write(
        f"checked {report.checked}: {report.ok} ok, {len(report.corrupt)} corrupt, "
        f"{len(report.missing)} missing, {len(report.unrecorded)} unrecorded, "
        f"{len(report.repaired)} repaired; {plural(len(report.partials), 'leftover partial')}\n"
    )
    for sha in report.corrupt:
        if sha not in unrecorded:
            out.write(f"CORRUPT {sha}" + (" (repaired)\n" if sha in repaired else "\n"))
    for sha in report.missing:
        out.write(f"MISSING {sha}" + (" (repaired)\n" if sha in repaired else "\n"))
    for sha in report.unrecorded:
        if sha in report.corrupt:
            note = "its content does not match its key"
        elif sha in repaired:
            note = "adopted"
        else:
            note = "its content matches its key: --repair records it"
        out.write(f"UNRECORDED {sha} ({note})\n")
    for sha, error in report.errors.items():
        out.write(f"REPAIR FAILED {sha}: {error}\n")
    for leftover in report.partials:
        origin = f", from {leftover.url}" if leftover.url else ""
        size = f"{human_bytes(leftover.size)}{origin}" if leftover.size else "size unknown"
        out.write(f"LEFTOVER {leftover.kind} {leftover.location} ({size})\n")


# -- commands --------------------------------------------------------------------------


async def _cmd_get(args: argparse.Namespace) -> int:
    from .errors import ConfigError, DownloadError

    roots = []
    if args.url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        local = Path(unquote(urlsplit(args.url).path))
        resolved = await asyncio.get_running_loop().run_in_executor(None, local.resolve)
        roots.append(resolved.parent)
    digests = {"sha256": args.sha256} if args.sha256 else {}
    display = _Progress(_progress_mode(args.progress, sys.stderr))
    try:
        config = engine_config(args, allowed_file_roots=roots, progress=display.callback)
        async with open_engine(config) as engine:
            try:
                request = engine._make_request(
                    args.url,
                    {
                        "expected_digests": digests,
                        "expected_size": args.size,
                        "remote": args.remote,
                    },
                )
            except ConfigError as exc:
                raise UsageError(str(exc)) from None
            try:
                result = await engine.download(request)
            except DownloadError as exc:
                error: DownloadError | None = exc
            else:
                error = None
    finally:
        display.close()  # the engine sent its final report when it closed
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.output is not None and result.path is not None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, shutil.copyfile, result.path, args.output
            )
        except OSError as exc:
            print(f"error: cannot copy {result.path} to {args.output}: {exc}", file=sys.stderr)
            return 1
    # With --progress json, stdout carries only the JSON lines (as for sync).
    print(result.path if result.path is not None else result.location, file=display.summary_stream)
    return 0


async def run_sync(
    args: argparse.Namespace,
    requests: Sequence[DownloadRequest],
    *,
    progress: str,
    extra_roots: Sequence[Path] = (),
    hooks: Sequence[Hook] | None = None,
) -> dict[str, Any]:
    """Download ``requests`` with the common options; returns the summary."""
    display = _Progress(progress)
    extra: dict[str, Any] = {} if hooks is None else {"hooks": hooks}
    started = time.monotonic()
    summary = BatchSummary(requests)
    try:
        config = engine_config(
            args, progress=display.callback, allowed_file_roots=list(extra_roots), **extra
        )
        async with open_engine(config) as engine:
            # Outcomes are counted as they come: memory does not grow with the batch.
            await engine.download_each(requests, summary.add)
    finally:
        display.close()
    return summary.to_json(time.monotonic() - started)


async def _cmd_sync(args: argparse.Namespace) -> int:
    from .cli_sources import InputError, load_sync_input

    try:
        loaded = await load_sync_input(args)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    progress = _progress_mode(args.progress, sys.stderr)
    summary = await run_sync(
        args, loaded.requests, progress=progress, extra_roots=loaded.file_roots, hooks=loaded.hooks
    )
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary, sys.stderr if progress == "json" else sys.stdout)
    return 0 if summary["failed"] == 0 else 1


async def _cmd_verify(args: argparse.Namespace) -> int:
    display = _Progress(_progress_mode(args.progress, sys.stderr))
    # A plain check only reads: it works on a read-only data dir.
    config = engine_config(args, read_only=not args.repair, progress=display.callback)
    try:
        async with open_engine(config) as engine:
            report = await engine.verify(repair=args.repair)
    finally:
        display.close()
    data = {
        "checked": report.checked,
        "ok": report.ok,
        "corrupt": list(report.corrupt),
        "missing": list(report.missing),
        "unrecorded": list(report.unrecorded),
        "repaired": list(report.repaired),
        "errors": dict(report.errors),
        "partials": [leftover.to_json() for leftover in report.partials],
    }
    if args.json:
        print(json.dumps(data))
    else:
        print_verify_report(report, sys.stdout)
    return 0 if report.clean else 1


async def _cmd_catalog(args: argparse.Namespace) -> int:
    config = engine_config(args, read_only=True)
    async with open_engine(config, probe_store=False) as engine:
        catalog = engine.catalog
        assert catalog is not None
        if args.catalog_command == "show":
            record = await catalog.get_unit_file(args.sha256.lower())
            if record is None:
                print(f"no unit file for {args.sha256}", file=sys.stderr)
                return 1
            print(json.dumps(record.to_json(), indent=2))
            return 0
        units = await catalog.repository_units(args.repository)
        if not units:
            print(f"no units in repository {args.repository!r}", file=sys.stderr)
            return 1
        print(json.dumps([u.to_json() for u in units], indent=2))
        return 0


async def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(args)


_COMMANDS = {
    "get": _cmd_get,
    "sync": _cmd_sync,
    "verify": _cmd_verify,
    "catalog": _cmd_catalog,
    "demo": _cmd_demo,
}


async def _interruptible(command: Coroutine[Any, Any, int]) -> int:
    # Ctrl-C cancels the command, so that engines close, staging files go and the catalog
    # flushes (Python 3.11's asyncio.run does this itself; 3.10's would raise mid-step).
    task = asyncio.current_task()
    assert task is not None
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
    try:
        return await command
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return asyncio.run(_interruptible(_COMMANDS[args.command](args)))
    except UsageError as exc:
        _error_line(exc)
        return 2
    except Exception as exc:
        from .errors import ConfigError, DownloadError

        if isinstance(exc, ConfigError):
            _error_line(exc)
            return 2
        if isinstance(exc, DownloadError):  # e.g. the catalog failed in mid-command
            _error_line(exc)
            return 1
        raise
    except KeyboardInterrupt:
        return 130


def _error_line(exc: BaseException) -> None:
    print(f"pulp-aio-download: error: {' '.join(str(exc).split())}", file=sys.stderr)
