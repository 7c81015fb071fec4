"""Segmented downloads: one large file as several ranges at once, from nginx and others."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import make_engine, sha256, until
from plugins.nginx import NginxServer
from pulp_aio_download.testing import Fault, FaultServer

MiB = 1024 * 1024
RETRY = pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)

StartNginx = Callable[..., NginxServer]


def remote(**kwargs: object) -> pad.RemoteConfig:
    settings: dict[str, object] = {
        "segments": 4,
        "segment_threshold": 2 * MiB,
        "retry": RETRY,
        **kwargs,
    }
    return pad.RemoteConfig(**settings)  # type: ignore[arg-type]


def quarters(size: int, parts: int = 4) -> list[str]:
    step = -(-size // parts)
    return [f"bytes={a}-{min(a + step, size) - 1}" for a in range(0, size, step)]


def union(asked: Iterable[str]) -> list[tuple[int, int]]:
    """The bytes ``bytes=A-B`` ranges cover, as sorted half-open spans."""
    spans: list[tuple[int, int]] = []
    for first, last in sorted(tuple(int(v) for v in r[len("bytes=") :].split("-")) for r in asked):
        if spans and first <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], last + 1))
        else:
            spans.append((first, last + 1))
    return spans


def left_behind(tmp_path: Path) -> list[Path]:
    store = tmp_path / "store"
    return [*(store / ".staging").glob("*"), *(store / ".partials").glob("*")]


def serve(tmp_path: Path, name: str, data: bytes, folder: str = "www") -> Path:
    root = tmp_path / folder
    root.mkdir(exist_ok=True)
    (root / name).write_bytes(data)
    return root


async def test_four_ranges_from_nginx_beat_its_per_connection_rate(
    nginx: StartNginx, tmp_path: Path
) -> None:
    data = os.urandom(16 * MiB)
    rate = 2 * MiB  # bytes/s per connection, after a first second's worth at once
    one_stream = (len(data) - rate) / rate  # 7 s
    server = nginx(serve(tmp_path, "big.iso", data), rate=rate)
    async with make_engine(tmp_path, remote()) as e:
        started = time.monotonic()
        result = await e.download(
            f"{server.base_url}/big.iso",
            expected_digests={"sha256": sha256(data), "sha512": hashlib.sha512(data).hexdigest()},
            expected_size=len(data),
        )
        elapsed = time.monotonic() - started
    assert result.path is not None and result.path.read_bytes() == data
    assert result.digests["sha512"] == hashlib.sha512(data).hexdigest()
    assert result.headers["Content-Length"] == str(len(data))
    assert "Content-Range" not in result.headers
    entries = server.wait_sent(len(data))
    asked = [str(e["range"]) for e in entries]
    assert set(quarters(len(data))) <= set(asked)  # (and a split-off range, maybe)
    assert union(asked) == [(0, len(data))]
    assert {e["status"] for e in entries} == {206}
    # Four connections at once: (4 MiB - 2 MiB) / 2 MiB/s = 1 s, not one stream's 7 s
    # (a busy machine may add a few seconds of CPU time; the bound leaves room for it).
    assert elapsed < one_stream * 0.7, elapsed
    assert left_behind(tmp_path) == []


async def test_a_server_that_ignores_ranges_gives_one_stream(
    nginx: StartNginx, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(4 * MiB)
    server = nginx(serve(tmp_path, "a.bin", data), directives="max_ranges 0;")
    caplog.set_level(logging.INFO, logger="pulp_aio_download")
    async with make_engine(tmp_path, remote()) as e:
        result = await e.download(
            f"{server.base_url}/a.bin",
            expected_digests={"sha256": sha256(data)},
            expected_size=len(data),
        )
    assert result.path is not None and result.path.read_bytes() == data
    first, second = sorted(server.wait_logged(2), key=lambda e: e["range"] == "")
    assert first["range"] == quarters(len(data))[0] and first["status"] == 200
    assert second["range"] == "" and second["body_bytes"] == len(data)
    assert any(
        "answered 200 to a range request; fetching it as one stream" in r.getMessage()
        for r in caplog.records
    )
    assert left_behind(tmp_path) == []


async def test_unknown_size_is_probed_with_one_byte(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    big, small = os.urandom(4 * MiB), os.urandom(100_000)
    big_url = fault_server.add("/big", big)
    small_url = fault_server.add("/small", small)
    async with make_engine(tmp_path, remote()) as e:
        got_big = await e.download(big_url)
        got_small = await e.download(small_url)
    assert got_big.path is not None and got_big.path.read_bytes() == big
    assert got_small.path is not None and got_small.path.read_bytes() == small
    asked = [r.headers.get("Range") for r in fault_server.requests_for("/big")]
    assert asked[0] == "bytes=0-0"
    assert sorted(asked[1:]) == sorted(quarters(len(big)))  # type: ignore[arg-type]
    # Under the threshold: the probe, then one stream.
    assert [r.headers.get("Range") for r in fault_server.requests_for("/small")] == [
        "bytes=0-0",
        None,
    ]


async def test_probe_answered_whole_gives_one_stream(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    async with FaultServer(ignore_range=True) as server:
        url = server.add("/a", data)
        async with make_engine(tmp_path, remote()) as e:
            result = await e.download(url)
        assert [r.headers.get("Range") for r in server.requests_for("/a")] == ["bytes=0-0", None]
    assert result.path is not None and result.path.read_bytes() == data


async def test_mirrors_of_one_request_share_the_ranges(nginx: StartNginx, tmp_path: Path) -> None:
    data = os.urandom(4 * MiB)
    root = serve(tmp_path, "a.iso", data)
    one, two = nginx(root), nginx(root)  # the same file: the same ETag and Last-Modified
    request = pad.DownloadRequest(
        sources=[
            pad.Source(f"{one.base_url}/a.iso", priority=1),
            pad.Source(f"{two.base_url}/a.iso"),
        ],
        expected_digests={"sha256": sha256(data)},
        expected_size=len(data),
    )
    async with make_engine(tmp_path, remote()) as e:
        result = await e.download(request)
    assert result.path is not None and result.path.read_bytes() == data
    assert result.url == f"{one.base_url}/a.iso"
    first, second = one.wait_logged(2), two.wait_logged(2)
    assert sorted(str(e["range"]) for e in [*first, *second]) == sorted(quarters(len(data)))
    assert {e["status"] for e in [*first, *second]} == {206}


async def test_a_fast_mirror_takes_over_what_a_slow_one_has_left(
    nginx: StartNginx, tmp_path: Path
) -> None:
    data = os.urandom(16 * MiB)
    root = serve(tmp_path, "a.iso", data)
    fast, slow = nginx(root), nginx(root, rate=1 * MiB)  # alone: 7 s for its half
    request = pad.DownloadRequest(
        sources=[
            pad.Source(f"{fast.base_url}/a.iso", priority=1),
            pad.Source(f"{slow.base_url}/a.iso"),
        ],
        expected_digests={"sha256": sha256(data)},
        expected_size=len(data),
    )
    async with make_engine(tmp_path, remote(segments=2)) as e:
        result = await e.download(request)
    assert result.path is not None and result.path.read_bytes() == data
    # Each mirror started with half; the fast one also took part of the slow one's half.
    from_fast = sum(int(str(e["body_bytes"])) for e in fast.wait_logged(2))
    from_slow = sum(int(str(e["body_bytes"])) for e in slow.wait_logged(1))
    assert from_fast >= len(data) // 2 + 2 * MiB
    assert from_fast + from_slow >= len(data)
    assert left_behind(tmp_path) == []


async def test_mirrors_whose_validators_differ_give_one_stream(
    nginx: StartNginx, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(4 * MiB)
    root_one = serve(tmp_path, "a.iso", data, "one")
    root_two = serve(tmp_path, "a.iso", data, "two")
    os.utime(root_two / "a.iso", (1_600_000_000, 1_600_000_000))  # another ETag, Last-Modified
    one, two = nginx(root_one), nginx(root_two)
    request = pad.DownloadRequest(
        sources=[
            pad.Source(f"{one.base_url}/a.iso", priority=1),
            pad.Source(f"{two.base_url}/a.iso"),
        ],
        expected_digests={"sha256": sha256(data)},
        expected_size=len(data),
    )
    caplog.set_level(logging.INFO, logger="pulp_aio_download")
    async with make_engine(tmp_path, remote(segments=2)) as e:
        result = await e.download(request)
    assert result.path is not None and result.path.read_bytes() == data
    assert any(
        f"{two.base_url}/a.iso has another version" in r.getMessage()
        and "fetching it as one stream" in r.getMessage()
        for r in caplog.records
    )
    # The stream came from the first source, whole.
    whole = [e for e in one.entries() if e["range"] == ""]
    assert len(whole) == 1 and whole[0]["body_bytes"] == len(data)
    assert left_behind(tmp_path) == []


async def test_a_range_cut_mid_way_is_asked_again_from_where_it_stopped(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(4 * MiB)
    cut = 300_000
    url = fault_server.add("/a", data, faults=[Fault(truncate_at=cut)])  # the first range
    async with make_engine(tmp_path, remote()) as e:
        result = await e.download(
            url, expected_digests={"sha256": sha256(data)}, expected_size=len(data)
        )
    assert result.path is not None and result.path.read_bytes() == data
    assert result.attempts == 2
    asked = [r.headers.get("Range") for r in fault_server.requests_for("/a")]
    first = quarters(len(data))[0]
    assert asked[0] == first
    assert f"bytes={cut}-{first.rpartition('-')[2]}" in asked
    assert len(asked) == 5
    assert fault_server.stats("/a").bytes_sent == len(data)  # nothing fetched twice
    assert left_behind(tmp_path) == []


async def test_a_stalled_range_is_dropped_and_asked_again(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(4 * MiB)
    url = fault_server.add("/a", data, faults=[Fault(stall_after=100_000)])
    timeouts = pad.Timeouts(min_speed=64 * 1024, stall_window=0.4)
    async with make_engine(tmp_path, remote(timeouts=timeouts)) as e:
        result = await e.download(
            url, expected_digests={"sha256": sha256(data)}, expected_size=len(data)
        )
    assert result.path is not None and result.path.read_bytes() == data
    assert result.attempts == 2
    assert "bytes=100000-1048575" in [
        r.headers.get("Range") for r in fault_server.requests_for("/a")
    ]


async def test_a_dead_mirror_hands_its_ranges_to_the_source(
    fault_server: FaultServer, tmp_path: Path, unused_tcp_port: int
) -> None:
    data = os.urandom(4 * MiB)
    url = fault_server.add("/a", data)
    request = pad.DownloadRequest(
        sources=[
            pad.Source(url, priority=1),
            pad.Source(f"http://127.0.0.1:{unused_tcp_port}/a"),  # nothing listens
        ],
        expected_digests={"sha256": sha256(data)},
        expected_size=len(data),
    )
    async with make_engine(tmp_path, remote()) as e:
        result = await e.download(request)
    assert result.path is not None and result.path.read_bytes() == data
    assert sorted(r.headers.get("Range") for r in fault_server.requests_for("/a")) == sorted(  # type: ignore[type-var]
        quarters(len(data))
    )


async def test_a_wrong_digest_fails_and_leaves_nothing(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(4 * MiB)
    url = fault_server.add("/a", data)
    async with make_engine(tmp_path, remote()) as e:
        with pytest.raises(pad.DigestMismatch) as caught:
            await e.download(url, expected_digests={"sha256": "0" * 64}, expected_size=len(data))
    assert caught.value.actual == sha256(data)
    assert left_behind(tmp_path) == []


class CountingServer:
    """An aiohttp server of one file that answers ranges and counts the requests it
    serves at once: from a request's arrival to just before its last bytes are sent, so
    the count never includes a request whose client already moved on."""

    def __init__(self, data: bytes, wait_for: int) -> None:
        self.data = data
        self.active = 0
        self.peak = 0
        self.wait_for = wait_for
        self.reached = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.active >= self.wait_for:
            self.reached.set()
        counted = True
        try:
            size = len(self.data)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
            start, end, status = 0, size, 200
            headers = {"ETag": '"v1"', "Accept-Ranges": "bytes"}
            if match:
                start = int(match[1])
                end = min(int(match[2]) + 1, size) if match[2] else size
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
                status = 206
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = end - start
            await resp.prepare(request)
            # Hold the body until the client has as many requests open as it may.
            await asyncio.wait_for(self.reached.wait(), 10)
            step = 256 * 1024
            for pos in range(start, end, step):
                if pos + step >= end:
                    self.active -= 1
                    counted = False
                await resp.write(self.data[pos : min(pos + step, end)])
            return resp
        finally:
            if counted:
                self.active -= 1

    async def __aenter__(self) -> CountingServer:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


async def test_each_range_holds_a_slot_of_the_remote_limit(tmp_path: Path) -> None:
    data = os.urandom(4 * MiB)
    async with CountingServer(data, wait_for=2) as server:
        async with make_engine(tmp_path, remote(max_connections=2)) as e:
            result = await e.download(
                server.url("a"), expected_digests={"sha256": sha256(data)}, expected_size=len(data)
            )
        assert server.peak == 2
    assert result.path is not None and result.path.read_bytes() == data


async def test_each_range_holds_a_slot_of_the_global_limit(tmp_path: Path) -> None:
    one, two = os.urandom(4 * MiB), os.urandom(4 * MiB)
    async with CountingServer(one + two, wait_for=3) as server:
        async with make_engine(tmp_path, remote(), max_connections=3) as e:
            results = await e.download_many(
                [
                    pad.DownloadRequest(server.url(name), expected_size=len(one + two))
                    for name in ("a", "b")
                ]
            )
        assert server.peak == 3
    for result in results:
        assert isinstance(result, pad.DownloadResult)
        assert result.path is not None and result.path.read_bytes() == one + two


async def test_progress_counts_the_bytes_of_every_range(nginx: StartNginx, tmp_path: Path) -> None:
    data = os.urandom(16 * MiB)
    server = nginx(serve(tmp_path, "a.iso", data), rate=2 * MiB)  # about 1 s per range
    reports: list[pad.ProgressReport] = []
    async with make_engine(
        tmp_path, remote(), progress=reports.append, progress_interval=0.05
    ) as e:
        await e.download_many(
            [pad.DownloadRequest(f"{server.base_url}/a.iso", expected_size=len(data))]
        )
    final = reports[-1]
    assert final.state == "completed"
    assert final.bytes_total == final.bytes_done == final.bytes_transferred == len(data)
    running = [r for r in reports if r.state == "running" and r.active]
    assert running, reports
    assert all(r.active[0].bytes_total == len(data) for r in running)
    moving = [r.bytes_done for r in running if 0 < r.bytes_done < len(data)]
    assert moving and moving == sorted(moving)


def sidecar(tmp_path: Path) -> dict[str, object] | None:
    found = list((tmp_path / "store" / ".partials").glob("*.json"))
    if not found:
        return None
    try:
        meta: dict[str, object] = json.loads(found[0].read_text())
    except (ValueError, FileNotFoundError):
        return None  # being replaced, or the download just finished
    return meta


async def test_an_interrupted_segmented_download_resumes_its_ranges_in_another_engine(
    nginx: StartNginx, tmp_path: Path
) -> None:
    data = os.urandom(16 * MiB)
    server = nginx(serve(tmp_path, "big.iso", data), rate=1 * MiB)
    url = f"{server.base_url}/big.iso"
    request = pad.DownloadRequest(
        url, expected_digests={"sha256": sha256(data)}, expected_size=len(data)
    )

    def on_disk() -> int:
        meta = sidecar(tmp_path)
        ranges = meta["ranges"] if meta else []
        assert isinstance(ranges, list)
        return sum(b - a for a, b in ranges)

    async with make_engine(tmp_path, remote(), chunk_size=128 * 1024) as first:
        task = asyncio.ensure_future(first.download(request))
        await until(lambda: on_disk() >= 2 * MiB, timeout=20)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    meta = sidecar(tmp_path)
    assert meta is not None and meta["total"] == len(data)
    kept = [tuple(r) for r in meta["ranges"]]  # type: ignore[union-attr]
    assert len(kept) == 4 and [a for a, _ in kept] == [0, 4 * MiB, 8 * MiB, 12 * MiB]
    carried = sum(b - a for a, b in kept)
    before = len(server.wait_logged(4))

    reports: list[pad.ProgressReport] = []
    async with make_engine(tmp_path, remote(), progress=reports.append) as second:
        (result,) = await second.download_many([request])
    assert isinstance(result, pad.DownloadResult)
    assert result.path is not None and result.path.read_bytes() == data
    again = server.wait_sent(len(data) - carried, after=before)
    # Only the holes were asked for, each from where its range had stopped.
    holes = [(b, a + 4 * MiB) for a, b in kept]
    assert union(str(e["range"]) for e in again) == holes
    assert reports[-1].bytes_done == len(data)
    assert reports[-1].bytes_transferred == len(data) - carried
    assert left_behind(tmp_path) == []


async def test_each_range_request_waits_for_the_remote_rate_limit(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(4 * MiB)
    url = fault_server.add("/a", data)
    async with make_engine(tmp_path, remote(rate_limit=5.0)) as e:  # one request per 0.2 s
        result = await e.download(
            url, expected_digests={"sha256": sha256(data)}, expected_size=len(data)
        )
    assert result.path is not None and result.path.read_bytes() == data
    times = sorted(r.time for r in fault_server.requests_for("/a"))
    assert len(times) == 4
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(times)), times


async def test_a_cancelled_segmented_download_without_partials_leaves_nothing(
    nginx: StartNginx, tmp_path: Path
) -> None:
    data = os.urandom(16 * MiB)
    server = nginx(serve(tmp_path, "big.iso", data), rate=1 * MiB)
    async with make_engine(tmp_path, remote(), partial_min_size=None) as e:
        task = asyncio.ensure_future(
            e.download(f"{server.base_url}/big.iso", expected_size=len(data))
        )
        await until(lambda: e.statistics().transfers == 4)  # every range receiving
        assert any((tmp_path / "store" / ".staging").glob("*"))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert left_behind(tmp_path) == []


async def test_a_partial_of_a_file_changed_on_the_server_is_dropped(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = os.urandom(8 * MiB), os.urandom(8 * MiB)
    url = fault_server.add("/latest.iso", old, faults=Fault(trickle=1 * MiB))
    async with make_engine(tmp_path, remote(), chunk_size=128 * 1024) as first:
        task = asyncio.ensure_future(first.download(url))  # by URL: size learned by a probe
        await until(lambda: sidecar(tmp_path) is not None and sidecar_bytes(tmp_path) >= MiB)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sidecar(tmp_path) is not None
    fault_server.add("/latest.iso", new)  # another version: another ETag
    caplog.set_level(logging.INFO, logger="pulp_aio_download")
    async with make_engine(tmp_path, remote()) as second:
        result = await second.download(url)
    assert result.path is not None and result.path.read_bytes() == new
    assert any(
        "the file changed since its partial was written" in r.getMessage() for r in caplog.records
    )
    assert left_behind(tmp_path) == []


def sidecar_bytes(tmp_path: Path) -> int:
    meta = sidecar(tmp_path)
    ranges = meta["ranges"] if meta else []
    assert isinstance(ranges, list)
    return sum(b - a for a, b in ranges)
