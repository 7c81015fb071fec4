"""The catalog's error boundary: what SQLite and PostgreSQL raise becomes a CatalogError.

Real failures only: a data dir that is really read-only (a read-only bind mount as root),
a write lock held by another connection, a full tmpfs, a port nobody listens on, a role
the server does not know, a database that refuses writes.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import free_port
from pulp_aio_download.catalog.postgres import PostgresCatalog, display_dsn
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.storage.local import LocalStorage
from pulp_aio_download.testing import FaultServer

DATA = b"catalog boundary\n" * 64
SHA = hashlib.sha256(DATA).hexdigest()


def request(server: FaultServer, path: str = "/f.bin", data: bytes = DATA) -> pad.DownloadRequest:
    server.add(path, data)
    return pad.DownloadRequest(
        server.url(path),
        expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
        expected_size=len(data),
        unit=pad.UnitSpec("file", path.strip("/")),
        repository="repo",
    )


def populate(server: FaultServer, data_dir: Path) -> pad.DownloadResult:
    return pad.download_sync(request(server), config=pad.EngineConfig(data_dir=data_dir))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- SQLite ---------------------------------------------------------------------------------


def test_read_only_data_dir_fails_with_download_errors_naming_the_file(
    threaded_server: FaultServer, tmp_path: Path, read_only_dir: Callable[[Path], None]
) -> None:
    data_dir = tmp_path / "data"
    populate(threaded_server, data_dir)
    before = tree(data_dir)
    read_only_dir(data_dir)
    fresh = request(threaded_server, "/g.bin", b"another file\n")

    # The default data dir layout: the store is opened first and refuses.
    with pytest.raises(pad.StorageError) as stored:
        pad.download_sync(fresh, config=pad.EngineConfig(data_dir=data_dir))
    assert stored.value.url == fresh.url and fresh.url in str(stored.value)
    assert f"cannot write to storage {data_dir / 'artifacts'}" in str(stored.value)

    # A writable store with the read-only catalog: the catalog refuses, at open.
    config = pad.EngineConfig(
        storage=LocalStorage(tmp_path / "store"),
        catalog=SQLiteCatalog(data_dir / "catalog.sqlite3"),
    )
    with pytest.raises(pad.CatalogError) as caught:
        pad.download_sync(fresh, config=config)
    error = caught.value
    assert error.url == fresh.url
    assert error.catalog == f"SQLite catalog {data_dir / 'catalog.sqlite3'}"
    reason = "read-only file system" if os.geteuid() == 0 else "permission denied"
    assert f"cannot open SQLite catalog {data_dir / 'catalog.sqlite3'}: it is not writable " in (
        str(error)
    )
    assert reason in str(error)
    assert isinstance(error.__cause__, pad.CatalogError)
    assert isinstance(error.__cause__.__cause__, sqlite3.Error)
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.url, again.catalog) == (str(error), error.url, error.catalog)

    other = request(threaded_server, "/h.bin", b"a third file\n")
    results = pad.run_batch([fresh, other], config=config)
    assert [type(r) for r in results] == [pad.CatalogError, pad.CatalogError]
    assert [r.url for r in results] == [fresh.url, other.url]  # type: ignore[union-attr]
    with pytest.raises(pad.CatalogError) as first:
        pad.run_batch([fresh, other], config=config, return_exceptions=False)
    assert first.value.url == fresh.url
    assert tree(data_dir) == before  # nothing was written, not even a -shm or -wal file


async def test_read_only_catalog_reads_and_refuses_writes(
    tmp_path: Path, read_only_dir: Callable[[Path], None]
) -> None:
    data_dir = tmp_path / "data"
    async with FaultServer() as server:
        config = pad.EngineConfig(data_dir=data_dir)
        async with pad.DownloadEngine(config) as engine:
            await engine.download(request(server))
    before = tree(data_dir)
    read_only_dir(data_dir)

    async with SQLiteCatalog(data_dir / "catalog.sqlite3", read_only=True) as catalog:
        assert catalog.read_only
        record = await catalog.get_unit_file(SHA)
        assert record is not None and record.size == len(DATA)
        assert [u.key for u in await catalog.repository_units("repo")] == ["f.bin"]
        with pytest.raises(pad.CatalogError, match="opened read-only"):
            await catalog.mark_verified(SHA, record.created_at)  # type: ignore[arg-type]
    assert tree(data_dir) == before


async def test_read_only_catalog_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "none" / "catalog.sqlite3"
    with pytest.raises(pad.CatalogError, match=r"cannot open SQLite catalog .*No such file"):
        await SQLiteCatalog(path, read_only=True).open()
    assert not path.parent.exists()  # a read-only open creates nothing


async def test_locked_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    async with FaultServer() as server:
        storage = LocalStorage(tmp_path / "store")
        catalog = SQLiteCatalog(path, busy_timeout=0.2)
        async with pad.DownloadEngine(pad.EngineConfig(storage=storage, catalog=catalog)) as eng:
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # another process's write lock, held
                wanted = request(server)
                with pytest.raises(pad.CatalogError) as caught:
                    await eng.download(wanted)
            finally:
                other.close()
            assert caught.value.url == wanted.url
            assert "the database is locked by another writer (waited 0.2 s)" in str(caught.value)
            # Nothing of the failed download stays: the artifact it stored is removed again.
            assert await storage.stat(SHA) is None
            assert not storage.path_of(SHA).exists()
            # The lock is gone: the next attempt works.
            assert (await eng.download(wanted)).path == storage.path_of(SHA)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
        check=True,
        capture_output=True,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def fill(directory: Path) -> None:
    with (directory / "filler").open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


async def test_catalog_on_a_full_disk(tiny_tmpfs: Path, tmp_path: Path) -> None:
    async with FaultServer() as server:
        storage = LocalStorage(tmp_path / "store")
        catalog = SQLiteCatalog(tiny_tmpfs / "catalog.sqlite3")
        async with pad.DownloadEngine(pad.EngineConfig(storage=storage, catalog=catalog)) as eng:
            fill(tiny_tmpfs)
            wanted = request(server)
            with pytest.raises(pad.CatalogError) as caught:
                await eng.download(wanted)
            assert caught.value.url == wanted.url
            assert "the disk is full" in str(caught.value)
            assert not storage.path_of(SHA).exists()


# -- PostgreSQL ----------------------------------------------------------------------------


def test_display_dsn_never_shows_a_password() -> None:
    assert display_dsn("postgresql://pulp:s3cret@db:5432/pulp?sslpassword=x&sslmode=require") == (
        "postgresql://pulp@db:5432/pulp"
    )
    assert display_dsn("host=db user=pulp password='s3 cret' dbname=pulp") == (
        "host=db user=pulp dbname=pulp"
    )
    assert display_dsn("host=db password=s3cret") == "host=db"


async def test_postgres_connection_refused() -> None:
    dsn = f"postgresql://pulp:s3cret-pw@127.0.0.1:{free_port()}/pulp"
    catalog = PostgresCatalog(dsn)
    with pytest.raises(pad.CatalogError) as caught:
        await catalog.open()
    error = caught.value
    name = f"PostgreSQL catalog postgresql://pulp@127.0.0.1:{dsn.rsplit(':', 1)[1]}"
    assert error.catalog == name
    assert str(error).startswith(f"cannot open {name}: connection refused")
    for text in (str(error), repr(error), str(pickle.loads(pickle.dumps(error)))):
        assert "s3cret-pw" not in text


async def test_postgres_authentication_failed(postgres_dsn: str) -> None:
    dsn = postgres_dsn.replace("postgres@", "ghost:s3cret-pw@", 1)
    with pytest.raises(pad.CatalogError, match="authentication failed") as caught:
        await PostgresCatalog(dsn).open()
    assert 'role "ghost" does not exist' in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


async def test_postgres_read_only_database(postgres_database: str) -> None:
    import asyncpg

    async with PostgresCatalog(postgres_database):
        pass  # the schema exists
    name = postgres_database.rsplit("/", 1)[1]
    conn = await asyncpg.connect(postgres_database)
    try:
        await conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    finally:
        await conn.close()

    with pytest.raises(pad.CatalogError, match="it is read-only") as caught:
        async with PostgresCatalog(postgres_database) as catalog:
            await catalog.forget_location(SHA)
    assert caught.value.catalog == f"PostgreSQL catalog {postgres_database}"
    # Opened read-only, it reads (the schema is checked, not migrated).
    async with PostgresCatalog(postgres_database, read_only=True) as catalog:
        assert await catalog.get_unit_file(SHA) is None
        with pytest.raises(pad.CatalogError, match="opened read-only"):
            await catalog.forget_location(SHA)
