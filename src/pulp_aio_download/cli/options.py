"""The command line's options: the parser, the data dir, and the engine they describe."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import EngineConfig
    from ..engine import DownloadEngine

__all__ = [
    "DATA_DIR_ENV",
    "UsageError",
    "build_parser",
    "default_data_dir",
    "engine_config",
    "open_engine",
]

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
    group.add_argument(
        "--max-speed",
        type=_speed,
        default=None,
        metavar="RATE",
        help="cap on the bytes per second of all transfers together, e.g. 500K, 10M (1M = "
        "1 MiB); remotes may have their own max_speed",
    )
    group.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")


def _speed(text: str) -> int:
    from .sizes import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--max-speed: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="pulp-aio-download",
        description="Download, validate, store and record repository content.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_get, _add_sync, _add_verify, _add_catalog, _add_demo):
        add(sub)
    return parser


def _add_get(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``get``: one file."""
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


def _add_sync(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sync``: a manifest, Metalink or PULP_MANIFEST."""
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
        "--no-conditional-get",
        dest="conditional_get",
        action="store_false",
        help="fetch a manifest URL whole, without the ETag / Last-Modified kept from the "
        "last sync (default: sent back; a 304 is read from the store)",
    )
    sync.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default=None,
        help="bar (default on a terminal), json lines on stdout, or none",
    )
    sync.add_argument("--json", action="store_true", help="print the summary as JSON")
    sync.add_argument(
        "--segments",
        type=int,
        default=None,
        metavar="N",
        help="fetch each large file (from every remote's segment_threshold, default 64 MiB) "
        "as N ranges at once, over N connections, when its server answers ranges "
        "(for every remote of the run; default: each remote's own, 1 = off)",
    )
    sync.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="engine processes sharing the batch and --concurrency (default: the cores, "
        "capped at one per 2000 files; 1: this process alone)",
    )
    _common(sync)


def _add_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``verify``: re-hash what is stored."""
    verify = sub.add_parser("verify", help="re-hash stored files against the catalog")
    verify.add_argument("--repair", action="store_true", help="re-fetch corrupt/missing files")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--progress", choices=("bar", "json", "none"), default=None, help="as for sync"
    )
    _common(verify)


def _add_catalog(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``catalog show`` and ``catalog units``."""
    catalog = sub.add_parser("catalog", help="print catalog records as JSON")
    csub = catalog.add_subparsers(dest="catalog_command", metavar="WHAT")
    csub.required = True
    show = csub.add_parser("show", help="the unit file of a sha256")
    show.add_argument("sha256", help="the sha256 of the file (hex, any case)")
    _common(show)
    units = csub.add_parser("units", help="the units of a repository")
    units.add_argument("repository", help="the name of the repository")
    _common(units)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``demo``: the offline sample repository."""
    demo = sub.add_parser("demo", help="mirror a generated sample repository, offline")
    demo.add_argument("--files", type=int, default=300, help="number of files (default 300)")
    demo.add_argument(
        "--progress", choices=("bar", "json", "none"), default=None, help="as for sync"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    _common(demo)


def engine_config(
    args: argparse.Namespace, *, read_only: bool = False, **extra: Any
) -> EngineConfig:
    """The :class:`EngineConfig` the common options describe.

    ``read_only`` (commands that only read): the local store and the SQLite or PostgreSQL
    catalog are opened for reading only, so the command works on a read-only data dir.
    """
    from ..config import EngineConfig
    from ..errors import ConfigError

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
    segments = getattr(args, "segments", None)
    if segments is not None:
        if segments < 1:
            raise UsageError("--segments must be at least 1")
        remotes = _with_segments(remotes, segments)
    kwargs: dict[str, Any] = {}
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        kwargs["max_connections"] = args.concurrency
    if getattr(args, "max_speed", None) is not None:
        kwargs["max_speed"] = args.max_speed
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


def _with_segments(remotes: dict[str, Any], segments: int) -> dict[str, Any]:
    """Every remote of the run (the default one included) with ``segments``."""
    from dataclasses import replace

    from ..config import RemoteConfig

    out = {name: replace(remote, segments=segments) for name, remote in remotes.items()}
    out.setdefault("default", RemoteConfig(segments=segments))
    return out


def _storage_from_uri(uri: str, endpoint_url: str | None, read_only: bool = False) -> Any:
    if uri.startswith("s3://"):
        from ..storage.s3 import S3Storage

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise UsageError(f"--storage {uri!r}: no bucket")
        return S3Storage(bucket, prefix=prefix, endpoint_url=endpoint_url)
    if "://" in uri:
        raise UsageError(f"--storage {uri!r}: expected a directory or s3://bucket/prefix")
    from ..storage.local import LocalStorage

    return LocalStorage(uri, read_only=read_only)


def _catalog_from_uri(uri: str, read_only: bool = False) -> Any:
    if uri.startswith(("postgresql://", "postgres://")):
        from ..catalog.postgres import PostgresCatalog

        return PostgresCatalog(uri, read_only=read_only)
    if "://" in uri:
        from ..urls import redact_url

        raise UsageError(
            f"--catalog: expected a SQLite file path or postgresql://..., got {redact_url(uri)!r}"
        )
    from ..catalog.sqlite import SQLiteCatalog

    return SQLiteCatalog(uri, read_only=read_only)


@contextlib.asynccontextmanager
async def open_engine(
    config: EngineConfig, *, probe_store: bool = True
) -> AsyncIterator[DownloadEngine]:
    """The started engine of a command; storage or a catalog that cannot be opened (or,
    with ``probe_store``, a store that does not answer) is a :class:`UsageError` (exit 2,
    one line), before anything is downloaded."""
    from ..engine import DownloadEngine
    from ..errors import CatalogError, StorageError

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
