"""Multi-source requests: priorities, weighted choice, failover, recorded mirrors and host
health kept in the catalog across runs (issue 4)."""

from __future__ import annotations

import collections
import logging
import os
import random
import socket
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from pulp_aio_download.health import COOLDOWN_AFTER, COOLDOWN_BASE, HostHealth
from pulp_aio_download.selection import order_sources
from pulp_aio_download.testing import Fault, FaultServer

FAST_RETRY = pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)


def config(tmp_path: Path, retry: pad.RetryPolicy = NO_RETRY, **kw: object) -> pad.EngineConfig:
    return pad.EngineConfig(
        data_dir=tmp_path / "data",
        remotes=[pad.RemoteConfig(retry=retry)],
        **kw,  # type: ignore[arg-type]
    )


def dead_url() -> str:
    """A loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.bin"


# -- priority and failover ------------------------------------------------------------------


async def test_404_on_preferred_source_falls_over_to_next(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(4000)
    preferred = fault_server.add("/preferred/x", b"", faults=Fault(status=404))
    fallback = fault_server.add("/fallback/x", data)
    lowest = fault_server.add("/lowest/x", data)
    request = pad.DownloadRequest(
        sources=[
            pad.Source(lowest, priority=-5),
            pad.Source(fallback, priority=0),
            pad.Source(preferred, priority=10),
        ],
        expected_digests={"sha256": sha256(data)},
    )
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        result = await engine.download(request)
    assert result.url == fallback
    assert result.path is not None and result.path.read_bytes() == data
    assert fault_server.stats("/preferred/x").requests == 1
    assert fault_server.stats("/fallback/x").requests == 1
    assert fault_server.stats("/lowest/x").requests == 0


async def test_failover_only_after_the_sources_own_retries(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(1000)
    flaky = fault_server.add("/flaky", b"", faults=Fault(status=503))
    good = fault_server.add("/good", data)
    request = pad.DownloadRequest(
        sources=[pad.Source(flaky, priority=1), pad.Source(good)],
        expected_digests={"sha256": sha256(data)},
    )
    async with pad.DownloadEngine(config(tmp_path, retry=FAST_RETRY)) as engine:
        result = await engine.download(request)
    assert result.url == good and result.attempts == 1
    assert fault_server.stats("/flaky").requests == FAST_RETRY.attempts


async def test_all_sources_failed_lists_each_error(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(1000)
    missing = fault_server.add("/missing", b"", faults=Fault(status=404))
    corrupt = fault_server.add("/corrupt", data, faults=Fault(flip_byte=10))
    nobody = dead_url()
    request = pad.DownloadRequest(
        sources=[
            pad.Source(missing, priority=3),
            pad.Source(corrupt, priority=2),
            pad.Source(nobody, priority=1),
        ],
        expected_digests={"sha256": sha256(data)},
    )
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.AllSourcesFailed) as info:
            await engine.download(request)
    errors = info.value.errors
    assert [type(e) for e in errors] == [
        pad.HTTPStatusError,
        pad.DigestMismatch,
        pad.ConnectionFailed,
    ]
    assert [e.url for e in errors] == [missing, corrupt, nobody]
    assert errors[0].status == 404  # type: ignore[attr-defined]
    message = str(info.value)
    assert all(url in message for url in (missing, corrupt, nobody))
    assert list((tmp_path / "data" / "artifacts").rglob("*.bin")) == []


# -- weighted choice --------------------------------------------------------------------------


def test_weighted_choice_among_equal_priorities_is_proportional() -> None:
    sources = [
        pad.Source("http://a.example/x", weight=6.0),
        pad.Source("http://b.example/x", weight=3.0),
        pad.Source("http://c.example/x", weight=1.0),
        pad.Source("http://lower.example/x", priority=-1, weight=1000.0),
    ]
    rng = random.Random(20240501)
    picks = 20_000
    first: collections.Counter[str] = collections.Counter()
    for _ in range(picks):
        order = order_sources(sources, {}, now=0.0, rng=rng)
        assert order[-1].url == "http://lower.example/x"  # priority beats any weight
        first[order[0].url] += 1
    # Binomial standard deviation at n=20000 is at most 0.0036; allow about 4 of them.
    for url, expected in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs(first[f"http://{url}.example/x"] / picks - expected) < 0.015, first


def test_health_scales_the_weight() -> None:
    healthy = pad.Source("http://healthy.example/x")
    sick = pad.Source("http://sick.example/x")
    health = {"sick.example": HostHealth("sick.example", error_rate=0.5)}
    rng = random.Random(7)
    picks = 20_000
    sick_first = sum(
        order_sources([healthy, sick], health, now=0.0, rng=rng)[0] == sick for _ in range(picks)
    )
    # weight 1 x health 0.5 against weight 1 x health 1.0: a third of the picks.
    assert abs(sick_first / picks - 1 / 3) < 0.015


def test_seeded_order_is_reproducible() -> None:
    sources = [pad.Source(f"http://m{i}.example/x", weight=i + 1) for i in range(5)]
    orders = [order_sources(sources, {}, now=0.0, rng=random.Random(3)) for _ in range(2)]
    assert orders[0] == orders[1] and sorted(s.url for s in orders[0]) == [s.url for s in sources]


async def test_engine_spreads_transfers_by_weight(tmp_path: Path) -> None:
    files = [os.urandom(300 + i) for i in range(240)]
    async with FaultServer() as heavy, FaultServer() as light:
        requests = []
        for i, data in enumerate(files):
            requests.append(
                pad.DownloadRequest(
                    sources=[
                        pad.Source(heavy.add(f"/{i}", data), weight=3.0),
                        pad.Source(light.add(f"/{i}", data), weight=1.0),
                    ],
                    expected_digests={"sha256": sha256(data)},
                )
            )
        async with pad.DownloadEngine(config(tmp_path)) as engine:
            results = await engine.download_many(requests)
        assert all(
            r.path is not None and r.path.read_bytes() == d
            for r, d in zip(results, files, strict=True)
        )
        # Each file once; about 3/4 from the heavy mirror (sd ~6.7 files: allow 6 sd).
        assert heavy.totals.requests + light.totals.requests == len(files)
        assert abs(heavy.totals.requests - 180) <= 40, (
            heavy.totals.requests,
            light.totals.requests,
        )


# -- recorded mirrors (alternate content sources) ---------------------------------------------


async def test_recorded_mirror_rescues_a_dead_url(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    mirror = fault_server.add("/mirror/x.rpm", data)
    dead = fault_server.add("/origin/x.rpm", b"", faults=Fault(status=404))
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        first = await engine.download(mirror, expected_digests={"sha256": sha256(data)})
    assert first.path is not None
    first.path.unlink()  # the artifact is gone; the catalog still knows the mirror
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        result = await engine.download(dead, expected_digests={"sha256": sha256(data)})
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(data))
    assert result.url == mirror and result.cached is False
    assert result.path is not None and result.path.read_bytes() == data
    assert fault_server.stats("/origin/x.rpm").requests == 1
    assert fault_server.stats("/mirror/x.rpm").requests == 2
    assert record is not None and [s.url for s in record.sources] == [mirror, dead]


async def test_recorded_sources_need_a_sha256(fault_server: FaultServer, tmp_path: Path) -> None:
    dead = fault_server.add("/dead", b"", faults=Fault(status=404))
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.HTTPStatusError):
            await engine.download(dead)


# -- host health across runs ---------------------------------------------------------------------


async def test_health_is_kept_in_the_catalog_and_cools_a_failing_host(tmp_path: Path) -> None:
    files = [os.urandom(200 + i) for i in range(COOLDOWN_AFTER + 8)]
    async with FaultServer() as bad, FaultServer() as good:
        bad_host = f"127.0.0.1:{bad.port}"
        good_host = f"127.0.0.1:{good.port}"
        # Run 1: the bad host fails every request (503, no retry) until it cools down.
        async with pad.DownloadEngine(config(tmp_path)) as engine:
            for i in range(COOLDOWN_AFTER):
                data = files[i]
                request = pad.DownloadRequest(
                    sources=[
                        pad.Source(bad.add(f"/{i}", data, faults=Fault(status=503)), priority=1),
                        pad.Source(good.add(f"/{i}", data)),
                    ],
                    expected_digests={"sha256": sha256(data)},
                )
                assert (await engine.download(request)).url.startswith(good.base_url)
        assert bad.totals.requests == COOLDOWN_AFTER

        async with pad.SQLiteCatalog(tmp_path / "data" / "catalog.sqlite3") as catalog:
            saved = await catalog.load_health()
        assert saved[bad_host].failures == COOLDOWN_AFTER
        assert saved[bad_host].error_rate > 0.4 and saved[bad_host].cooldown_until > 0
        assert saved[good_host].error_rate == 0 and saved[good_host].speed > 0

        # Run 2, a new engine: the bad host is still cooling down, so even its higher
        # priority does not make it first; it is not asked at all.
        bad.reset_counters()
        async with pad.DownloadEngine(config(tmp_path)) as engine:
            for i in range(COOLDOWN_AFTER, len(files)):
                data = files[i]
                request = pad.DownloadRequest(
                    sources=[
                        pad.Source(bad.add(f"/{i}", data), priority=1),
                        pad.Source(good.add(f"/{i}", data)),
                    ],
                    expected_digests={"sha256": sha256(data)},
                )
                assert (await engine.download(request)).url.startswith(good.base_url)
        assert bad.totals.requests == 0


async def test_debug_log_says_why_a_source_was_picked(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = b"explain"
    first = fault_server.add("/first", data)
    second = fault_server.add("/second", data)
    request = pad.DownloadRequest(
        sources=[pad.Source(second, weight=2.0), pad.Source(first, priority=5)],
        expected_digests={"sha256": sha256(data)},
    )
    with caplog.at_level(logging.DEBUG, logger="pulp_aio_download"):
        async with pad.DownloadEngine(config(tmp_path)) as engine:
            await engine.download(request)
    picks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("picked ")]
    assert len(picks) == 1
    assert picks[0].startswith(f"picked {first} (priority 5, weight 1 x health 1.00 = 1)")
    assert "highest priority 5" in picks[0]
    assert f"then {second} (priority 0, weight 2 x health 1.00 = 2)" in picks[0]


def test_explanation_names_health_and_cooldown(caplog: pytest.LogCaptureFixture) -> None:
    a = pad.Source("http://a.example/x")
    b = pad.Source("http://b.example/x")
    health = {
        "a.example": HostHealth("a.example", error_rate=0.25, speed=2e6),
        "b.example": HostHealth("b.example", failures=4, error_rate=0.6, cooldown_until=100.0),
    }
    with caplog.at_level(logging.DEBUG, logger="pulp_aio_download.selection"):
        order = order_sources([b, a], health, now=40.0, rng=random.Random(1))
    assert order == [a, b]
    (message,) = [r.getMessage() for r in caplog.records]
    assert "picked http://a.example/x (priority 0, weight 1 x health 0.75 = 0.75" in message
    assert "error rate 0.25" in message and "speed 2.00 MB/s" in message
    assert "cooling down 60 s more after 4 failures" in message


def test_host_health_moving_averages_and_cooldown() -> None:
    h = HostHealth("h")
    h = h.observe(ok=True, now=1.0, nbytes=1000, seconds=1.0)
    assert h.speed == 1000 and h.error_rate == 0
    h = h.observe(ok=True, now=2.0, nbytes=2000, seconds=1.0)
    assert h.speed == pytest.approx(1200)  # 0.8 * 1000 + 0.2 * 2000
    for n in range(1, COOLDOWN_AFTER):
        h = h.observe(ok=False, now=10.0 + n)
        assert not h.cooling(10.0 + n)
    h = h.observe(ok=False, now=20.0)
    assert h.cooling(20.0) and h.cooldown_until == 20.0 + COOLDOWN_BASE
    h = h.observe(ok=False, now=21.0)  # each further failure doubles the cooldown
    assert h.cooldown_until == 21.0 + 2 * COOLDOWN_BASE
    assert 0 < h.score() < 1
    h = h.observe(ok=True, now=22.0)
    assert not h.cooling(22.0) and h.failures == 0


def test_a_missing_file_does_not_cool_a_host_down() -> None:
    h = HostHealth("h")
    for n in range(COOLDOWN_AFTER + 2):
        h = h.observe(ok=False, now=float(n), status=404)
    assert not h.cooling(100.0) and h.failures == 0 and h.error_rate > 0.5
    for n in range(COOLDOWN_AFTER):
        h = h.observe(ok=False, now=200.0 + n, status=429)
    assert h.cooling(203.0)
