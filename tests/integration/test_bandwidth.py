"""Bandwidth caps in bytes per second (issue 24 item 1), measured against a real nginx.

The rates are measured, not assumed: the bytes received over the time the batch took,
and when each stream finished. The bounds leave room for a busy machine (a cap is an
upper bound: a slow machine is slower, never faster), and for the quarter-second burst a
cap lets through (admission.bandwidth.BURST).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, make_engine, sha256
from plugins.nginx import NginxServer
from pulp_aio_download.admission.bandwidth import BURST

MiB = 1024 * 1024


def serve(tmp_path: Path, nginx: Callable[..., NginxServer], sizes: dict[str, int]) -> NginxServer:
    root = tmp_path / "root"
    root.mkdir()
    for name, size in sizes.items():
        (root / name).write_bytes(os.urandom(size))
    return nginx(root)


async def timed(engine: pad.DownloadEngine, url: str, path: Path) -> float:
    data = path.read_bytes()
    result = await engine.download(url, expected_digests={"sha256": sha256(data)})
    assert result.size == len(data)
    return time.monotonic()


async def test_a_global_cap_is_kept_and_shared_fairly(
    tmp_path: Path, nginx: Callable[..., NginxServer]
) -> None:
    cap, size, count = 4 * MiB, 3 * MiB, 4
    server = serve(tmp_path, nginx, {f"f{i}": size for i in range(count)})
    expected = (count * size - BURST * cap) / cap  # seconds at the cap: 2.75
    async with make_engine(tmp_path, pad.RemoteConfig(retry=NO_RETRY), max_speed=cap) as engine:
        start = time.monotonic()
        ends = await asyncio.gather(
            *(timed(engine, f"{server.base_url}/f{i}", server.root / f"f{i}") for i in range(count))
        )
    elapsed = [end - start for end in ends]
    rate = count * size / max(elapsed)
    assert max(elapsed) >= expected * 0.95, f"{rate / MiB:.2f} MiB/s over a 4 MiB/s cap"
    assert max(elapsed) < expected * 3, elapsed  # capped, not stuck
    # Fair: every stream got about a quarter, so they all end near the end.
    assert min(elapsed) >= 0.6 * max(elapsed), elapsed


async def test_a_remote_cap_holds_back_that_remote_only(
    tmp_path: Path, nginx: Callable[..., NginxServer]
) -> None:
    server = serve(tmp_path, nginx, {"slow": 2 * MiB, "fast": 8 * MiB})
    slow = pad.RemoteConfig(name="slow", max_speed=1 * MiB, retry=NO_RETRY)
    fast = pad.RemoteConfig(name="fast", retry=NO_RETRY)
    async with make_engine(tmp_path, slow, fast) as engine:
        start = time.monotonic()
        slow_end, fast_end = await asyncio.gather(
            timed_remote(engine, f"{server.base_url}/slow", server.root / "slow", "slow"),
            timed_remote(engine, f"{server.base_url}/fast", server.root / "fast", "fast"),
        )
    assert slow_end - start >= (2 - BURST) * 0.95  # 2 MiB at 1 MiB/s
    assert fast_end < slow_end  # 8 MiB uncapped end first


async def timed_remote(engine: pad.DownloadEngine, url: str, path: Path, remote: str) -> float:
    data = path.read_bytes()
    await engine.download(url, expected_digests={"sha256": sha256(data)}, remote=remote)
    return time.monotonic()


async def test_held_back_by_a_cap_is_not_a_stall(
    tmp_path: Path, nginx: Callable[..., NginxServer]
) -> None:
    server = serve(tmp_path, nginx, {"f": 1 * MiB})
    # A minimum speed of 1 MiB/s over 0.5 s, and a cap of a quarter of it: without the
    # exemption every transfer would be cut as stalled.
    remote = pad.RemoteConfig(
        max_speed=256 * 1024,
        timeouts=pad.Timeouts(min_speed=MiB, stall_window=0.5),
        retry=NO_RETRY,
    )
    async with make_engine(tmp_path, remote) as engine:
        start = time.monotonic()
        await timed(engine, f"{server.base_url}/f", server.root / "f")
    assert time.monotonic() - start >= (4 - BURST) * 0.95


@pytest.mark.parametrize("value", [0, -1, 1.5, "10M", True])
def test_a_bad_cap_is_a_config_error(value: object) -> None:
    with pytest.raises(pad.ConfigError, match=r"RemoteConfig\.max_speed must be a positive"):
        pad.RemoteConfig(max_speed=value)  # type: ignore[arg-type]
    with pytest.raises(pad.ConfigError, match=r"EngineConfig\.max_speed must be a positive"):
        pad.EngineConfig(max_speed=value)  # type: ignore[arg-type]
