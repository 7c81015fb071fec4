"""OpenTelemetry metrics (issue 24, item 6): the real SDK's in-memory reader, real loopback
servers, and what the instruments say checked against what the server saw."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import pulp_aio_download as pad
from helpers import make_engine, sha256
from pulp_aio_download.testing import Fault, FaultServer

FAST = pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)

Point = tuple[dict[str, Any], Any]


def collect(reader: InMemoryMetricReader) -> dict[str, list[Point]]:
    """Every data point the reader collects now, by instrument name: (attributes, value),
    the value being a histogram point's (count, sum)."""
    out: dict[str, list[Point]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "pulp_aio_download"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = (point.count, point.sum) if hasattr(point, "count") else point.value
                    out.setdefault(metric.name, []).append((dict(point.attributes), value))
    return out


def value(points: list[Point], **attributes: Any) -> Any:
    """The value of the one point whose attributes include ``attributes``."""
    found = [v for a, v in points if all(a.get(k) == w for k, w in attributes.items())]
    assert len(found) == 1, (attributes, points)
    return found[0]


@pytest.fixture
def metered() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


async def test_a_503_then_200_counts_one_retry_and_both_attempts(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    data = os.urandom(20_000)
    url = fault_server.add("/a.bin", data, faults=[Fault(status=503)])
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST), meter_provider=provider) as e:
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert result.attempts == 2 and fault_server.stats("/a.bin").statuses == [503, 200]
    points = collect(reader)
    port = fault_server.port
    server = {"server.address": "127.0.0.1", "server.port": port}
    assert points["pad.download.retries"] == [({**server, "pad.retry.reason": "503"}, 1)]
    assert points["pad.download.files"] == [({"pad.remote": "default", "pad.outcome": "done"}, 1)]
    assert points["pad.download.bytes"] == [
        ({"pad.remote": "default", "pad.cached": False, **server}, len(data))
    ]
    durations = points["http.client.request.duration"]
    ok = {"http.request.method": "GET", **server}
    failed = {**ok, "error.type": "503", "http.response.status_code": 503}
    assert len(durations) == 2 and {str(a) for a, _ in durations} == {str(ok), str(failed)}
    assert value(durations, **{"error.type": "503"})[0] == 1
    assert [count for a, (count, _) in durations if a == ok] == [1]


async def test_a_digest_mismatch_is_a_retry_then_a_failure(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    data = os.urandom(5_000)
    flipped = fault_server.add("/flipped.bin", data, faults=[Fault(flip_byte=7)])
    wrong = fault_server.add("/wrong.bin", b"not what the request expects")
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0.01))
    async with make_engine(tmp_path, remote, meter_provider=provider) as e:
        await e.download(flipped, expected_digests={"sha256": sha256(data)})
        with pytest.raises(pad.DigestMismatch):
            await e.download(wrong, expected_digests={"sha256": sha256(b"other")})
    points = collect(reader)
    # Two retries for a digest (the flipped byte, the first try of the wrong file); the
    # second try of the wrong file is the last: no retry.
    assert value(points["pad.download.retries"], **{"pad.retry.reason": "digest"}) == 2
    files = points["pad.download.files"]
    assert value(files, **{"pad.outcome": "done"}) == 1
    failure = value(files, **{"pad.outcome": "failed"})
    assert failure == 1
    failed_attributes = next(a for a, _ in files if a["pad.outcome"] == "failed")
    assert failed_attributes["error.type"] == "pulp_aio_download.errors.DigestMismatch"
    mismatches = value(
        points["http.client.request.duration"],
        **{"error.type": "pulp_aio_download.errors.DigestMismatch"},
    )
    assert mismatches[0] == 3  # every attempt that brought bad bytes
    # Only the file that validated counts its bytes.
    assert value(points["pad.download.bytes"], **{"pad.cached": False}) == len(data)


async def test_a_cached_hit_counts_its_bytes_as_cached_and_makes_no_request(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    data = os.urandom(3_000)
    url = fault_server.add("/c.bin", data)
    async with make_engine(tmp_path, meter_provider=provider) as e:
        await e.download(url, expected_digests={"sha256": sha256(data)})
        before = collect(reader)["http.client.request.duration"]
        cached = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert cached.cached and fault_server.stats("/c.bin").requests == 1
    points = collect(reader)
    assert points["http.client.request.duration"] == before  # no attempt at the host
    assert value(points["pad.download.files"], **{"pad.outcome": "cached"}) == 1
    assert value(points["pad.download.files"], **{"pad.outcome": "done"}) == 1
    assert value(points["pad.download.bytes"], **{"pad.cached": True}) == len(data)
    cached_attributes = next(a for a, _ in points["pad.download.bytes"] if a["pad.cached"])
    assert cached_attributes == {"pad.remote": "default", "pad.cached": True}  # no host


async def test_bytes_counted_equal_the_bytes_served(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    files = [os.urandom(n) for n in (1, 1000, 70_000, 300_000, 2_000_001)]
    requests = [
        pad.DownloadRequest(
            fault_server.add(f"/f{i}", d), expected_digests={"sha256": sha256(d)}, remote="repo"
        )
        for i, d in enumerate(files)
    ]
    async with make_engine(tmp_path, pad.RemoteConfig(name="repo"), meter_provider=provider) as e:
        await e.download_many(requests)
    points = collect(reader)
    served = fault_server.totals.bytes_sent
    assert served == sum(map(len, files))
    assert points["pad.download.bytes"] == [
        (
            {
                "pad.remote": "repo",
                "pad.cached": False,
                "server.address": "127.0.0.1",
                "server.port": fault_server.port,
            },
            served,
        )
    ]
    assert points["pad.download.files"] == [({"pad.remote": "repo", "pad.outcome": "done"}, 5)]


async def test_durations_are_recorded_per_host(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    async with FaultServer() as other:
        slow = other.add("/slow", b"s" * 1000, faults=Fault(delay=0.2))
        quick = [fault_server.add(f"/q{i}", b"q%d" % i) for i in range(3)]
        async with make_engine(tmp_path, meter_provider=provider) as e:
            await e.download_many([slow, *quick])
        durations = collect(reader)["http.client.request.duration"]
        count_slow, sum_slow = value(durations, **{"server.port": other.port})
        count_quick, sum_quick = value(durations, **{"server.port": fault_server.port})
    assert (count_slow, count_quick) == (1, 3)
    assert sum_slow >= 0.2 > sum_quick / 3


async def test_the_gauges_read_the_engine_statistics(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    data = b"held" * 100
    urls = [fault_server.add(f"/g{i}", data + bytes([i])) for i in range(3)]
    gate = fault_server.gate()
    async with make_engine(tmp_path, max_connections=2, meter_provider=provider) as e:
        task = asyncio.ensure_future(e.download_many(urls))
        await fault_server.wait_inflight(2)
        stats = e.statistics()
        points = collect(reader)
        assert (stats.in_flight, stats.transfers, stats.waiting) == (3, 2, 1)
        assert points["pad.download.in_flight"] == [({}, 3)]
        assert points["pad.transfer.active"] == [({}, 2)]
        assert points["pad.download.waiting"] == [({}, 1)]
        host = f"127.0.0.1:{fault_server.port}"
        limit = value(points["pad.host.connection.limit"], **{"server.port": fault_server.port})
        assert limit == stats.host_limits[host]
        gate.set()
        await task
        points = collect(reader)
        assert points["pad.download.in_flight"] == [({}, 0)]
        health = value(points["pad.host.health"], **{"server.port": fault_server.port})
        assert health == 1.0  # every attempt succeeded
    # A closed engine is no longer read.
    points = collect(reader)
    assert points["pad.download.in_flight"] == [({}, 0)]
    assert "pad.host.health" not in points


async def test_a_failing_host_lowers_its_health_score(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    url = fault_server.add("/down", b"x", faults=Fault(status=500))
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0.01))
    async with make_engine(tmp_path, remote, meter_provider=provider) as e:
        with pytest.raises(pad.HTTPStatusError):
            await e.download(url)
        points = collect(reader)
    health = value(points["pad.host.health"], **{"server.port": fault_server.port})
    assert health == pytest.approx(1 - (1 - 0.8**2))  # two failures: error rate 0.36
    files = points["pad.download.files"]
    assert files == [({"pad.remote": "default", "pad.outcome": "failed", "error.type": "500"}, 1)]


async def test_two_engines_share_the_instruments_of_one_provider(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    a = fault_server.add("/one", b"one")
    b = fault_server.add("/two", b"two")
    gate = fault_server.gate("/two")
    async with make_engine(tmp_path / "1", meter_provider=provider) as first:
        await first.download(a)
        async with make_engine(tmp_path / "2", meter_provider=provider) as second:
            task = asyncio.ensure_future(second.download(b))
            await fault_server.wait_inflight(1, "/two")
            assert collect(reader)["pad.download.in_flight"] == [({}, 1)]
            gate.set()
            await task
    points = collect(reader)
    assert value(points["pad.download.files"], **{"pad.outcome": "done"}) == 2
    assert value(points["pad.download.bytes"], **{"pad.cached": False}) == 6


async def test_no_credentials_or_urls_in_any_attribute(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    data = b"secret content"
    fault_server.add(
        "/private/file.bin", data, auth=("alice", "s3cr3t-pw"), faults=[Fault(status=503)]
    )
    url = f"http://alice:s3cr3t-pw@127.0.0.1:{fault_server.port}/private/file.bin"
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST), meter_provider=provider) as e:
        await e.download(url, expected_digests={"sha256": sha256(data)})
    points = collect(reader)
    assert value(points["pad.download.retries"], **{"pad.retry.reason": "503"}) == 1
    shown = repr([list(a.values()) for name in points for a, _ in points[name]])
    for secret in ("alice", "s3cr3t", "private", "file.bin", "://"):
        assert secret not in shown


def test_a_meter_is_not_a_meter_provider(
    metered: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    provider, _ = metered
    with pytest.raises(pad.ConfigError, match=r"EngineConfig\.meter_provider must be an Open"):
        pad.EngineConfig(meter_provider=provider.get_meter("x"))  # type: ignore[arg-type]


def test_workers_get_no_meter_provider(
    tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, _ = metered
    config = pad.EngineConfig(data_dir=tmp_path / "d", meter_provider=provider)
    from pulp_aio_download.parallel.plan import worker_configs

    assert [c.meter_provider for c in worker_configs(config, 2)] == [None, None]


def test_without_a_meter_provider_opentelemetry_is_never_imported(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = b"plain"
    url = threaded_server.add("/p", data)
    code = (
        "import sys, pulp_aio_download as pad\n"
        f"pad.download_sync({url!r}, config=pad.EngineConfig(data_dir={str(tmp_path)!r}))\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'opentelemetry']\n"
        "print('LOADED', loaded)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


async def test_a_segmented_download_records_every_range_request(
    fault_server: FaultServer, tmp_path: Path, metered: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metered
    data = os.urandom(8 * 1024 * 1024)
    url = fault_server.add("/big.iso", data, faults=[Fault(status=503)])
    remote = pad.RemoteConfig(segments=4, segment_threshold=2 * 1024 * 1024, retry=FAST)
    async with make_engine(tmp_path, remote, meter_provider=provider) as e:
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data
    stats = fault_server.stats("/big.iso")
    assert stats.statuses.count(206) >= 4  # it did go in ranges
    points = collect(reader)
    durations = points["http.client.request.duration"]
    assert sum(count for _, (count, _) in durations) == stats.requests
    assert value(durations, **{"error.type": "503"})[0] == 1
    assert value(points["pad.download.retries"], **{"pad.retry.reason": "503"}) == 1
    assert value(points["pad.download.bytes"], **{"pad.cached": False}) == len(data)
