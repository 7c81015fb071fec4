"""What ``pulp-aio-download sync`` reads: a JSONL manifest, a Metalink document (4 or 3.0)
or a ``PULP_MANIFEST``, from a local path (or ``file://`` URL) or an http(s) URL.

The kind is told by the name (``*.meta4``, ``*.metalink``, ``PULP_MANIFEST``), else by the
served ``Content-Type`` (``application/metalink4+xml``, ``application/metalink+xml``),
else by the content (an XML ``<metalink>`` root; ``path,sha256,size`` lines), else JSONL.
A URL is fetched through the engine's session of ``--remote`` (its TLS, proxy, auth and
headers). The whole input is validated before anything is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, ManifestError
from ..hooks import DEFAULT_HOOKS, Hook
from ..models import DownloadRequest
from ..urls import redact_url

__all__ = [
    "MAX_FETCHED_MANIFEST_BYTES",
    "SyncInput",
    "detect_kind",
    "fetch_manifest",
    "load_sync_input",
]

#: A manifest fetched over HTTP larger than this is refused (Metalink: smaller still).
MAX_FETCHED_MANIFEST_BYTES = 256 * 1024 * 1024

_METALINK_TYPES = ("application/metalink4+xml", "application/metalink+xml")
_PULP_LINE = re.compile(rb"[^\r\n]*,\s*[0-9a-fA-F]{64}\s*,\s*[0-9]+\s*")


@dataclass(frozen=True, slots=True)
class SyncInput:
    """The requests of one ``sync`` input and how to run them.

    Attributes:
        kind: ``"jsonl"``, ``"metalink"`` or ``"pulp"``.
        requests: every request, validated.
        hooks: the hook chain (None: the default one).
        file_roots: directories ``file://`` sources may be served from (those the user
            named).
        manifest_unchanged: the manifest URL answered 304 to the validators kept from
            the last sync (the bytes are those of last time).
    """

    kind: str
    requests: list[DownloadRequest]
    hooks: tuple[Hook, ...] | None = None
    file_roots: tuple[Path, ...] = ()
    manifest_unchanged: bool = False


class InputError(Exception):
    """Bad input for ``sync``: the CLI exits 2 with this message."""


def detect_kind(name: str, head: bytes, content_type: str | None = None) -> str:
    """``"metalink"``, ``"pulp"`` or ``"jsonl"`` for an input named ``name`` (a file name
    or URL path) that starts with ``head``."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    lower = base.lower()
    if lower.endswith((".meta4", ".metalink")):
        return "metalink"
    if base == "PULP_MANIFEST":
        return "pulp"
    if lower.endswith((".jsonl", ".json")):
        return "jsonl"
    media = (content_type or "").split(";", 1)[0].strip().lower()
    from ..metalink import looks_like_metalink

    if media in _METALINK_TYPES or looks_like_metalink(head):
        return "metalink"
    for line in head.splitlines():
        if not line.strip():
            continue
        return "pulp" if _PULP_LINE.fullmatch(line.rstrip(b"\r")) else "jsonl"
    return "jsonl"


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _locations(args: argparse.Namespace) -> list[str]:
    values: Sequence[str] = getattr(args, "location", None) or ()
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


async def load_sync_input(args: argparse.Namespace) -> SyncInput:
    """Read and validate ``args.manifest`` (a path or URL) as the options say.

    Raises:
        InputError: the input cannot be read or fetched, is invalid (the line or element
            named), or an option does not apply to its kind.
    """
    source: str = args.manifest
    shown = redact_url(source)
    try:
        if _is_url(source):
            data, content_type, unchanged = await fetch_manifest(args, source)
            kind = detect_kind(unquote(urlsplit(source).path), data[:4096], content_type)
            loaded = _from_bytes(args, kind, data, source, roots=())
            if unchanged:
                loaded = dataclasses.replace(loaded, manifest_unchanged=True)
        else:
            path = Path(unquote(urlsplit(source).path) if source.startswith("file://") else source)
            loaded = await asyncio.get_running_loop().run_in_executor(None, _from_path, args, path)
    except ConfigError as exc:  # ManifestError included
        raise InputError(str(exc) if exc.url else f"{shown}: {exc}") from None
    _check_options(args, loaded.kind)
    return loaded


def _check_options(args: argparse.Namespace, kind: str) -> None:
    if _locations(args) and kind != "metalink":
        raise InputError(f"--location applies to Metalink documents, not to a {_NAMES[kind]}")
    if getattr(args, "base_url", None) and kind != "pulp":
        raise InputError(f"--base-url applies to a PULP_MANIFEST, not to a {_NAMES[kind]}")
    if getattr(args, "repository", None) and kind == "jsonl":
        raise InputError("--repository does not apply to a JSONL manifest (lines name theirs)")


_NAMES = {"jsonl": "JSONL manifest", "metalink": "Metalink document", "pulp": "PULP_MANIFEST"}


def _from_path(args: argparse.Namespace, path: Path) -> SyncInput:
    # Runs in an executor: plain blocking reads.
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    kind = detect_kind(path.name, head)
    if kind == "jsonl":
        from .manifest import read_manifest

        return SyncInput("jsonl", read_manifest(path))
    from ..metalink import MAX_METALINK_BYTES

    limit = MAX_METALINK_BYTES if kind == "metalink" else MAX_FETCHED_MANIFEST_BYTES
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise ManifestError(f"{_NAMES[kind]} {path} is larger than the {limit} bytes allowed")
    base_url: str | None = getattr(args, "base_url", None)
    roots: tuple[Path, ...] = ()
    if kind == "pulp" and not base_url:
        # The files of a local PULP_MANIFEST are next to it, unless --base-url says where.
        directory = path.resolve().parent
        base_url = directory.as_uri() + "/"
        roots = (directory,)
    elif kind == "pulp" and base_url and base_url.startswith("file://"):
        roots = (Path(unquote(urlsplit(base_url).path)).resolve(),)
    return _from_bytes(args, kind, data, base_url or path.resolve().as_uri(), roots=roots)


def _from_bytes(
    args: argparse.Namespace, kind: str, data: bytes, location: str, *, roots: tuple[Path, ...]
) -> SyncInput:
    remote: str | None = getattr(args, "remote", None)
    repository: str | None = getattr(args, "repository", None)
    if kind == "metalink":
        from ..metalink import parse_metalink, piece_check

        files = parse_metalink(
            data, locations=_locations(args), repository=repository, remote=remote
        )
        requests = [f.request for f in files]
        hooks = None
        if any(f.pieces is not None for f in files):
            hooks = (piece_check(files), *DEFAULT_HOOKS)
        return SyncInput("metalink", requests, hooks=hooks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if kind == "pulp":
        from ..pulp_manifest import read_pulp_manifest, repository_from_url

        base_url = getattr(args, "base_url", None) or location
        if getattr(args, "base_url", None) and not base_url.endswith("/"):
            base_url += "/"  # --base-url names the directory the paths are relative to
        manifest_url = location if _is_url(location) else base_url
        return SyncInput(
            "pulp",
            read_pulp_manifest(
                text,
                base_url,
                repository=repository or repository_from_url(manifest_url),
                remote=remote,
            ),
            file_roots=roots,
        )
    from .manifest import parse_manifest

    return SyncInput("jsonl", [request for _, request in parse_manifest(text.splitlines())])


async def fetch_manifest(args: argparse.Namespace, url: str) -> tuple[bytes, str | None, bool]:
    """GET ``url`` through the engine's session of ``--remote`` (default ``"default"``),
    at most :data:`MAX_FETCHED_MANIFEST_BYTES`, conditionally
    (:func:`~pulp_aio_download.metadata.fetch_metadata`) unless ``--no-conditional-get``:
    the ``ETag`` / ``Last-Modified`` kept in the catalog from the last sync are sent back,
    and a 304 is read from the store.

    Returns:
        The body, its ``Content-Type`` (None when not sent) and whether it is unchanged
        since the last sync (the server answered 304).

    Raises:
        ManifestError: a failed request (status, connection, TLS, timeout) or a body over
            the limit; the message names the URL without credentials.
    """
    from ..engine import DownloadEngine
    from ..errors import DownloadError, SizeMismatch
    from ..metadata import fetch_metadata
    from .options import engine_config

    shown = redact_url(url)
    async with DownloadEngine(engine_config(args)) as engine:
        try:
            result = await fetch_metadata(
                engine,
                url,
                remote=getattr(args, "remote", None) or "default",
                conditional=getattr(args, "conditional_get", True),
                max_size=MAX_FETCHED_MANIFEST_BYTES,
            )
            chunks = [chunk async for chunk in engine.storage.read(result.sha256)]
        except SizeMismatch:
            raise ManifestError(
                f"the manifest is larger than the {MAX_FETCHED_MANIFEST_BYTES} bytes allowed",
                url=shown,
            ) from None
        except DownloadError as exc:
            raise ManifestError(f"cannot fetch the manifest: {exc.message}", url=shown) from None
    content_type = {k.lower(): v for k, v in result.headers.items()}.get("content-type")
    return b"".join(chunks), content_type, result.not_modified
