"""Per-remote rate limit and max_connections, and per-host adaptive concurrency, counted by
the servers themselves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pulp_aio_download as pad
from helpers import make_engine, until
from pulp_aio_download.testing import Fault, FaultServer


async def test_rate_limit_spaces_requests(fault_server: FaultServer, tmp_path: Path) -> None:
    n, rate = 6, 20.0
    urls = [fault_server.add(f"/f{i}", f"file {i}".encode()) for i in range(n)]
    warm = fault_server.add("/warm", b"warm")
    async with make_engine(tmp_path, pad.RemoteConfig(rate_limit=rate)) as e:
        await e.download(warm)  # the remote's session and TLS context are built once, here
        await asyncio.gather(*(e.download(u) for u in urls))
    times = sorted(r.time for r in fault_server.requests if r.path != "/warm")
    assert len(times) == n
    # No burst: n requests span at least (n - 1) / rate seconds (small clock slack).
    assert times[-1] - times[0] >= (n - 1) / rate - 0.02


async def test_rate_limit_is_per_remote(fault_server: FaultServer, tmp_path: Path) -> None:
    slow = [fault_server.add(f"/slow{i}", b"s") for i in range(3)]
    fast = [fault_server.add(f"/fast{i}", b"f%d" % i) for i in range(3)]
    remotes = (pad.RemoteConfig(), pad.RemoteConfig(name="slow", rate_limit=2.0))
    async with make_engine(tmp_path, *remotes) as e:
        slow_tasks = [asyncio.create_task(e.download(u, remote="slow")) for u in slow]
        await asyncio.gather(*(e.download(u) for u in fast))
        # The unlimited remote finished while the limited one still waits for its tokens.
        assert sum(t.done() for t in slow_tasks) < 3
        await asyncio.gather(*slow_tasks)


async def test_remote_max_connections_on_top_of_global(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    urls = [fault_server.add(f"/f{i}", b"x%d" % i) for i in range(6)]
    others = [fault_server.add(f"/o{i}", b"o%d" % i) for i in range(3)]
    remotes = (pad.RemoteConfig(), pad.RemoteConfig(name="narrow", max_connections=2))
    async with make_engine(tmp_path, *remotes, max_connections=8) as e:
        fault_server.gate()
        tasks = [asyncio.create_task(e.download(u, remote="narrow")) for u in urls]
        tasks += [asyncio.create_task(e.download(u)) for u in others]
        await fault_server.wait_inflight(5)  # 2 of "narrow" + 3 of the default remote
        # The other 4 wait for a slot, admitted by none: no excess request can come.
        await until(lambda: e.statistics().in_flight == 9 and e.statistics().transfers == 5)
        narrow = sum(fault_server.stats(f"/f{i}").inflight for i in range(6))
        assert narrow == 2 and fault_server.totals.inflight == 5
        fault_server.release()
        await asyncio.gather(*tasks)
    assert fault_server.totals.requests == 9


async def test_429_storm_lowers_that_host_only(tmp_path: Path) -> None:
    """A host answering 429 sees fewer concurrent requests; another host keeps its limit."""
    cap = 8
    retry = pad.RetryPolicy(attempts=3, backoff=0, max_backoff=0)
    async with (
        FaultServer() as stormy,
        FaultServer() as calm,
        make_engine(tmp_path, pad.RemoteConfig(retry=retry), max_connections=cap) as e,
    ):
        # Phase 1: every file of the stormy host answers 429 once.
        storm = [
            stormy.add(f"/s{i}", b"s%d" % i, faults=[Fault(status=429, retry_after=0)] * 2)
            for i in range(cap)
        ]
        await asyncio.gather(*(e.download(u) for u in storm))
        assert stormy.totals.statuses.count(429) == 2 * cap
        # Phase 2: as many concurrent downloads from each host (one host at a time, so
        # that they do not share the global limit), responses held by a gate.
        stormy.reset_counters()
        stormy_seen = await held_concurrency(e, stormy, cap)
        calm_seen = await held_concurrency(e, calm, cap, at_least=cap)
        assert calm_seen == cap  # the calm host keeps its full limit
        assert 1 <= stormy_seen <= cap // 2  # halved by the storm, recovering slowly
        assert stormy.totals.peak_inflight == stormy_seen
        limits = e.statistics().host_limits
        assert limits[f"127.0.0.1:{calm.port}"] == cap
        assert limits[f"127.0.0.1:{stormy.port}"] < cap


async def held_concurrency(
    e: pad.DownloadEngine, server: FaultServer, n: int, *, at_least: int = 1
) -> int:
    """Start ``n`` downloads from ``server`` with responses held; how many reach it at once."""
    urls = [server.add(f"/held{i}", b"h%d" % i) for i in range(n)]
    server.gate()
    tasks = [asyncio.create_task(e.download(u)) for u in urls]
    try:
        await server.wait_inflight(at_least)
        # Every download has started, and every one the limits let through has arrived.
        await until(
            lambda: (
                e.statistics().in_flight == n and e.statistics().transfers == server.totals.inflight
            )
        )
        seen = server.totals.inflight
    finally:
        server.release()
    await asyncio.gather(*tasks)
    return seen
