"""LocalStorage durability modes and the group commit."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

import pulp_aio_download as pad
from pulp_aio_download.storage.base import StoredArtifact
from pulp_aio_download.testing import FaultServer


@pytest.mark.parametrize("durability", ["batch", "file", "none"])
async def test_every_mode_stores_valid_files(
    fault_server: FaultServer, tmp_path: Path, durability: str
) -> None:
    # Small files are kept in memory and written by the commit; larger ones are staged.
    files = {f"/d/{i}": os.urandom(1000 + i if i % 4 else 200_000 + i) for i in range(40)}
    for path, data in files.items():
        fault_server.add(path, data)
    storage = pad.LocalStorage(tmp_path / "store", durability=durability)
    assert storage.fsync_staged is (durability == "file")
    requests = [
        pad.DownloadRequest(
            fault_server.url(p), expected_digests={"sha256": hashlib.sha256(d).hexdigest()}
        )
        for p, d in files.items()
    ]
    async with pad.DownloadEngine(pad.EngineConfig(storage=storage)) as engine:
        results = await engine.download_many(requests)
    for result, data in zip(results, files.values(), strict=True):
        assert result.path is not None and result.path.read_bytes() == data
    assert list((tmp_path / "store" / ".staging").iterdir()) == []
    if durability == "batch":
        # 40 concurrent commits shared far fewer syncs than two per file.
        assert 2 <= storage.syncs < 40


@pytest.mark.parametrize("durability", ["batch", "file", "none"])
async def test_commit_body_writes_and_publishes_each_alone(tmp_path: Path, durability: str) -> None:
    storage = pad.LocalStorage(tmp_path / "store", durability=durability)
    await storage.open()
    bodies = [[os.urandom(100), os.urandom(i)] for i in range(10)]
    shas = [hashlib.sha256(b"".join(body)).hexdigest() for body in bodies]
    unwritable = tmp_path / "store" / "no-such-dir" / "x.part"
    outcomes = await asyncio.gather(
        storage.commit_body([b"lost"], unwritable, hashlib.sha256(b"lost").hexdigest(), 4),
        *(
            storage.commit_body(body, storage.new_staging_path(), sha, 100 + i)
            for i, (body, sha) in enumerate(zip(bodies, shas, strict=True))
        ),
        return_exceptions=True,
    )
    failed, *stored = outcomes
    assert isinstance(failed, pad.StorageError)
    assert "cannot write staging file" in str(failed) and not unwritable.exists()
    for body, sha, artifact in zip(bodies, shas, stored, strict=True):
        assert isinstance(artifact, StoredArtifact) and artifact.created
        assert artifact.path is not None and artifact.path.read_bytes() == b"".join(body)
        assert artifact.path == storage.path_of(sha)
    assert list((tmp_path / "store" / ".staging").iterdir()) == []
    if durability == "batch":
        assert 2 <= storage.syncs <= 4  # one group, or two: before and after the renames
    await storage.close()


def test_unknown_durability_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(pad.ConfigError, match="durability must be"):
        pad.LocalStorage(tmp_path, durability="sometimes")


async def test_absent_lists_what_is_not_stored(tmp_path: Path) -> None:
    storage = pad.LocalStorage(tmp_path / "store", durability="none")
    await storage.open()
    staged = storage.new_staging_path()
    staged.write_bytes(b"kept")
    sha = hashlib.sha256(b"kept").hexdigest()
    await storage.commit(staged, sha, 4)
    other = "0" * 64
    assert await storage.absent([sha, other]) == {other}
    await storage.close()


async def test_stat_many_finds_what_stat_finds_in_one_pass(tmp_path: Path) -> None:
    storage = pad.LocalStorage(tmp_path / "store", durability="none")
    await storage.open()
    shas = []
    for data in (b"one", b"two"):
        staged = storage.new_staging_path()
        staged.write_bytes(data)
        shas.append(hashlib.sha256(data).hexdigest())
        await storage.commit(staged, shas[-1], len(data))
    other = "0" * 64
    found = await storage.stat_many([shas[0], other, shas[1]])
    assert sorted(found or {}) == sorted(shas)
    for sha in shas:
        assert found is not None and found[sha] == await storage.stat(sha)
    assert await storage.stat_many([]) == {}
    await storage.close()


def test_each_unpickled_copy_names_its_staging_files_apart(tmp_path: Path) -> None:
    # Two worker processes that get the same pickled storage never write the same name.
    import pickle

    storage = pad.LocalStorage(tmp_path / "store")
    copies = [pickle.loads(pickle.dumps(storage)) for _ in range(2)]
    names = {c.new_staging_path().name for c in copies} | {storage.new_staging_path().name}
    assert len(names) == 3
    assert all(c.root == storage.root and c.durability == storage.durability for c in copies)
