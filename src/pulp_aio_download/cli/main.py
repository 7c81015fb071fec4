"""The entry point: the commands, and ``main``.

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
import re
import shutil
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..urls import redact_url
from .options import UsageError, build_parser, engine_config, open_engine
from .progress import Progress, progress_mode
from .summary import BatchSummary, print_summary, print_verify_report

if TYPE_CHECKING:
    from ..config import EngineConfig
    from ..hooks import Hook
    from ..models import DownloadRequest

__all__ = ["main", "run_sync"]

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


# -- commands --------------------------------------------------------------------------


async def _cmd_get(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, DownloadError

    roots = []
    if args.url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        local = Path(unquote(urlsplit(args.url).path))
        resolved = await asyncio.get_running_loop().run_in_executor(None, local.resolve)
        roots.append(resolved.parent)
    digests = {"sha256": args.sha256} if args.sha256 else {}
    display = Progress(progress_mode(args.progress, sys.stderr))
    try:
        config = engine_config(args, allowed_file_roots=roots, progress=display.callback)
        async with open_engine(config) as engine:
            try:
                result = await engine.download(
                    args.url, expected_digests=digests, expected_size=args.size, remote=args.remote
                )
            except ConfigError as exc:  # a bad request, found before any I/O
                raise UsageError(str(exc)) from None
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
    workers: int = 1,
) -> dict[str, Any]:
    """Download ``requests`` with the common options (in ``workers`` engine processes);
    returns the summary."""
    display = Progress(progress)
    extra: dict[str, Any] = {} if hooks is None else {"hooks": hooks}
    started = time.monotonic()
    summary = BatchSummary(requests)
    try:
        config = engine_config(
            args, progress=display.callback, allowed_file_roots=list(extra_roots), **extra
        )
        if workers == 1:
            async with open_engine(config) as engine:
                # Outcomes are counted as they come: memory does not grow with the batch.
                await engine.download_each(requests, summary.add)
        else:
            await _run_workers(
                config, requests, workers, summary, recap=getattr(args, "workers", 1) is None
            )
    finally:
        display.close()
    return summary.to_json(time.monotonic() - started)


async def _run_workers(
    config: EngineConfig,
    requests: Sequence[DownloadRequest],
    workers: int,
    summary: BatchSummary,
    *,
    recap: bool,
) -> None:
    from ..errors import CatalogError, StorageError
    from ..parallel import WorkersDidNotStart, run_parallel

    try:
        await run_parallel(requests, config, workers, summary.add, probe_store=True, recap=recap)
    except WorkersDidNotStart as exc:
        if isinstance(exc.error, (StorageError, CatalogError)):
            raise UsageError(str(exc.error)) from None
        raise exc.error from None


def _workers(args: argparse.Namespace, files: int) -> int:
    """``--workers``, else the cores capped by the work and by ``--concurrency``."""
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError("--workers must be at least 1")
        return int(args.workers)
    from ..parallel import default_workers

    return default_workers(files, args.concurrency or 64)


async def _cmd_sync(args: argparse.Namespace) -> int:
    from .sources import InputError, load_sync_input

    try:
        loaded = await load_sync_input(args)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if loaded.manifest_unchanged:
        print(
            f"{redact_url(args.manifest)}: unchanged since the last sync (HTTP 304)",
            file=sys.stderr,
        )
    progress = progress_mode(args.progress, sys.stderr)
    summary = await run_sync(
        args,
        loaded.requests,
        progress=progress,
        extra_roots=loaded.file_roots,
        hooks=loaded.hooks,
        workers=_workers(args, len(loaded.requests)),
    )
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary, sys.stderr if progress == "json" else sys.stdout)
    return 0 if summary["failed"] == 0 else 1


async def _cmd_verify(args: argparse.Namespace) -> int:
    display = Progress(progress_mode(args.progress, sys.stderr))
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
        from ..errors import ConfigError, DownloadError

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
