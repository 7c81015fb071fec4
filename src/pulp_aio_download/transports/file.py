"""The ``file://`` transport, restricted to ``EngineConfig.allowed_file_roots``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, ConnectionFailed, HTTPStatusError
from .base import Response, TransportRequest

__all__ = ["FileResponse", "FileTransport", "open_file", "resolve_file_url"]


def resolve_file_url(url: str, allowed_roots: Sequence[Path]) -> Path:
    """The local path of a ``file://`` URL, refused unless inside an allowed root.

    Raises:
        ConfigError: no allowed roots, a remote host, or a path outside every root
            (symbolic links are resolved first, so a link cannot lead outside).
    """
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"file URL {url!r} names a host; only local files are supported", url=url)
    raw = unquote(parts.path)
    if "\x00" in raw:
        raise ConfigError("file URL contains a NUL byte", url=url)
    path = Path(raw).resolve()
    for root in allowed_roots:
        if path == root or path.is_relative_to(root):
            return path
    if not allowed_roots:
        raise ConfigError(
            "file:// sources are disabled: set EngineConfig.allowed_file_roots", url=url
        )
    raise ConfigError(f"file {path} is outside the allowed file roots", url=url)


class FileResponse(Response):
    """A local file read in large blocks in a worker thread."""

    def __init__(self, url: str, fh: BinaryIO, size: int, offset: int, chunk_size: int) -> None:
        self.url = url
        self.status = 206 if offset else 200
        self.headers = {"Content-Length": str(size - offset)}
        self.offset = offset
        self._fh = fh
        self._chunk_size = chunk_size
        self._loop = asyncio.get_running_loop()
        self._aborted = False

    async def read(self) -> bytes:
        if self._aborted:
            raise ConnectionFailed("file read aborted", url=self.url)
        return await self._loop.run_in_executor(None, self._fh.read, self._chunk_size)

    def abort(self) -> None:
        self._aborted = True

    async def close(self) -> None:
        await self._loop.run_in_executor(None, self._fh.close)


async def open_file(
    url: str, allowed_roots: Sequence[Path], *, offset: int = 0, chunk_size: int = 1024 * 1024
) -> FileResponse:
    """Open a ``file://`` URL (HTTPStatusError 404 when it does not exist)."""
    path: Path | None = None

    def _open() -> tuple[BinaryIO, int]:
        nonlocal path
        path = resolve_file_url(url, allowed_roots)  # in the worker thread: it reads links
        fh = open(path, "rb")  # noqa: SIM115 - closed by FileResponse.close
        try:
            size = os.fstat(fh.fileno()).st_size
            if offset:
                fh.seek(offset)
        except BaseException:
            fh.close()
            raise
        return fh, size

    try:
        fh, size = await asyncio.get_running_loop().run_in_executor(None, _open)
    except FileNotFoundError:
        raise HTTPStatusError(status=404, reason="file not found", url=url) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory", url=url) from None
    except PermissionError:
        raise HTTPStatusError(status=403, reason="permission denied", url=url) from None
    return FileResponse(url, fh, size, offset, chunk_size)


class FileTransport:
    """The ``file://`` :class:`~.base.Transport`: files under ``allowed_roots`` only.

    Args:
        allowed_roots: the directories files may be read from.
        chunk_size: bytes read at once.
    """

    def __init__(self, allowed_roots: Sequence[Path], *, chunk_size: int = 1024 * 1024) -> None:
        self.allowed_roots = tuple(allowed_roots)
        self.chunk_size = chunk_size

    async def open(self, request: TransportRequest) -> FileResponse:
        """Open the file of ``request.url`` from ``request.offset``."""
        return await open_file(
            request.url, self.allowed_roots, offset=request.offset, chunk_size=self.chunk_size
        )

    async def close(self) -> None:
        """Nothing to release: every response closes its own file."""
