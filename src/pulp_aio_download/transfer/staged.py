"""What a transfer hands to the hook chain: a validated staging file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Staged", "handoff_staging_path"]


@dataclass(slots=True)
class Staged:
    """A validated staging file, ready for the hook chain."""

    path: Path
    digests: dict[str, str]
    size: int
    headers: Mapping[str, str]
    attempts: int
    url: str
    carried: int = 0  # bytes continued from a partial of an earlier process
    #: the bytes of a small file kept in memory: ``path`` is not written yet (see
    #: :meth:`~pulp_aio_download.storage.base.Storage.commit_body`).
    body: tuple[bytes, ...] | None = None


def handoff_staging_path(directory: Path) -> Path:
    """A new staging file in the caller's ``handoff_dir``: hidden, and renamed to its
    final name (without the dot and ``.part``) when the hook chain hands it off."""
    return directory / f".pad-{os.getpid()}-{os.urandom(8).hex()}.part"
