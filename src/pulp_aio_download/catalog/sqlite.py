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
    def _args(args: tuple[Any, ...]) -> dict[str, Any]:
        return _sql.sqlite_params(
            [a.isoformat(timespec="microseconds") if isinstance(a, datetime) else a for a in args]
        )

    async def execute(self, sql: str, *args: Any) -> None:
        self._conn.execute(_sql.sqlite_placeholders(sql), self._args(args))

    async def fetchone(self, sql: str, *args: Any) -> _sql.Row | None:
        cur = self._conn.execute(_sql.sqlite_placeholders(sql), self._args(args))
        try:
            row = cur.fetchone()
            # Drain the cursor: an upsert's RETURNING row is only final once stepped to the end.
            cur.fetchall()
        finally:
            cur.close()
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, *args: Any) -> list[_sql.Row]:
        cur = self._conn.execute(_sql.sqlite_placeholders(sql), self._args(args))
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


class _Connection:
    """One ``sqlite3`` connection, used only from its own dedicated thread."""

    def __init__(self, path: Path, busy_timeout: float, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._path = path
        self._busy_timeout = busy_timeout
        self.conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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

    def __init__(
        self, path: str | os.PathLike[str], *, batch_size: int = 256, busy_timeout: float = 30.0
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self.batch_size = batch_size
        self.busy_timeout = busy_timeout
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

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the file (and its directory) if needed, migrate the schema, start the
        writer. Idempotent."""
        async with self._open_lock:
            if self._writer_task is not None:
                return
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
            self._closing = False
            self.transactions = self.writes = 0
            self._queue = asyncio.Queue()
            self._writer_task = asyncio.create_task(self._write_loop(writer))

    async def close(self) -> None:
        """Commit every queued write, stop the writer and close the connections."""
        async with self._open_lock:
            task = self._writer_task
            if task is None:
                return
            self._closing = True
            self._queue.put_nowait(_STOP)
            try:
                await task
            finally:
                self._writer_task = None
                for conn in (self._reader, self._writer):
                    if conn is not None:
                        await conn.close()
                self._reader = self._writer = None

    # -- group commit ------------------------------------------------------------------------
    async def _write(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        if self._writer_task is None or self._closing:
            raise RuntimeError(f"{self!r} is not open")
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

        def run(db: sqlite3.Connection) -> list[tuple[bool, Any]]:
            tx = _SQLiteTx(db)
            outcomes: list[tuple[bool, Any]] = []
            db.execute("BEGIN IMMEDIATE")
            try:
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
    async def _read(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
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
