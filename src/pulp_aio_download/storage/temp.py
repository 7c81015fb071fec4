"""Temporary-file storage: the default when neither storage nor data_dir is configured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from .local import LocalStorage

__all__ = ["TempStorage"]


class TempStorage(LocalStorage):
    """Local storage under a fresh temporary directory (or ``root``).

    The files outlive the engine: the caller owns them (``DownloadResult.path``) and removes
    the directory (:attr:`root`) when done. A fresh directory that is still empty when the
    storage closes (nothing was stored) is removed then.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._own_root = root is None
        super().__init__(
            root if root is not None else tempfile.mkdtemp(prefix="pulp-aio-download-")
        )

    def partials_dir(self) -> Path | None:
        """``root/.partials``; with a fresh root, a directory shared by every
        ``TempStorage()`` of this user in the system's temporary directory (on its
        filesystem), so that a later process can resume."""
        if self._own_root:
            return self.root.parent / f"pulp-aio-download-partials-{os.getuid()}"
        return super().partials_dir()

    async def close(self) -> None:
        """Remove a fresh root that nothing was stored in."""
        await super().close()
        if self._own_root:
            await asyncio.to_thread(_remove_if_empty, self.root)


def _remove_if_empty(root: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone: it stays as it is
        if [entry.name for entry in root.iterdir()] == [".staging"]:
            (root / ".staging").rmdir()
            root.rmdir()
