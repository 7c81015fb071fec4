"""Lazy content: register without transferring, fetch on demand (issue 4)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from pulp_aio_download.testing import Fault, FaultServer


def config(tmp_path: Path, **kw: object) -> pad.EngineConfig:
    return pad.EngineConfig(
        data_dir=tmp_path / "data",
        remotes=[pad.RemoteConfig(retry=NO_RETRY)],
        **kw,  # type: ignore[arg-type]
    )


async def test_register_records_everything_and_transfers_nothing(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(7000)
    primary = fault_server.add("/primary/p.rpm", data)
    backup = fault_server.add("/backup/p.rpm", data)
    spec = pad.UnitSpec("rpm", "p-1", {"name": "p"}, relative_path="Packages/p.rpm")
    request = pad.DownloadRequest(
        sources=[pad.Source(primary, priority=2), pad.Source(backup, weight=0.5)],
        expected_digests={"sha256": sha256(data), "sha1": hashlib.sha1(data).hexdigest()},
        expected_size=len(data),
        unit=spec,
        repository="lazy-repo",
    )
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        record = await engine.register(request)
        assert engine.catalog is not None
        unit = await engine.catalog.get_unit("rpm", "p-1")
        units = await engine.catalog.repository_units("lazy-repo")
    assert fault_server.totals.requests == 0
    assert not (tmp_path / "data" / "artifacts").exists() or not any(
        p.is_file() for p in (tmp_path / "data" / "artifacts").rglob("*")
    )
    assert record.sha256 == sha256(data) and record.size == len(data) and record.location is None
    assert dict(record.digests) == dict(request.expected_digests)
    assert record.sources == (pad.Source(primary, priority=2), pad.Source(backup, weight=0.5))
    assert record.created_at is not None and record.verified_at is None
    assert unit is not None and dict(unit.files) == {"Packages/p.rpm": sha256(data)}
    assert [u.key for u in units] == ["p-1"]


async def test_fetch_downloads_on_demand_from_recorded_sources(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(9000)
    primary = fault_server.add("/primary/f", b"", faults=Fault(status=404))
    backup = fault_server.add("/backup/f", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        await engine.register(
            pad.DownloadRequest(
                sources=[pad.Source(primary, priority=1), pad.Source(backup)],
                expected_digests={"sha256": sha256(data)},
                expected_size=len(data),
            )
        )
    assert fault_server.totals.requests == 0
    # Later, in another engine (another process in real life): fetch on demand.
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        result = await engine.fetch(sha256(data).upper())
        again = await engine.fetch(sha256(data))
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(data))
    assert result.url == backup and result.cached is False
    assert result.path is not None and result.path.read_bytes() == data
    assert again.cached is True
    assert fault_server.stats("/primary/f").requests == 1
    assert fault_server.stats("/backup/f").requests == 1
    assert record is not None and record.location == result.location
    assert record.verified_at is not None


async def test_register_merges_and_keeps_a_stored_location(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(500)
    first = fault_server.add("/one", data)
    second = fault_server.add("/two", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        stored = await engine.download(first, expected_digests={"sha256": sha256(data)})
        record = await engine.register(second, expected_digests={"sha256": sha256(data)})
    assert record.location == stored.location and record.size == len(data)
    assert [s.url for s in record.sources] == [first, second]
    assert fault_server.stats("/two").requests == 0


async def test_lazy_errors_are_config_errors(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/x", b"x")
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.ConfigError, match="sha256"):
            await engine.register(url)
        with pytest.raises(pad.ConfigError, match="no unit file recorded"):
            await engine.fetch("ab" * 32)
    async with pad.DownloadEngine(pad.EngineConfig()) as engine:  # no catalog
        with pytest.raises(pad.ConfigError, match="needs a catalog"):
            await engine.register(url, expected_digests={"sha256": sha256(b"x")})
    assert fault_server.totals.requests == 0
