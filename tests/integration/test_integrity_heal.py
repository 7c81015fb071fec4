"""A damaged stored artifact is never served: a validated transfer replaces it (issue 11.1).

Real FaultServer origin, bytes on disk (LocalStorage) or in a moto S3 server (S3Storage),
a real SQLite catalog.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from plugins.s3 import s3_client
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.storage.base import artifact_key
from pulp_aio_download.storage.s3 import MIN_PART_SIZE, S3Storage
from pulp_aio_download.testing import FaultServer


def config(tmp_path: Path, **kwargs: object) -> pad.EngineConfig:
    return pad.EngineConfig(
        data_dir=tmp_path / "data", remotes=[pad.RemoteConfig(retry=NO_RETRY)], **kwargs
    )  # type: ignore[arg-type]


def staged(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "data" / "artifacts" / ".staging").iterdir())


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(size)


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


async def verified_long_ago(engine: pad.DownloadEngine, sha: str) -> None:
    """Date the last verification back an hour, so that a change made now is later than it
    for certain (ctimes come from the kernel's coarse clock, a few ms behind ours)."""
    assert engine.catalog is not None
    await engine.catalog.mark_verified(sha, datetime.now(timezone.utc) - timedelta(hours=1))


async def record_of(engine: pad.DownloadEngine, sha: str) -> pad.UnitFile:
    assert engine.catalog is not None
    record = await engine.catalog.get_unit_file(sha)
    assert record is not None
    return record


@pytest.mark.parametrize("expected_size", [True, False], ids=["with-size", "sha256-only"])
async def test_truncated_artifact_is_replaced_by_the_validated_transfer(
    fault_server: FaultServer, tmp_path: Path, expected_size: bool
) -> None:
    data = os.urandom(200_000)
    sha = sha256(data)
    url = fault_server.add("/a.bin", data)
    size = {"expected_size": len(data)} if expected_size else {}
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        first = await engine.download(url, expected_digests={"sha256": sha}, **size)
        before = await record_of(engine, sha)
        assert first.path is not None
        truncate(first.path, 1000)

        healed = await engine.download(url, expected_digests={"sha256": sha}, **size)
        after = await record_of(engine, sha)
        again = await engine.download(url, expected_digests={"sha256": sha}, **size)

    assert healed.cached is False and healed.path == first.path
    assert healed.path is not None and healed.path.read_bytes() == data
    assert sha256(healed.path.read_bytes()) == healed.digests["sha256"] == sha
    assert len(fault_server.requests_for("/a.bin")) == 2  # the heal transferred; then cached
    assert again.cached is True and again.path == first.path
    # The record is the one of the first download, verified again by the heal.
    assert after.location == before.location == artifact_key(sha)
    assert after.size == len(data) and after.created_at == before.created_at
    assert after.created_at is not None and after.verified_at is not None
    assert before.verified_at is not None and after.verified_at > before.verified_at
    assert after.verified_at >= after.created_at
    assert staged(tmp_path) == []


async def test_byte_flipped_in_place_is_rehashed_and_replaced(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    sha = sha256(data)
    url = fault_server.add("/f.bin", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        first = await engine.download(
            url, expected_digests={"sha256": sha}, expected_size=len(data)
        )
        assert first.path is not None
        await verified_long_ago(engine, sha)
        flip(first.path, 4321)  # same size: only a re-hash can tell
        assert first.path.stat().st_size == len(data)

        healed = await engine.download(
            url, expected_digests={"sha256": sha}, expected_size=len(data)
        )
        after = await record_of(engine, sha)

    assert healed.cached is False
    assert healed.path is not None and healed.path.read_bytes() == data
    assert after.verified_at is not None and after.created_at is not None
    assert after.verified_at >= after.created_at
    assert len(fault_server.requests_for("/f.bin")) == 2


async def test_file_touched_but_intact_is_rehashed_and_served_from_the_store(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    sha = sha256(data)
    url = fault_server.add("/t.bin", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        first = await engine.download(url, expected_digests={"sha256": sha})
        assert first.path is not None
        await verified_long_ago(engine, sha)
        os.chmod(first.path, 0o600)  # a change of the inode (ctime), not of the bytes
        changed = first.path.stat().st_ctime

        served = await engine.download(url, expected_digests={"sha256": sha})
        record = await record_of(engine, sha)

    assert served.cached is True and served.path == first.path
    assert first.path.read_bytes() == data
    assert len(fault_server.requests_for("/t.bin")) == 1
    # Marked verified by the re-hash, so the next hit needs none.
    assert record.verified_at is not None and record.verified_at.timestamp() >= changed


async def test_damaged_artifact_without_catalog_is_replaced(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(30_000)
    sha = sha256(data)
    url = fault_server.add("/n.bin", data)
    storage = pad.LocalStorage(tmp_path / "store")
    cfg = pad.EngineConfig(storage=storage, remotes=[pad.RemoteConfig(retry=NO_RETRY)])
    async with pad.DownloadEngine(cfg) as engine:
        first = await engine.download(url, expected_digests={"sha256": sha})
        assert first.path is not None
        truncate(first.path, 10)
        healed = await engine.download(
            url, expected_digests={"sha256": sha}, expected_size=len(data)
        )
    assert healed.cached is False and healed.path is not None
    assert healed.path.read_bytes() == data


async def test_local_commit_replaces_what_is_under_the_key(tmp_path: Path) -> None:
    data = b"validated bytes" * 1000
    sha = sha256(data)
    storage = pad.LocalStorage(tmp_path / "store", durability="file")
    await storage.open()
    try:
        final = storage.path_of(sha)
        final.parent.mkdir(parents=True)
        final.write_bytes(data[:-1] + b"!")  # same size, other bytes
        reader = final.open("rb")  # a reader of the damaged file keeps reading it whole
        part = storage.new_staging_path()
        part.write_bytes(data)

        stored = await storage.commit(part, sha, len(data))

        assert (stored.created, stored.replaced) == (False, True)
        assert final.read_bytes() == data and not part.exists()
        assert reader.read() == data[:-1] + b"!"
        reader.close()
        fresh = storage.new_staging_path()
        fresh.write_bytes(b"x")
        created = await storage.commit(fresh, sha256(b"x"), 1)
        assert (created.created, created.replaced) == (True, False)
    finally:
        await storage.close()


# -- S3 -------------------------------------------------------------------------------------

PREFIX = "heal"


def s3_storage(s3_bucket: tuple[str, str], tmp_path: Path, **kwargs: object) -> S3Storage:
    endpoint, bucket = s3_bucket
    return S3Storage(
        bucket,
        prefix=PREFIX,
        endpoint_url=endpoint,
        staging_root=tmp_path / "staging",
        **kwargs,  # type: ignore[arg-type]
    )


async def s3_object(s3_bucket: tuple[str, str], key: str) -> bytes:
    endpoint, bucket = s3_bucket
    async with s3_client(endpoint) as client:
        response = await client.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
    return data


async def put_object(s3_bucket: tuple[str, str], key: str, data: bytes) -> None:
    endpoint, bucket = s3_bucket
    async with s3_client(endpoint) as client:
        await client.put_object(Bucket=bucket, Key=key, Body=data)


async def test_s3_truncated_object_is_replaced_by_the_validated_transfer(
    fault_server: FaultServer, s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    data = os.urandom(120_000)
    sha = sha256(data)
    key = f"{PREFIX}/{artifact_key(sha)}"
    url = fault_server.add("/s3.bin", data)
    cfg = pad.EngineConfig(
        storage=s3_storage(s3_bucket, tmp_path),
        catalog=SQLiteCatalog(tmp_path / "catalog.sqlite3"),
        remotes=[pad.RemoteConfig(retry=NO_RETRY)],
    )
    async with pad.DownloadEngine(cfg) as engine:
        first = await engine.download(
            url, expected_digests={"sha256": sha}, expected_size=len(data)
        )
        before = await record_of(engine, sha)
        await put_object(s3_bucket, key, data[:5000])  # damaged behind the engine's back

        healed = await engine.download(
            url, expected_digests={"sha256": sha}, expected_size=len(data)
        )
        after = await record_of(engine, sha)
        again = await engine.download(url, expected_digests={"sha256": sha})

    assert healed.cached is False and healed.location == first.location
    assert await s3_object(s3_bucket, key) == data
    assert again.cached is True
    assert len(fault_server.requests_for("/s3.bin")) == 2
    assert after.location == before.location and after.created_at == before.created_at
    assert after.verified_at is not None and before.verified_at is not None
    assert after.created_at is not None and after.verified_at >= after.created_at
    assert after.verified_at > before.verified_at
    assert list((tmp_path / "staging").rglob("*.part")) == []


@pytest.mark.parametrize("size", [70_000, 2 * MIN_PART_SIZE + 12_345], ids=["put", "multipart"])
async def test_s3_commit_keeps_identical_bytes_and_replaces_other_bytes(
    s3_bucket: tuple[str, str], tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    sha = sha256(data)
    key = f"{PREFIX}/{artifact_key(sha)}"
    storage = s3_storage(s3_bucket, tmp_path, part_size=MIN_PART_SIZE)
    async with storage:

        async def commit() -> tuple[bool, bool]:
            part = storage.new_staging_path()
            part.write_bytes(data)
            stored = await storage.commit(part, sha, size)
            assert not part.exists()
            return stored.created, stored.replaced

        assert await commit() == (True, False)
        # Uploaded by us (whole or in parts): the ETag proves the bytes identical.
        assert await commit() == (False, False)
        damaged = bytearray(data)
        damaged[size // 2] ^= 0xFF
        await put_object(s3_bucket, key, bytes(damaged))  # same size, other bytes
        assert await commit() == (False, True)
        assert await s3_object(s3_bucket, key) == data
