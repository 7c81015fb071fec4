"""Pulp's plugins download through this engine: the pulpcore adapter (extra ``pulpcore``).

Call :func:`install` once (from a plugin's ``AppConfig.ready()``): every pulpcore
``Remote`` then builds its ``http``/``https`` downloaders with :class:`AioDownloaderFactory`,
and they download through one :class:`~pulp_aio_download.DownloadEngine` per event loop.
See the documentation page "Using it in Pulp".
"""

from __future__ import annotations

from ._downloader import AioDownloader
from ._engines import close_engines
from ._errors import DownloadFailed, RemoteSettingError
from ._factory import AioDownloaderFactory, install, installed, uninstall

__all__ = [
    "AioDownloader",
    "AioDownloaderFactory",
    "DownloadFailed",
    "RemoteSettingError",
    "close_engines",
    "install",
    "installed",
    "uninstall",
]
