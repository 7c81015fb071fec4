"""``AioDownloaderFactory`` and :func:`install`/:func:`uninstall`."""

from __future__ import annotations

import asyncio
import atexit
import copy
from typing import Any
from urllib.parse import urlparse

from pulpcore.app.models import repository as repository_models
from pulpcore.download import factory as pulpcore_factory

from ._downloader import AioDownloader
from ._remotes import remote_settings

__all__ = ["AioDownloaderFactory", "install", "installed", "uninstall"]

#: pulpcore's own factory class, as found when this module was imported.
PULPCORE_FACTORY: type[Any] = pulpcore_factory.DownloaderFactory


class AioDownloaderFactory(PULPCORE_FACTORY):
    """pulpcore's ``DownloaderFactory`` building :class:`AioDownloader` for ``http`` and
    ``https`` URLs; ``file://`` and every scheme in ``downloader_overrides`` (a plugin's own
    downloader class) are built by pulpcore's own code, as before.

    pulpcore's aiohttp session is opened only for a plugin's own HTTP downloader class (its
    ``__init__`` would open one for every remote): our downloads use the engine's.
    """

    def __init__(
        self, remote: Any, downloader_overrides: dict[str, type[Any]] | None = None
    ) -> None:
        self._remote = remote
        self._download_class_map = copy.copy(pulpcore_factory.PROTOCOL_MAP)
        self._download_class_map.update(downloader_overrides or {})
        self._handler_map = {
            "https": self._http_or_https,
            "http": self._http_or_https,
            "file": self._generic,
        }
        self._session: Any = None
        concurrency = remote.download_concurrency or remote.DEFAULT_DOWNLOAD_CONCURRENCY
        self._semaphore = asyncio.Semaphore(value=concurrency)

    def build(self, url: str, **kwargs: Any) -> Any:
        """A downloader for ``url``. ``kwargs`` are those of pulpcore's ``build()``
        (``expected_digests``, ``expected_size``, ``headers_ready_callback``, ``headers``,
        ``max_retries``, ...); any other keyword a plugin passes is accepted and ignored,
        as pulpcore's downloaders do."""
        scheme = urlparse(url).scheme.lower()
        if self._download_class_map.get(scheme) is pulpcore_factory.HttpDownloader:
            settings = remote_settings(self._remote, kwargs.pop("max_retries", None))
            return AioDownloader(url, settings=settings, **kwargs)
        return super().build(url, **kwargs)

    def _http_or_https(self, download_class: type[Any], url: str, **kwargs: Any) -> Any:
        """pulpcore's own path, for a plugin's own HTTP downloader class."""
        if self._session is None:
            self._session = self._make_aiohttp_session_from_remote()
            atexit.register(self._session_cleanup)
        return super()._http_or_https(download_class, url, **kwargs)


def installed() -> bool:
    """True while pulpcore's Remotes build their downloaders with the adapter."""
    return repository_models.DownloaderFactory is AioDownloaderFactory


def install() -> None:
    """Make every pulpcore ``Remote`` build its downloaders with
    :class:`AioDownloaderFactory` (idempotent). Call it from a plugin's
    ``AppConfig.ready()``. A Remote that already built its factory keeps it (pulpcore
    caches it on the instance); Remotes are loaded anew by every task and request."""
    repository_models.DownloaderFactory = AioDownloaderFactory


def uninstall() -> None:
    """Give pulpcore its own ``DownloaderFactory`` back (idempotent)."""
    repository_models.DownloaderFactory = PULPCORE_FACTORY
