"""Progress reports: a bounded rate whatever the file count, one stream per batch and per
verify run, a final report with the right totals."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from pathlib import Path

import pytest

import pulp_aio_download as pad
from pulp_aio_download.models import ProgressReport
from pulp_aio_download.progress import ProgressTracker, was_retried
from pulp_aio_download.testing import Fault, FaultServer


class Recorder:
    """A progress callback that keeps every report with the time it came."""

    def __init__(self) -> None:
        self.reports: list[ProgressReport] = []
        self.times: list[float] = []

    def __call__(self, report: ProgressReport) -> None:
        self.reports.append(report)
        self.times.append(time.monotonic())

    @property
    def final(self) -> list[ProgressReport]:
        return [r for r in self.reports if r.state != "running"]


def _requests(server: FaultServer, count: int, prefix: str = "/f") -> list[pad.DownloadRequest]:
    out = []
    for i in range(count):
        data = os.urandom(1 + i % 700)
        url = server.add(f"{prefix}/{i}.bin", data)
        out.append(
            pad.DownloadRequest(
                url,
                expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                expected_size=len(data),
            )
        )
    return out


async def test_rate_is_bounded_under_a_2000_file_batch(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    requests = _requests(fault_server, 2000)
    expected_bytes = sum(r.expected_size or 0 for r in requests)
    rec = Recorder()
    interval = 0.05
    config = pad.EngineConfig(
        storage=pad.TempStorage(tmp_path / "store"),
        progress=rec,
        progress_interval=interval,
        max_connections=16,
    )
    async with pad.DownloadEngine(config) as engine:
        started = time.monotonic()
        results = await engine.download_many(requests)
        elapsed = time.monotonic() - started
        sent_during_batch = len(rec.reports)
    assert all(not isinstance(r, pad.DownloadError) for r in results)
    # The rate bound: at most one running report per interval, plus the final one.
    running = [r for r in rec.reports if r.state == "running"]
    assert len(running) <= elapsed / interval + 2
    gaps = [b - a for a, b in zip(rec.times, rec.times[1:-1], strict=False)]
    assert all(g >= interval * 0.9 for g in gaps)
    # One stream for the batch: every report has the batch's code and totals.
    assert {r.code for r in rec.reports} == {"download"}
    assert {r.total for r in rec.reports} == {2000}
    assert {r.bytes_total for r in rec.reports} == {expected_bytes}
    done = [r.done for r in rec.reports]
    nbytes = [r.bytes_done for r in rec.reports]
    assert done == sorted(done) and nbytes == sorted(nbytes)
    # Exactly one final report, last, with the right values; nothing more at close.
    assert len(rec.final) == 1 and rec.reports[-1] is rec.final[0]
    assert len(rec.reports) == sent_during_batch
    final = rec.final[0]
    assert final.state == "completed"
    assert (final.total, final.done, final.failed) == (2000, 2000, 0)
    assert final.bytes_done == final.bytes_total == expected_bytes
    assert final.active == ()


async def test_final_report_of_a_batch_with_failures_and_cached_files(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    good = _requests(fault_server, 5)
    bad_url = fault_server.add("/missing", b"", faults=Fault(status=404))
    rec = Recorder()
    config = pad.EngineConfig(storage=pad.TempStorage(tmp_path / "s"), progress=rec)
    async with pad.DownloadEngine(config) as engine:
        await engine.download_many(good[:2])
        results = await engine.download_many(
            [*good, pad.DownloadRequest(bad_url)], return_exceptions=True
        )
    assert isinstance(results[-1], pad.HTTPStatusError)
    finals = rec.final
    assert [r.state for r in finals] == ["completed", "failed"]
    last = finals[-1]
    assert (last.total, last.done, last.failed, last.cached) == (6, 5, 1, 2)
    assert last.bytes_total == sum(r.expected_size or 0 for r in good)
    assert last.bytes_done == last.bytes_total
    assert last.message == "Downloading 6 files"
    assert last.to_json()["state"] == "failed"


async def test_retries_are_counted(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/flaky", b"x" * 100, faults=[Fault(status=503, retry_after=0)])
    rec = Recorder()
    config = pad.EngineConfig(storage=pad.TempStorage(tmp_path / "s"), progress=rec)
    async with pad.DownloadEngine(config) as engine:
        result = await engine.download(url)
    assert result.attempts == 2
    # Loose download() calls report at engine close.
    assert len(rec.final) == 1
    assert (rec.final[0].done, rec.final[0].retried, rec.final[0].total) == (1, 1, 1)


async def test_retried_means_files_and_rate_means_transfers(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    good = _requests(fault_server, 5)
    flaky_data = b"flaky" * 400
    flaky = fault_server.add("/flaky", flaky_data, faults=[Fault(status=503), Fault(status=503)])
    down = fault_server.add("/down", b"never", faults=Fault(status=503))
    requests = [
        *good,
        pad.DownloadRequest(
            flaky, expected_digests={"sha256": hashlib.sha256(flaky_data).hexdigest()}
        ),
        pad.DownloadRequest(down),
    ]
    rec = Recorder()
    fast = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02))
    config = pad.EngineConfig(data_dir=tmp_path / "d", remotes=[fast], progress=rec)
    async with pad.DownloadEngine(config) as engine:
        outcomes = await engine.download_many(requests, return_exceptions=True)
        first = rec.final[-1]
        again = await engine.download_many(requests, return_exceptions=True)
        second = rec.final[-1]
    # Retried counts files (the flaky one, 3 attempts; the one that failed after 3), not
    # retries (4), and every outcome says so the same way.
    assert fault_server.stats("/flaky").requests == 3  # then served by the store
    assert fault_server.stats("/down").requests == 6  # 3 attempts in each run
    assert [was_retried(o) for o in outcomes] == [False] * 5 + [True, True]
    assert (first.done, first.failed, first.retried) == (6, 1, 2)
    transferred = sum(r.expected_size or 0 for r in good) + len(flaky_data)
    assert first.bytes_done == first.bytes_transferred == transferred
    assert first.rate == pytest.approx(transferred / first.elapsed)
    # The re-run is served from the store: bytes done, none transferred, no rate.
    assert [getattr(o, "cached", None) for o in again] == [True] * 6 + [None]
    assert (second.done, second.cached, second.retried) == (6, 6, 1)
    assert second.bytes_done == transferred and second.bytes_transferred == 0
    assert second.rate == 0 and second.to_json()["rate"] == 0
    assert all(r.rate == 0 for r in rec.reports[rec.reports.index(first) + 1 :])


async def test_active_transfers_are_listed_while_streaming(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(64 * 1024)
    url = fault_server.add("/slow.bin", data, faults=Fault(trickle=256 * 1024))
    rec = Recorder()
    config = pad.EngineConfig(
        storage=pad.TempStorage(tmp_path / "s"), progress=rec, progress_interval=0.02
    )
    async with pad.DownloadEngine(config) as engine:
        await engine.download_many([pad.DownloadRequest(url, expected_size=len(data))])
    listed = [t for r in rec.reports for t in r.active]
    assert listed, "no report showed the transfer"
    assert {t.url for t in listed} == {url}
    assert {t.bytes_total for t in listed} == {len(data)}
    assert all(0 <= t.bytes_done <= len(data) for t in listed)


async def test_a_failing_callback_never_fails_a_download(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def explode(report: ProgressReport) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("callback bug")

    requests = _requests(fault_server, 20)
    config = pad.EngineConfig(storage=pad.TempStorage(tmp_path / "s"), progress=explode)
    with caplog.at_level(logging.ERROR, logger="pulp_aio_download"):
        async with pad.DownloadEngine(config) as engine:
            results = await engine.download_many(requests)
    assert all(isinstance(r, pad.DownloadResult) for r in results)
    assert calls >= 1
    assert [r.message for r in caplog.records].count(
        "the progress callback raised; later errors are not logged"
    ) == 1


async def test_verify_run_is_one_stream_including_repairs(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    requests = _requests(fault_server, 10)
    rec = Recorder()
    config = pad.EngineConfig(data_dir=tmp_path / "d", progress=rec)
    async with pad.DownloadEngine(config) as engine:
        results = await engine.download_many(requests)
        broken = results[3]
        assert broken.path is not None
        broken.path.chmod(0o644)
        broken.path.write_bytes(b"bitrot")
        rec.reports.clear()
        report = await engine.verify(repair=True)
        assert report.repaired == (broken.digests["sha256"],)
        verify_reports = list(rec.reports)
    assert {r.code for r in verify_reports} == {"verify"}
    assert len([r for r in verify_reports if r.state != "running"]) == 1
    final = verify_reports[-1]
    assert (final.state, final.total, final.done, final.failed) == ("completed", 10, 10, 0)
    # The repair's download did not open a second stream, not even at close.
    assert all(r.code == "verify" for r in rec.reports)


class _Writer:
    def __init__(self, url: str, expected: int | None) -> None:
        self.url = url
        self.expected_size = expected
        self.size = 0


async def test_tracker_plan_and_monotonic_bytes() -> None:
    reports: list[ProgressReport] = []
    tracker = ProgressTracker(reports.append, interval=0)
    tracker.plan(2, 300)
    tracker.add(1, 100)
    tracker.add(1, 200)
    tracker.add(1, 50)  # not planned: counted
    assert (tracker.total, tracker.bytes_total) == (3, 350)
    writer = _Writer("http://h/a", 100)
    tracker.start_transfer(writer)
    writer.size = 100
    assert tracker.snapshot().bytes_done == 100
    assert tracker.snapshot().active[0].url == "http://h/a"
    tracker.end_transfer(writer)
    # Between the end of the transfer and the file being counted, bytes do not drop.
    assert tracker.snapshot().bytes_done == 100
    tracker.file_done(100)
    final = await tracker.finish()
    assert final.state == "completed" and final.bytes_done == 100 and final.active == ()
    assert reports[-1] is final
    again = await tracker.finish()
    assert again.state == "completed" and reports.count(final) == 1
    assert len([r for r in reports if r.state != "running"]) == 1


async def test_no_ticker_without_a_callback() -> None:
    tracker = ProgressTracker(None)
    tracker.add(5)
    assert tracker._ticker is None
    await asyncio.sleep(0)
    assert (await tracker.finish()).total == 5
