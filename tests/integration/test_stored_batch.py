"""A batch of files already stored (issue 14, item 2): looked up by chunks, not per file.

A re-sync asks storage and the catalog about a chunk of files at once; what it finds is
served with every check of the per-file path (damaged, changed since verified), records
gain what a manifest brings new, units are created, progress counts every file, and a
re-sync that brings nothing new writes nothing. Real FaultServer origin, bytes on disk,
a real SQLite catalog.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from pulp_aio_download import lookup
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.testing import FaultServer

FILES = 40
CHUNK = 16  # three chunks of the batch


class CountingCatalog(SQLiteCatalog):
    """A real SQLite catalog that counts its per-file and batch reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.single_reads = 0
        self.batch_reads: list[int] = []

    async def get_unit_file(self, sha256: str) -> pad.UnitFile | None:
        self.single_reads += 1
        return await super().get_unit_file(sha256)

    async def get_unit_files(self, sha256s: Iterable[str]) -> dict[str, pad.UnitFile]:
        wanted = list(sha256s)
        self.batch_reads.append(len(wanted))
        return await super().get_unit_files(wanted)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookup, "CHUNK", CHUNK)


def corpus(server: FaultServer, count: int = FILES) -> list[tuple[str, bytes]]:
    files = []
    for i in range(count):
        data = os.urandom(1000 + i)
        files.append((server.add(f"/repo/{i}.bin", data), data))
    return files


def requests(files: list[tuple[str, bytes]], **kwargs: object) -> list[pad.DownloadRequest]:
    return [
        pad.DownloadRequest(
            url, expected_digests={"sha256": sha256(data)}, expected_size=len(data), **kwargs
        )  # type: ignore[arg-type]
        for url, data in files
    ]


def config(
    tmp_path: Path, catalog: SQLiteCatalog, reports: list[pad.ProgressReport]
) -> pad.EngineConfig:
    return pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"),
        catalog=catalog,
        remotes=[pad.RemoteConfig(retry=NO_RETRY)],
        progress=reports.append,
    )


def fetched(server: FaultServer) -> int:
    return sum(1 for r in server.requests if r.path.startswith("/repo/"))


async def test_a_resync_of_a_stored_batch_reads_by_chunks_and_writes_nothing(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = corpus(fault_server)
    catalog = CountingCatalog(tmp_path / "catalog.sqlite3")
    async with pad.DownloadEngine(config(tmp_path, catalog, [])) as engine:
        first = await engine.download_many(requests(files))
    assert fetched(fault_server) == FILES and not any(r.cached for r in first)
    assert catalog.single_reads == 0

    # The re-sync, as a new process would run it.
    catalog = CountingCatalog(tmp_path / "catalog.sqlite3")
    reports: list[pad.ProgressReport] = []
    async with pad.DownloadEngine(config(tmp_path, catalog, reports)) as engine:
        again = await engine.download_many(requests(files))
        assert catalog.writes == 0  # nothing new: nothing written

    assert fetched(fault_server) == FILES  # no request
    assert all(r.cached for r in again)
    assert [r.path for r in again] == [r.path for r in first]
    assert [r.digests for r in again] == [r.digests for r in first]
    assert catalog.batch_reads == [CHUNK, CHUNK, FILES - 2 * CHUNK]
    assert catalog.single_reads == 0  # not one read per file
    final = reports[-1]
    assert (final.state, final.total, final.done, final.cached) == (
        "completed",
        FILES,
        FILES,
        FILES,
    )
    assert final.bytes_transferred == 0


async def test_damaged_files_of_a_stored_batch_are_transferred_again(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = corpus(fault_server)
    catalog = CountingCatalog(tmp_path / "catalog.sqlite3")
    reports: list[pad.ProgressReport] = []
    async with pad.DownloadEngine(config(tmp_path, catalog, reports)) as engine:
        first = await engine.download_many(requests(files))
        paths = [r.path for r in first]
        assert all(p is not None for p in paths)
        truncated, flipped, touched, removed = 3, 17, 20, 35
        for index in (flipped, touched):
            # The last verification an hour ago: a change made now is later for certain.
            await catalog.mark_verified(
                sha256(files[index][1]), datetime.now(timezone.utc) - timedelta(hours=1)
            )
        with open(paths[truncated], "r+b") as fh:  # type: ignore[arg-type]
            fh.truncate(10)
        with open(paths[flipped], "r+b") as fh:  # type: ignore[arg-type]
            fh.seek(100)
            byte = fh.read(1)
            fh.seek(100)
            fh.write(bytes([byte[0] ^ 0xFF]))  # same size: only a re-hash tells
        os.chmod(paths[touched], 0o600)  # changed (ctime), bytes intact  # type: ignore[arg-type]
        os.unlink(paths[removed])  # type: ignore[arg-type]

        again = await engine.download_many(requests(files))
        touched_record = await catalog.get_unit_file(sha256(files[touched][1]))

    damaged = {truncated, flipped, removed}
    assert [i for i, r in enumerate(again) if not r.cached] == sorted(damaged)
    assert fetched(fault_server) == FILES + len(damaged)
    for (_, data), result in zip(files, again, strict=True):
        assert result.path is not None and result.path.read_bytes() == data
    # The intact file was re-hashed and marked verified: the next hit needs no re-hash.
    assert touched_record is not None and touched_record.verified_at is not None
    assert touched_record.verified_at > datetime.now(timezone.utc) - timedelta(minutes=5)
    final = reports[-1]
    assert (final.done, final.cached, final.failed) == (FILES, FILES - len(damaged), 0)


async def test_a_resync_records_new_sources_and_creates_units(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = corpus(fault_server, 20)
    mirror = [
        (fault_server.add(f"/mirror/{i}.bin", data), data) for i, (_, data) in enumerate(files)
    ]
    catalog = CountingCatalog(tmp_path / "catalog.sqlite3")
    reports: list[pad.ProgressReport] = []
    async with pad.DownloadEngine(config(tmp_path, catalog, reports)) as engine:
        await engine.download_many(requests(files))
        # The same files, now with a second source each, a unit and a repository.
        brought = [
            pad.DownloadRequest(
                sources=[pad.Source(url), pad.Source(other, priority=-1, remote="default")],
                expected_digests={"sha256": sha256(data)},
                expected_size=len(data),
                unit=pad.UnitSpec("file", f"f{i}", metadata={"n": i}),
                repository="repo-1",
            )
            for i, ((url, data), (other, _)) in enumerate(zip(files, mirror, strict=True))
        ]
        again = await engine.download_many(brought)
        records = await catalog.get_unit_files(sha256(data) for _, data in files)
        units = await catalog.repository_units("repo-1")
        writes = catalog.writes
        third = await engine.download_many(requests(files))
        assert catalog.writes == writes  # the third brought nothing new
        # The same units again: known entirely, nothing written, each result has its unit.
        same = await engine.download_many(brought)
        assert catalog.writes == writes
        assert [r.unit for r in same] == [r.unit for r in again]
        # One unit gains metadata and one joins a second repository: those two are saved.
        changed = list(brought)
        changed[4] = dataclasses.replace(
            brought[4], unit=pad.UnitSpec("file", "f4", metadata={"n": 4, "arch": "noarch"})
        )
        changed[5] = dataclasses.replace(brought[5], repository="repo-2")
        await engine.download_many(changed)
        assert catalog.writes == writes + 2
        unit4 = await catalog.get_unit("file", "f4")
        assert unit4 is not None and unit4.metadata == {"n": 4, "arch": "noarch"}
        assert [u.key for u in await catalog.repository_units("repo-2")] == ["f5"]

    assert all(r.cached for r in again) and all(r.cached for r in third)
    assert fetched(fault_server) == 20 and not any(
        r.path.startswith("/mirror/") for r in fault_server.requests
    )
    for (url, data), (other, _) in zip(files, mirror, strict=True):
        record = records[sha256(data)]
        assert [s.url for s in record.sources] == [url, other]
        assert record.sources[1].remote == "default"
    assert [u.key for u in units] == sorted(f"f{i}" for i in range(20))
    assert all(u.repositories == ("repo-1",) for u in units)
    assert {u.key: u.files for u in units}["f3"] == {"f3": sha256(files[3][1])}
    assert [r.unit.key if r.unit else None for r in again] == [f"f{i}" for i in range(20)]


class FailingLookups(CountingCatalog):
    """A catalog whose batch reads fail: each file is then asked about alone."""

    async def get_unit_files(self, sha256s: Iterable[str]) -> dict[str, pad.UnitFile]:
        raise pad.CatalogError("the batch read failed", catalog="test")


async def test_a_failed_lookup_falls_back_on_one_file_at_a_time(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = corpus(fault_server, 20)
    catalog = FailingLookups(tmp_path / "catalog.sqlite3")
    reports: list[pad.ProgressReport] = []
    async with pad.DownloadEngine(config(tmp_path, catalog, reports)) as engine:
        await engine.download_many(requests(files))
        reads = catalog.single_reads
        again = await engine.download_many(requests(files))
        assert catalog.single_reads == reads + 20
    assert all(r.cached for r in again)
    assert fetched(fault_server) == 20
