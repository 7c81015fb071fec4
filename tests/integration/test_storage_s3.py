"""S3Storage against a real moto S3 server process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from plugins.s3 import parts_held, s3_client
from pulp_aio_download.errors import ConfigError, DownloadError, StorageError
from pulp_aio_download.storage.base import artifact_key
from pulp_aio_download.storage.s3 import MIN_PART_SIZE, S3Storage

MiB = 1024 * 1024


@pytest.fixture
async def storage(s3_bucket: tuple[str, str], tmp_path: Path) -> AsyncIterator[S3Storage]:
    endpoint, bucket = s3_bucket
    s = S3Storage(
        bucket,
        prefix="pulp/artifacts",
        endpoint_url=endpoint,
        part_size=MIN_PART_SIZE,
        staging_root=tmp_path / "staging",
    )
    await s.open()
    yield s
    await s.close()


def stage(storage: S3Storage, data: bytes) -> tuple[Path, str]:
    path = storage.new_staging_path()
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def read_all(storage: S3Storage, sha256: str, chunk_size: int = 1024 * 1024) -> bytes:
    return b"".join([chunk async for chunk in storage.read(sha256, chunk_size)])


async def list_keys(endpoint: str, bucket: str) -> list[str]:
    async with s3_client(endpoint) as client:
        response = await client.list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in response.get("Contents", []))


async def pending_uploads(endpoint: str, bucket: str) -> list[str]:
    async with s3_client(endpoint) as client:
        response = await client.list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in response.get("Uploads", [])]


async def test_round_trip(storage: S3Storage, s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(300_000)
    staged, sha = stage(storage, data)

    stored = await storage.commit(staged, sha, len(data))

    key = f"pulp/artifacts/{artifact_key(sha)}"
    assert stored.location == f"s3://{bucket}/{key}"
    assert stored.path is None
    assert stored.size == len(data)
    assert not staged.exists()
    assert await list_keys(endpoint, bucket) == [key]
    st = await storage.stat(sha)
    assert st is not None
    assert (st.location, st.size) == (stored.location, len(data))
    assert await read_all(storage, sha, chunk_size=65536) == data
    # Chunks are bounded by chunk_size.
    assert max([len(c) async for c in storage.read(sha, 1000)]) <= 1000


async def test_empty_file(storage: S3Storage) -> None:
    staged, sha = stage(storage, b"")
    await storage.commit(staged, sha, 0)
    st = await storage.stat(sha)
    assert st is not None
    assert st.size == 0
    assert await read_all(storage, sha) == b""


async def test_multipart_upload(storage: S3Storage, s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(11 * MiB)
    staged, sha = stage(storage, data)

    stored = await storage.commit(staged, sha, len(data))

    assert not staged.exists()
    assert await read_all(storage, sha) == data
    async with s3_client(endpoint) as client:
        head = await client.head_object(Bucket=bucket, Key=storage.key_of(sha))
    # 11 MiB in 5 MiB parts: 3 parts, and S3 marks multipart objects with an ETag "…-3".
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == len(data) == stored.size
    assert await pending_uploads(endpoint, bucket) == []


async def test_single_part_at_part_size(storage: S3Storage, s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(MIN_PART_SIZE)
    staged, sha = stage(storage, data)
    await storage.commit(staged, sha, len(data))
    async with s3_client(endpoint) as client:
        head = await client.head_object(Bucket=bucket, Key=storage.key_of(sha))
    assert "-" not in head["ETag"]
    assert await read_all(storage, sha) == data


async def test_multipart_failure_aborts_and_stores_nothing(
    storage: S3Storage, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(7 * MiB)
    staged, sha = stage(storage, data)

    # The staged file is shorter than the size the engine validated: the first part is
    # uploaded, the second comes up short, and the upload must be aborted.
    with pytest.raises(StorageError, match=r"has 7340032 bytes, expected 11534336") as info:
        await storage.commit(staged, sha, 11 * MiB)

    assert bucket in str(info.value)
    assert not staged.exists()
    assert await list_keys(endpoint, bucket) == []
    assert await pending_uploads(endpoint, bucket) == []
    assert await storage.stat(sha) is None


async def test_multipart_of_a_longer_file_aborts_and_stores_nothing(
    storage: S3Storage, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(11 * MiB + 1)
    staged, sha = stage(storage, data)

    with pytest.raises(StorageError, match=r"the staged file is larger than 11534336 bytes"):
        await storage.commit(staged, sha, 11 * MiB)

    assert not staged.exists()
    assert await list_keys(endpoint, bucket) == []
    assert await pending_uploads(endpoint, bucket) == []
    assert await storage.stat(sha) is None


async def test_cancelled_multipart_upload_is_aborted(
    s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(11 * MiB)
    async with (
        parts_held(endpoint) as gateway,
        S3Storage(
            bucket,
            prefix="pulp/artifacts",
            endpoint_url=gateway.url,
            part_size=MIN_PART_SIZE,
            staging_root=tmp_path / "staging",
        ) as storage,
    ):
        staged, sha = stage(storage, data)
        task = asyncio.create_task(storage.commit(staged, sha, len(data)))
        # The first part reached the server and is held there: cancel mid-upload.
        await asyncio.wait_for(gateway.arrived.wait(), 30)
        assert await pending_uploads(endpoint, bucket) == [storage.key_of(sha)]
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await pending_uploads(endpoint, bucket) == []
        assert await storage.stat(sha) is None
    assert not staged.exists()


async def test_put_with_wrong_size_stores_nothing(
    storage: S3Storage, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    staged, sha = stage(storage, b"abc")
    with pytest.raises(StorageError, match="has 3 bytes, expected 4"):
        await storage.commit(staged, sha, 4)
    assert not staged.exists()
    assert await list_keys(endpoint, bucket) == []


async def test_commit_replaces_a_damaged_object(
    storage: S3Storage, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    data = b"same content" * 1000
    first, sha = stage(storage, data)
    stored1 = await storage.commit(first, sha, len(data))
    # Damage the stored object: a validated commit of the same key must heal it.
    async with s3_client(endpoint) as client:
        await client.put_object(Bucket=bucket, Key=storage.key_of(sha), Body=b"marker")

    second, _ = stage(storage, data)
    stored2 = await storage.commit(second, sha, len(data))

    assert stored2.location == stored1.location
    assert not second.exists()
    assert await read_all(storage, sha) == data
    assert await list_keys(endpoint, bucket) == [storage.key_of(sha)]


async def test_quarantine(storage: S3Storage, s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(4096)
    staged, sha = stage(storage, data)
    await storage.commit(staged, sha, len(data))

    await storage.quarantine(sha)

    assert await storage.stat(sha) is None
    target = f"pulp/artifacts/quarantine/{artifact_key(sha)}"
    assert storage.quarantine_key_of(sha) == target
    assert await list_keys(endpoint, bucket) == [target]
    async with s3_client(endpoint) as client:
        response = await client.get_object(Bucket=bucket, Key=target)
        async with response["Body"] as body:
            assert await body.read() == data
    # Quarantining what is not there is a no-op.
    await storage.quarantine(sha)


class SmallCopyS3Storage(S3Storage):
    copy_object_limit: ClassVar[int] = MIN_PART_SIZE


async def test_quarantine_large_object_copies_in_parts(
    s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(11 * MiB)
    async with SmallCopyS3Storage(
        bucket, endpoint_url=endpoint, part_size=MIN_PART_SIZE, staging_root=tmp_path
    ) as storage:
        staged, sha = stage(storage, data)
        await storage.commit(staged, sha, len(data))
        await storage.quarantine(sha)
        target = f"quarantine/{artifact_key(sha)}"
        assert await list_keys(endpoint, bucket) == [target]
        async with s3_client(endpoint) as client:
            head = await client.head_object(Bucket=bucket, Key=target)
            response = await client.get_object(Bucket=bucket, Key=target)
            async with response["Body"] as body:
                assert await body.read() == data
        assert head["ETag"].strip('"').endswith("-3")
        assert await pending_uploads(endpoint, bucket) == []


async def test_delete(storage: S3Storage, s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    staged, sha = stage(storage, b"to be deleted")
    await storage.commit(staged, sha, 13)
    assert await storage.stat(sha) is not None

    await storage.delete(sha)

    assert await storage.stat(sha) is None
    assert await list_keys(endpoint, bucket) == []
    await storage.delete(sha)  # missing: no error


async def test_digest_rehashes_stored_bytes(storage: S3Storage) -> None:
    data = os.urandom(3 * MiB + 17)
    staged, sha = stage(storage, data)
    await storage.commit(staged, sha, len(data))

    digests, size = await storage.digest(sha, ["sha256", "md5"]) or ({}, -1)

    assert size == len(data)
    assert digests == {"sha256": sha, "md5": hashlib.md5(data).hexdigest()}
    assert await storage.digest("0" * 64, ["sha256"]) is None


async def test_missing_object(storage: S3Storage, s3_bucket: tuple[str, str]) -> None:
    _, bucket = s3_bucket
    missing = "f" * 64
    assert await storage.stat(missing) is None
    with pytest.raises(StorageError, match="NoSuchKey") as info:
        await read_all(storage, missing)
    assert f"s3://{bucket}/pulp/artifacts/{artifact_key(missing)}" in str(info.value)


async def test_missing_bucket_is_a_storage_error(s3_server: str, s3_env: None) -> None:
    secret = "wJalrXUtnFEMI-very-secret-key"
    data = b"payload"
    async with S3Storage(
        "no-such-bucket-here",
        endpoint_url=s3_server,
        access_key_id="AKIAEXAMPLEKEYID",
        secret_access_key=secret,
        session_token="session-token-secret",
    ) as storage:
        staged, sha = stage(storage, data)
        with pytest.raises(StorageError) as info:
            await storage.commit(staged, sha, len(data))
        assert not staged.exists()
        with pytest.raises(StorageError) as deleted:
            await storage.delete(sha)
    for exc in (info.value, deleted.value):
        assert isinstance(exc, DownloadError)
        message = str(exc)
        assert "no-such-bucket-here" in message
        assert "NoSuchBucket" in message
        assert secret not in message
        assert "session-token-secret" not in message
        assert "AKIAEXAMPLEKEYID" not in message


async def test_unreachable_endpoint_is_a_storage_error(s3_env: None, tmp_path: Path) -> None:
    from botocore.config import Config

    # A loopback port nobody listens on (bound then closed), no retries.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with S3Storage(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{port}",
        client_config=Config(retries={"max_attempts": 0, "mode": "standard"}),
    ) as storage:
        with pytest.raises(StorageError, match="s3://bucket/"):
            await storage.stat("a" * 64)


def test_retries_default_to_standard_mode_unless_the_aws_variables_say(
    s3_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert S3Storage("bucket")._retries == {"mode": "standard", "max_attempts": 5}
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert S3Storage("bucket")._retries == {"mode": "adaptive", "total_max_attempts": 3}


async def test_aws_max_attempts_counts_every_request(
    s3_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_MAX_ATTEMPTS=2: the first request and one retry, then a StorageError."""
    from aiohttp import web

    seen: list[str] = []

    async def busy(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.Response(status=503, text="SlowDown")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", busy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        port = runner.addresses[0][1]
        storage = S3Storage(
            "bucket", endpoint_url=f"http://127.0.0.1:{port}", staging_root=tmp_path
        )
        async with storage:
            with pytest.raises(StorageError, match="s3://bucket/"):
                await storage.stat("a" * 64)
    finally:
        await runner.cleanup()
    assert seen == ["HEAD", "HEAD"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("AWS_MAX_ATTEMPTS", "0"), ("AWS_MAX_ATTEMPTS", "two"), ("AWS_RETRY_MODE", "eager")],
)
def test_invalid_aws_retry_variables(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"S3Storage: {name} must be .*{value!r}"):
        S3Storage("bucket")


async def test_staging_dir_lifecycle(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    endpoint, bucket = s3_bucket
    storage = S3Storage(bucket, endpoint_url=endpoint, staging_root=tmp_path / "stage")
    with pytest.raises(RuntimeError, match="not open"):
        storage.staging_dir()
    await storage.open()
    staging = storage.staging_dir()
    assert staging.is_dir()
    assert staging.parent == tmp_path / "stage"
    staged, sha = stage(storage, b"x")
    assert staged.parent == staging
    await storage.commit(staged, sha, 1)
    await storage.close()
    assert not staging.exists()


async def test_open_removes_staging_of_dead_processes(
    s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = s3_bucket
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f"pulp-aio-download-s3-{host}-{dead.pid}-abc"
    alive = tmp_path / f"pulp-aio-download-s3-{host}-{os.getppid()}-def"
    other = tmp_path / "unrelated"
    for d in (stale, alive, other):
        d.mkdir()
        (d / "x.part").write_bytes(b"partial")
    async with S3Storage(bucket, endpoint_url=endpoint, staging_root=tmp_path) as storage:
        assert storage.staging_dir().name.startswith(f"pulp-aio-download-s3-{host}-{os.getpid()}-")
        assert not stale.exists()
        assert (alive / "x.part").exists()
        assert (other / "x.part").exists()


async def test_concurrent_commits_of_the_same_artifact(
    storage: S3Storage, s3_bucket: tuple[str, str]
) -> None:
    endpoint, bucket = s3_bucket
    data = os.urandom(100_000)
    staged = [stage(storage, data) for _ in range(4)]
    results = await asyncio.gather(*(storage.commit(p, sha, len(data)) for p, sha in staged))
    assert len({r.location for r in results}) == 1
    assert all(not p.exists() for p, _ in staged)
    assert await list_keys(endpoint, bucket) == [storage.key_of(staged[0][1])]
    assert await read_all(storage, staged[0][1]) == data


async def test_explicit_credentials_are_never_logged(
    s3_bucket: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint, bucket = s3_bucket
    secrets = ("AKIAEXAMPLEKEYID", "very-secret-key", "session-token-secret")
    caplog.set_level(logging.DEBUG, logger="pulp_aio_download")
    async with S3Storage(
        bucket,
        endpoint_url=endpoint,
        access_key_id=secrets[0],
        secret_access_key=secrets[1],
        session_token=secrets[2],
        part_size=MIN_PART_SIZE,
        staging_root=tmp_path,
    ) as storage:
        for data in (b"small", os.urandom(6 * MiB)):
            staged, sha = stage(storage, data)
            await storage.commit(staged, sha, len(data))
            assert await read_all(storage, sha) == data
            await storage.quarantine(sha)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("pulp_aio_download")]
    assert any("quarantined" in m for m in messages)
    assert not [m for m in messages for secret in secrets if secret in m]


def test_repr_has_no_secrets() -> None:
    storage = S3Storage(
        "bucket",
        prefix="/p/",
        endpoint_url="http://user:urlpass@127.0.0.1:9000",
        access_key_id="AKIAEXAMPLEKEYID",
        secret_access_key="very-secret-key",
        session_token="session-token-secret",
    )
    text = repr(storage)
    assert text == (
        "S3Storage(bucket='bucket', prefix='p', endpoint_url='http://***@127.0.0.1:9000')"
    )
    for secret in ("AKIAEXAMPLEKEYID", "very-secret-key", "session-token-secret", "urlpass"):
        assert secret not in text


def test_keys_and_locations() -> None:
    sha = "ab" + "c" * 62
    assert S3Storage("b").key_of(sha) == f"ab/{'c' * 62}"
    assert S3Storage("b", prefix="x/y/").location_of(sha) == f"s3://b/x/y/ab/{'c' * 62}"
    assert S3Storage("b").quarantine_key_of(sha) == f"quarantine/ab/{'c' * 62}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket": ""},
        {"bucket": "a/b"},
        {"bucket": "b", "part_size": MIN_PART_SIZE - 1},
        {"bucket": "b", "access_key_id": "id"},
        {"bucket": "b", "secret_access_key": "secret"},
        {"bucket": "b", "session_token": "token"},
        {"bucket": "b", "addressing_style": "sideways"},
    ],
)
def test_invalid_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        S3Storage(**kwargs)  # type: ignore[arg-type]
