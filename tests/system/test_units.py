"""Unit files, content units and the catalog as the engine writes them (issue 4).

Real loopback servers, real SQLite files, real ``pulp-aio-download`` processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, cli, run_cli, sha256, until_sync
from pulp_aio_download.testing import Fault, FaultServer


def engine_config(tmp_path: Path, *remotes: pad.RemoteConfig, **kwargs: object) -> pad.EngineConfig:
    return pad.EngineConfig(
        data_dir=tmp_path / "data",
        remotes=[pad.RemoteConfig(retry=NO_RETRY), *remotes],
        **kwargs,  # type: ignore[arg-type]
    )


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "catalog.sqlite3"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")}
    return {**env, **extra}


def check_database(path: Path, artifacts: Path) -> dict[str, tuple[int, str | None]]:
    """Open the file with the stdlib driver (as an operator would) and check every record:
    integrity, foreign keys, and that every recorded location holds the right bytes."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = conn.execute("SELECT sha256, size, location, digests FROM unit_files").fetchall()
        orphans = conn.execute(
            "SELECT COUNT(*) FROM unit_file_sources "
            "WHERE sha256 NOT IN (SELECT sha256 FROM unit_files)"
        ).fetchone()
    finally:
        conn.close()
    assert orphans == (0,)
    records = {}
    for sha, size, location, digests in rows:
        assert json.loads(digests)["sha256"] == sha
        if location is not None:
            data = (artifacts / location).read_bytes()
            assert sha256(data) == sha and len(data) == size
        records[sha] = (size, location)
    return records


# -- the unit file of a download ---------------------------------------------------------------


async def test_unit_file_records_everything(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    url = fault_server.add("/pool/a.rpm", data)
    md5 = hashlib.md5(data).hexdigest()
    before = datetime.now(timezone.utc)
    mirror = pad.RemoteConfig(name="mirror", retry=NO_RETRY)
    async with pad.DownloadEngine(engine_config(tmp_path, mirror)) as engine:
        result = await engine.download(
            pad.DownloadRequest(
                sources=[pad.Source(url, priority=5, weight=2.5, remote="mirror")],
                expected_digests={"sha256": sha256(data), "md5": md5},
                expected_size=len(data),
            )
        )
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(data))
    after = datetime.now(timezone.utc)
    assert record is not None
    assert record.sha256 == sha256(data) and record.size == len(data)
    assert dict(record.digests) == {"sha256": sha256(data), "md5": md5}
    assert record.location == result.location
    assert (tmp_path / "data" / "artifacts" / record.location).read_bytes() == data
    assert record.sources == (pad.Source(url, priority=5, weight=2.5, remote="mirror"),)
    assert record.created_at is not None and before <= record.created_at <= after
    assert record.verified_at is not None and before <= record.verified_at <= after
    # Created when its bytes were verified, so never verified before it was created.
    assert record.created_at <= record.verified_at


async def test_verified_at_never_precedes_created_at(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = [os.urandom(20_000 + i) for i in range(60)]
    requests = [
        pad.DownloadRequest(
            fault_server.add(f"/many/{i}", data), expected_digests={"sha256": sha256(data)}
        )
        for i, data in enumerate(files)
    ]
    async with pad.DownloadEngine(engine_config(tmp_path)) as engine:
        await engine.download_many(requests)  # group commits: writes wait for each other
        assert engine.catalog is not None
        downloaded = [r async for r in engine.catalog.unit_files()]
        await engine.verify()
        verified = [r async for r in engine.catalog.unit_files()]
    assert len(downloaded) == len(verified) == len(files)
    for record in downloaded + verified:
        assert record.created_at is not None and record.verified_at is not None
        assert record.created_at <= record.verified_at, record
    # The raw rows (what another tool reads) agree.
    db = sqlite3.connect(db_path(tmp_path))
    try:
        rows = db.execute("SELECT created_at, verified_at FROM unit_files").fetchall()
    finally:
        db.close()  # Python 3.13 warns about a connection left to the collector
    assert all(
        datetime.fromisoformat(created) <= datetime.fromisoformat(verified)
        for created, verified in rows
    )


async def test_repository_without_unit_is_refused_before_any_request(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = b"a file, and a repository with no unit to put it in"
    url = fault_server.add("/orphan.bin", data)
    with pytest.raises(pad.ConfigError, match=r"repository='repo' needs unit=UnitSpec"):
        pad.DownloadRequest(url, repository="repo")
    async with pad.DownloadEngine(engine_config(tmp_path)) as engine:
        with pytest.raises(pad.ConfigError, match="needs unit="):
            await engine.download(url, expected_digests={"sha256": sha256(data)}, repository="r")
        with pytest.raises(pad.ConfigError, match="needs unit="):
            await engine.download_many([pad.DownloadRequest(url, repository="r")])
        with pytest.raises(pad.ConfigError, match="needs unit="):
            await engine.register(url, expected_digests={"sha256": sha256(data)}, repository="r")
        assert engine.catalog is not None
        assert await engine.catalog.get_unit_file(sha256(data)) is None
    assert fault_server.stats("/orphan.bin").requests == 0


async def test_request_remote_is_recorded_per_source(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = b"request remote"
    url = fault_server.add("/r", data)
    fedora = pad.RemoteConfig(name="fedora", retry=NO_RETRY)
    async with pad.DownloadEngine(engine_config(tmp_path, fedora)) as engine:
        await engine.download(
            pad.DownloadRequest(
                sources=[pad.Source(url)],
                expected_digests={"sha256": sha256(data)},
                remote="fedora",
            )
        )
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(data))
    assert record is not None and [s.remote for s in record.sources] == ["fedora"]


async def test_repeat_from_another_url_merges_sources(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    first = fault_server.add("/a/x.bin", data)
    second = fault_server.add("/b/x.bin", data)
    async with pad.DownloadEngine(engine_config(tmp_path)) as engine:
        await engine.download(first, expected_digests={"sha256": sha256(data)})
        assert engine.catalog is not None
        created = (await engine.catalog.get_unit_file(sha256(data))).created_at  # type: ignore[union-attr]
        again = await engine.download(
            second,
            expected_digests={"sha256": sha256(data), "sha512": hashlib.sha512(data).hexdigest()},
            expected_size=len(data),
        )
        record = await engine.catalog.get_unit_file(sha256(data))
    assert again.cached is True
    assert fault_server.stats("/b/x.bin").requests == 0
    assert record is not None
    assert [s.url for s in record.sources] == [first, second]
    assert record.created_at == created
    assert dict(record.digests) == {
        "sha256": sha256(data),
        "sha512": hashlib.sha512(data).hexdigest(),
    }


async def test_failed_download_records_nothing(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"the right bytes"
    url = fault_server.add("/bad", data, faults=Fault(flip_byte=3))
    async with pad.DownloadEngine(engine_config(tmp_path)) as engine:
        with pytest.raises(pad.DigestMismatch):
            await engine.download(url, expected_digests={"sha256": sha256(data)})
        assert engine.catalog is not None
        assert await engine.catalog.get_unit_file(sha256(data)) is None


# -- content units and repositories -------------------------------------------------------------


async def test_unit_and_repository_association_is_idempotent(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(2000)
    url = fault_server.add("/Packages/f/foo-1.0.rpm", data)
    spec = pad.UnitSpec(
        "rpm", "foo-1.0-1.x86_64", {"arch": "x86_64"}, relative_path="Packages/f/foo-1.0.rpm"
    )
    request = pad.DownloadRequest(
        url, expected_digests={"sha256": sha256(data)}, unit=spec, repository="fedora-40"
    )
    async with pad.DownloadEngine(engine_config(tmp_path)) as engine:
        first = await engine.download(request)
        second = await engine.download(request)
        third = await engine.download(
            pad.DownloadRequest(
                url, expected_digests={"sha256": sha256(data)}, unit=spec, repository="epel"
            )
        )
        catalog = engine.catalog
        assert catalog is not None
        unit = await catalog.get_unit("rpm", "foo-1.0-1.x86_64")
        fedora = await catalog.repository_units("fedora-40")
        epel = await catalog.repository_units("epel")
        assert await catalog.repository_units("nothing") == []
        assert await catalog.get_unit("rpm", "missing") is None
    assert fault_server.stats("/Packages/f/foo-1.0.rpm").requests == 1
    assert second.cached and third.cached
    assert unit is not None
    assert dict(unit.files) == {"Packages/f/foo-1.0.rpm": sha256(data)}
    assert dict(unit.metadata) == {"arch": "x86_64"}
    assert sorted(unit.repositories) == ["epel", "fedora-40"]
    assert first.unit is not None and first.unit.key == "foo-1.0-1.x86_64"
    assert [u.key for u in fedora] == [u.key for u in epel] == ["foo-1.0-1.x86_64"]


# -- credentials never reach the catalog --------------------------------------------------------


def basic_header(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_catalog_never_holds_passwords(fault_server: FaultServer, tmp_path: Path) -> None:
    remote_password = "Remote-Pa55word-7f3a"
    url_password = "Url-Pa55word-91c2"
    one, two = os.urandom(3000), os.urandom(3000)
    url_one = fault_server.add("/private/one", one, auth=("alice", remote_password))
    url_two = fault_server.add("/private/two", two, auth=("bob", url_password))
    with_userinfo = url_two.replace("http://", f"http://bob:{url_password}@")
    private = pad.RemoteConfig(
        name="private", username="alice", password=remote_password, retry=NO_RETRY
    )
    async with pad.DownloadEngine(engine_config(tmp_path, private)) as engine:
        await engine.download(url_one, expected_digests={"sha256": sha256(one)}, remote="private")
        await engine.download(with_userinfo, expected_digests={"sha256": sha256(two)})
        assert engine.catalog is not None
        record_one = await engine.catalog.get_unit_file(sha256(one))
        record_two = await engine.catalog.get_unit_file(sha256(two))
        # While the engine runs, the new records live in the WAL file.
        live = b"".join(p.read_bytes() for p in db_path(tmp_path).parent.glob("catalog.sqlite3*"))
    assert record_one is not None and record_one.sources == (pad.Source(url_one, remote="private"),)
    assert record_two is not None and [s.url for s in record_two.sources] == [url_two]
    closed = b"".join(p.read_bytes() for p in db_path(tmp_path).parent.glob("catalog.sqlite3*"))
    assert sha256(one).encode() in live  # the bytes searched do hold the records
    for blob in (live, closed):
        for secret in (remote_password, url_password, f"bob:{url_password}", "bob:"):
            assert secret.encode() not in blob


async def test_fetch_without_the_remote_names_it(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(1000)
    url = fault_server.add("/p", data, auth=("alice", "pw-1"))
    private = pad.RemoteConfig(name="private", username="alice", password="pw-1", retry=NO_RETRY)
    async with pad.DownloadEngine(engine_config(tmp_path, private)) as engine:
        await engine.register(url, expected_digests={"sha256": sha256(data)}, remote="private")
    # Another process: same catalog, but remote 'private' is not configured here.
    async with pad.DownloadEngine(engine_config(tmp_path)) as engine:
        with pytest.raises(pad.ConfigError, match="'private'") as info:
            await engine.fetch(sha256(data))
    assert "not configured" in str(info.value)
    assert fault_server.stats("/p").requests == 0
    async with pad.DownloadEngine(engine_config(tmp_path, private)) as engine:
        result = await engine.fetch(sha256(data))
    assert result.path is not None and result.path.read_bytes() == data


# -- scale and crashes ---------------------------------------------------------------------------


async def test_500_concurrent_downloads_leave_500_records(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = {f"/many/{i}.bin": os.urandom(200 + i) for i in range(500)}
    urls = {path: fault_server.add(path, data) for path, data in files.items()}
    catalog = pad.SQLiteCatalog(db_path(tmp_path))
    config = engine_config(tmp_path, catalog=catalog, max_connections=64)
    async with pad.DownloadEngine(config) as engine:
        results = await engine.download_many(
            [
                pad.DownloadRequest(
                    urls[p], expected_digests={"sha256": sha256(d)}, expected_size=len(d)
                )
                for p, d in files.items()
            ]
        )
        assert len(results) == 500
        records = {r.sha256: r async for r in catalog.unit_files()}
        transactions = catalog.transactions
    assert len(records) == 500
    for path, data in files.items():
        record = records[sha256(data)]
        assert record.size == len(data) and record.location is not None
        assert [s.url for s in record.sources] == [urls[path]]
    assert set(check_database(db_path(tmp_path), tmp_path / "data" / "artifacts")) == set(records)
    # Group commit: far fewer transactions than downloads.
    assert transactions < 500


def test_killed_sync_leaves_a_consistent_catalog(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    entries = []
    for i in range(150):
        data = os.urandom(500 + i)
        url = threaded_server.add(f"/k/{i}.bin", data, faults=Fault(delay=0.03))
        entries.append({"url": url, "sha256": sha256(data), "size": len(data)})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    data_dir = tmp_path / "data"
    args = ["sync", str(manifest), "--data-dir", str(data_dir), "--progress", "none", "--json",
            "--concurrency", "4"]  # fmt: skip
    # The killed worker's transfer claims block its files until their lease ends: keep it short.
    env = cli_env(PULP_AIO_DOWNLOAD_CLAIM_LEASE="2")
    proc = subprocess.Popen(
        cli(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:

        def forty_requests() -> bool:
            assert proc.poll() is None, "sync finished before it could be killed"
            return threaded_server.totals.requests >= 40

        until_sync(forty_requests, timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    partial = check_database(data_dir / "catalog.sqlite3", data_dir / "artifacts")
    assert 0 < len(partial) < len(entries)

    rerun = run_cli(*args, env={"PULP_AIO_DOWNLOAD_CLAIM_LEASE": "2"})
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["done"] == len(entries) and summary["failed"] == 0
    assert summary["cached"] >= len([p for p in partial.values() if p[1] is not None])
    final = check_database(data_dir / "catalog.sqlite3", data_dir / "artifacts")
    assert set(final) == {e["sha256"] for e in entries}
    assert all(location is not None for _, location in final.values())


# -- the command line ----------------------------------------------------------------------------


def test_sync_records_units_and_catalog_commands(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    entries = []
    for i in range(5):
        data = os.urandom(300 + i)
        url = threaded_server.add(f"/repo/pkg-{i}.rpm", data)
        entry: dict[str, object] = {"url": url, "sha256": sha256(data), "size": len(data)}
        if i < 4:
            entry["unit"] = {
                "type": "rpm",
                "key": f"pkg-{i}",
                "metadata": {"n": i},
                "relative_path": f"Packages/pkg-{i}.rpm",
            }
            entry["repository"] = "fedora"
        entries.append(entry)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    data_dir = ["--data-dir", str(tmp_path / "d")]
    proc = run_cli("sync", str(manifest), *data_dir, "--progress", "none")
    assert proc.returncode == 0, proc.stderr

    for entry in entries:
        show = run_cli("catalog", "show", str(entry["sha256"]), *data_dir)
        assert show.returncode == 0, show.stderr
        record = json.loads(show.stdout)
        assert record["sha256"] == entry["sha256"] and record["size"] == entry["size"]
        assert [s["url"] for s in record["sources"]] == [entry["url"]]
        assert record["location"] and record["created_at"] and record["verified_at"]

    units = run_cli("catalog", "units", "fedora", *data_dir)
    assert units.returncode == 0, units.stderr
    listed = json.loads(units.stdout)
    assert [u["key"] for u in listed] == [f"pkg-{i}" for i in range(4)]
    assert listed[2]["files"] == {"Packages/pkg-2.rpm": entries[2]["sha256"]}
    assert listed[2]["metadata"] == {"n": 2} and listed[2]["repositories"] == ["fedora"]

    missing = run_cli("catalog", "show", "0" * 64, *data_dir)
    assert missing.returncode == 1 and "0" * 64 in missing.stderr
    no_repo = run_cli("catalog", "units", "nope", *data_dir)
    assert no_repo.returncode == 1 and "nope" in no_repo.stderr


async def test_resync_of_stored_files_writes_nothing(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = [os.urandom(100 + i) for i in range(20)]
    requests = [
        pad.DownloadRequest(fault_server.add(f"/s/{i}", d), expected_digests={"sha256": sha256(d)})
        for i, d in enumerate(files)
    ]
    catalog = pad.SQLiteCatalog(db_path(tmp_path))
    # No transfer claims: count only what the hook chain writes.
    config = engine_config(tmp_path, catalog=catalog, claim_lease=0)
    async with pad.DownloadEngine(config) as engine:
        await engine.download_many(requests)
        writes = catalog.writes
        assert writes == len(files)  # one write per new file
        again = await engine.download_many(requests)
        assert all(r.cached for r in again)
        assert catalog.writes == writes
        # A new source for a stored file is news: it is recorded.
        mirror = fault_server.add("/mirror/0", files[0])
        await engine.download(mirror, expected_digests={"sha256": sha256(files[0])})
        assert catalog.writes == writes + 1
        record = await catalog.get_unit_file(sha256(files[0]))
    assert record is not None and [s.url for s in record.sources] == [requests[0].url, mirror]
