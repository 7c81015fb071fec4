"""The embedded default catalog: one SQLite file, written by group commit."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..errors import CatalogError
from . import _sql
from ._sqlbase import SQLCatalog

__all__ = ["SQLiteCatalog"]

T = TypeVar("T")


class _SQLiteTx:
    """:class:`_sql.Tx` over a ``sqlite3`` connection inside a transaction.

    Its coroutines never suspend: a whole catalog operation runs synchronously in the
    connection's own thread (see :func:`_drive`), so a write batch or a read costs one
    thread hop however many statements it has.
    """

    dialect: _sql.Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @staticmethod
    def _prepare(sql: str, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        text, order = _sql.sqlite_placeholders(sql)
        values = _sql.sqlite_params(order, args)
        if any(isinstance(a, datetime) for a in values):
            values = tuple(
                a.isoformat(timespec="microseconds") if isinstance(a, datetime) else a
                for a in values
            )
        return text, values

    async def execute(self, sql: str, *args: Any) -> None:
        self._conn.execute(*self._prepare(sql, args))

    async def fetchone(self, sql: str, *args: Any) -> _sql.Row | None:
        cur = self._conn.execute(*self._prepare(sql, args))
        try:
            row = cur.fetchone()
            # Drain the cursor: an upsert's RETURNING row is only final once stepped to the end.
            cur.fetchall()
        finally:
            cur.close()
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, *args: Any) -> list[_sql.Row]:
        cur = self._conn.execute(*self._prepare(sql, args))
        try:
            return [tuple(row) for row in cur.fetchall()]
        finally:
            cur.close()


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to completion, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a catalog operation suspended inside a SQLite transaction")


#: SQLite result codes (``sqlite_errorname`` prefixes) and what they mean for the catalog.
_MEANINGS: tuple[tuple[str, str], ...] = (
    ("SQLITE_BUSY", "the database is locked by another writer"),
    ("SQLITE_LOCKED", "the database is locked by another writer"),
    ("SQLITE_READONLY", "it is read-only"),
    ("SQLITE_CANTOPEN", "the file cannot be opened"),
    ("SQLITE_FULL", "the disk is full"),
    ("SQLITE_IOERR", "disk I/O error"),
    ("SQLITE_CORRUPT", "the file is damaged or not a SQLite database"),
    ("SQLITE_NOTADB", "the file is damaged or not a SQLite database"),
    ("SQLITE_PERM", "permission denied"),
    ("SQLITE_AUTH", "permission denied"),
)

#: The same codes recognised by message, for Python 3.10 (no ``sqlite_errorname``).
_MESSAGES: tuple[tuple[str, str], ...] = (
    ("database is locked", "SQLITE_BUSY"),
    ("readonly database", "SQLITE_READONLY"),
    ("unable to open database", "SQLITE_CANTOPEN"),
    ("disk is full", "SQLITE_FULL"),
    ("disk i/o error", "SQLITE_IOERR"),
    ("malformed", "SQLITE_CORRUPT"),
    ("not a database", "SQLITE_NOTADB"),
)


def _error_name(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str):
        return name
    text = str(exc).lower()
    return next((code for needle, code in _MESSAGES if needle in text), "")


def _why_not_writable(path: Path) -> str | None:
    """Why ``path`` (or, when it does not exist, its directory) cannot be written, if so."""
    target = path if path.exists() else path.parent
    try:
        if os.statvfs(target).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        return None
    if not os.access(target, os.W_OK) or not os.access(path.parent, os.W_OK):
        return "permission denied"
    return None


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that never writes, not even WAL bookkeeping (``mode=ro``).

    A WAL database needs its ``-shm`` index, which a reader creates when it is missing; in
    a directory this process cannot write (a read-only data dir) that is impossible, and
    the database is opened *immutable* instead: read as it is on disk, without locking.
    """
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", timeout=timeout, isolation_level=None, uri=True)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if not _error_name(exc).startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")):
            raise
    return sqlite3.connect(
        f"{uri}?mode=ro&immutable=1", timeout=timeout, isolation_level=None, uri=True
    )


class _Connection:
    """One ``sqlite3`` connection, used only from its own dedicated thread."""

    def __init__(
        self, path: Path, busy_timeout: float, name: str, *, read_only: bool = False
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._path = path
        self._busy_timeout = busy_timeout
        self._read_only = read_only
        self.conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self.conn is None and self._read_only:
            self.conn = _connect_read_only(self._path, self._busy_timeout)
        if self.conn is None:
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = FULL")
            except BaseException:
                conn.close()
                raise
            self.conn = conn
        return fn(self.conn)

    async def close(self) -> None:
        def _close(conn: sqlite3.Connection) -> None:
            conn.close()
            self.conn = None

        try:
            if self.conn is not None:
                await self.run(_close)
        finally:
            self._executor.shutdown(wait=False)


@dataclass(eq=False)
class _Write(Generic[T]):
    op: Callable[[_sql.Tx], Awaitable[T]]
    future: asyncio.Future[T] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


_STOP = object()


class SQLiteCatalog(SQLCatalog):
    """The embedded catalog: one SQLite database file, created on first use.

    Args:
        path: the database file; it and its parent directory are created when missing.
        batch_size: the most writes committed together in one transaction.
        busy_timeout: seconds to wait for another process's write lock before failing.
        read_only: open an existing catalog for reading only (``mode=ro``): nothing is
            created or migrated, every write raises :class:`CatalogError`, and the file
            may sit on a read-only file system or in a directory this process cannot
            write.

    Raises:
        CatalogError: (from :meth:`open` and every operation) the file cannot be opened,
            read or written: permission, read-only, locked for longer than
            ``busy_timeout``, full disk, I/O error, not a catalog.

    The file runs in WAL mode (readers never block the writer), with ``synchronous=FULL``
    and a versioned schema (``schema_version`` table) migrated on :meth:`open`. All writes
    go through one writer task that practises *group commit*: writes issued while a
    transaction is being committed queue up and are committed together in the next one (at
    most ``batch_size``), each in its own savepoint, so one failing write fails only its own
    caller. A caller's ``await`` returns once its write is committed. Reads use a second
    connection and see every write whose ``await`` has returned.

    Several processes may open the same file (SQLite serialises their writers); for many
    workers on many hosts use :class:`PostgresCatalog`. A process killed mid-write leaves
    the last committed state: every write is one transaction.

    Sources are stored with their remote *name* and their URL without userinfo; remote
    secrets are stored only sealed (:meth:`save_remote`).

    ``transactions`` and ``writes`` count what the writer committed since :meth:`open`
    (``writes / transactions`` is the mean group size).

    Example::

        async with SQLiteCatalog("data/catalog.sqlite3") as catalog:
            record = await catalog.get_unit_file(sha256)
    """

    #: Write transactions committed since open().
    transactions: int
    #: Writes committed since open(), summed over all transactions.
    writes: int

    _db_errors = (sqlite3.Error, OSError)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 256,
        busy_timeout: float = 30.0,
        read_only: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self.batch_size = batch_size
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        self._queue: asyncio.Queue[_Write[Any] | object] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self._open_lock = asyncio.Lock()
        self.transactions = self.writes = 0

    async def __aenter__(self) -> SQLiteCatalog:
        await self.open()
        return self

    def __repr__(self) -> str:
        return f"SQLiteCatalog({str(self.path)!r})"

    @property
    def display_name(self) -> str:
        return f"SQLite catalog {self.path}"

    def _describe_error(self, exc: BaseException) -> str:
        if not isinstance(exc, sqlite3.Error):
            return str(exc)
        name = _error_name(exc)
        meaning = next((m for code, m in _MEANINGS if name.startswith(code)), None)
        if meaning is None:
            return str(exc)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            meaning += f" (waited {self.busy_timeout:g} s)"
        elif name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) and not self.read_only:
            why = _why_not_writable(self.path)
            if why is not None:
                meaning = f"it is not writable ({why})"
        return f"{meaning}: {exc}"

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the file (and its directory) if needed, migrate the schema, start the
        writer; read-only: check that the file is a catalog of this version. Idempotent.

        Raises:
            CatalogError: the catalog cannot be opened for what was asked.
        """
        async with self._open_lock:
            if self._reader is not None:
                return
            try:
                if self.read_only:
                    await self._open_read_only()
                else:
                    await self._open_writer()
            except self._db_errors as exc:
                raise self._catalog_error(exc, "open") from exc
            self._closing = False

    async def _open_read_only(self) -> None:
        reader = _Connection(self.path, self.busy_timeout, "catalog-reader", read_only=True)
        where = str(self.path)

        def check(conn: sqlite3.Connection) -> None:
            _drive(_sql.check_schema(_SQLiteTx(conn), where=where))

        try:
            await reader.run(check)
        except BaseException:
            await reader.close()
            raise
        self._reader = reader

    async def _open_writer(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        writer = _Connection(self.path, self.busy_timeout, "catalog-writer")
        where = str(self.path)

        def migrate(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                _drive(_sql.migrate(_SQLiteTx(conn), where=where))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        try:
            await writer.run(migrate)
        except BaseException:
            await writer.close()
            raise
        self._writer = writer
        self._reader = _Connection(self.path, self.busy_timeout, "catalog-reader")
        self.transactions = self.writes = 0
        self._queue = asyncio.Queue()
        self._writer_task = asyncio.create_task(self._write_loop(writer))

    async def close(self) -> None:
        """Commit every queued write, stop the writer and close the connections.

        Raises:
            CatalogError: the queued writes could not be committed.
        """
        async with self._open_lock:
            if self._reader is None:
                return
            task, self._closing = self._writer_task, True
            try:
                if task is not None:
                    self._queue.put_nowait(_STOP)
                    await task
            except self._db_errors as exc:
                raise self._catalog_error(exc, "close") from exc
            finally:
                self._writer_task = None
                for conn in (self._reader, self._writer):
                    if conn is not None:
                        await conn.close()
                self._reader = self._writer = None

    # -- group commit ------------------------------------------------------------------------
    async def _write_tx(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        task = self._writer_task
        if task is None or self._closing:
            raise RuntimeError(f"{self!r} is not open")
        if task.done():
            name = self.display_name
            raise CatalogError(f"cannot write to {name}: its writer stopped", catalog=name)
        item: _Write[T] = _Write(op)
        self._queue.put_nowait(item)
        return await item.future

    async def _write_loop(self, conn: _Connection) -> None:
        batch: list[_Write[Any]] = []
        try:
            stop = False
            while not stop:
                first = await self._queue.get()
                if first is _STOP:
                    break
                assert isinstance(first, _Write)
                batch = [first]
                while len(batch) < self.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    assert isinstance(item, _Write)
                    batch.append(item)
                await self._commit(conn, batch)
                batch = []
        except BaseException as exc:
            # The writer is gone: nobody may wait forever for a write it will never do.
            pending = batch + [i for i in _drain(self._queue) if isinstance(i, _Write)]
            error = exc if isinstance(exc, Exception) else RuntimeError("catalog writer stopped")
            for item in pending:
                if not item.future.done():
                    item.future.set_exception(error)
            raise

    async def _commit(self, conn: _Connection, batch: list[_Write[Any]]) -> None:
        # Callers cancelled while queued are skipped.
        live = [item for item in batch if not item.future.done()]
        if not live:
            return

        def each_alone(db: sqlite3.Connection, tx: _SQLiteTx) -> list[tuple[bool, Any]]:
            outcomes: list[tuple[bool, Any]] = []
            for item in live:
                db.execute("SAVEPOINT write")
                try:
                    result: Any = _drive(item.op(tx))  # type: ignore[arg-type]
                except Exception as exc:
                    db.execute("ROLLBACK TO write")
                    db.execute("RELEASE write")
                    outcomes.append((False, exc))
                else:
                    db.execute("RELEASE write")
                    outcomes.append((True, result))
            return outcomes

        def run(db: sqlite3.Connection) -> list[tuple[bool, Any]]:
            tx = _SQLiteTx(db)
            db.execute("BEGIN IMMEDIATE")
            try:
                try:
                    # The common case, every write succeeding, needs no savepoints.
                    outcomes: list[tuple[bool, Any]] = [
                        (True, _drive(item.op(tx)))  # type: ignore[arg-type]
                        for item in live
                    ]
                except Exception:
                    # One failed: start over, each write in a savepoint of its own, so
                    # that only the failing ones fail (the writes only touch the database).
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    db.execute("BEGIN IMMEDIATE")
                    outcomes = each_alone(db, tx)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return outcomes

        try:
            outcomes = await conn.run(run)
        except Exception as exc:
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.transactions += 1
        self.writes += len(outcomes)
        for item, (ok, value) in zip(live, outcomes, strict=True):
            if item.future.done():
                continue
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)

    # -- reads ----------------------------------------------------------------------------------
    async def _read_tx(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        reader = self._reader
        if reader is None or self._closing:
            raise RuntimeError(f"{self!r} is not open")

        def run(db: sqlite3.Connection) -> T:
            # One read transaction: a consistent snapshot across the op's statements.
            db.execute("BEGIN")
            try:
                return _drive(op(_SQLiteTx(db)))  # type: ignore[arg-type]
            finally:
                db.execute("COMMIT")

        return await reader.run(run)


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            return items
