"""Bitrot: verify stored files against their unit files, repair from the sources (issue 4)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pulp_aio_download as pad
from helpers import NO_RETRY, run_cli, sha256
from pulp_aio_download.testing import FaultServer


def config(tmp_path: Path, **kw: object) -> pad.EngineConfig:
    return pad.EngineConfig(
        data_dir=tmp_path / "data",
        remotes=[pad.RemoteConfig(retry=NO_RETRY)],
        **kw,  # type: ignore[arg-type]
    )


def artifact(tmp_path: Path, sha: str) -> Path:
    return tmp_path / "data" / "artifacts" / sha[:2] / sha[2:]


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


async def store_three(server: FaultServer, tmp_path: Path) -> list[bytes]:
    files = [os.urandom(20_000 + i) for i in range(3)]
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        for i, data in enumerate(files):
            url = server.add(f"/v/{i}.bin", data)
            await engine.download(
                url,
                expected_digests={"sha256": sha256(data), "md5": hashlib.md5(data).hexdigest()},
                expected_size=len(data),
            )
    return files


async def test_verify_finds_flipped_byte_and_deleted_file_and_changes_nothing(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    _good, rotten, gone = await store_three(fault_server, tmp_path)
    flip_byte(artifact(tmp_path, sha256(rotten)), 12_345)
    artifact(tmp_path, sha256(gone)).unlink()
    fault_server.reset_counters()
    reports: list[pad.ProgressReport] = []
    async with pad.DownloadEngine(config(tmp_path, progress=reports.append)) as engine:
        report = await engine.verify()
        again = await engine.verify()
    for r in (report, again):
        assert (r.checked, r.ok) == (3, 1)
        assert r.corrupt == (sha256(rotten),) and r.missing == (sha256(gone),)
        assert r.repaired == () and not r.clean
    # A check without repair moves nothing and fetches nothing.
    assert fault_server.totals.requests == 0
    assert sha256(artifact(tmp_path, sha256(rotten)).read_bytes()) != sha256(rotten)
    assert not (tmp_path / "data" / "artifacts" / ".quarantine").exists()
    final = [r for r in reports if r.code == "verify"][-1]
    assert (final.total, final.done, final.failed) == (3, 1, 2)


async def test_repair_restores_both_from_the_server(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    good, rotten, gone = await store_three(fault_server, tmp_path)
    flip_byte(artifact(tmp_path, sha256(rotten)), 0)
    artifact(tmp_path, sha256(gone)).unlink()
    fault_server.reset_counters()
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        report = await engine.verify(repair=True)
        after = await engine.verify()
        assert engine.catalog is not None
        records = {d: await engine.catalog.get_unit_file(sha256(d)) for d in (rotten, gone)}
    assert (report.checked, report.ok) == (3, 1)
    assert report.corrupt == (sha256(rotten),) and report.missing == (sha256(gone),)
    assert report.repaired == tuple(sorted([sha256(rotten), sha256(gone)]))
    assert report.clean and report.errors == {}
    assert (after.checked, after.ok, after.corrupt, after.missing) == (3, 3, (), ())
    for data in (good, rotten, gone):
        assert artifact(tmp_path, sha256(data)).read_bytes() == data
    assert fault_server.stats("/v/0.bin").requests == 0
    assert fault_server.stats("/v/1.bin").requests == fault_server.stats("/v/2.bin").requests == 1
    quarantined = list((tmp_path / "data" / "artifacts" / ".quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].name.startswith(sha256(rotten))
    assert sha256(quarantined[0].read_bytes()) != sha256(rotten)
    for record in records.values():
        assert record is not None and record.location is not None and record.verified_at


async def test_failed_repair_is_reported_and_found_again(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    _, _, gone = await store_three(fault_server, tmp_path)
    artifact(tmp_path, sha256(gone)).unlink()
    fault_server.remove("/v/2.bin")
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        report = await engine.verify(repair=True)
        again = await engine.verify()
    assert report.missing == (sha256(gone),) and report.repaired == ()
    assert "404" in report.errors[sha256(gone)] and not report.clean
    assert again.missing == (sha256(gone),)


async def test_lazy_records_are_not_checked(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/lazy", b"lazy")
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        await engine.register(url, expected_digests={"sha256": sha256(b"lazy")})
        report = await engine.verify(repair=True)
    assert (report.checked, report.ok, report.repaired) == (0, 0, ())
    assert fault_server.totals.requests == 0


# -- the command line ----------------------------------------------------------------------------


def test_verify_and_repair_from_the_command_line(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    files = [os.urandom(1000 + i) for i in range(6)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"url": threaded_server.add(f"/c/{i}", d), "sha256": sha256(d)}) + "\n"
            for i, d in enumerate(files)
        )
    )
    data_dir = ["--data-dir", str(tmp_path / "data")]
    assert run_cli("sync", str(manifest), *data_dir, "--progress", "none").returncode == 0
    clean = run_cli("verify", *data_dir)
    assert clean.returncode == 0, clean.stderr
    assert "checked 6: 6 ok, 0 corrupt, 0 missing" in clean.stdout

    flip_byte(artifact(tmp_path, sha256(files[1])), 5)
    artifact(tmp_path, sha256(files[4])).unlink()
    dirty = run_cli("verify", *data_dir)
    assert dirty.returncode == 1
    assert f"CORRUPT {sha256(files[1])}\n" in dirty.stdout
    assert f"MISSING {sha256(files[4])}\n" in dirty.stdout

    repair = run_cli("verify", "--repair", "--json", *data_dir)
    assert repair.returncode == 0, repair.stderr
    report = json.loads(repair.stdout)
    assert report["checked"] == 6 and report["ok"] == 4
    assert sorted(report["repaired"]) == sorted([sha256(files[1]), sha256(files[4])])
    for data in files:
        assert artifact(tmp_path, sha256(data)).read_bytes() == data
    assert run_cli("verify", *data_dir).returncode == 0
