"""Piece-level repair: after a digest mismatch, fetch again only the pieces that are wrong.

A request with piece hashes (``DownloadRequest.pieces``, a Metalink ``<pieces>``) whose
whole file failed its digest is not thrown away: its staged file is hashed piece by piece
and each wrong piece is fetched again with a ``Range`` request — from another mirror of
the same remote first, then from the source that served the file — checked against its
piece hash, and written in place. The file is then hashed whole once more and validated
as any download. Should a piece not come right from any mirror, or more than half of the
pieces be wrong (the file is then fetched whole, as the retry policy says), the repair
gives up and the download goes on as without pieces.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DigestMismatch, DownloadError
from ..transports.base import TransportRequest
from ..urls import redact_url
from .hashing import verify_digests

if TYPE_CHECKING:
    from ..admission import Admission
    from ..config import RemoteConfig
    from ..models import DownloadRequest, Pieces, Source
    from ..transports.base import Transport

__all__ = ["repair_pieces", "validate_or_repair"]

log = logging.getLogger(__name__)

_READ = 1024 * 1024


async def validate_or_repair(
    transport: Transport,
    admission: Admission,
    request: DownloadRequest,
    source: Source,
    remote: RemoteConfig,
    staged: tuple[Path | None, dict[str, str], int],
    url: str,
) -> dict[str, str]:
    """The digests of the staged file ``(path, digests, size)`` if they and its size are
    what ``request`` expects; else, with piece hashes and the file on disk (``path``), the
    digests of the file repaired piece by piece; else the :class:`ValidationError`."""
    path, digests, size = staged
    check = functools.partial(
        verify_digests,
        expected=request.expected_digests,
        url=url,
        size=size,
        expected_size=request.expected_size,
    )
    try:
        check(digests)
    except DigestMismatch:
        if request.pieces is None or path is None:
            raise
        repaired = await repair_pieces(transport, admission, request, source, remote, path, size)
        if repaired is None:
            raise
        check(repaired)
        return repaired
    return digests


async def repair_pieces(
    transport: Transport,
    admission: Admission,
    request: DownloadRequest,
    source: Source,
    remote: RemoteConfig,
    path: Path,
    size: int,
) -> dict[str, str] | None:
    """Repair the staged file ``path`` of ``request`` (``size`` bytes, served by
    ``source``) piece by piece; return its new digests, or None when it cannot be."""
    pieces = request.pieces
    if pieces is None or size != request.expected_size:
        return None
    loop = asyncio.get_running_loop()
    wrong = await loop.run_in_executor(None, pieces.mismatches, path)
    if not wrong or len(wrong) * 2 > len(pieces.hashes):
        return None
    url = redact_url(source.url)
    mirrors = _mirrors(request, source, remote)
    for index, _expected, _actual in wrong:
        if index >= len(pieces.hashes):
            return None
        if not await _fetch_piece(transport, admission, request, remote, mirrors, path, index):
            log.info("%s: piece %d could not be fetched right from any mirror", url, index)
            return None
    digests = await loop.run_in_executor(None, _hash_file, path, request.algorithms)
    log.info(
        "%s: %d of %d pieces were wrong (%s); fetched them again and repaired the file",
        url,
        len(wrong),
        len(pieces.hashes),
        ", ".join(str(w[0]) for w in wrong[:10]) + (", ..." if len(wrong) > 10 else ""),
    )
    return digests


def _mirrors(request: DownloadRequest, source: Source, remote: RemoteConfig) -> list[Source]:
    """The sources a piece is asked of: the other mirrors of the same remote, then
    ``source`` itself."""
    others = [
        s
        for s in request.sources
        if s.url != source.url
        and s.scheme in ("http", "https")
        and (s.remote or request.remote or "default") == remote.name
    ]
    return [*others, source] if source.scheme in ("http", "https") else others


async def _fetch_piece(
    transport: Transport,
    admission: Admission,
    request: DownloadRequest,
    remote: RemoteConfig,
    mirrors: Sequence[Source],
    path: Path,
    index: int,
) -> bool:
    assert request.pieces is not None
    assert request.expected_size is not None
    pieces: Pieces = request.pieces
    start, end = pieces.span(index, request.expected_size)
    for mirror in mirrors:
        try:
            data = await _read_range(transport, admission, request, remote, mirror, start, end)
        except DownloadError as exc:
            log.debug("%s: piece %d: %s", redact_url(mirror.url), index, exc)
            continue
        if data is None or hashlib.new(pieces.algorithm, data).hexdigest() != pieces.hashes[index]:
            log.debug("%s: piece %d came wrong or whole", redact_url(mirror.url), index)
            continue
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(_write_at, path, data, start)
        )
        return True
    return False


async def _read_range(
    transport: Transport,
    admission: Admission,
    request: DownloadRequest,
    remote: RemoteConfig,
    mirror: Source,
    start: int,
    end: int,
) -> bytes | None:
    """Bytes ``[start, end)`` of ``mirror``, or None when it does not answer the range."""
    async with admission.slot(remote, mirror.host):
        resp = await transport.open(
            TransportRequest(
                mirror.url,
                remote,
                userinfo=mirror.userinfo,
                offset=start,
                length=end - start,
                headers=request.headers,
            )
        )
        try:
            if resp.status != 206 or resp.offset != start:
                resp.abort()
                return None
            chunks: list[bytes] = []
            got = 0
            while got < end - start and (chunk := await resp.read()):
                chunks.append(chunk)
                got += len(chunk)
        finally:
            await resp.close()
    data = b"".join(chunks)
    return data[: end - start] if len(data) >= end - start else None


def _write_at(path: Path, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path, algorithms: Sequence[str]) -> dict[str, str]:
    hashers = [hashlib.new(name) for name in algorithms]
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ):
            for hasher in hashers:
                hasher.update(chunk)
    return {name: h.hexdigest() for name, h in zip(algorithms, hashers, strict=True)}
