"""Disk faults: the storage directory sits on a 2 MiB tmpfs that fills up mid-batch.

The files that no longer fit fail with :class:`StorageError`, the others complete, no
partial artifact or staging file is left, and the catalog (kept on another filesystem)
matches storage: every recorded location exists and re-hashes to its sha256.

Mounting needs root; elsewhere the tests are skipped with a message.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pulp_aio_download as pad
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.storage.local import LocalStorage
from pulp_aio_download.testing import FaultServer

if sys.version_info >= (3, 11):
    from asyncio import timeout as bound
else:  # pragma: no cover - Python 3.10: aiohttp depends on async-timeout there
    from async_timeout import timeout as bound

CAPACITY = 2 * 1024 * 1024


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-capped tmpfs needs root and mount(8)")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={CAPACITY},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


def artifacts(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and not {".staging", ".quarantine"} & set(p.parts)
    )


async def check_catalog_matches_storage(catalog: SQLiteCatalog, storage: LocalStorage) -> int:
    """Every recorded unit file with a location exists and re-hashes right; no artifact
    is unrecorded. Returns the number of recorded files."""
    recorded = set()
    async for record in catalog.unit_files():
        if record.location is None:
            continue
        recorded.add(record.sha256)
        path = storage.path_of(record.sha256)
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == record.sha256
        assert len(data) == record.size
    on_disk = {p.parent.name + p.name for p in artifacts(storage.root)}
    assert on_disk == recorded
    return len(recorded)


async def test_disk_fills_mid_batch(tiny_fs: Path, tmp_path: Path) -> None:
    rng = random.Random(28)
    files = [rng.randbytes(300_000 + i) for i in range(12)]  # 3.6 MB for 2 MiB of room
    async with FaultServer(chunk_size=32 * 1024) as server:
        requests = []
        for i, data in enumerate(files):
            server.add(f"/f{i}", data)
            requests.append(
                pad.DownloadRequest(
                    server.url(f"/f{i}"),
                    expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                    expected_size=len(data),
                    unit=pad.UnitSpec("file", f"f{i}", relative_path=f"f{i}.bin"),
                    repository="tiny",
                )
            )
        storage = LocalStorage(tiny_fs / "store")
        catalog = SQLiteCatalog(tmp_path / "catalog.sqlite3")
        config = pad.EngineConfig(storage=storage, catalog=catalog, max_connections=4)
        async with pad.DownloadEngine(config) as engine:
            async with bound(30):
                results = await engine.download_many(requests, return_exceptions=True)

            ok = [r for r in results if isinstance(r, pad.DownloadResult)]
            failed = [r for r in results if not isinstance(r, pad.DownloadResult)]
            assert ok and failed, "the batch should both fill the disk and store some files"
            for error in failed:
                assert isinstance(error, pad.StorageError), repr(error)
                assert "No space left on device" in str(error)
            for data, result in zip(files, results, strict=True):
                if isinstance(result, pad.DownloadResult):
                    assert result.path is not None and result.path.read_bytes() == data
            assert sorted((tiny_fs / "store" / ".staging").iterdir()) == []
            assert len(artifacts(storage.root)) == len(ok)
            assert await check_catalog_matches_storage(catalog, storage) == len(ok)
            units = await catalog.repository_units("tiny")
            assert len(units) == len(ok)

            report = await engine.verify()
            assert report.clean and report.ok == len(ok)


async def test_rerun_after_space_is_freed_completes(tiny_fs: Path, tmp_path: Path) -> None:
    ballast = tiny_fs / "ballast"
    ballast.write_bytes(b"\0" * 1_300_000)
    rng = random.Random(29)
    files = [rng.randbytes(250_000 + i) for i in range(5)]  # ~750 KB of room: 2 or 3 fit
    async with FaultServer() as server:
        requests = []
        for i, data in enumerate(files):
            server.add(f"/g{i}", data)
            requests.append(
                pad.DownloadRequest(
                    server.url(f"/g{i}"),
                    expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                    expected_size=len(data),
                )
            )
        storage = LocalStorage(tiny_fs / "store")
        catalog = SQLiteCatalog(tmp_path / "catalog.sqlite3")
        config = pad.EngineConfig(storage=storage, catalog=catalog, max_connections=1)
        async with pad.DownloadEngine(config) as engine:
            first = await engine.download_many(requests, return_exceptions=True)
            assert any(isinstance(r, pad.StorageError) for r in first), first
            ballast.unlink()
            second = await engine.download_many(requests, return_exceptions=True)
            assert all(isinstance(r, pad.DownloadResult) for r in second), second
            assert [r.cached for r in second] == [isinstance(r, pad.DownloadResult) for r in first]
            for data, result in zip(files, second, strict=True):
                assert result.path is not None and result.path.read_bytes() == data
            assert sorted((tiny_fs / "store" / ".staging").iterdir()) == []
            assert await check_catalog_matches_storage(catalog, storage) == len(files)
