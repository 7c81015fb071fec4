"""Network faults: every one ends in a good retry/resume or the right DownloadError, never a
hang, and leaves no staging file behind.

Faults come from :class:`FaultServer` (truncation with and without Content-Length, flipped
bytes, stalls, trickles, silence, redirect loops, huge headers, extra bytes) and from small
raw TCP servers for what an HTTP server cannot do (a TCP reset, a TLS handshake abort).
Every download is bounded by ``asyncio.timeout`` on top of pytest-timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import make_engine, until
from pulp_aio_download.testing import Fault, FaultServer

if sys.version_info >= (3, 11):
    from asyncio import timeout as bound
else:  # pragma: no cover - Python 3.10: aiohttp depends on async-timeout there
    from async_timeout import timeout as bound

SIZE = 400_000
DATA = random.Random(8).randbytes(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()
BOUND = 15.0  # seconds: no fault below may take longer than this


def fast_remote(attempts: int = 3, **timeouts: float | None) -> pad.RemoteConfig:
    """Short timeouts and backoff, so faults resolve in well under a second."""
    t: dict[str, float | None] = {
        "connect": 2.0,
        "sock_read": 1.0,
        "min_speed": 50_000.0,
        "stall_window": 0.5,
    }
    t.update(timeouts)
    return pad.RemoteConfig(
        retry=pad.RetryPolicy(attempts=attempts, backoff=0.01, max_backoff=0.05),
        timeouts=pad.Timeouts(**t),  # type: ignore[arg-type]
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[pad.DownloadEngine]:
    async with make_engine(tmp_path, fast_remote()) as eng:
        yield eng


def staging_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "store" / ".staging").iterdir())


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "store"
    return sorted(p for p in root.rglob("*") if p.is_file() and ".staging" not in p.parts)


async def fetch(engine: pad.DownloadEngine, url: str, **kwargs: object) -> pad.DownloadResult:
    kwargs.setdefault("expected_digests", {"sha256": SHA})
    kwargs.setdefault("expected_size", SIZE)
    async with bound(BOUND):
        return await engine.download(url, **kwargs)


def assert_stored(result: pad.DownloadResult, tmp_path: Path) -> None:
    assert result.sha256 == SHA and result.size == SIZE
    assert result.path is not None and result.path.read_bytes() == DATA
    assert staging_files(tmp_path) == []


# -- recovered by a retry or a resume --------------------------------------------------


RESET_POINTS = sorted({0, 1, SIZE - 1, *random.Random(3).sample(range(SIZE), 5)})


@pytest.mark.parametrize("offset", RESET_POINTS)
async def test_truncated_with_length_resumes_from_where_it_broke(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path, offset: int
) -> None:
    url = fault_server.add("/f", DATA, faults=[Fault(truncate_at=offset), None])
    result = await fetch(engine, url)
    assert_stored(result, tmp_path)
    assert result.attempts == 2
    second = fault_server.requests_for("/f")[1]
    if offset:
        assert second.headers["Range"] == f"bytes={offset}-"
        assert second.headers["If-Range"] == f'"{SHA}"'
        assert fault_server.stats("/f").bytes_sent == SIZE
    else:
        assert "Range" not in second.headers


async def test_two_breaks_in_a_row_still_complete(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add(
        "/f", DATA, faults=[Fault(truncate_at=100_000), Fault(truncate_at=150_000), None]
    )
    result = await fetch(engine, url)
    assert_stored(result, tmp_path)
    assert result.attempts == 3
    ranges = [r.headers.get("Range") for r in fault_server.requests_for("/f")]
    assert ranges == [None, "bytes=100000-", "bytes=250000-"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expected_size": SIZE, "expected_digests": {}},
        {"expected_size": None, "expected_digests": {"sha256": SHA}},
    ],
    ids=["size-only", "digest-only"],
)
async def test_truncated_without_length_is_detected_and_retried(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path, kwargs: dict[str, object]
) -> None:
    url = fault_server.add("/f", DATA, faults=[Fault(truncate_no_length=SIZE // 2), None])
    result = await fetch(engine, url, **kwargs)
    assert_stored(result, tmp_path)
    assert result.attempts == 2


async def test_wrong_bytes_with_right_length_are_refused_then_refetched(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=[Fault(flip_byte=SIZE // 3), None])
    result = await fetch(engine, url)
    assert_stored(result, tmp_path)
    assert result.attempts == 2
    # Resuming a corrupt file would keep the bad byte: the retry starts from byte 0.
    assert "Range" not in fault_server.requests_for("/f")[1].headers


async def test_stall_is_detected_and_the_transfer_resumed(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=[Fault(stall_after=120_000), None])
    result = await fetch(engine, url)
    assert_stored(result, tmp_path)
    assert result.attempts == 2
    assert fault_server.requests_for("/f")[1].headers["Range"].startswith("bytes=")


async def test_slow_but_live_trickle_is_not_killed(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    # 60 KB at ~150 KB/s: slower than a LAN, faster than the 50 KB/s floor.
    data = DATA[:60_000]
    url = fault_server.add("/f", data, faults=Fault(trickle=150_000))
    remote = fast_remote(attempts=1, stall_window=0.2)
    async with make_engine(tmp_path, remote) as eng, bound(BOUND):
        result = await eng.download(url, expected_size=len(data))
    assert result.attempts == 1 and result.path is not None
    assert result.path.read_bytes() == data
    assert staging_files(tmp_path) == []


async def test_one_stall_among_live_transfers_is_the_only_one_dropped(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    # Every watch of a window shares one timer: the stalled transfer is found among the
    # live ones, the live ones are left alone, and no watch or timer outlives the batch.
    from pulp_aio_download.transfer import stall

    data = DATA[:60_000]
    live = [fault_server.add(f"/live{i}", data, faults=Fault(trickle=150_000)) for i in range(4)]
    stalled = fault_server.add("/stalled", DATA, faults=Fault(stall_after=50_000))
    remote = fast_remote(attempts=1, stall_window=0.2)
    async with make_engine(tmp_path, remote) as eng, bound(BOUND):
        requests = [pad.DownloadRequest(u, expected_size=len(data)) for u in live]
        requests.insert(2, pad.DownloadRequest(stalled, expected_size=SIZE))
        outcomes = await eng.download_many(requests, return_exceptions=True)
        assert stall._tickers is not None
        tickers = list(stall._tickers[1].values())
        assert tickers and all(not t.watches for t in tickers)
    # The shared timer stops at its first tick with no watch left.
    await until(lambda: all(t._handle is None for t in tickers), timeout=5)
    failed = outcomes.pop(2)
    assert isinstance(failed, pad.DownloadTimeout) and failed.timeout == "stall"
    assert stalled in str(failed)
    for result in outcomes:
        assert isinstance(result, pad.DownloadResult) and result.attempts == 1
        assert result.path is not None and result.path.read_bytes() == data
    assert staging_files(tmp_path) == []


async def test_trickle_below_the_floor_is_dropped_then_resumed(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=[Fault(trickle=10_000), None])
    result = await fetch(engine, url)
    assert_stored(result, tmp_path)
    assert result.attempts == 2


async def test_silent_server_once_then_good(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=[Fault(never_answer=True), None])
    result = await fetch(engine, url)
    assert_stored(result, tmp_path)
    assert result.attempts == 2


async def test_extra_bytes_after_content_length_are_ignored(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(extra_bytes=10_000, extra_with_length=True))
    assert_stored(await fetch(engine, url), tmp_path)


# -- the right error -------------------------------------------------------------------


async def test_silent_server_ends_in_a_timeout(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(never_answer=True))
    with pytest.raises(pad.DownloadTimeout) as info:
        await fetch(engine, url)
    assert info.value.timeout == "sock_read"
    assert fault_server.stats("/f").requests == 3
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


async def test_always_stalling_server_ends_in_a_stall_timeout(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(stall_after=50_000))
    with pytest.raises(pad.DownloadTimeout) as info:
        await fetch(engine, url)
    assert info.value.timeout == "stall"
    assert "stalled" in str(info.value) and url in str(info.value)
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


async def test_always_truncating_server_ends_in_connection_failed(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(truncate_at=1000))
    with pytest.raises(pad.ConnectionFailed) as info:
        await fetch(engine, url)
    assert url in str(info.value)
    assert fault_server.stats("/f").requests == 3
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


async def test_always_corrupt_server_ends_in_digest_mismatch(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(flip_byte=7))
    with pytest.raises(pad.DigestMismatch) as info:
        await fetch(engine, url)
    assert info.value.expected == SHA and info.value.actual != SHA
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


async def test_redirect_loop_ends_in_too_many_redirects(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(redirect_to="/f"))
    with pytest.raises(pad.HTTPStatusError, match="too many redirects"):
        await fetch(engine, url)
    # max_redirects (10) followed once, then given up: a loop is not retried.
    assert fault_server.stats("/f").requests == 11
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


async def test_two_hop_redirect_loop_is_bounded(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    fault_server.add("/a", DATA, faults=Fault(redirect_to="/b", redirect_status=307))
    fault_server.add("/b", DATA, faults=Fault(redirect_to="/a", redirect_status=301))
    with pytest.raises(pad.HTTPStatusError, match="too many redirects"):
        await fetch(engine, fault_server.url("/a"))
    assert fault_server.totals.requests == 11
    assert staging_files(tmp_path) == []


async def test_huge_response_header_fails_cleanly(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(huge_headers=200_000))
    with pytest.raises(pad.DownloadError) as info:
        await fetch(engine, url)
    assert url in str(info.value)
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


async def test_huge_response_header_is_not_reported_as_an_http_status(
    fault_server: FaultServer, engine: pad.DownloadEngine
) -> None:
    url = fault_server.add("/f", DATA, faults=Fault(huge_headers=200_000))
    with pytest.raises(pad.ConnectionFailed, match=r"(?i)header"):
        await fetch(engine, url)


async def test_content_length_above_expected_size_is_refused_before_the_body(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA)
    with pytest.raises(pad.SizeMismatch) as info:
        await fetch(engine, url, expected_size=SIZE - 1, expected_digests={})
    assert info.value.expected == SIZE - 1
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


# -- raw TCP servers: a reset (RST) and a TLS handshake abort ----------------------------


class RawServer:
    """A TCP server on 127.0.0.1 whose connections are handled by ``behaviour``."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        sock = writer.get_extra_info("socket")
        try:
            if self.behaviour == "close-after-accept":
                return
            head = await reader.readuntil(b"\r\n\r\n")
            start = 0
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("range: bytes="):
                    start = int(line.split("=", 1)[1].rstrip("-"))
            status = "206 Partial Content" if start else "200 OK"
            headers = (
                f"HTTP/1.1 {status}\r\nContent-Length: {SIZE - start}\r\n"
                f'ETag: "{SHA}"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n'
            )
            if start:
                headers += f"Content-Range: bytes {start}-{SIZE - 1}/{SIZE}\r\n"
            writer.write(headers.encode() + b"\r\n")
            if self.behaviour == "reset-first" and self.connections == 1:
                writer.write(DATA[: SIZE // 4])
                await writer.drain()
                # SO_LINGER 0: close() sends a TCP RST instead of a FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            writer.write(DATA[start:])
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def test_tcp_reset_mid_body_is_resumed(engine: pad.DownloadEngine, tmp_path: Path) -> None:
    async with RawServer("reset-first") as raw:
        result = await fetch(engine, f"http://127.0.0.1:{raw.port}/f")
    assert_stored(result, tmp_path)
    assert result.attempts == 2 and raw.connections == 2


async def test_tls_handshake_abort_is_a_connection_failure(
    engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    async with RawServer("close-after-accept") as raw:
        url = f"https://127.0.0.1:{raw.port}/f"
        with pytest.raises(pad.ConnectionFailed) as info:
            await fetch(engine, url)
    assert url in str(info.value)
    # A TLSError (a reset in the handshake) is not retried; a plain reset would be.
    assert raw.connections == (1 if isinstance(info.value, pad.TLSError) else 3)
    assert staging_files(tmp_path) == [] and stored_files(tmp_path) == []


async def test_plain_http_answer_on_a_tls_url_is_a_tls_error(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    url = fault_server.add("/f", DATA).replace("http://", "https://")
    with pytest.raises(pad.TLSError) as info:
        await fetch(engine, url)
    assert url in str(info.value)
    assert staging_files(tmp_path) == []


async def test_refused_connection_is_a_connection_failure(
    engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(pad.ConnectionFailed, match="cannot connect"):
            await fetch(engine, f"http://127.0.0.1:{port}/f")
    assert staging_files(tmp_path) == []


# -- many faults in one batch ------------------------------------------------------------


async def test_batch_of_mixed_faults_loses_nothing(
    fault_server: FaultServer, engine: pad.DownloadEngine, tmp_path: Path
) -> None:
    rng = random.Random(80)
    recoverable = [
        Fault(truncate_at=1234),
        Fault(truncate_no_length=5000),
        Fault(flip_byte=10),
        Fault(status=503, retry_after=0),
        Fault(status=500),
        None,
    ]
    requests = []
    expected = []
    for i in range(60):
        data = rng.randbytes(rng.randrange(1, 40_000))
        path = f"/batch/{i}"
        fault_server.add(path, data, faults=[rng.choice(recoverable), None])
        requests.append(
            pad.DownloadRequest(
                fault_server.url(path),
                expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                expected_size=len(data),
            )
        )
        expected.append(data)
    fault_server.add("/batch/bad", DATA, faults=Fault(status=404))
    requests.append(pad.DownloadRequest(fault_server.url("/batch/bad")))
    async with bound(BOUND * 2):
        results = await engine.download_many(requests, return_exceptions=True)
    for data, result in zip(expected, results, strict=False):
        assert isinstance(result, pad.DownloadResult), result
        assert result.path is not None and result.path.read_bytes() == data
    assert isinstance(results[-1], pad.HTTPStatusError) and results[-1].status == 404
    assert staging_files(tmp_path) == []
    assert len(stored_files(tmp_path)) == len({hashlib.sha256(d).digest() for d in expected})
