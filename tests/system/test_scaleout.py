"""Workers cooperating through a shared catalog: one transfer per sha256, leases that expire.

In-process tests use two engines on one SQLite file (as two processes of one host would);
the multi-process tests run real worker processes against a real PostgreSQL server, a real
moto S3 server and one threaded FaultServer that counts the requests to every path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import pulp_aio_download as pad
from helpers import make_engine, until
from plugins.s3 import s3_client
from pulp_aio_download.catalog.postgres import PostgresCatalog
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.cooperation import (
    CLAIM_LEASE_ENV,
    DEFAULT_CLAIM_LEASE,
    Cooperation,
    resolve_claim_lease,
)
from pulp_aio_download.errors import ConfigError
from pulp_aio_download.storage.base import artifact_key
from pulp_aio_download.storage.local import LocalStorage
from pulp_aio_download.testing import Fault, FaultServer

PREFIX = "pulp"


def payload(index: int, size: int = 2048) -> tuple[bytes, str]:
    data = hashlib.sha512(str(index).encode()).digest() * (size // 64) + str(index).encode()
    return data, hashlib.sha256(data).hexdigest()


def shared_engine(tmp_path: Path, **config: Any) -> pad.DownloadEngine:
    """An engine on the storage and SQLite catalog every engine of the test shares."""
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite3")
    return make_engine(
        tmp_path, storage=LocalStorage(tmp_path / "artifacts"), catalog=catalog, **config
    )


def cooperation(engine: pad.DownloadEngine) -> Cooperation:
    coop = engine._cooperation
    assert coop is not None
    return coop


# -- configuration ------------------------------------------------------------------------


def test_claim_lease_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CLAIM_LEASE_ENV, raising=False)
    assert resolve_claim_lease(None) == DEFAULT_CLAIM_LEASE
    assert resolve_claim_lease(12) == 12.0
    monkeypatch.setenv(CLAIM_LEASE_ENV, "2.5")
    assert resolve_claim_lease(None) == 2.5
    assert resolve_claim_lease(0) == 0.0
    monkeypatch.setenv(CLAIM_LEASE_ENV, "soon")
    with pytest.raises(ConfigError, match=f"{CLAIM_LEASE_ENV} must be a non-negative number"):
        resolve_claim_lease(None)
    with pytest.raises(ConfigError, match=r"EngineConfig\.claim_lease must be non-negative"):
        pad.EngineConfig(claim_lease=-1)


async def test_no_claims_without_catalog_or_with_lease_zero(tmp_path: Path) -> None:
    async with pad.DownloadEngine(pad.EngineConfig(storage=LocalStorage(tmp_path))) as engine:
        assert engine._cooperation is None
    async with shared_engine(tmp_path, claim_lease=0) as engine:
        assert engine._cooperation is None
    async with shared_engine(tmp_path, claim_lease=30) as engine:
        assert cooperation(engine).lease == 30.0
        owner = cooperation(engine).owner
        assert owner.split(":")[1] == str(os.getpid())


# -- two engines in one process, one SQLite catalog ---------------------------------------


async def test_second_worker_waits_and_is_served_what_the_first_stored(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    data, sha = payload(1)
    url = fault_server.add("/a.bin", data)
    gate = fault_server.gate("/a.bin")
    async with shared_engine(tmp_path) as first, shared_engine(tmp_path) as second:
        one = asyncio.ensure_future(first.download(url, expected_digests={"sha256": sha}))
        await fault_server.wait_inflight(1, "/a.bin")
        two = asyncio.ensure_future(second.download(url, expected_digests={"sha256": sha}))
        await until(lambda: cooperation(second).statistics.waited == 1, timeout=20)
        assert fault_server.stats("/a.bin").requests == 1
        gate.set()
        r1, r2 = await one, await two

    assert (r1.cached, r2.cached) == (False, True)
    assert r2.path == r1.path and r2.path is not None and r2.path.read_bytes() == data
    assert fault_server.stats("/a.bin").requests == 1
    assert cooperation(second).statistics.served_by_peer == 1


async def test_claim_of_a_dead_worker_expires_and_is_taken_over(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    data, sha = payload(2)
    url = fault_server.add("/b.bin", data)
    async with SQLiteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        assert await catalog.claim(sha, "gone-host:4242:dead", 0.5)

    async with shared_engine(tmp_path) as engine:
        result = await engine.download(url, expected_digests={"sha256": sha})
        stats = cooperation(engine).statistics

    assert result.cached is False and result.path is not None
    assert result.path.read_bytes() == data
    assert (stats.waited, stats.taken_over, stats.claimed) == (1, 1, 1)
    assert fault_server.stats("/b.bin").requests == 1
    async with SQLiteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        assert await catalog.claim(sha, "someone-else", 60), "the claim was not released"


async def test_claim_is_renewed_during_a_long_transfer_and_released_after(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    data, sha = payload(3)
    url = fault_server.add("/c.bin", data)
    gate = fault_server.gate("/c.bin")
    lease = 0.6
    async with (
        shared_engine(tmp_path, claim_lease=lease) as engine,
        SQLiteCatalog(tmp_path / "catalog.sqlite3") as other,
    ):
        task = asyncio.ensure_future(engine.download(url, expected_digests={"sha256": sha}))
        await fault_server.wait_inflight(1, "/c.bin")
        for _ in range(3):  # well past the lease: only renewals keep the claim
            await asyncio.sleep(lease)
            assert not await other.claim(sha, "other-worker", 60)
        gate.set()
        await task
        await cooperation(engine).aclose()
        assert await other.claim(sha, "other-worker", 60)
    assert fault_server.stats("/c.bin").requests == 1


async def test_cancelled_transfer_releases_its_claim(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    data, sha = payload(4)
    url = fault_server.add("/d.bin", data)
    fault_server.gate("/d.bin")
    async with shared_engine(tmp_path) as engine:
        task = asyncio.ensure_future(engine.download(url, expected_digests={"sha256": sha}))
        await fault_server.wait_inflight(1, "/d.bin")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    fault_server.release()
    async with SQLiteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        assert await catalog.claim(sha, "next-worker", 60)
        assert await catalog.get_unit_file(sha) is None
    assert [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == []


async def test_a_batch_claims_for_a_window_and_waits_for_a_file_another_worker_holds(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    files = [payload(100 + i) for i in range(40)]
    urls = [fault_server.add(f"/w{i}.bin", data) for i, (data, _) in enumerate(files)]
    held = files[5][1]
    async with SQLiteCatalog(tmp_path / "catalog.sqlite3") as other:
        assert await other.claim(held, "gone-host:4242:dead", 0.5)  # expires mid-batch
        async with shared_engine(tmp_path, max_connections=4) as engine:
            requests = [
                pad.DownloadRequest(u, expected_digests={"sha256": sha}, expected_size=len(data))
                for u, (data, sha) in zip(urls, files, strict=True)
            ]
            results = await engine.download_many(requests)
            coop = cooperation(engine)
            assert coop._ahead == {} and coop._windows == {}
            stats = coop.statistics
            await coop.aclose()
            holders = [await other.claim_holder(sha) for _, sha in files]
    assert [r.path.read_bytes() for r in results if r.path] == [d for d, _ in files]
    assert (stats.claimed, stats.waited, stats.taken_over) == (40, 1, 1)
    assert holders == [None] * 40  # every claim released, the taken-over one too
    assert all(fault_server.stats(f"/w{i}.bin").requests == 1 for i in range(40))


async def test_claims_taken_for_a_window_are_released_when_the_batch_ends_early(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    files = [payload(200 + i, 2048 if i != 20 else 2 * 1024 * 1024) for i in range(30)]
    urls = [fault_server.add(f"/e{i}.bin", data) for i, (data, _) in enumerate(files)]
    gates = [fault_server.gate(f"/e{i}.bin") for i in range(1, 30)]
    async with shared_engine(tmp_path, max_connections=2) as engine:
        requests = [
            pad.DownloadRequest(u, expected_digests={"sha256": sha}, expected_size=len(data))
            for u, (data, sha) in zip(urls, files, strict=True)
        ]
        task = asyncio.ensure_future(engine.download_many(requests))
        await fault_server.wait_inflight(2)
        async with SQLiteCatalog(tmp_path / "catalog.sqlite3") as other:
            waiting = [await other.claim_holder(sha) for _, sha in files[10:]]
        # The small files were claimed ahead of their turn; the large one is not (a peer
        # is not kept waiting for a file this worker has not started).
        assert waiting[10] is None
        assert set(waiting[:10] + waiting[11:]) == {cooperation(engine).owner}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cooperation(engine)._ahead == {}
    for gate in gates:
        gate.set()
    async with SQLiteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        assert [await catalog.claim_holder(sha) for _, sha in files] == [None] * 30


# -- worker processes on PostgreSQL and S3 ------------------------------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, dataclasses, json, sys
    from pathlib import Path

    import pulp_aio_download as pad
    from pulp_aio_download.catalog.postgres import PostgresCatalog
    from pulp_aio_download.storage.s3 import S3Storage

    dsn, endpoint, bucket, manifest, staging, go, out = sys.argv[1:]

    async def main():
        requests = [
            pad.DownloadRequest(
                line["url"],
                expected_digests={"sha256": line["sha256"]},
                expected_size=line["size"],
                unit=pad.UnitSpec(**line["unit"]),
                repository=line["repository"],
            )
            for line in map(json.loads, Path(manifest).read_text().splitlines())
        ]
        config = pad.EngineConfig(
            storage=S3Storage(bucket, prefix="pulp", endpoint_url=endpoint, staging_root=staging),
            catalog=PostgresCatalog(dsn),
            max_connections=8,
        )
        async with pad.DownloadEngine(config) as engine:
            Path(out + ".ready").touch()
            while not Path(go).exists():
                await asyncio.sleep(0.005)
            results = await engine.download_many(requests, return_exceptions=True)
            stats = dataclasses.asdict(engine._cooperation.statistics)
        errors = [str(r) for r in results if isinstance(r, Exception)]
        done = [r for r in results if not isinstance(r, Exception)]
        Path(out).write_text(json.dumps({
            "errors": errors,
            "transferred": sum(not r.cached for r in done),
            "cached": sum(r.cached for r in done),
            "stats": stats,
        }))

    asyncio.run(main())
    """
)


def manifest_line(server: FaultServer, index: int, repository: str) -> dict[str, Any]:
    data, sha = payload(index)
    return {
        "url": server.url(f"/pool/f{index}.bin"),
        "sha256": sha,
        "size": len(data),
        "unit": {"type": "file", "key": f"f{index}", "relative_path": f"f{index}"},
        "repository": repository,
    }


def write_manifest(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


async def bucket_objects(endpoint: str, bucket: str) -> dict[str, str]:
    """Every key of the bucket and its ETag (the MD5 of a single-part object)."""
    found: dict[str, str] = {}
    async with s3_client(endpoint) as client:
        async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = obj["ETag"].strip('"')
    return found


async def assert_consistent(
    dsn: str, endpoint: str, bucket: str, indexes: list[int]
) -> PostgresCatalog:
    """Every file stored once under its key with its bytes, recorded, and no claim left."""
    expected = {f"{PREFIX}/{artifact_key(payload(i)[1])}": payload(i)[0] for i in indexes}
    stored = await bucket_objects(endpoint, bucket)
    assert set(stored) == set(expected)
    for key, data in expected.items():
        assert stored[key] == hashlib.md5(data).hexdigest(), key
    catalog = PostgresCatalog(dsn)
    await catalog.open()
    for i in indexes:
        data, sha = payload(i)
        record = await catalog.get_unit_file(sha)
        assert record is not None
        assert record.location == f"s3://{bucket}/{PREFIX}/{artifact_key(sha)}"
        assert (record.size, record.digests["sha256"]) == (len(data), sha)
        assert [s.url.rsplit("/", 1)[1] for s in record.sources] == [f"f{i}.bin"]
    assert catalog._pool is not None
    assert await catalog._pool.fetchval("SELECT count(*) FROM claims") == 0
    return catalog


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")}
    env.update(extra)
    return env


async def test_two_worker_processes_transfer_every_file_once(
    tmp_path: Path,
    threaded_server: FaultServer,
    postgres_database: str,
    s3_bucket: tuple[str, str],
) -> None:
    endpoint, bucket = s3_bucket
    shared, only_a, only_b = range(0, 200), range(200, 300), range(300, 400)
    for i in range(400):
        threaded_server.add(f"/pool/f{i}.bin", payload(i)[0])
    # Both start with the 200 shared files in the same order: they race for each of them.
    manifests = {
        "a": [manifest_line(threaded_server, i, "repo-a") for i in [*shared, *only_a]],
        "b": [manifest_line(threaded_server, i, "repo-b") for i in [*shared, *only_b]],
    }
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                str(script),
                postgres_database,
                endpoint,
                bucket,
                str(write_manifest(tmp_path / f"{name}.jsonl", lines)),
                str(tmp_path / f"staging-{name}"),
                str(go),
                str(tmp_path / f"{name}.json"),
            ],
            env=worker_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, lines in manifests.items()
    }
    try:
        await until(lambda: all((tmp_path / f"{n}.json.ready").exists() for n in procs), timeout=60)
        go.touch()
        for name, proc in procs.items():
            _, stderr = await asyncio.to_thread(proc.communicate, timeout=120)
            assert proc.returncode == 0, f"worker {name}: {stderr}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    out = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in procs}
    assert out["a"]["errors"] == [] and out["b"]["errors"] == []
    for i in range(400):
        assert threaded_server.stats(f"/pool/f{i}.bin").requests == 1, f"f{i}.bin"
    assert out["a"]["transferred"] + out["b"]["transferred"] == 400
    assert out["a"]["cached"] + out["b"]["cached"] == 200
    waited = out["a"]["stats"]["waited"] + out["b"]["stats"]["waited"]
    assert waited > 0, "the workers never contended for a file: the test proved nothing"
    for name in procs:
        assert [p for p in (tmp_path / f"staging-{name}").rglob("*") if p.is_file()] == []

    catalog = await assert_consistent(postgres_database, endpoint, bucket, list(range(400)))
    try:
        for repo, indexes in (("repo-a", [*shared, *only_a]), ("repo-b", [*shared, *only_b])):
            units = await catalog.repository_units(repo)
            assert sorted(u.key for u in units) == sorted(f"f{i}" for i in indexes)
            for unit in units:
                i = int(unit.key[1:])
                assert unit.files == {unit.key: payload(i)[1]}
        both = await catalog.get_unit("file", "f0")
        assert both is not None and sorted(both.repositories) == ["repo-a", "repo-b"]
    finally:
        await catalog.close()


async def test_killed_worker_claims_expire_and_another_worker_finishes(
    tmp_path: Path,
    threaded_server: FaultServer,
    postgres_database: str,
    s3_bucket: tuple[str, str],
) -> None:
    endpoint, bucket = s3_bucket
    indexes = list(range(60))
    stuck = [3, 17, 29, 41, 55]
    for i in indexes:
        # The first request of a stuck file sends its headers and then nothing.
        faults = [Fault(stall_after=0)] if i in stuck else None
        threaded_server.add(f"/pool/f{i}.bin", payload(i)[0], faults=faults)
    manifest = write_manifest(
        tmp_path / "m.jsonl", [manifest_line(threaded_server, i, "repo") for i in indexes]
    )
    env = worker_env(**{CLAIM_LEASE_ENV: "1.5"})

    def sync(name: str) -> list[str]:
        return [
            sys.executable, "-m", "pulp_aio_download", "sync", str(manifest),
            "--storage", f"s3://{bucket}/{PREFIX}", "--s3-endpoint-url", endpoint,
            "--catalog", postgres_database, "--data-dir", str(tmp_path / name),
            "--concurrency", "8", "--progress", "none", "--json",
        ]  # fmt: skip

    victim = subprocess.Popen(
        sync("victim"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    catalog = PostgresCatalog(postgres_database)
    try:

        def others_done() -> bool:
            assert victim.poll() is None, victim.communicate()[1]
            return all(
                threaded_server.stats(f"/pool/f{i}.bin").requests == 1 for i in indexes
            ) and all(threaded_server.stats(f"/pool/f{i}.bin").inflight == 1 for i in stuck)

        await until(others_done, timeout=60)
        await catalog.open()
        assert catalog._pool is not None

        async def others_recorded() -> bool:
            assert catalog._pool is not None
            sql = "SELECT count(*) FROM unit_files WHERE location IS NOT NULL"
            return int(await catalog._pool.fetchval(sql)) >= len(indexes) - len(stuck)

        await until(others_recorded, timeout=30)
        # Releases run in the background after the record: wait for the last ones.
        wanted = sorted(payload(i)[1] for i in stuck)

        async def only_the_stuck_are_claimed() -> bool:
            assert catalog._pool is not None
            claims = await catalog._pool.fetch("SELECT sha256, owner FROM claims")
            return sorted(r["sha256"] for r in claims) == wanted

        await until(only_the_stuck_are_claimed, timeout=30)
        claims = await catalog._pool.fetch("SELECT sha256, owner FROM claims")
        assert sorted(r["sha256"] for r in claims) == wanted
        assert all(f":{victim.pid}:" in r["owner"] for r in claims)

        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait, 10)

        rescuer = await asyncio.to_thread(
            subprocess.run, sync("rescuer"), env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.communicate()
        await catalog.close()

    assert rescuer.returncode == 0, rescuer.stderr
    summary = json.loads(rescuer.stdout)
    assert (summary["files"], summary["done"], summary["failed"]) == (60, 60, 0)
    assert summary["cached"] == len(indexes) - len(stuck)
    for i in indexes:
        expected = 2 if i in stuck else 1
        assert threaded_server.stats(f"/pool/f{i}.bin").requests == expected, f"f{i}.bin"
    final = await assert_consistent(postgres_database, endpoint, bucket, indexes)
    await final.close()
