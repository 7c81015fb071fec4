"""Per-request headers, compute_digests and the handoff of a validated file (issue 21)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, make_engine, sha256
from pulp_aio_download.hooks import report_progress
from pulp_aio_download.testing import Fault, FaultServer

ALL = ("sha224", "sha384", "sha512")


def hexes(data: bytes, *names: str) -> dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in names}


def leftovers(root: Path) -> list[Path]:
    staging = root / ".staging"
    return sorted(staging.iterdir()) if staging.exists() else []


# -- compute_digests -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 10_000, 3 * 1024 * 1024 + 5])
async def test_compute_digests_streamed(
    fault_server: FaultServer, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    url = fault_server.add("/a.bin", data)
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        result = await engine.download(
            url, expected_digests={"sha256": sha256(data)}, compute_digests=["SHA512", "sha224"]
        )
    assert result.digests == hexes(data, "sha256", "sha224", "sha512")
    assert result.path is not None and result.path.read_bytes() == data


async def test_engine_default_compute_digests_and_record(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    url = fault_server.add("/b.bin", data)
    engine = make_engine(tmp_path, data_dir=tmp_path / "data", compute_digests=ALL)
    async with engine:
        result = await engine.download(url, compute_digests=["md5"])
        assert result.digests == hexes(data, "sha256", "md5", *ALL)
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(data))
    assert record is not None and dict(record.digests) == hexes(data, "sha256", "md5", *ALL)


async def test_cached_hit_computes_missing_digests_from_the_store(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    url = fault_server.add("/c.bin", data)
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        await engine.download(url, expected_digests={"sha256": sha256(data)})
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        result = await engine.download(
            url, expected_digests={"sha256": sha256(data)}, compute_digests=ALL
        )
    assert result.cached is True
    assert result.digests == hexes(data, "sha256", *ALL)
    assert len(fault_server.requests_for("/c.bin")) == 1


def test_compute_digests_refuses_unknown_algorithms() -> None:
    with pytest.raises(pad.ConfigError, match="unknown digest algorithm 'crc32'"):
        pad.DownloadRequest("http://127.0.0.1/x", compute_digests=["crc32"])
    with pytest.raises(pad.ConfigError, match=r"EngineConfig\.compute_digests"):
        pad.EngineConfig(compute_digests=["whirlpool"])
    with pytest.raises(pad.ConfigError, match="list of algorithm names"):
        pad.DownloadRequest("http://127.0.0.1/x", compute_digests="sha512")  # type: ignore[arg-type]


# -- headers -----------------------------------------------------------------------------------
async def test_request_headers_sent_over_the_remote_ones(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = b"headers" * 100
    url = fault_server.add("/h", data)
    remote = pad.RemoteConfig(headers={"X-Remote": "r", "X-Both": "remote"}, retry=NO_RETRY)
    async with make_engine(tmp_path, remote, data_dir=tmp_path / "data") as engine:
        await engine.download(url, headers={"X-Request": "q", "X-Both": "request"})
        await engine.download(fault_server.add("/other", b"o"))
    first, second = fault_server.requests_for("/h")[0], fault_server.requests_for("/other")[0]
    assert first.headers["X-Request"] == "q"
    assert first.headers["X-Remote"] == "r"
    assert first.headers.getall("X-Both") == ["request"]
    assert "X-Request" not in second.headers  # this request only
    assert second.headers["X-Both"] == "remote"


async def test_request_authorization_not_sent_after_a_redirect_elsewhere(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    async with FaultServer() as other:
        target = other.add("/t", b"target")
        url = fault_server.add("/r", b"unused")
        fault_server.set_faults("/r", Fault(redirect_to=target))
        async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
            await engine.download(url, headers={"Authorization": "Bearer s3cret", "X-Keep": "k"})
        sent = other.requests_for("/t")[0].headers
    assert fault_server.requests_for("/r")[0].headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in sent and sent["X-Keep"] == "k"


def test_request_headers_checked_and_never_shown() -> None:
    request = pad.DownloadRequest("http://127.0.0.1/x", headers={"Authorization": "Basic c2VjcmV0"})
    assert "c2VjcmV0" not in repr(request) and "Authorization" in repr(request)
    with pytest.raises(pad.ConfigError, match="invalid header name"):
        pad.DownloadRequest("http://127.0.0.1/x", headers={"Bad Name": "v"})
    with pytest.raises(pad.ConfigError, match="one-line string"):
        pad.DownloadRequest("http://127.0.0.1/x", headers={"X-A": "a\r\nInjected: 1"})


async def test_download_refuses_a_range_header(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/whole", b"whole file")
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        with pytest.raises(pad.ConfigError, match=r"engine\.stream\(\)"):
            await engine.download(url, headers={"Range": "bytes=0-3"})
    assert fault_server.requests_for("/whole") == []


# -- handoff -----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1000, 64 * 1024, 64 * 1024 + 1, 2 * 1024 * 1024 + 1])
async def test_handoff_moves_the_file_to_the_caller(
    fault_server: FaultServer, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    url = fault_server.add("/f", data)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        result = await engine.download(
            url,
            expected_digests={"sha256": sha256(data)},
            expected_size=size,
            compute_digests=ALL,
            handoff_dir=inbox,
            unit=pad.UnitSpec("file", "f"),
        )
        assert engine.catalog is not None
        assert await engine.catalog.get_unit_file(sha256(data)) is None
        assert await engine.catalog.get_unit("file", "f") is None
    assert result.path is not None and result.path.parent == inbox
    assert result.path.read_bytes() == data
    assert list(inbox.iterdir()) == [result.path]  # no staging file left beside it
    assert result.location == "" and result.cached is False
    assert result.digests == hexes(data, "sha256", *ALL)
    store = tmp_path / "data" / "artifacts"
    assert not (store / sha256(data)[:2]).exists()  # not stored
    assert leftovers(store) == []


async def test_handoff_of_a_stored_file_is_a_copy_the_caller_owns(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(30_000)
    url = fault_server.add("/s", data)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        stored = await engine.download(url, expected_digests={"sha256": sha256(data)})
        handed = await engine.download(
            url, expected_digests={"sha256": sha256(data)}, handoff_dir=inbox
        )
    assert handed.cached is True and handed.path is not None and handed.path.parent == inbox
    assert stored.path is not None and handed.path.read_bytes() == stored.path.read_bytes()
    assert os.stat(handed.path).st_ino != os.stat(stored.path).st_ino
    handed.path.unlink()
    assert stored.path.read_bytes() == data  # the store's copy is untouched
    assert len(fault_server.requests_for("/s")) == 1


async def test_handoff_failure_leaves_nothing(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(5000)
    url = fault_server.add("/bad", data)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        with pytest.raises(pad.DigestMismatch):
            await engine.download(url, expected_digests={"sha256": "0" * 64}, handoff_dir=inbox)
    assert list(inbox.iterdir()) == []


async def test_handoff_rolled_back_when_a_later_hook_fails(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/hook", b"payload")
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    async def refuse(ctx: pad.DownloadContext) -> None:
        assert ctx.path is not None and ctx.path.parent == inbox
        raise ValueError("refused by the plugin")

    hooks = [*pad.DEFAULT_HOOKS, refuse]
    async with make_engine(tmp_path, data_dir=tmp_path / "data", hooks=hooks) as engine:
        with pytest.raises(pad.HookError, match="refused by the plugin"):
            await engine.download(url, handoff_dir=inbox)
    assert list(inbox.iterdir()) == []


async def test_handoff_dir_must_exist(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/x", b"x")
    async with make_engine(tmp_path, data_dir=tmp_path / "data") as engine:
        with pytest.raises(pad.ConfigError, match="is not a directory"):
            await engine.download(url, handoff_dir=tmp_path / "missing")
    assert fault_server.requests_for("/x") == []


# -- a chain without store ------------------------------------------------------------------
async def test_a_chain_without_store_stores_nothing_and_returns_no_path(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    url = fault_server.add("/nostore", data)
    seen: list[bytes] = []

    async def read_it(ctx: pad.DownloadContext) -> None:
        assert ctx.path is not None
        seen.append(await asyncio.to_thread(ctx.path.read_bytes))

    engine = make_engine(tmp_path, data_dir=tmp_path / "data", hooks=[read_it, report_progress])
    async with engine:
        result = await engine.download(url, expected_digests={"sha256": sha256(data)})
    assert seen == [data]
    assert result.path is None and result.location == ""
    assert result.digests == {"sha256": sha256(data)}
    store = tmp_path / "data" / "artifacts"
    assert not (store / sha256(data)[:2]).exists()
    assert leftovers(store) == []
