"""pulp_aio_download: an asyncio download engine for content-repository plugins.

Fetch, validate, store and record files over HTTP/HTTPS and ``file://``, through one shared
aiohttp connector under one global concurrency limit. See ``DownloadEngine`` (async) and
``run_batch`` / ``download_sync`` (sync).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .auth import Auth as Auth
from .auth import BasicAuth as BasicAuth
from .auth import BearerTokenAuth as BearerTokenAuth
from .catalog import Catalog as Catalog
from .config import EngineConfig as EngineConfig
from .config import ProxyConfig as ProxyConfig
from .config import RemoteConfig as RemoteConfig
from .config import RetryPolicy as RetryPolicy
from .config import Timeouts as Timeouts
from .config import TLSConfig as TLSConfig
from .engine import DownloadEngine as DownloadEngine
from .engine import EngineStatistics as EngineStatistics
from .errors import AllSourcesFailed as AllSourcesFailed
from .errors import CatalogError as CatalogError
from .errors import ConfigError as ConfigError
from .errors import ConnectionFailed as ConnectionFailed
from .errors import DigestMismatch as DigestMismatch
from .errors import DownloadError as DownloadError
from .errors import DownloadTimeout as DownloadTimeout
from .errors import HookError as HookError
from .errors import HTTPStatusError as HTTPStatusError
from .errors import ManifestError as ManifestError
from .errors import ProxyError as ProxyError
from .errors import SizeMismatch as SizeMismatch
from .errors import StorageError as StorageError
from .errors import TLSError as TLSError
from .errors import ValidationError as ValidationError
from .hooks import DEFAULT_HOOKS as DEFAULT_HOOKS
from .hooks import DownloadContext as DownloadContext
from .hooks import Hook as Hook
from .models import ContentUnit as ContentUnit
from .models import DownloadRequest as DownloadRequest
from .models import DownloadResult as DownloadResult
from .models import MetadataValidators as MetadataValidators
from .models import Pieces as Pieces
from .models import ProgressReport as ProgressReport
from .models import Source as Source
from .models import UnitFile as UnitFile
from .models import UnitSpec as UnitSpec
from .models import VerifyReport as VerifyReport
from .storage import LocalStorage as LocalStorage
from .storage import Storage as Storage
from .storage import TempStorage as TempStorage
from .sync import download_sync as download_sync
from .sync import run_batch as run_batch
from .transfer.stream import DownloadStream as DownloadStream

__all__ = [
    "DEFAULT_HOOKS",
    "AllSourcesFailed",
    "Auth",
    "BasicAuth",
    "BearerTokenAuth",
    "Catalog",
    "CatalogError",
    "ConfigError",
    "ConnectionFailed",
    "ContentUnit",
    "DigestMismatch",
    "DownloadContext",
    "DownloadEngine",
    "DownloadError",
    "DownloadRequest",
    "DownloadResult",
    "DownloadStream",
    "DownloadTimeout",
    "EngineConfig",
    "EngineStatistics",
    "HTTPStatusError",
    "Hook",
    "HookError",
    "LocalStorage",
    "ManifestError",
    "MetadataResult",
    "MetadataValidators",
    "Pieces",
    "PostgresCatalog",
    "ProgressReport",
    "ProxyConfig",
    "ProxyError",
    "RemoteConfig",
    "RetryPolicy",
    "S3Storage",
    "SQLiteCatalog",
    "SizeMismatch",
    "Source",
    "Storage",
    "StorageError",
    "TLSConfig",
    "TLSError",
    "TempStorage",
    "Timeouts",
    "UnitFile",
    "UnitSpec",
    "ValidationError",
    "VerifyReport",
    "__version__",
    "download_sync",
    "fetch_metadata",
    "read_metalink",
    "read_pulp_manifest",
    "run_batch",
]

if TYPE_CHECKING:
    from .catalog.postgres import PostgresCatalog as PostgresCatalog
    from .catalog.sqlite import SQLiteCatalog as SQLiteCatalog
    from .metadata import MetadataResult as MetadataResult
    from .metadata import fetch_metadata as fetch_metadata
    from .metalink import read_metalink as read_metalink
    from .pulp_manifest import read_pulp_manifest as read_pulp_manifest
    from .storage.s3 import S3Storage as S3Storage

_LAZY = {
    "PostgresCatalog": "pulp_aio_download.catalog.postgres",
    "SQLiteCatalog": "pulp_aio_download.catalog.sqlite",
    "S3Storage": "pulp_aio_download.storage.s3",
    "MetadataResult": "pulp_aio_download.metadata",
    "fetch_metadata": "pulp_aio_download.metadata",
    "read_metalink": "pulp_aio_download.metalink",
    "read_pulp_manifest": "pulp_aio_download.pulp_manifest",
}


def __getattr__(name: str) -> Any:
    # Backends with optional dependencies, and the readers of Metalink documents (an XML
    # parser) and PULP_MANIFESTs, are imported on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pulp_aio_download' has no attribute {name!r}")


logging.getLogger(__name__).addHandler(logging.NullHandler())
