"""engine.stream(): the body as it arrives, under the engine's limits (issue 21 item 1)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import pulp_aio_download as pad
from helpers import NO_RETRY, make_engine, sha256
from pulp_aio_download.admission.bandwidth import BURST
from pulp_aio_download.testing import Fault, FaultServer

FAST_RETRY = pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


async def drain(engine: pad.DownloadEngine, url: str, **kwargs: object) -> bytes:
    """Stream ``url`` to its end."""
    async with engine.stream(url, **kwargs) as s:  # type: ignore[arg-type]
        return b"".join([chunk async for chunk in s])


async def fill(stream: pad.DownloadStream, into: bytearray) -> None:
    """Read ``stream`` to its end into ``into`` (what came stays there if it fails)."""
    async for chunk in stream:
        into.extend(chunk)


def metric_points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """The (attributes, value) of every data point of the instrument ``name``."""
    data = reader.get_metrics_data()
    assert data is not None
    return [
        (dict(point.attributes or {}), getattr(point, "value", None))
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


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


async def test_a_short_body_is_a_size_mismatch_after_the_last_chunk(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    url = fault_server.add("/short", data)
    got = bytearray()
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        async with engine.stream(url, expected_size=20_000, store=True) as s:
            with pytest.raises(pad.SizeMismatch) as info:
                await fill(s, got)
        assert engine.statistics().transfers == 0
    assert bytes(got) == data and s.digests is None and s.result is None
    assert info.value.expected == 20_000 and info.value.actual == 10_000
    assert stored(tmp_path) == [] and staging(tmp_path) == []


async def test_a_failure_mid_body_is_raised_and_not_retried(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    url = fault_server.add("/cut", data, faults=[Fault(truncate_at=50_000), None])
    got = bytearray()
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST_RETRY)) as engine:
        async with engine.stream(url, expected_digests={"sha256": sha256(data)}) as s:
            with pytest.raises(pad.DownloadError) as info:
                await fill(s, got)
            assert not isinstance(info.value, pad.ValidationError)
            assert info.value.url == url
            # A failed stream stays failed: iterating again does not look like the end.
            with pytest.raises(pad.DownloadError) as again:
                await anext(aiter(s))
            assert again.value is info.value
        assert engine.statistics().transfers == 0
    assert 0 < len(got) <= 50_000 and bytes(got) == data[: len(got)]
    assert len(fault_server.requests_for("/cut")) == 1  # nothing retried after bytes went out
    assert staging(tmp_path) == []


async def test_a_second_stream_joins_the_first(
    held: tuple[HeldServer, str], tmp_path: Path
) -> None:
    server, url = held
    data = server.first + server.rest
    digests = {"sha256": sha256(data)}
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        async with engine.stream(url, expected_digests=digests, store=True) as first:
            chunks = aiter(first)
            await anext(chunks)
            second = asyncio.ensure_future(drain(engine, url, expected_digests=digests, store=True))
            await asyncio.sleep(0.05)
            assert not second.done()  # waiting for the first stream's transfer
            server.go_on.set()
            async for _ in chunks:
                pass
        assert await second == data
    assert server.requests == 1
    assert [p.read_bytes() for p in stored(tmp_path)] == [data]


async def test_a_stream_with_store_waits_for_a_running_download(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(30_000)
    url = fault_server.add("/d", data)
    fault_server.gate("/d")
    digests = {"sha256": sha256(data)}
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        download = asyncio.ensure_future(engine.download(url, expected_digests=digests))
        await fault_server.wait_inflight(1, "/d")

        async def stream() -> tuple[bool, bytes]:
            async with engine.stream(url, expected_digests=digests, store=True) as s:
                return s.cached, b"".join([c async for c in s])

        streamed = asyncio.ensure_future(stream())
        await asyncio.sleep(0.05)
        assert not streamed.done()
        fault_server.release()
        assert (await download).cached is False
        assert await streamed == (True, data)
    assert len(fault_server.requests_for("/d")) == 1


async def test_a_joined_download_transfers_itself_when_the_stream_leaves_early(
    held: tuple[HeldServer, str], tmp_path: Path
) -> None:
    server, url = held
    data = server.first + server.rest
    digests = {"sha256": sha256(data)}
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        async with engine.stream(url, expected_digests=digests, store=True) as s:
            await anext(aiter(s))
            joined = asyncio.ensure_future(engine.download(url, expected_digests=digests))
            await asyncio.sleep(0.05)
            assert not joined.done()
        # The client went away: the download does not fail with it, it fetches the file.
        server.go_on.set()
        result = await joined
    assert result.cached is False and result.path is not None
    assert result.path.read_bytes() == data
    assert server.requests == 2


async def test_compute_digests_and_a_cached_stream(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    url = fault_server.add("/c", data)
    want = {"sha256": sha256(data), "sha512": hashlib.sha512(data).hexdigest()}
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        async with engine.stream(url, compute_digests=["sha512"]) as s:
            assert b"".join([c async for c in s]) == data
        assert s.digests == want and s.size == len(data) and not s.cached
        assert stored(tmp_path) == []
        await engine.download(url, expected_digests={"sha256": sha256(data)})
        requests = len(fault_server.requests_for("/c"))
        async with engine.stream(
            url, expected_digests={"sha256": sha256(data)}, compute_digests=["sha512"]
        ) as cached:
            assert cached.cached and cached.status == 200
            assert cached.headers["Content-Length"] == str(len(data))
            assert b"".join([c async for c in cached]) == data
        assert cached.digests is not None and cached.digests["sha512"] == want["sha512"]
        assert cached.size == len(data) and engine.statistics().transfers == 0
    assert len(fault_server.requests_for("/c")) == requests == 2  # the cached one: none


async def test_store_with_a_handoff_dir_hands_the_file_over(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(40_000)
    url = fault_server.add("/h", data)
    handoff = tmp_path / "handoff"
    handoff.mkdir()
    async with (
        make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine,
        engine.stream(
            url, expected_digests={"sha256": sha256(data)}, handoff_dir=handoff, store=True
        ) as s,
    ):
        assert b"".join([c async for c in s]) == data
    assert s.result is not None and s.result.path is not None
    assert s.result.path.parent == handoff and s.result.path.read_bytes() == data
    assert sorted(handoff.iterdir()) == [s.result.path]  # no staging file left beside it
    assert stored(tmp_path) == [] and staging(tmp_path) == []


async def test_credentials_never_show(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"secret stuff" * 100
    good = fault_server.add("/ok", data)
    bad = fault_server.add("/no", b"x", faults=Fault(status=404))
    with_auth = [u.replace("http://", "http://user:hunter2@") for u in (good, bad)]
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY)) as engine:
        async with engine.stream(with_auth[0]) as s:
            assert b"".join([c async for c in s]) == data
            assert s.url == good and "hunter2" not in repr(s)
        with pytest.raises(pad.HTTPStatusError) as info:
            async with engine.stream(with_auth[1]):
                pass
    assert info.value.url == bad and "hunter2" not in str(info.value)
    assert fault_server.requests_for("/ok")[0].headers["Authorization"].startswith("Basic ")


async def test_the_host_health_counts_failures_not_a_client_that_left(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    data = os.urandom(300_000)
    url = fault_server.add("/ok", data)
    bad = fault_server.add("/bad", data, faults=Fault(flip_byte=5))

    def health() -> float:
        (point,) = metric_points(reader, "pad.host.health")
        return float(point[1])

    try:
        remote = pad.RemoteConfig(retry=NO_RETRY)
        async with make_engine(tmp_path, remote, meter_provider=provider) as engine:
            assert await drain(engine, url) == data
            async with engine.stream(url) as s:
                async for _ in s:
                    break  # the client went away: not the host's fault
            assert health() == 1.0
            with pytest.raises(pad.DigestMismatch):
                await drain(engine, bad, expected_digests={"sha256": sha256(data)})
            assert health() < 1.0
    finally:
        provider.shutdown()


async def test_the_rate_limit_spaces_stream_requests(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    n, rate = 5, 20.0
    urls = [fault_server.add(f"/s{i}", b"stream %d" % i) for i in range(n)]
    warm = fault_server.add("/warm", b"warm")
    async with make_engine(tmp_path, pad.RemoteConfig(rate_limit=rate)) as engine:
        await drain(engine, warm)
        bodies = await asyncio.gather(*(drain(engine, u) for u in urls))
    assert bodies == [b"stream %d" % i for i in range(n)]
    times = sorted(r.time for r in fault_server.requests if r.path != "/warm")
    assert times[-1] - times[0] >= (n - 1) / rate - 0.02


async def test_a_bandwidth_cap_holds_a_stream_back(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    size, cap = 1024 * 1024, 1024 * 1024  # one second at the cap, less its burst
    data = os.urandom(size)
    url = fault_server.add("/capped", data)
    remote = pad.RemoteConfig(retry=NO_RETRY, max_speed=cap)
    async with make_engine(tmp_path, remote) as engine:
        start = time.monotonic()
        assert await drain(engine, url, expected_digests={"sha256": sha256(data)}) == data
        elapsed = time.monotonic() - start
    assert elapsed >= (size / cap - BURST) * 0.95, f"{size / elapsed:.0f} B/s over a {cap} cap"


async def test_a_stored_stream_counts_as_a_download_in_the_metrics(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    data = os.urandom(50_000)
    url = fault_server.add("/m", data)
    other = os.urandom(50_000)
    bad = fault_server.add("/mbad", other, faults=Fault(flip_byte=5))
    digests = {"sha256": sha256(data)}
    try:
        remote = pad.RemoteConfig(retry=NO_RETRY)
        async with make_engine(tmp_path, remote, meter_provider=provider) as engine:
            assert await drain(engine, url) == data  # not stored: not a download
            assert metric_points(reader, "pad.download.files") == []
            assert await drain(engine, url, expected_digests=digests, store=True) == data
            with pytest.raises(pad.DigestMismatch):
                await drain(engine, bad, expected_digests={"sha256": sha256(other)}, store=True)
            files = {a["pad.outcome"]: v for a, v in metric_points(reader, "pad.download.files")}
    finally:
        provider.shutdown()
    assert files == {"done": 1, "failed": 1}


async def test_a_source_that_never_answers_falls_over_before_entering(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(20_000)
    silent = fault_server.add("/silent", data, faults=Fault(never_answer=True))
    async with FaultServer() as other:
        answering = other.add("/silent", data)
        remote = pad.RemoteConfig(retry=NO_RETRY, timeouts=pad.Timeouts(sock_read=0.3))
        request = pad.DownloadRequest(
            sources=[pad.Source(silent, priority=1), pad.Source(answering)],
            expected_digests={"sha256": sha256(data)},
        )
        async with make_engine(tmp_path, remote) as engine:
            async with engine.stream(request) as s:
                assert s.url == answering and s.status == 200
                assert b"".join([c async for c in s]) == data
            assert engine.statistics().transfers == 0
    assert len(fault_server.requests_for("/silent")) == 1


async def test_a_file_url_streams_from_an_allowed_root(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    data = os.urandom(150_000)
    (root / "f.bin").write_bytes(data)
    url = (root / "f.bin").as_uri()
    async with make_engine(tmp_path, allowed_file_roots=[root]) as engine:
        async with engine.stream(url, expected_digests={"sha256": sha256(data)}) as s:
            assert b"".join([c async for c in s]) == data
        assert s.digests == {"sha256": sha256(data)}
        with pytest.raises(pad.ConfigError):
            async with engine.stream((tmp_path / "elsewhere").as_uri()):
                pass
