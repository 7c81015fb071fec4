"""Conditional GET for metadata: ``repomd.xml``, ``Packages``, ``PULP_MANIFEST`` fetched
again only when they changed.

:func:`fetch_metadata` fetches a URL through :meth:`DownloadEngine.session` (so with the
remote's whole network policy), stores the body in the engine's content-addressed storage,
records it as a unit file and keeps the response's ``ETag`` and ``Last-Modified`` in the
catalog, per remote and URL (:class:`~pulp_aio_download.models.MetadataValidators`). The
next fetch of that URL sends them back as ``If-None-Match`` / ``If-Modified-Since``; a
``304 Not Modified`` is answered from the stored body (re-hashed first: the bytes are
those of last time), with ``not_modified=True``, so that a sync can skip its work.

A 304 whose stored body is gone, or no longer has its sha256, falls back to a full GET
(said in the debug log). A 200 replaces the validators (a response with neither header
forgets them). Without a catalog nothing is kept and every fetch is a plain GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import aiohttp

from .errors import HTTPStatusError, SizeMismatch, StorageError
from .models import MetadataValidators, Source, UnitFile
from .transports.errors import map_client_error
from .urls import redact_url

if TYPE_CHECKING:
    from .engine import DownloadEngine
    from .storage import Storage

__all__ = ["MetadataResult", "fetch_metadata"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResult:
    """What :func:`fetch_metadata` got.

    Attributes:
        url: the URL fetched (without credentials).
        status: the status the server answered: 200, or 304 when ``not_modified``.
        not_modified: True when the server answered 304 to the validators kept from last
            time and the body was served from storage (the same bytes as last time).
        sha256: the body's sha256 (its storage key).
        size: the body's size in bytes.
        location: where storage keeps the body.
        path: the body as a local file, or None for a store without local files (S3:
            read it with ``engine.storage.read(result.sha256)``).
        etag: the ``ETag`` kept for the next fetch, or None.
        last_modified: the ``Last-Modified`` kept for the next fetch, or None.
        headers: the response's headers (those of the 304 when ``not_modified``).
    """

    url: str
    status: int
    not_modified: bool
    sha256: str
    size: int
    location: str
    path: Path | None
    etag: str | None
    last_modified: str | None
    headers: Mapping[str, str] = field(default_factory=dict)

    def read_bytes(self) -> bytes:
        """The body, from :attr:`path` (blocking: call it from a worker thread for large
        files).

        Raises:
            StorageError: the store has no local file, or it cannot be read.
        """
        if self.path is None:
            raise StorageError(f"{self.location} has no local path: read it from the storage")
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror}") from exc


async def fetch_metadata(
    engine: DownloadEngine,
    url: str,
    *,
    remote: str = "default",
    headers: Mapping[str, str] | None = None,
    conditional: bool = True,
    max_size: int | None = None,
) -> MetadataResult:
    """Fetch the metadata file ``url`` through remote ``remote``, conditionally.

    Args:
        engine: an open engine; its storage keeps the body, its catalog the validators.
        url: the metadata URL.
        remote: the remote whose session (network policy) fetches it; validators are
            kept per remote and URL.
        headers: more request headers.
        conditional: False sends no validators (a forced full GET); the answer still
            replaces the validators kept.
        max_size: a body larger than this many bytes is refused (:class:`SizeMismatch`)
            and nothing is kept.

    Returns:
        The :class:`MetadataResult`; ``not_modified`` says whether the body changed.

    Raises:
        HTTPStatusError: the server answered neither 200 nor (to our validators) 304.
        SizeMismatch: the body is larger than ``max_size``.
        DownloadError: the request failed (connection, TLS, timeout...); storage or
            catalog errors as :class:`StorageError` / :class:`CatalogError`.

    Example::

        repomd = await fetch_metadata(engine, f"{base}/repodata/repomd.xml", remote="fedora")
        if repomd.not_modified:
            return  # nothing changed upstream since the last sync
    """
    session = engine.session(remote)
    catalog = engine.catalog
    shown = redact_url(url)
    kept = await catalog.get_validators(remote, url) if catalog and conditional else None
    sent = dict(headers or {})
    if kept is not None:
        if kept.etag is not None:
            sent["If-None-Match"] = kept.etag
        if kept.last_modified is not None:
            sent["If-Modified-Since"] = kept.last_modified
    try:
        async with session.get(url, headers=sent) as resp:
            if resp.status == 304 and kept is not None:
                result = await _from_storage(engine.storage, kept, shown, resp.headers)
                if result is not None:
                    return result
            elif resp.status == 200:
                return await _store(engine, resp, remote, url, shown, max_size)
            else:
                raise HTTPStatusError(status=resp.status, reason=resp.reason, url=url)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise map_client_error(exc, url, status_raised=False) from exc
    # A 304 the stored body cannot answer: fetch it whole.
    return await fetch_metadata(
        engine, url, remote=remote, headers=headers, conditional=False, max_size=max_size
    )


async def _from_storage(
    storage: Storage, kept: MetadataValidators, shown: str, headers: Mapping[str, str]
) -> MetadataResult | None:
    """The 304 answered from the stored body, or None when it is gone or damaged."""
    found = await storage.digest(kept.sha256, ("sha256",))
    if found is None or found[0]["sha256"] != kept.sha256 or found[1] != kept.size:
        log.debug(
            "%s: 304 Not Modified, but the stored body %s is %s: fetching it again",
            shown,
            kept.sha256,
            "missing" if found is None else "damaged",
        )
        return None
    stored = await storage.stat(kept.sha256)
    if stored is None:
        log.debug("%s: stored body %s vanished: fetching it again", shown, kept.sha256)
        return None
    log.debug("%s: 304 Not Modified, served from storage (%s)", shown, kept.sha256)
    return MetadataResult(
        url=shown,
        status=304,
        not_modified=True,
        sha256=kept.sha256,
        size=kept.size,
        location=stored.location,
        path=stored.path,
        etag=kept.etag,
        last_modified=kept.last_modified,
        headers=dict(headers),
    )


async def _store(
    engine: DownloadEngine,
    resp: aiohttp.ClientResponse,
    remote: str,
    url: str,
    shown: str,
    max_size: int | None,
) -> MetadataResult:
    """Stream a 200's body into storage, record it and keep its validators."""
    storage = engine.storage
    staged = storage.new_staging_path()
    loop = asyncio.get_running_loop()
    hasher = hashlib.sha256()
    size = 0
    try:
        out = await loop.run_in_executor(None, _open_staging, staged)
        try:
            async for chunk in resp.content.iter_chunked(engine.config.chunk_size):
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise SizeMismatch(
                        expected=max_size,
                        actual=size,
                        url=url,
                        message=f"larger than the {max_size} bytes allowed",
                    )
                await loop.run_in_executor(None, _write, out, hasher, chunk)
        finally:
            await loop.run_in_executor(None, _close, out, storage.fsync_staged)
        sha256 = hasher.hexdigest()
        stored = await storage.commit(staged, sha256, size)
    except BaseException:
        with contextlib.suppress(OSError):
            staged.unlink()
        raise
    etag = resp.headers.get("ETag")
    last_modified = resp.headers.get("Last-Modified")
    catalog = engine.catalog
    if catalog is not None and not catalog.read_only:
        await catalog.record_unit_file(
            UnitFile(
                sha256=sha256,
                size=size,
                digests={"sha256": sha256},
                location=stored.location,
                sources=(Source(url, remote=remote),),
            )
        )
        if etag is None and last_modified is None:
            await catalog.delete_validators(remote, url)
        else:
            await catalog.save_validators(
                MetadataValidators(
                    remote=remote,
                    url=url,
                    etag=etag,
                    last_modified=last_modified,
                    sha256=sha256,
                    size=size,
                )
            )
    log.debug(
        "%s: 200, stored as %s (ETag %s, Last-Modified %s)", shown, sha256, etag, last_modified
    )
    return MetadataResult(
        url=shown,
        status=200,
        not_modified=False,
        sha256=sha256,
        size=size,
        location=stored.location,
        path=stored.path,
        etag=etag,
        last_modified=last_modified,
        headers=dict(resp.headers),
    )


def _open_staging(path: Path) -> BinaryIO:
    try:
        return path.open("xb")
    except OSError as exc:
        raise StorageError(f"cannot write staging file {path}: {exc.strerror}") from exc


def _write(out: BinaryIO, hasher: hashlib._Hash, chunk: bytes) -> None:
    hasher.update(chunk)
    try:
        out.write(chunk)
    except OSError as exc:
        raise StorageError(f"cannot write staging file {out.name}: {exc.strerror}") from exc


def _close(out: BinaryIO, fsync: bool) -> None:
    try:
        if fsync:
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise StorageError(f"cannot write staging file {out.name}: {exc.strerror}") from exc
    finally:
        out.close()
