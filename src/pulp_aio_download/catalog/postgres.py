"""The shared catalog: PostgreSQL through an asyncpg pool (``postgres`` extra)."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import ConfigError
from ..urls import redact_url
from . import _sql
from ._sqlbase import SQLCatalog

__all__ = ["PostgresCatalog"]

T = TypeVar("T")

#: Key of the advisory lock that serialises schema migrations between processes.
_MIGRATION_LOCK = zlib.crc32(b"pulp_aio_download.catalog.migrate")
#: Attempts of a write that PostgreSQL rolled back (deadlock, serialisation failure).
_WRITE_ATTEMPTS = 3


class _PostgresTx:
    """:class:`_sql.Tx` over an asyncpg connection already inside a transaction."""

    dialect: _sql.Dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)

    async def fetchone(self, sql: str, *args: Any) -> _sql.Row | None:
        row = await self._conn.fetchrow(sql, *args)
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, *args: Any) -> list[_sql.Row]:
        return [tuple(row) for row in await self._conn.fetch(sql, *args)]


def _asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "the PostgreSQL catalog needs the 'postgres' extra: "
            "pip install 'pulp-aio-download[postgres]'"
        ) from None
    return asyncpg


class PostgresCatalog(SQLCatalog):
    """A catalog in PostgreSQL, shared by many worker processes on many hosts.

    Args:
        dsn: a libpq connection URI or keyword string, e.g.
            ``postgresql://pulp@db.example.com/pulp`` (a password in it is never shown).
        min_size, max_size: bounds of the asyncpg connection pool.

    Same schema, operations and behaviour as :class:`SQLiteCatalog` (the SQL is shared);
    the schema is created or migrated on :meth:`open` under an advisory lock, so workers
    may start at the same time. Every write is one transaction (retried when PostgreSQL
    rolls it back for a deadlock or a serialisation failure); every read runs in one
    read-only repeatable-read transaction, so a record is never seen half-written.

    :meth:`claim` is what lets workers cooperate: a ``claims`` row with an owner and an
    expiry, taken with ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired OR same owner``,
    timed by the *database's* clock so that hosts with skewed clocks agree. A worker that
    dies loses its claims when their lease expires.

    Example::

        async with PostgresCatalog("postgresql://pulp@db/pulp", max_size=20) as catalog:
            if await catalog.claim(sha256, owner=worker_id, lease=300):
                ...
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise ConfigError("PostgresCatalog needs a DSN")
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ConfigError(
                f"PostgresCatalog pool bounds must satisfy 0 <= min_size <= max_size >= 1, "
                f"got min_size={min_size}, max_size={max_size}"
            )
        self._dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._pool: Any = None

    async def __aenter__(self) -> PostgresCatalog:
        await self.open()
        return self

    def __repr__(self) -> str:
        return f"PostgresCatalog({redact_url(self._dsn)!r})"

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the pool and create or migrate the schema. Idempotent."""
        if self._pool is not None:
            return
        asyncpg = _asyncpg()
        pool = await asyncpg.create_pool(self._dsn, min_size=self.min_size, max_size=self.max_size)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await _sql.migrate(_PostgresTx(conn), where=redact_url(self._dsn))
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool (waiting for running operations)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._pool

    async def _write(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        pool = self._require_pool()
        rollback_error = _asyncpg().exceptions.TransactionRollbackError
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    return await op(_PostgresTx(conn))
            except rollback_error:
                if attempt == _WRITE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        pool = self._require_pool()
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await op(_PostgresTx(conn))
