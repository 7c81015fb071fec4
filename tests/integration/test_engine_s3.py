"""The engine end to end with S3Storage on a real moto S3 server and a FaultServer origin."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import make_engine, until
from plugins.s3 import s3_client
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.errors import DigestMismatch
from pulp_aio_download.storage.base import artifact_key
from pulp_aio_download.storage.s3 import S3Storage
from pulp_aio_download.testing import Fault, FaultServer

PREFIX = "pulp/artifacts"


def make_storage(s3_bucket: tuple[str, str], tmp_path: Path) -> S3Storage:
    endpoint, bucket = s3_bucket
    return S3Storage(
        bucket, prefix=PREFIX, endpoint_url=endpoint, staging_root=tmp_path / "staging"
    )


def s3_engine(s3_bucket: tuple[str, str], tmp_path: Path) -> pad.DownloadEngine:
    """An engine on the bucket and a SQLite catalog in ``tmp_path`` (a second one built
    later is another process's view of the same state)."""
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite3")
    return make_engine(tmp_path, storage=make_storage(s3_bucket, tmp_path), catalog=catalog)


@pytest.fixture
async def engine(s3_bucket: tuple[str, str], tmp_path: Path) -> AsyncIterator[pad.DownloadEngine]:
    async with s3_engine(s3_bucket, tmp_path) as engine:
        yield engine


async def objects(s3_bucket: tuple[str, str]) -> dict[str, bytes]:
    endpoint, bucket = s3_bucket
    found: dict[str, bytes] = {}
    async with s3_client(endpoint) as client:
        listing = await client.list_objects_v2(Bucket=bucket)
        for obj in listing.get("Contents", []):
            response = await client.get_object(Bucket=bucket, Key=obj["Key"])
            async with response["Body"] as body:
                found[obj["Key"]] = await body.read()
    return found


def staged_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "staging"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def payload(name: str, size: int = 50_000) -> tuple[bytes, str]:
    data = (name.encode() * (size // len(name) + 1))[:size] + os.urandom(16)
    return data, hashlib.sha256(data).hexdigest()


async def test_download_to_s3(
    engine: pad.DownloadEngine,
    fault_server: FaultServer,
    s3_bucket: tuple[str, str],
    tmp_path: Path,
) -> None:
    data, sha = payload("a")
    url = fault_server.add("/repo/a.bin", data)

    result = await engine.download(url, expected_digests={"sha256": sha}, expected_size=len(data))

    key = f"{PREFIX}/{artifact_key(sha)}"
    assert result.location == f"s3://{s3_bucket[1]}/{key}"
    assert result.path is None
    assert (result.size, result.digests["sha256"], result.cached) == (len(data), sha, False)
    assert await objects(s3_bucket) == {key: data}
    assert engine.catalog is not None
    record = await engine.catalog.get_unit_file(sha)
    assert record is not None
    assert (record.location, record.size) == (result.location, len(data))
    assert [s.url for s in record.sources] == [url]
    assert staged_files(tmp_path) == []


async def test_digest_mismatch_leaves_no_object(
    engine: pad.DownloadEngine,
    fault_server: FaultServer,
    s3_bucket: tuple[str, str],
    tmp_path: Path,
) -> None:
    data, sha = payload("bad")
    url = fault_server.add("/repo/bad.bin", data, faults=Fault(flip_byte=100))

    with pytest.raises(DigestMismatch) as caught:
        await engine.download(url, expected_digests={"sha256": sha}, expected_size=len(data))

    assert caught.value.expected == sha
    assert caught.value.actual != sha
    assert await objects(s3_bucket) == {}
    assert staged_files(tmp_path) == []
    assert engine.catalog is not None
    assert await engine.catalog.get_unit_file(sha) is None


async def test_second_request_is_served_from_s3_without_origin_request(
    fault_server: FaultServer, s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    data, sha = payload("c")
    url = fault_server.add("/repo/c.bin", data)
    async with s3_engine(s3_bucket, tmp_path) as engine:
        first = await engine.download(url, expected_digests={"sha256": sha})
    assert fault_server.stats("/repo/c.bin").requests == 1

    # A new engine (as another process would): the object in the bucket serves it.
    async with s3_engine(s3_bucket, tmp_path) as engine:
        second = await engine.download(url, expected_digests={"sha256": sha})

    assert fault_server.stats("/repo/c.bin").requests == 1
    assert second.cached is True
    assert (second.location, second.path, second.size) == (first.location, None, len(data))
    assert second.digests["sha256"] == sha


async def test_verify_and_repair_with_s3(
    engine: pad.DownloadEngine,
    fault_server: FaultServer,
    s3_bucket: tuple[str, str],
) -> None:
    files = {name: payload(name) for name in ("good", "rotten", "lost")}
    for name, (data, sha) in files.items():
        url = fault_server.add(f"/repo/{name}.bin", data)
        await engine.download(url, expected_digests={"sha256": sha}, expected_size=len(data))
    endpoint, bucket = s3_bucket
    key = {name: f"{PREFIX}/{artifact_key(sha)}" for name, (_, sha) in files.items()}
    async with s3_client(endpoint) as client:
        await client.put_object(Bucket=bucket, Key=key["rotten"], Body=b"bit rot")
        await client.delete_object(Bucket=bucket, Key=key["lost"])

    report = await engine.verify(repair=True)

    sha = {name: s for name, (_, s) in files.items()}
    assert report.checked == 3
    assert report.ok == 1
    assert report.corrupt == (sha["rotten"],)
    assert report.missing == (sha["lost"],)
    assert report.repaired == tuple(sorted([sha["rotten"], sha["lost"]]))
    assert report.clean
    stored = await objects(s3_bucket)
    for name, (data, _) in files.items():
        assert stored[key[name]] == data
    assert stored[f"{PREFIX}/quarantine/{artifact_key(sha['rotten'])}"] == b"bit rot"
    for name in ("rotten", "lost"):
        assert fault_server.stats(f"/repo/{name}.bin").requests == 2
    assert fault_server.stats("/repo/good.bin").requests == 1

    again = await engine.verify()
    assert (again.checked, again.ok, again.corrupt, again.missing) == (3, 3, (), ())


async def test_interrupted_large_download_resumes_into_s3(
    s3_bucket: tuple[str, str], fault_server: FaultServer, tmp_path: Path
) -> None:
    """The partial lives in local staging beside the S3 staging directory; a new engine
    continues it with Range and uploads the whole, validated file."""
    data = os.urandom(6 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    url = fault_server.add("/big.iso", data, faults=[Fault(trickle=4 * 1024 * 1024)])
    partials = tmp_path / "staging" / f"pulp-aio-download-partials-{os.getuid()}"
    part = partials / f"sha256-{sha}.part"
    async with s3_engine(s3_bucket, tmp_path) as first:
        task = asyncio.ensure_future(first.download(url, expected_digests={"sha256": sha}))
        await until(lambda: task.done() or part.with_suffix(".json").exists())
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    kept = part.stat().st_size
    assert kept > 0
    assert f"{PREFIX}/{artifact_key(sha)}" not in await objects(s3_bucket)
    async with s3_engine(s3_bucket, tmp_path) as second:
        result = await second.download(url, expected_digests={"sha256": sha})
    assert fault_server.requests_for("/big.iso")[1].headers["Range"] == f"bytes={kept}-"
    assert result.location == f"s3://{s3_bucket[1]}/{PREFIX}/{artifact_key(sha)}"
    assert (await objects(s3_bucket))[f"{PREFIX}/{artifact_key(sha)}"] == data
    assert list(partials.iterdir()) == []
    assert staged_files(tmp_path) == []
