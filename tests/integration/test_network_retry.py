"""Retries, backoff, Retry-After, timeouts and stall detection through the engine (issue 3).

Real FaultServer on 127.0.0.1; waits are asserted as lower bounds only (what the server
asked for), never as speed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import make_engine, sha256, until
from pulp_aio_download.testing import Fault, FaultServer

FAST = pad.RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


def no_staging_left(tmp_path: Path) -> bool:
    staging = tmp_path / "store" / ".staging"
    return not staging.exists() or not any(staging.iterdir())


async def test_503_then_200(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    url = fault_server.add("/a", data, faults=[Fault(status=503)])
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST)) as e:
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert result.attempts == 2 and result.path is not None and result.path.read_bytes() == data
    assert fault_server.stats("/a").statuses == [503, 200]


async def test_429_retry_after_seconds_is_waited(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"throttled" * 100
    url = fault_server.add("/a", data, faults=[Fault(status=429, retry_after=0.6)])
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0.0, max_backoff=30))
    async with make_engine(tmp_path, remote) as e:
        await e.download(url, expected_digests={"sha256": sha256(data)})
    first, second = fault_server.requests_for("/a")
    assert second.time - first.time >= 0.55


async def test_retry_after_http_date_is_waited(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"throttled by date"
    when = datetime.now(timezone.utc) + timedelta(seconds=2)
    url = fault_server.add("/a", data, faults=[Fault(status=503, retry_after=when)])
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0.0, max_backoff=30))
    async with make_engine(tmp_path, remote) as e:
        await e.download(url, expected_digests={"sha256": sha256(data)})
    first, second = fault_server.requests_for("/a")
    # HTTP-dates have whole seconds: at least one full second is left of the two.
    assert second.time - first.time >= 0.9


async def test_retry_after_is_capped(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"capped"
    url = fault_server.add("/a", data, faults=[Fault(status=429, retry_after=3600)])
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0.0, max_backoff=0.1))
    async with make_engine(tmp_path, remote) as e:
        result = await asyncio.wait_for(e.download(url), timeout=20)
    assert result.attempts == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
async def test_other_4xx_never_retried(
    fault_server: FaultServer, tmp_path: Path, status: int
) -> None:
    url = fault_server.add("/a", b"x", faults=Fault(status=status))
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST)) as e:
        with pytest.raises(pad.HTTPStatusError) as info:
            await e.download(url)
    assert info.value.status == status
    assert fault_server.stats("/a").requests == 1
    assert no_staging_left(tmp_path)


async def test_configured_statuses_only(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"x", faults=Fault(status=500))
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=3, backoff=0, statuses=(503,)))
    async with make_engine(tmp_path, remote) as e:
        with pytest.raises(pad.HTTPStatusError):
            await e.download(url)
    assert fault_server.stats("/a").requests == 1


async def test_retries_exhausted_give_last_error(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"x", faults=Fault(status=502))
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST)) as e:
        with pytest.raises(pad.HTTPStatusError) as info:
            await e.download(url)
    assert info.value.status == 502 and fault_server.stats("/a").requests == FAST.attempts


async def test_connection_refused_is_retried(tmp_path: Path) -> None:
    async with FaultServer() as server:
        url = server.url("/gone")
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST)) as e:
        with pytest.raises(pad.ConnectionFailed) as info:
            await e.download(url)
    assert "cannot connect" in str(info.value) and url in str(info.value)


async def test_each_attempt_logged_with_reason_and_delay(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = fault_server.add("/a", b"ok", faults=[Fault(status=503), Fault(truncate_at=0)])
    caplog.set_level(logging.INFO, logger="pulp_aio_download")  # what -v shows
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST)) as e:
        await e.download(url)
    records = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    lines = [r.getMessage() for r in records]
    assert lines[0].startswith(f"{url}: attempt 1 of 4 failed (HTTPStatusError: HTTP 503")
    assert lines[1].startswith(f"{url}: attempt 2 of 4 failed (ConnectionFailed: ")
    for line in lines:
        assert line.rstrip().endswith(" s")
        assert line.count(url) == 1  # the reason does not repeat the URL


async def test_final_failure_says_how_many_attempts(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/down", b"never", faults=Fault(status=503))
    gone = fault_server.add("/gone", b"never", faults=Fault(status=404))
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST)) as e:
        with pytest.raises(pad.HTTPStatusError) as info:
            await e.download(url)
        with pytest.raises(pad.HTTPStatusError) as not_retried:
            await e.download(gone)
    assert fault_server.stats("/down").requests == FAST.attempts == 4
    assert info.value.attempts == 4
    assert str(info.value) == f"HTTP 503 Service Unavailable; gave up after 4 attempts ({url})"
    # A failure that is not retried was one attempt, and says nothing about attempts.
    assert not_retried.value.attempts == 1 and "attempt" not in str(not_retried.value)
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.attempts == 4 and str(copy) == str(info.value)


async def test_all_sources_failed_counts_every_attempt(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    first = fault_server.add("/m1", b"x", faults=Fault(status=503))
    second = fault_server.add("/m2", b"x", faults=Fault(status=404))
    async with make_engine(tmp_path, pad.RemoteConfig(retry=FAST)) as e:
        with pytest.raises(pad.AllSourcesFailed) as info:
            await e.download(pad.DownloadRequest(sources=[first, second]))
    assert info.value.attempts == 5  # 4 at the mirror answering 503, 1 at the 404
    assert f"gave up after 4 attempts ({first})" in str(info.value)


async def test_slot_given_back_while_sleeping(fault_server: FaultServer, tmp_path: Path) -> None:
    """max_connections=1: a download waiting out Retry-After does not block another one."""
    slow = fault_server.add("/slow", b"slow", faults=[Fault(status=429, retry_after=30)])
    quick = fault_server.add("/quick", b"quick")
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=2, backoff=0, max_backoff=60))
    async with make_engine(tmp_path, remote, max_connections=1) as e:
        sleeping = asyncio.create_task(e.download(slow))
        await until(lambda: fault_server.stats("/slow").statuses == [429])
        result = await asyncio.wait_for(e.download(quick), timeout=10)
        assert result.size == 5
        assert not sleeping.done()  # still waiting out its 30 s, holding no slot
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
    assert no_staging_left(tmp_path)


# -- timeouts ------------------------------------------------------------------------------


def test_default_timeouts() -> None:
    t = pad.Timeouts()
    assert t.total is None  # no total timeout for bodies
    assert t.connect is not None and t.min_speed and t.stall_window


async def test_stall_mid_body_hits_sock_read(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", os.urandom(100_000), faults=Fault(stall_after=1000))
    remote = pad.RemoteConfig(
        retry=pad.RetryPolicy(attempts=1),
        timeouts=pad.Timeouts(sock_read=0.3, min_speed=None),
    )
    async with make_engine(tmp_path, remote) as e:
        with pytest.raises(pad.DownloadTimeout) as info:
            await e.download(url)
    assert info.value.timeout == "sock_read" and "sock_read" in str(info.value)
    assert no_staging_left(tmp_path)


async def test_no_answer_hits_sock_read(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"x", faults=Fault(never_answer=True))
    remote = pad.RemoteConfig(
        retry=pad.RetryPolicy(attempts=1), timeouts=pad.Timeouts(sock_read=0.3)
    )
    async with make_engine(tmp_path, remote) as e:
        with pytest.raises(pad.DownloadTimeout) as info:
            await e.download(url)
    assert info.value.timeout == "sock_read"


async def test_total_timeout(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"x" * 100_000, faults=Fault(trickle=50_000))
    remote = pad.RemoteConfig(
        retry=pad.RetryPolicy(attempts=1), timeouts=pad.Timeouts(total=0.3, min_speed=None)
    )
    async with make_engine(tmp_path, remote) as e:
        with pytest.raises(pad.DownloadTimeout) as info:
            await e.download(url)
    assert info.value.timeout == "total" and "total" in str(info.value)
    assert no_staging_left(tmp_path)


async def test_timeout_is_retried(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(5000)
    url = fault_server.add("/a", data, faults=[Fault(never_answer=True)])
    remote = pad.RemoteConfig(retry=FAST, timeouts=pad.Timeouts(sock_read=0.3))
    async with make_engine(tmp_path, remote) as e:
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
    assert result.attempts == 2


async def test_trickle_below_min_speed_dropped_within_window(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/a", os.urandom(200_000), faults=Fault(trickle=2_000))
    remote = pad.RemoteConfig(
        retry=pad.RetryPolicy(attempts=1),
        timeouts=pad.Timeouts(sock_read=30, min_speed=20_000, stall_window=0.5),
    )
    started = time.monotonic()
    async with make_engine(tmp_path, remote) as e:
        with pytest.raises(pad.DownloadTimeout) as info:
            await e.download(url)
    assert info.value.timeout == "stall" and "stalled" in str(info.value)
    assert time.monotonic() - started < 10  # the window (0.5 s), nowhere near sock_read (30 s)
    assert no_staging_left(tmp_path)


async def test_slow_but_steady_body_survives_past_sock_read_sized_total(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """A body taking several sock_read periods in total is fine while bytes keep coming."""
    data = os.urandom(150_000)
    url = fault_server.add("/a", data, faults=Fault(trickle=100_000))
    remote = pad.RemoteConfig(
        retry=pad.RetryPolicy(attempts=1),
        timeouts=pad.Timeouts(sock_read=0.4, min_speed=10_000, stall_window=0.5),
    )
    async with make_engine(tmp_path, remote) as e:
        started = time.monotonic()
        result = await e.download(url, expected_digests={"sha256": sha256(data)})
        elapsed = time.monotonic() - started
    assert result.path is not None and result.path.read_bytes() == data
    assert elapsed > 0.8  # two sock_read periods and more than one stall window
    assert result.attempts == 1


async def test_classic_bad_sync_sequence_ends_valid(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """Half the body then a closed connection, one flipped byte, a 429, then the good file."""
    data = os.urandom(300_000)
    url = fault_server.add(
        "/repo/pkg.rpm",
        data,
        faults=[
            Fault(truncate_at=len(data) // 2),
            Fault(flip_byte=len(data) - 10),
            Fault(status=429, retry_after=0),
        ],
    )
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=5, backoff=0.01, max_backoff=0.05))
    async with make_engine(tmp_path, remote) as e:
        result = await e.download(
            url, expected_digests={"sha256": sha256(data)}, expected_size=len(data)
        )
    assert result.path is not None and result.path.read_bytes() == data
    assert result.digests["sha256"] == sha256(data)
    assert fault_server.stats("/repo/pkg.rpm").statuses[-1] in (200, 206)
    assert no_staging_left(tmp_path)
