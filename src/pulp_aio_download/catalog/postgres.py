"""The shared catalog: PostgreSQL through an asyncpg pool (``postgres`` extra)."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .._extras import require
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


_KEYWORD_PASSWORD = re.compile(r"\s*\b(?:ssl)?password\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S*)", re.I)

#: SQLSTATE codes and classes (two characters) and what they mean for the catalog.
_SQLSTATES: tuple[tuple[str, str], ...] = (
    ("25006", "it is read-only"),
    ("42501", "permission denied"),
    ("42P01", "it holds no pulp_aio_download catalog (run a writing command once)"),
    ("3D000", "the database does not exist"),
    ("53100", "the server's disk is full"),
    ("53300", "the server has too many connections"),
    ("55P03", "a row or table is locked by another session"),
    ("40P01", "deadlock with another session"),
    ("57P", "the server is shutting down or restarting"),
    ("28", "authentication failed"),
    ("08", "the connection to the server was lost"),
)


def display_dsn(dsn: str) -> str:
    """``dsn`` without its password: ``postgresql://user@host:port/db`` (the query string
    is dropped) or a keyword string without ``password=``."""
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub("", dsn).strip()
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    hosts = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}@{hosts}" if parts.username else hosts
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _dsn_secrets(dsn: str) -> list[str]:
    found = []
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            found.append(password)
    found += [
        m.group(0).partition("=")[2].strip().strip("'") for m in _KEYWORD_PASSWORD.finditer(dsn)
    ]
    return [secret for secret in found if secret]


def _asyncpg() -> Any:
    return require("asyncpg", extra="postgres", needed_by="the PostgreSQL catalog")


class PostgresCatalog(SQLCatalog):
    """A catalog in PostgreSQL, shared by many worker processes on many hosts.

    Args:
        dsn: a libpq connection URI or keyword string, e.g.
            ``postgresql://pulp@db.example.com/pulp`` (a password in it is never shown).
        min_size, max_size: bounds of the asyncpg connection pool.
        read_only: only read: :meth:`open` checks the schema instead of migrating it, and
            every write raises :class:`CatalogError` (for a role without write grants).

    Raises:
        CatalogError: (from :meth:`open` and every operation) the server refused or lost
            the connection, authentication failed, the database is read-only, its disk
            is full, a lock or deadlock won.

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

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, read_only: bool = False
    ) -> None:
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
        self.read_only = read_only
        self._pool: Any = None

    async def __aenter__(self) -> PostgresCatalog:
        await self.open()
        return self

    def __repr__(self) -> str:
        return f"PostgresCatalog({redact_url(self._dsn)!r})"

    @property
    def display_name(self) -> str:
        return f"PostgreSQL catalog {display_dsn(self._dsn)}"

    def _describe_error(self, exc: BaseException) -> str:
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str):
            meaning = next((m for code, m in _SQLSTATES if sqlstate.startswith(code)), None)
            text = f"{meaning}: {exc}" if meaning else f"{exc} (SQLSTATE {sqlstate})"
        elif isinstance(exc, ConnectionRefusedError):
            text = f"connection refused, is the server running? ({exc})"
        elif isinstance(exc, (ConnectionError, EOFError)):
            text = f"the connection to the server was lost ({exc})"
        elif isinstance(exc, asyncio.TimeoutError):
            text = "the server did not answer in time"
        else:
            text = f"{exc}" if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        for secret in _dsn_secrets(self._dsn):
            text = text.replace(secret, "***")
        return text

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the pool and create or migrate the schema. Idempotent."""
        if self._pool is not None:
            return
        asyncpg = _asyncpg()
        self._db_errors = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            EOFError,
            asyncio.TimeoutError,
        )
        where = display_dsn(self._dsn)
        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=self.min_size, max_size=self.max_size
            )
            try:
                if self.read_only:
                    async with pool.acquire() as conn, conn.transaction(readonly=True):
                        await _sql.check_schema(_PostgresTx(conn), where=where)
                else:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                        await _sql.migrate(_PostgresTx(conn), where=where)
            except BaseException:
                pool.terminate()
                raise
        except self._db_errors as exc:
            raise self._catalog_error(exc, "open") from exc
        self._pool = pool

    async def close(self) -> None:
        """Close the pool (waiting for running operations)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except self._db_errors as exc:
                pool.terminate()
                raise self._catalog_error(exc, "close") from exc

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._pool

    async def _write_tx(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
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

    async def _read_tx(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        pool = self._require_pool()
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await op(_PostgresTx(conn))
