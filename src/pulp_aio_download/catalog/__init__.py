"""Catalog backends: SQLite (embedded default) and PostgreSQL (``postgres`` extra).

Both are imported lazily so that ``import pulp_aio_download`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Catalog as Catalog

if TYPE_CHECKING:
    from .postgres import PostgresCatalog as PostgresCatalog
    from .sqlite import SQLiteCatalog as SQLiteCatalog

__all__ = ["Catalog", "PostgresCatalog", "SQLiteCatalog"]


def __getattr__(name: str) -> Any:
    if name == "SQLiteCatalog":
        from .sqlite import SQLiteCatalog

        return SQLiteCatalog
    if name == "PostgresCatalog":
        from .postgres import PostgresCatalog

        return PostgresCatalog
    raise AttributeError(name)
