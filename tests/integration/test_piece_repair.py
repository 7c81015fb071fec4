"""Piece-level repair (issue 24 item 5): after a digest mismatch only the wrong pieces are
fetched again, from another mirror when there is one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, make_engine, sha256
from pulp_aio_download.testing import Fault, FaultServer

PIECE = 256 * 1024


def pieces_of(data: bytes) -> pad.Pieces:
    return pad.Pieces(
        "sha256",
        PIECE,
        tuple(hashlib.sha256(data[i : i + PIECE]).hexdigest() for i in range(0, len(data), PIECE)),
    )


def request(data: bytes, *sources: pad.Source) -> pad.DownloadRequest:
    return pad.DownloadRequest(
        sources=sources,
        expected_digests={"sha256": sha256(data)},
        expected_size=len(data),
        pieces=pieces_of(data),
    )


def ranges(server: FaultServer, path: str) -> list[str]:
    return [r.headers.get("Range", "whole") for r in server.requests_for(path)]


async def test_a_wrong_piece_comes_again_from_another_mirror(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(8 * PIECE + 5)
    bad = fault_server.add("/iso", data, faults=Fault(flip_byte=2 * PIECE + 17))
    async with FaultServer() as other:
        good = other.add("/iso", data)
        async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
            result = await engine.download(
                request(data, pad.Source(bad, priority=10), pad.Source(good))
            )
        assert ranges(other, "/iso") == [f"bytes={2 * PIECE}-{3 * PIECE - 1}"]
    assert ranges(fault_server, "/iso") == ["whole"]
    assert result.path is not None and result.path.read_bytes() == data
    assert result.sha256 == sha256(data) and result.attempts == 1


async def test_one_mirror_serves_the_piece_again(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(3 * PIECE)
    url = fault_server.add("/one", data, faults=[Fault(flip_byte=PIECE - 1), None])
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        result = await engine.download(request(data, pad.Source(url)))
    assert ranges(fault_server, "/one") == ["whole", f"bytes=0-{PIECE - 1}"]
    assert result.path is not None and result.path.read_bytes() == data


async def test_a_piece_that_never_comes_right_fails_and_leaves_nothing(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(4 * PIECE)
    url = fault_server.add("/rotten", data, faults=[Fault(flip_byte=3 * PIECE)] * 2)
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        with pytest.raises(pad.DigestMismatch) as info:
            await engine.download(request(data, pad.Source(url)))
    assert info.value.expected == sha256(data)
    assert ranges(fault_server, "/rotten") == ["whole", f"bytes={3 * PIECE}-{4 * PIECE - 1}"]
    store = tmp_path / "store"
    assert [p for p in store.rglob("*") if p.is_file()] == []


async def test_without_pieces_nothing_is_asked_again(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(2 * PIECE)
    url = fault_server.add("/plain", data, faults=Fault(flip_byte=5))
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        with pytest.raises(pad.DigestMismatch):
            await engine.download(url, expected_digests={"sha256": sha256(data)})
    assert ranges(fault_server, "/plain") == ["whole"]


def test_pieces_must_cover_the_size() -> None:
    data = os.urandom(2 * PIECE)
    with pytest.raises(pad.ConfigError, match="do not cover expected_size"):
        pad.DownloadRequest(
            "http://127.0.0.1/x", expected_size=3 * PIECE + 1, pieces=pieces_of(data)
        )
    with pytest.raises(pad.ConfigError, match="unknown digest algorithm"):
        pad.Pieces("crc32", PIECE, ("00",))
    with pytest.raises(pad.ConfigError, match="64 hex characters"):
        pad.Pieces("sha256", PIECE, ("zz",))


async def test_a_segmented_download_is_repaired_too(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(16 * PIECE)  # 4 MiB in two ranges
    flip = Fault(flip_byte=11 * PIECE + 3)
    url = fault_server.add("/seg", data, faults=[None, flip])  # the two ranges
    remote = pad.RemoteConfig(segments=2, segment_threshold=0, retry=NO_RETRY)
    async with make_engine(tmp_path, remote) as engine:
        result = await engine.download(request(data, pad.Source(url)))
    asked = ranges(fault_server, "/seg")
    piece = f"bytes={11 * PIECE}-{12 * PIECE - 1}"
    assert asked[-1] == piece and asked.count(piece) == 1  # the one piece, asked again
    assert "whole" not in asked  # the size is known: ranges only, no probe
    assert result.path is not None and result.path.read_bytes() == data
