"""Temporary-file storage: the default when neither storage nor data_dir is configured."""

from __future__ import annotations

import os
import tempfile

from .local import LocalStorage

__all__ = ["TempStorage"]


class TempStorage(LocalStorage):
    """Local storage under a fresh temporary directory (or ``root``).

    The files outlive the engine: the caller owns them (``DownloadResult.path``) and removes
    the directory (:attr:`root`) when done.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        super().__init__(
            root if root is not None else tempfile.mkdtemp(prefix="pulp-aio-download-")
        )
