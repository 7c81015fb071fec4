"""The downloader pulpcore's plugins and content app get for ``http``/``https`` URLs."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from django.conf import settings
from multidict import CIMultiDict, CIMultiDictProxy
from pulpcore.app.models import Artifact
from pulpcore.download.base import BaseDownloader, DownloadResult

from ...engine import DownloadEngine
from ...errors import DownloadError
from ...models import DownloadRequest
from ._engines import engine_for_running_loop
from ._errors import RemoteSettingError, translate
from ._remotes import RemoteSettings
from ._session import SessionView

__all__ = ["AioDownloader"]

HeadersCallback = Callable[[CIMultiDictProxy[str]], Awaitable[Any]]


def working_directory() -> Path:
    """Where pulpcore's downloaders write (BaseDownloader): the current directory when it
    is inside ``WORKING_DIRECTORY`` (a task's), else ``WORKING_DIRECTORY`` itself."""
    work_dir = Path(str(settings.WORKING_DIRECTORY))
    cwd = Path.cwd()
    return cwd if cwd.is_relative_to(work_dir) else work_dir


def _request_headers(extra_data: Mapping[str, Any] | None) -> dict[str, str]:
    """The headers of ``extra_data["request_kwargs"]``; any other request argument is
    refused by name (it would be silently dropped otherwise)."""
    kwargs = dict((extra_data or {}).get("request_kwargs") or {})
    headers = dict(kwargs.pop("headers", None) or {})
    if kwargs:
        raise RemoteSettingError(
            "extra_data['request_kwargs'] may only hold 'headers' with this downloader, got "
            + ", ".join(sorted(map(repr, kwargs)))
        )
    return headers


class AioDownloader(BaseDownloader):
    """A pulpcore downloader that downloads through the loop's :class:`DownloadEngine`.

    Built by :class:`AioDownloaderFactory`. ``run()`` downloads the whole file, validated
    against ``expected_digests``/``expected_size``, into pulpcore's working directory
    (handed off, not copied) with every ``Artifact.DIGEST_FIELDS`` digest computed while
    streaming. When a caller streams (the content app replaces ``handle_data``/``finalize``
    or sets ``headers_ready_callback``, or a ``Range`` header is asked for) the bytes are
    passed on as they arrive, through ``engine.stream()``.
    """

    _writer: Any

    def __init__(
        self,
        url: str,
        *,
        settings: RemoteSettings,
        headers_ready_callback: HeadersCallback | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        for ignored in ("session", "auth", "proxy", "proxy_auth", "throttler", "max_retries"):
            kwargs.pop(ignored, None)  # the remote's settings provide these
        super().__init__(url, **kwargs)
        self.headers_ready_callback = headers_ready_callback
        self.headers = dict(headers or {})
        self._settings = settings
        self._attributes: dict[str, Any] | None = None
        self.session = SessionView(self._engine_session)

    async def _engine(self) -> tuple[DownloadEngine, str]:
        entry = engine_for_running_loop()
        engine = await entry.started()
        s = self._settings
        return engine, await entry.remote(s.key(), s.label, s.builder())

    async def _engine_session(self) -> aiohttp.ClientSession:
        engine, name = await self._engine()
        return engine.session(name)

    @property
    def artifact_attributes(self) -> dict[str, Any]:
        """``size`` and every ``Artifact.DIGEST_FIELDS`` digest of the downloaded file."""
        if self._attributes is not None:
            return self._attributes
        return dict(super().artifact_attributes)

    def _streaming(self, headers: Mapping[str, str]) -> bool:
        replaced = "handle_data" in vars(self) or "finalize" in vars(self)
        ranged = any(k.lower() in ("range", "if-range") for k in headers)
        return replaced or ranged or self.headers_ready_callback is not None

    async def run(self, extra_data: Mapping[str, Any] | None = None) -> DownloadResult:
        """Download the file (see the class); errors are pulpcore's (``_errors``)."""
        headers = {**self.headers, **_request_headers(extra_data)}
        engine, name = await self._engine()
        request = DownloadRequest(
            self.url,
            expected_digests=self.expected_digests or None,
            expected_size=self.expected_size,
            remote=name,
            headers=headers,
            compute_digests=tuple(Artifact.DIGEST_FIELDS),
            handoff_dir=None if self._streaming(headers) else working_directory(),
        )
        try:
            if request.handoff_dir is None:
                return await self._stream(engine, request)
            return await self._download(engine, request)
        except DownloadError as exc:
            raise translate(exc, self.url) from exc

    async def _download(self, engine: DownloadEngine, request: DownloadRequest) -> DownloadResult:
        result = await engine.download(request)
        assert result.path is not None  # a handed-off file
        self.path = os.fspath(result.path)
        self._size = result.size
        attributes: dict[str, Any] = {"size": result.size}
        attributes.update((alg, result.digests[alg]) for alg in Artifact.DIGEST_FIELDS)
        self._attributes = attributes
        return DownloadResult(
            url=self.url,
            artifact_attributes=attributes,
            path=self.path,
            headers=CIMultiDictProxy(CIMultiDict(result.headers)),
        )

    async def _stream(self, engine: DownloadEngine, request: DownloadRequest) -> DownloadResult:
        async with engine.stream(request) as s:
            headers = CIMultiDictProxy(CIMultiDict(s.headers))
            if self.headers_ready_callback is not None:
                await self.headers_ready_callback(headers)
            async for chunk in s:
                await self.handle_data(chunk)
            digests = dict(s.digests or {})
        await self.finalize()
        attributes: dict[str, Any] = {"size": self._size}
        # A ranged response is not the whole file: it has no digests (nothing validated).
        attributes.update((a, digests[a]) for a in Artifact.DIGEST_FIELDS if a in digests)
        self._attributes = attributes
        return DownloadResult(
            url=self.url, artifact_attributes=attributes, path=self.path, headers=headers
        )

    async def handle_data(self, data: bytes) -> None:
        """Write ``data`` to the file in pulpcore's working directory (the engine computes
        the digests of the stream)."""
        self._ensure_writer_has_open_file()
        self._writer.write(data)
        self._size += len(data)

    async def finalize(self) -> None:
        """Flush and close the file of the streamed bytes (the engine validated them)."""
        self._ensure_writer_has_open_file()
        self._writer.flush()
        os.fsync(self._writer.fileno())
        self._writer.close()
        self._writer = None
