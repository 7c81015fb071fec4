"""engine.stream(): the body as it arrives, under the engine's limits (issue 21 item 1)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import NO_RETRY, make_engine, sha256
from pulp_aio_download.testing import Fault, FaultServer

FAST_RETRY = pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


async def drain(engine: pad.DownloadEngine, url: str, **kwargs: object) -> bytes:
    """Stream ``url`` to its end."""
    async with engine.stream(url, **kwargs) as s:  # type: ignore[arg-type]
        return b"".join([chunk async for chunk in s])


def staging(tmp_path: Path) -> list[Path]:
    directory = tmp_path / "store" / ".staging"
    return sorted(directory.iterdir()) if directory.exists() else []


def stored(tmp_path: Path) -> list[Path]:
    root = tmp_path / "store"
    return sorted(p for p in root.rglob("*") if p.is_file() and ".staging" not in p.parts)


class HeldServer:
    """Sends the first part of a body, then the rest only once the test says so."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.go_on = asyncio.Event()
        self.requests = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        response = web.StreamResponse(headers={"Content-Length": str(len(self.first + self.rest))})
        await response.prepare(request)
        await response.write(self.first)
        await self.go_on.wait()
        await response.write(self.rest)
        await response.write_eof()
        return response


@pytest.fixture
async def held() -> AsyncIterator[tuple[HeldServer, str]]:
    server = HeldServer(os.urandom(100_000), os.urandom(300_000))
    app = web.Application()
    app.router.add_get("/held", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}/held"
    finally:
        server.go_on.set()
        await runner.cleanup()


async def test_chunks_come_before_the_body_ends(
    held: tuple[HeldServer, str], tmp_path: Path
) -> None:
    server, url = held
    data = server.first + server.rest
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        async with engine.stream(url, expected_digests={"sha256": sha256(data)}) as s:
            assert s.status == 200 and s.headers["Content-Length"] == str(len(data))
            got = bytearray()
            async for chunk in s:
                got.extend(chunk)
                if len(got) >= len(server.first):
                    server.go_on.set()  # only now does the server send the rest
            assert bytes(got) == data
            assert s.digests == {"sha256": sha256(data)} and s.size == len(data)
            assert engine.statistics().transfers == 1
        assert engine.statistics().transfers == 0
    assert stored(tmp_path) == []  # store=False stores nothing


async def test_retries_before_the_first_byte_and_fails_over(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    first = fault_server.add(
        "/a", data, faults=[Fault(status=503), Fault(status=503), Fault(status=404)]
    )
    async with FaultServer() as other:
        second = other.add("/a", data)
        sources = [pad.Source(first, priority=10), pad.Source(second)]
        remote = pad.RemoteConfig(retry=FAST_RETRY)
        async with make_engine(tmp_path, remote) as engine:
            request = pad.DownloadRequest(
                sources=sources, expected_digests={"sha256": sha256(data)}
            )
            async with engine.stream(request) as s:
                body = b"".join([chunk async for chunk in s])
            assert s.url == second and s.attempts == 1
    assert body == data
    assert len(fault_server.requests_for("/a")) == 3  # 503, 503, then a 404 is not retried


async def test_a_retried_source_counts_its_attempts(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = b"second time lucky" * 100
    url = fault_server.add("/r", data, faults=[Fault(status=503, retry_after=0.01), None])
    engine = make_engine(tmp_path, pad.RemoteConfig(retry=FAST_RETRY))
    async with engine, engine.stream(url) as s:
        assert b"".join([c async for c in s]) == data
    assert s.attempts == 2


async def test_a_digest_mismatch_is_raised_after_the_last_chunk(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    url = fault_server.add("/bad", data, faults=Fault(flip_byte=1000))
    got = bytearray()

    async def consume(engine: pad.DownloadEngine) -> None:
        async with engine.stream(url, expected_digests={"sha256": sha256(data)}, store=True) as s:
            async for chunk in s:
                got.extend(chunk)

    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        with pytest.raises(pad.DigestMismatch) as info:
            await consume(engine)
    assert len(got) == len(data)  # every byte was handed out before the check
    assert info.value.expected == sha256(data) and info.value.url == url
    assert stored(tmp_path) == [] and staging(tmp_path) == []


async def test_an_over_long_body_is_cut(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/long", b"x" * 10_000)
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        with pytest.raises(pad.SizeMismatch):
            await drain(engine, url, expected_size=4000)


async def test_a_stall_is_detected(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/stall", os.urandom(100_000), faults=Fault(stall_after=1000))
    remote = pad.RemoteConfig(
        retry=NO_RETRY, timeouts=pad.Timeouts(min_speed=10_000, stall_window=0.4)
    )
    async with make_engine(tmp_path, remote) as engine:
        with pytest.raises(pad.DownloadTimeout, match="stalled"):
            await drain(engine, url)
        assert engine.statistics().transfers == 0


async def test_store_stores_and_records_the_same_bytes(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    url = fault_server.add("/keep", data)
    md5 = hashlib.md5(data).hexdigest()
    async with make_engine(
        tmp_path, pad.RemoteConfig(retry=NO_RETRY), data_dir=tmp_path / "d"
    ) as engine:
        async with engine.stream(
            url, expected_digests={"sha256": sha256(data)}, compute_digests=["md5"], store=True
        ) as s:
            assert b"".join([c async for c in s]) == data
        assert s.result is not None and s.result.path is not None
        assert s.result.path.read_bytes() == data and s.digests == {
            "sha256": sha256(data),
            "md5": md5,
        }
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(data))
        assert record is not None and [src.url for src in record.sources] == [url]
        # A second stream of it comes from the store, with no request.
        async with engine.stream(url, expected_digests={"sha256": sha256(data)}) as again:
            assert again.cached and again.status == 200
            assert b"".join([c async for c in again]) == data
    assert len(fault_server.requests_for("/keep")) == 1


async def test_a_concurrent_download_joins_the_stream(
    held: tuple[HeldServer, str], tmp_path: Path
) -> None:
    server, url = held
    data = server.first + server.rest
    digests = {"sha256": sha256(data)}
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        async with engine.stream(url, expected_digests=digests, store=True) as s:
            chunks = aiter(s)
            await anext(chunks)
            joined = asyncio.ensure_future(engine.download(url, expected_digests=digests))
            await asyncio.sleep(0.05)
            assert not joined.done()  # waiting for the stream's transfer
            server.go_on.set()
            async for _ in chunks:
                pass
        result = await joined
    assert result.cached is True and result.path is not None and result.path.read_bytes() == data
    assert server.requests == 1


async def test_a_range_passes_through_unvalidated_and_unstored(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    url = fault_server.add("/range", data)
    async with make_engine(
        tmp_path, pad.RemoteConfig(retry=NO_RETRY), data_dir=tmp_path / "d"
    ) as engine:
        async with engine.stream(
            url,
            expected_digests={"sha256": sha256(data)},
            headers={"Range": "bytes=10-99"},
            store=True,
        ) as s:
            assert s.status == 206
            assert b"".join([c async for c in s]) == data[10:100]
        assert s.digests is None and s.result is None
        assert engine.catalog is not None
        assert await engine.catalog.get_unit_file(sha256(data)) is None
    assert fault_server.requests_for("/range")[0].headers["Range"] == "bytes=10-99"


async def test_leaving_early_releases_everything(
    held: tuple[HeldServer, str], tmp_path: Path
) -> None:
    server, url = held
    data = server.first + server.rest
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY), max_connections=1) as engine:
        async with engine.stream(url, expected_digests={"sha256": sha256(data)}, store=True) as s:
            async for _ in s:
                break  # the client went away
        assert engine.statistics().transfers == 0
        assert staging(tmp_path) == [] and stored(tmp_path) == []
        # The one global slot is free again: a download gets it.
        server.go_on.set()
        result = await engine.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data


async def test_cancelled_while_streaming_leaves_nothing(
    held: tuple[HeldServer, str], tmp_path: Path
) -> None:
    server, url = held
    data = server.first + server.rest
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        started = asyncio.Event()

        async def consume() -> None:
            async with engine.stream(
                url, expected_digests={"sha256": sha256(data)}, store=True
            ) as s:
                async for _ in s:
                    started.set()

        task = asyncio.ensure_future(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.statistics().transfers == 0
    assert staging(tmp_path) == [] and stored(tmp_path) == []


async def test_the_global_limit_holds_for_streams(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/g", b"g" * 1000)
    fault_server.gate("/g")
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY), max_connections=1) as engine:
        tasks = [asyncio.ensure_future(drain(engine, url)) for _ in range(3)]
        await fault_server.wait_inflight(1, "/g")
        await asyncio.sleep(0.05)
        assert fault_server.stats("/g").inflight == 1  # the others wait for the slot
        fault_server.release()
        assert await asyncio.gather(*tasks) == [b"g" * 1000] * 3


async def test_an_http_error_is_a_download_error(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/gone", b"x", faults=Fault(status=404))
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        with pytest.raises(pad.HTTPStatusError) as info:
            async with engine.stream(url):
                pass
        assert engine.statistics().transfers == 0
    assert info.value.status == 404 and info.value.url == url
