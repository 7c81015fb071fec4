"""A hook that fails after the built-in hooks leaves nothing behind (issue 11.2).

Each test runs on a SQLite file and on a real PostgreSQL server, against a FaultServer
origin, and compares every row of the catalog's record tables before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from pulp_aio_download.catalog import Catalog
from pulp_aio_download.catalog.postgres import PostgresCatalog
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.testing import FaultServer

#: The tables that hold what a download records (host health and claims are not records).
TABLES = {
    "unit_files": "sha256, size, digests, location, created_at, verified_at",
    "unit_file_sources": "sha256, url, priority, weight, remote, position",
    "units": "id, type, key, metadata, created_at",
    "unit_links": "unit_id, relative_path, sha256",
    "repository_units": "repository, unit_id, added_at",
}


async def failing_hook(ctx: pad.DownloadContext) -> None:
    raise RuntimeError("the plugin's model could not be saved")


@pytest.fixture(params=["sqlite", "postgres"])
def make_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Catalog]:
    """Catalogs on one backing store: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return lambda: SQLiteCatalog(tmp_path / "catalog.sqlite3")
    dsn: str = request.getfixturevalue("postgres_database")
    return lambda: PostgresCatalog(dsn, max_size=4)


Engines = Callable[..., pad.DownloadEngine]


@pytest.fixture
def engine_with(make_catalog: Callable[[], Catalog], tmp_path: Path) -> Engines:
    """``engine_with(*hooks)``: an engine on the test's catalog and a local store."""

    def build(*hooks: pad.Hook) -> pad.DownloadEngine:
        return pad.DownloadEngine(
            pad.EngineConfig(
                storage=pad.LocalStorage(tmp_path / "store"),
                catalog=make_catalog(),
                remotes=[pad.RemoteConfig(retry=NO_RETRY)],
                hooks=list(hooks) if hooks else None,
            )
        )

    return build


FAILING = (*pad.DEFAULT_HOOKS, failing_hook)


async def rows(engine: pad.DownloadEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the record tables, in a stable order."""
    catalog = engine.catalog
    assert isinstance(catalog, (SQLiteCatalog, PostgresCatalog))
    found: dict[str, list[tuple[Any, ...]]] = {}
    for table, columns in TABLES.items():
        found[table] = await catalog._read(
            lambda tx, t=table, c=columns: tx.fetchall(f"SELECT {c} FROM {t} ORDER BY {c}")
        )
    return found


def stored_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".staging" not in p.parts
    }


def staging(root: Path) -> list[Path]:
    return sorted((root / ".staging").iterdir())


@pytest.fixture
async def empty_rows(engine_with: Engines) -> AsyncIterator[dict[str, list[tuple[Any, ...]]]]:
    async with engine_with() as engine:
        yield await rows(engine)


async def test_fresh_download_whose_hook_fails_leaves_nothing(
    engine_with: Engines,
    fault_server: FaultServer,
    tmp_path: Path,
    empty_rows: dict[str, list[tuple[Any, ...]]],
) -> None:
    data = os.urandom(40_000)
    url = fault_server.add("/repo/a.rpm", data)
    request = pad.DownloadRequest(
        url,
        expected_digests={"sha256": sha256(data)},
        expected_size=len(data),
        unit=pad.UnitSpec("rpm", "a-1.0", {"name": "a"}, relative_path="Packages/a.rpm"),
        repository="fedora",
    )
    async with engine_with(*FAILING) as engine:
        with pytest.raises(pad.HookError, match="could not be saved") as info:
            await engine.download(request)
        after = await rows(engine)
        assert engine.catalog is not None
        assert await engine.catalog.get_unit_file(sha256(data)) is None
        assert await engine.catalog.get_unit("rpm", "a-1.0") is None
        assert await engine.catalog.repository_units("fedora") == []

    assert info.value.url == url and "failing_hook" in str(info.value)
    assert after == empty_rows
    assert all(not v for v in after.values())
    assert stored_files(tmp_path / "store") == {}
    assert staging(tmp_path / "store") == []
    # The same download with a chain that works records everything: the rollback did not
    # leave anything half-deleted that gets in the way.
    async with engine_with() as engine:
        result = await engine.download(request)
        assert result.cached is False and result.unit is not None
        assert result.unit.repositories == ("fedora",)


async def test_second_download_whose_hook_fails_leaves_the_records_as_they_were(
    engine_with: Engines, fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(30_000)
    digest = sha256(data)
    first_url = fault_server.add("/primary/a.rpm", data)
    mirror_url = fault_server.add("/mirror/a.rpm", data)
    unit = pad.UnitSpec("rpm", "a-1.0", {"name": "a"}, relative_path="Packages/a.rpm")
    async with engine_with() as engine:
        await engine.download(
            pad.DownloadRequest(
                first_url,
                expected_digests={"sha256": digest},
                unit=unit,
                repository="fedora",
            )
        )
        before = await rows(engine)
    files_before = stored_files(tmp_path / "store")

    # A new source (and a new priority for the known one), new metadata for the unit, a
    # new unit and two new repository associations, all from one failed download each.
    attempts = [
        pad.DownloadRequest(
            sources=[pad.Source(first_url, priority=7), pad.Source(mirror_url, weight=3.0)],
            expected_digests={"sha256": digest, "md5": hashlib.md5(data).hexdigest()},
            unit=pad.UnitSpec("rpm", "a-1.0", {"name": "a", "arch": "x86_64"}, "Packages/a.rpm"),
            repository="epel",
        ),
        pad.DownloadRequest(
            mirror_url,
            expected_digests={"sha256": digest},
            unit=pad.UnitSpec("rpm", "a-1.0-copy", {"name": "a"}),
            repository="centos",
        ),
    ]
    async with engine_with(*FAILING) as engine:
        for request in attempts:
            with pytest.raises(pad.HookError):
                await engine.download(request)
            assert await rows(engine) == before
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(digest)
        kept = await engine.catalog.get_unit("rpm", "a-1.0")

    assert record is not None and record.sources == (pad.Source(first_url),)
    assert dict(record.digests) == {"sha256": digest}
    assert kept is not None and dict(kept.metadata) == {"name": "a"}
    assert kept.repositories == ("fedora",)
    assert stored_files(tmp_path / "store") == files_before  # the stored artifact stays


async def test_failed_download_into_an_existing_unit_restores_its_link(
    engine_with: Engines, fault_server: FaultServer, tmp_path: Path
) -> None:
    old, new = os.urandom(20_000), os.urandom(21_000)
    old_url = fault_server.add("/a-1.rpm", old)
    new_url = fault_server.add("/a-2.rpm", new)
    unit = pad.UnitSpec("rpm", "a", {"name": "a"}, relative_path="a.rpm")
    async with engine_with() as engine:
        await engine.download(
            pad.DownloadRequest(
                old_url, expected_digests={"sha256": sha256(old)}, unit=unit, repository="r"
            )
        )
        before = await rows(engine)
    files_before = stored_files(tmp_path / "store")

    async with engine_with(*FAILING) as engine:
        with pytest.raises(pad.HookError):
            # Another file under the same relative path of the same unit: a transfer.
            await engine.download(
                pad.DownloadRequest(
                    new_url, expected_digests={"sha256": sha256(new)}, unit=unit, repository="r"
                )
            )
        after = await rows(engine)
        assert engine.catalog is not None
        kept = await engine.catalog.get_unit("rpm", "a")

    assert after == before
    assert kept is not None and dict(kept.files) == {"a.rpm": sha256(old)}
    assert stored_files(tmp_path / "store") == files_before  # the new artifact is removed
    assert staging(tmp_path / "store") == []


async def test_failed_fetch_of_a_registered_file_leaves_it_registered(
    engine_with: Engines, fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    url = fault_server.add("/lazy.rpm", data)
    request = pad.DownloadRequest(
        url,
        expected_digests={"sha256": sha256(data)},
        expected_size=len(data),
        unit=pad.UnitSpec("rpm", "lazy", {}),
        repository="r",
    )
    async with engine_with(*FAILING) as engine:
        await engine.register(request)
        before = await rows(engine)
        with pytest.raises(pad.HookError):
            await engine.fetch(sha256(data))
        with pytest.raises(pad.HookError):
            await engine.download(request)
        after = await rows(engine)
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(data))

    assert after == before
    assert record is not None and record.location is None and record.verified_at is None
    assert stored_files(tmp_path / "store") == {}
    assert len(fault_server.requests_for("/lazy.rpm")) == 2


async def test_heal_whose_hook_fails_keeps_the_healed_bytes_and_the_old_record(
    engine_with: Engines, fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(25_000)
    url = fault_server.add("/h.rpm", data)
    async with engine_with() as engine:
        first = await engine.download(url, expected_digests={"sha256": sha256(data)})
        before = await rows(engine)
    assert first.path is not None
    with first.path.open("r+b") as fh:
        fh.truncate(100)

    async with engine_with(*FAILING) as engine:
        with pytest.raises(pad.HookError):
            await engine.download(url, expected_digests={"sha256": sha256(data)})
        after = await rows(engine)

    assert after == before
    # The validated transfer replaced the damaged file before the hook failed: its bytes are
    # the right ones, under the key the record names, so they stay.
    assert first.path.read_bytes() == data
    assert staging(tmp_path / "store") == []


async def test_undo_leaves_what_another_writer_added_meanwhile(
    make_catalog: Callable[[], Catalog],
) -> None:
    digest = "ab" * 32
    first = pad.Source("https://a.example/f")
    mine = pad.Source("https://mine.example/f")
    theirs = pad.Source("https://theirs.example/f")
    record = pad.UnitFile(sha256=digest, size=3, digests={}, location="ab/x", sources=(first,))
    async with make_catalog() as catalog:
        await catalog.record_unit_file(record)
        await catalog.save_unit(pad.UnitSpec("t", "k", {"a": 1}), digest, "repo")
        log: list[Any] = []
        await catalog.record_unit_file(
            pad.UnitFile(sha256=digest, size=3, digests={}, location="ab/x", sources=(mine,)),
            undo_log=log,
        )
        await catalog.save_unit(pad.UnitSpec("t", "k", {"b": 2}), digest, "mine", undo_log=log)
        # Another worker, between this download's writes and its rollback:
        await catalog.record_unit_file(
            pad.UnitFile(sha256=digest, size=3, digests={}, location="ab/x", sources=(theirs,))
        )
        await catalog.save_unit(pad.UnitSpec("t", "k", {}), digest, "theirs")

        await catalog.undo(log)

        kept = await catalog.get_unit_file(digest)
        unit = await catalog.get_unit("t", "k")
    assert kept is not None and kept.sources == (first, theirs)
    assert unit is not None and dict(unit.metadata) == {"a": 1}
    assert unit.repositories == ("repo", "theirs")


async def test_failed_file_is_counted_once_as_failed_in_the_progress_reports(
    make_catalog: Callable[[], Catalog], fault_server: FaultServer, tmp_path: Path
) -> None:
    good, bad = os.urandom(5_000), os.urandom(6_000)
    good_url = fault_server.add("/good.rpm", good)
    bad_url = fault_server.add("/bad.rpm", bad)
    reports: list[pad.ProgressReport] = []

    async def refuse_bad(ctx: pad.DownloadContext) -> None:
        if ctx.url == bad_url:
            raise RuntimeError("refused")

    cfg = pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"),
        catalog=make_catalog(),
        remotes=[pad.RemoteConfig(retry=NO_RETRY)],
        hooks=[*pad.DEFAULT_HOOKS, refuse_bad],
        progress=reports.append,
    )
    async with pad.DownloadEngine(cfg) as engine:
        outcomes = await engine.download_many([good_url, bad_url], return_exceptions=True)
    assert isinstance(outcomes[0], pad.DownloadResult) and isinstance(outcomes[1], pad.HookError)
    final = reports[-1]
    assert (final.total, final.done, final.failed) == (2, 1, 1)
    assert final.bytes_done == len(good)


async def test_download_cancelled_while_its_record_commits_leaves_nothing(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """The record write is in the writer's transaction when the download is cancelled: it
    commits anyway, and the rollback that follows the cancellation must undo it."""
    data = os.urandom(40_000)
    sha = sha256(data)
    url = fault_server.add("/repo/c.rpm", data)
    path = tmp_path / "catalog.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    committing = asyncio.Event()

    class Observed(SQLiteCatalog):
        async def _commit(self, conn: Any, batch: list[Any]) -> None:
            if other.in_transaction:
                committing.set()  # a write goes into the transaction the lock holds up
            await super()._commit(conn, batch)

    catalog = Observed(path, busy_timeout=30)
    storage = pad.LocalStorage(tmp_path / "store")

    async def another_writer_takes_the_lock(ctx: pad.DownloadContext) -> None:
        await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")

    store, record, *rest = pad.DEFAULT_HOOKS
    config = pad.EngineConfig(
        storage=storage,
        catalog=catalog,
        remotes=[pad.RemoteConfig(retry=NO_RETRY)],
        hooks=[store, another_writer_takes_the_lock, record, *rest],
    )
    try:
        async with pad.DownloadEngine(config) as engine:
            task = asyncio.create_task(
                engine.download(url, expected_digests={"sha256": sha}, expected_size=len(data))
            )
            # Stored, and the record write taken by the catalog's writer (blocked on the lock).
            await asyncio.wait_for(committing.wait(), 10)
            assert not task.done()
            task.cancel()
            await asyncio.to_thread(other.rollback)  # the record write now commits
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await catalog.get_unit_file(sha) is None
            assert all(not v for v in (await rows(engine)).values())
    finally:
        other.close()
    assert stored_files(tmp_path / "store") == {}
    assert staging(tmp_path / "store") == []
