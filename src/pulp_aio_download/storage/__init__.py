"""Storage backends: local filesystem, temporary files, S3-compatible object stores.

``S3Storage`` lives in :mod:`pulp_aio_download.storage.s3` and needs the ``s3`` extra; it
is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Storage as Storage
from .base import StoredArtifact as StoredArtifact
from .local import LocalStorage as LocalStorage
from .temp import TempStorage as TempStorage

if TYPE_CHECKING:
    from .s3 import S3Storage as S3Storage

__all__ = ["LocalStorage", "S3Storage", "Storage", "StoredArtifact", "TempStorage"]


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from .s3 import S3Storage

        return S3Storage
    raise AttributeError(name)
