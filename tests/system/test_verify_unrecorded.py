"""``verify`` finds what a crash leaves: stored files no record locates (``.unrecorded``,
adopted on ``repair`` when their content hashes to their key) and leftover partials
(``.partials``); it never deletes what cannot be fetched again (issue 11 item 9).

The crash is real: ``kill -9`` of a ``pulp-aio-download sync`` process while the catalog's
write lock is held by the test, so that files are stored but their records are still
queued; the engine-level tests run on LocalStorage and on S3Storage (moto).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

import pulp_aio_download as pad
from helpers import cli, sha256, until_sync
from plugins.s3 import s3_client
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.storage.base import artifact_key
from pulp_aio_download.storage.s3 import S3Storage
from pulp_aio_download.testing import Fault, FaultServer

MiB = 1024 * 1024


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=120)


def stored_shas(store: Path) -> set[str]:
    return {
        p.parent.name + p.name
        for p in store.glob("??/*")
        if p.is_file() and len(p.parent.name + p.name) == 64
    }


# -- kill -9 of a real sync between storing and recording ----------------------------------


def test_kill_9_between_store_and_record_then_verify_finds_and_adopts(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    files = [os.urandom(4000 + 17 * i) for i in range(48)]
    manifest = tmp_path / "m.jsonl"
    lines = []
    for i, data in enumerate(files):
        url = threaded_server.add(f"/k/{i}.bin", data, faults=[Fault(delay=0.15), None])
        lines.append(json.dumps({"url": url, "sha256": sha256(data), "size": len(data)}))
    manifest.write_text("\n".join(lines) + "\n")
    data_dir = tmp_path / "data"
    store, db = data_dir / "artifacts", data_dir / "catalog.sqlite3"
    env = {**os.environ, "PULP_AIO_DOWNLOAD_CLAIM_LEASE": "0"}  # records are the only writes
    process = subprocess.Popen(
        cli("sync", str(manifest), "--data-dir", str(data_dir), "--progress", "json",
            "--concurrency", "4"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    lock: sqlite3.Connection | None = None
    try:
        assert process.stdout is not None
        process.stdout.readline()  # the engine is open, the schema migrated: downloads start
        # Another process takes the catalog's write lock: the sync goes on storing files
        # while their records wait for it. Then the sync is killed.
        lock = sqlite3.connect(db, isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")

        def four_wait_for_their_records() -> bool:
            recorded = {row[0] for row in lock.execute("SELECT sha256 FROM unit_files")}
            return len(stored_shas(store) - recorded) >= 4

        until_sync(four_wait_for_their_records, timeout=30)
        recorded = {row[0] for row in lock.execute("SELECT sha256 FROM unit_files")}
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if lock is not None:
            lock.rollback()
            lock.close()
    stored = stored_shas(store)
    unrecorded = stored - recorded
    # Staging files of transfers that were in flight, if any: leftovers, listed as such by a
    # read-only verify (the next engine that opens the store for writing removes them).
    staging = sorted(str(p) for p in (store / ".staging").iterdir())
    assert len(unrecorded) >= 4, "the sync was killed before it stored files it could not record"
    assert len(stored) < len(files)

    # verify finds them (it used to check only what the catalog names, and exit 0).
    report = run("verify", "--data-dir", str(data_dir), "--json", "--progress", "none")
    assert report.returncode == 1, report.stderr
    data = json.loads(report.stdout)
    assert set(data["unrecorded"]) == unrecorded
    assert data["checked"] == len(stored) and data["ok"] == len(recorded)
    assert data["corrupt"] == data["missing"] == data["repaired"] == []
    assert [(p["kind"], p["location"]) for p in data["partials"]] == [
        ("staging", path) for path in staging
    ]
    text = run("verify", "--data-dir", str(data_dir), "--progress", "none")
    assert text.returncode == 1
    leftovers = f"{len(staging)} leftover partial" + ("" if len(staging) == 1 else "s")
    assert text.stdout.splitlines()[0] == (
        f"checked {len(stored)}: {len(recorded)} ok, 0 corrupt, 0 missing, "
        f"{len(unrecorded)} unrecorded, 0 repaired; {leftovers}"
    )
    for sha in unrecorded:
        assert f"UNRECORDED {sha} (its content matches its key: --repair records it)" in text.stdout

    # --repair adopts them: recorded with their location, size and digest, nothing moved.
    repair = run("verify", "--repair", "--data-dir", str(data_dir), "--json", "--progress", "none")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert set(json.loads(repair.stdout)["repaired"]) == unrecorded
    assert stored_shas(store) == stored
    again = run("verify", "--data-dir", str(data_dir), "--json", "--progress", "none")
    assert again.returncode == 0, again.stdout
    data = json.loads(again.stdout)
    assert data["checked"] == data["ok"] == len(stored) and data["unrecorded"] == []
    assert data["partials"] == []  # the repair opened the store for writing: dead staging gone
    sha = min(unrecorded)
    show = run("catalog", "show", sha, "--data-dir", str(data_dir))
    record = json.loads(show.stdout)
    assert record["location"] == artifact_key(sha) and record["sources"] == []
    assert record["size"] == (store / artifact_key(sha)).stat().st_size
    assert record["created_at"] <= record["verified_at"]

    # The rerun completes the job from the store, and records where the files came from.
    rerun = run("sync", str(manifest), "--data-dir", str(data_dir), "--json", "--progress", "none")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["done"] == len(files) and summary["cached"] == len(stored)
    record = json.loads(run("catalog", "show", sha, "--data-dir", str(data_dir)).stdout)
    assert [s["url"] for s in record["sources"]] == [
        threaded_server.url(f"/k/{i}.bin") for i, d in enumerate(files) if sha256(d) == sha
    ]
    for path in store.glob("??/*"):
        assert sha256(path.read_bytes()) == path.parent.name + path.name


# -- adopted, quarantined, re-fetched: on LocalStorage and S3Storage -------------------------


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """One store (a directory, or a fresh bucket on the moto server): ``storage()`` makes a
    fresh storage on it; the other methods read and write it behind the engine's back."""
    if request.param == "local":
        return _Local(tmp_path / "store")
    return _S3(request.getfixturevalue("s3_bucket"), tmp_path)


class _Local:
    def __init__(self, root: Path) -> None:
        self.root = root

    def storage(self) -> pad.Storage:
        return pad.LocalStorage(self.root)

    async def write(self, sha: str, data: bytes) -> None:
        (self.root / artifact_key(sha)).write_bytes(data)

    async def read(self, sha: str) -> bytes | None:
        path = self.root / artifact_key(sha)
        return path.read_bytes() if path.exists() else None

    async def quarantined(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted((self.root / ".quarantine").glob("*"))]

    async def start_upload(self, sha: str) -> str:
        # A staging file another host left in the shared directory (its process is not ours
        # to judge, so it is listed, never removed).
        path = self.root / ".staging" / "otherhost.example-4242-cafe0123-0.part"
        path.write_bytes(b"x" * 1234)
        return str(path)


class _S3:
    def __init__(self, s3_bucket: tuple[str, str], tmp_path: Path) -> None:
        self.endpoint, self.bucket = s3_bucket
        self.tmp_path = tmp_path

    def storage(self) -> pad.Storage:
        return S3Storage(
            self.bucket,
            prefix="pulp",
            endpoint_url=self.endpoint,
            staging_root=self.tmp_path / "staging",
        )

    async def write(self, sha: str, data: bytes) -> None:
        async with s3_client(self.endpoint) as client:
            await client.put_object(Bucket=self.bucket, Key=f"pulp/{artifact_key(sha)}", Body=data)

    async def read(self, sha: str) -> bytes | None:
        async with s3_client(self.endpoint) as client:
            try:
                response = await client.get_object(
                    Bucket=self.bucket, Key=f"pulp/{artifact_key(sha)}"
                )
            except client.exceptions.NoSuchKey:
                return None
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def quarantined(self) -> list[bytes]:
        out = []
        async with s3_client(self.endpoint) as client:
            listing = await client.list_objects_v2(Bucket=self.bucket, Prefix="pulp/quarantine/")
            for obj in listing.get("Contents", []):
                response = await client.get_object(Bucket=self.bucket, Key=obj["Key"])
                async with response["Body"] as body:
                    out.append(await body.read())
        return out

    async def start_upload(self, sha: str) -> str:
        # A multipart upload a killed process never completed nor aborted.
        key = f"pulp/{artifact_key(sha)}"
        async with s3_client(self.endpoint) as client:
            await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        return f"s3://{self.bucket}/{key}"


async def test_unrecorded_files_are_adopted_or_quarantined_never_deleted(
    backend: Any, fault_server: FaultServer, tmp_path: Path
) -> None:
    names = ["good1", "good2", "bad", "lazy", "lazybad", "recorded"]
    blobs = {name: os.urandom(3000) + name.encode() for name in names}
    sha = {name: sha256(data) for name, data in blobs.items()}
    urls = {name: fault_server.add(f"/u/{name}", data) for name, data in blobs.items()}
    catalog_path = tmp_path / "catalog.sqlite3"

    def with_catalog() -> pad.DownloadEngine:
        config = pad.EngineConfig(storage=backend.storage(), catalog=SQLiteCatalog(catalog_path))
        return pad.DownloadEngine(config)

    async with with_catalog() as engine:
        await engine.download(urls["recorded"], expected_digests={"sha256": sha["recorded"]})
        for name in ("lazy", "lazybad"):  # recorded lazily: sources, no location yet
            await engine.register(urls[name], expected_digests={"sha256": sha[name]})
    # An engine without a catalog stores files that no record locates.
    async with pad.DownloadEngine(pad.EngineConfig(storage=backend.storage())) as engine:
        for name in ("good1", "good2", "bad", "lazy", "lazybad"):
            await engine.download(urls[name], expected_digests={"sha256": sha[name]})
    damaged = b"bit rot" * 100
    await backend.write(sha["bad"], damaged)
    await backend.write(sha["lazybad"], damaged)
    leftover = await backend.start_upload("f" * 64)
    unrecorded = {sha[n] for n in ("good1", "good2", "bad", "lazy", "lazybad")}
    fetched_before = fault_server.stats("/u/lazybad").requests

    async with with_catalog() as engine:
        report = await engine.verify()
        assert engine.catalog is not None
        assert await engine.catalog.get_unit_file(sha["good1"]) is None  # nothing changed
    assert set(report.unrecorded) == unrecorded
    assert set(report.corrupt) == {sha["bad"], sha["lazybad"]}
    assert (report.checked, report.ok, report.missing, report.repaired) == (6, 1, (), ())
    assert not report.clean
    assert [(p.kind, p.location) for p in report.partials] == [
        ("upload" if isinstance(backend, _S3) else "staging", leftover)
    ]
    assert await backend.read(sha["bad"]) == damaged

    async with with_catalog() as engine:
        report = await engine.verify(repair=True)
        assert engine.catalog is not None
        records = {name: await engine.catalog.get_unit_file(sha[name]) for name in names}
    assert set(report.repaired) == {sha[n] for n in ("good1", "good2", "lazy", "lazybad")}
    assert set(report.errors) == {sha["bad"]}
    assert report.errors[sha["bad"]] == (
        f"not adopted: its content hashes to {sha256(damaged)}, not to its key; moved to the "
        "quarantine (no record names a source to fetch it from again)"
    )
    # Nothing that cannot be fetched again was deleted: the damaged bytes are in the
    # quarantine; the one with recorded sources was fetched again from them.
    assert await backend.read(sha["bad"]) is None
    assert (await backend.quarantined()).count(damaged) == 2
    assert records["bad"] is None
    assert await backend.read(sha["lazybad"]) == blobs["lazybad"]
    assert fault_server.stats("/u/lazybad").requests == fetched_before + 1
    for name in ("good1", "good2", "lazy", "lazybad"):
        record = records[name]
        assert record is not None and record.location is not None, name
        assert record.size == len(blobs[name]) and record.digests["sha256"] == sha[name]
        assert record.created_at is not None and record.verified_at is not None
        assert record.created_at <= record.verified_at
    good = records["good1"]
    assert good is not None and good.sources == ()  # adopted: nothing says where it came from
    lazy = records["lazy"]
    assert lazy is not None and [s.url for s in lazy.sources] == [urls["lazy"]]  # kept

    async with with_catalog() as engine:
        report = await engine.verify()
    assert (report.checked, report.ok) == (5, 5)
    assert report.clean and report.unrecorded == () and report.corrupt == ()
    assert [p.location for p in report.partials] == [leftover]  # still there: never deleted


# -- leftover partials, through the command line ------------------------------------------


def test_verify_lists_leftover_partials_and_keeps_them(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(6 * MiB)
    url = threaded_server.add("/big.iso", data, faults=[Fault(trickle=2 * MiB), None])
    data_dir = tmp_path / "data"
    partials = data_dir / "artifacts" / ".partials"
    process = subprocess.Popen(
        cli("get", url, "--sha256", sha256(data), "--data-dir", str(data_dir)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def partial_kept() -> bool:
            assert process.poll() is None, "no partial was kept"
            return any(partials.glob("*.json"))

        until_sync(partial_kept, timeout=60)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (part,) = partials.glob("*.part")
    held = json.loads(part.with_suffix(".json").read_text())["ranges"][0][1]
    # And a staging file of another host sharing the data directory.
    other = data_dir / "artifacts" / ".staging" / f"not-{socket.gethostname()}-77-ab12cd34-0.part"
    other.write_bytes(b"y" * 2048)

    for args in (("verify",), ("verify", "--repair")):
        proc = run(*args, "--data-dir", str(data_dir), "--json", "--progress", "none")
        assert proc.returncode == 0, proc.stdout + proc.stderr  # leftovers are not damage
        report = json.loads(proc.stdout)
        assert report["partials"] == [
            {"kind": "partial", "location": str(part), "size": held, "url": url},
            {"kind": "staging", "location": str(other), "size": 2048, "url": None},
        ]
        assert part.exists() and other.read_bytes() == b"y" * 2048
    proc = run("verify", "--data-dir", str(data_dir), "--progress", "none")
    lines = proc.stdout.splitlines()
    assert lines[0] == "checked 0: 0 ok, 0 corrupt, 0 missing, 0 unrecorded, 0 repaired; " + (
        "2 leftover partials"
    )
    assert lines[1].startswith(f"LEFTOVER partial {part} (") and lines[1].endswith(f", from {url})")
    assert lines[2] == f"LEFTOVER staging {other} (2.0 KiB)"

    # The partial is still what the next request continues; its bytes are not counted as
    # transferred again (nor in the rate).
    proc = run(
        "get", url, "--sha256", sha256(data), "--data-dir", str(data_dir), "-v",
        "--progress", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"continuing a partial download at byte {held} " in proc.stderr
    assert Path(proc.stderr.splitlines()[-1]).read_bytes() == data
    final = json.loads(proc.stdout.splitlines()[-1])
    assert final["bytes_done"] == len(data)
    assert final["bytes_transferred"] == len(data) - held
    assert final["rate"] == pytest.approx((len(data) - held) / final["elapsed"], rel=0.02)
    report = json.loads(run("verify", "--data-dir", str(data_dir), "--json").stdout)
    assert report["partials"] == [
        {"kind": "staging", "location": str(other), "size": 2048, "url": None}
    ]
    assert (report["checked"], report["ok"]) == (1, 1)
