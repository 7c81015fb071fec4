"""The engine end to end against real loopback servers (issue 2)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, make_engine, sha256, until
from pulp_aio_download.testing import Fault, FaultServer

FAST_RETRY = pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


def leftovers(root: Path) -> list[Path]:
    """Staging files left under a storage root."""
    staging = root / ".staging"
    return sorted(staging.iterdir()) if staging.exists() else []


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".staging" not in p.parts)


def config(tmp_path: Path, **kwargs: object) -> pad.EngineConfig:
    retry = kwargs.pop("retry", NO_RETRY)
    remotes = kwargs.pop("remotes", [pad.RemoteConfig(retry=retry)])  # type: ignore[arg-type]
    return pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"),
        remotes=remotes,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_success_with_digests_and_size(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    url = fault_server.add("/pkg/a.rpm", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        result = await engine.download(
            url,
            expected_digests={"sha256": sha256(data), "md5": hashlib.md5(data).hexdigest()},
            expected_size=len(data),
        )
    assert result.size == len(data)
    assert result.digests == {"sha256": sha256(data), "md5": hashlib.md5(data).hexdigest()}
    assert result.path is not None and result.path.read_bytes() == data
    assert result.location == f"{sha256(data)[:2]}/{sha256(data)[2:]}"
    assert result.cached is False and result.attempts == 1
    assert result.url == url
    assert leftovers(tmp_path / "store") == []


async def test_digest_mismatch_stores_nothing(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"x" * 100_000
    url = fault_server.add("/a", data)
    wrong = "0" * 64
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.DigestMismatch) as info:
            await engine.download(url, expected_digests={"sha256": wrong})
    err = info.value
    assert (err.algorithm, err.expected, err.actual) == ("sha256", wrong, sha256(data))
    assert err.url == url and url in str(err) and wrong in str(err)
    assert stored_files(tmp_path / "store") == []
    assert leftovers(tmp_path / "store") == []


async def test_size_mismatch(fault_server: FaultServer, tmp_path: Path) -> None:
    data = b"y" * 5000
    url = fault_server.add("/a", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.SizeMismatch) as info:
            await engine.download(url, expected_size=6000)
    assert (info.value.expected, info.value.actual) == (6000, 5000)
    assert stored_files(tmp_path / "store") == []
    assert leftovers(tmp_path / "store") == []


async def test_over_long_body_is_cut_short(fault_server: FaultServer, tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(size)
    # No Content-Length, so only the bytes themselves show the body is too long.
    url = fault_server.add_file("/big", path, faults=Fault(truncate_no_length=size))
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.SizeMismatch) as info:
            await engine.download(url, expected_size=1024 * 1024)
    assert info.value.expected == 1024 * 1024
    stats = fault_server.stats("/big")
    assert stats.bytes_sent < size // 2, "the client should stop reading well before the end"
    assert leftovers(tmp_path / "store") == []


async def test_over_long_content_length_refused_before_body(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/a", b"z" * 200_000)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.SizeMismatch, match="announces 200000 bytes, expected 10"):
            await engine.download(url, expected_size=10)


@pytest.mark.parametrize("status", [404, 500])
async def test_http_status_errors(fault_server: FaultServer, tmp_path: Path, status: int) -> None:
    url = fault_server.add("/a", b"data", faults=Fault(status=status))
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.HTTPStatusError) as info:
            await engine.download(url)
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value) and url in str(info.value)


async def test_404_is_not_retried_but_500_is(fault_server: FaultServer, tmp_path: Path) -> None:
    u404 = fault_server.add("/missing", b"", faults=Fault(status=404))
    u500 = fault_server.add("/flaky", b"ok", faults=[Fault(status=500), Fault(status=502)])
    async with pad.DownloadEngine(config(tmp_path, retry=FAST_RETRY)) as engine:
        with pytest.raises(pad.HTTPStatusError):
            await engine.download(u404)
        result = await engine.download(u500)
    assert fault_server.stats("/missing").requests == 1
    assert fault_server.stats("/flaky").requests == 3
    assert result.attempts == 3 and result.path is not None
    assert result.path.read_bytes() == b"ok"


async def test_gzip_content_encoding_stored_as_served(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    raw = gzip.compress(b"hello world " * 10_000)
    url = fault_server.add("/a.tar.gz", raw, faults=Fault(gzip=True))
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        result = await engine.download(url, expected_digests={"sha256": sha256(raw)})
    assert result.path is not None and result.path.read_bytes() == raw
    assert result.digests["sha256"] == sha256(raw)
    seen = fault_server.requests_for("/a.tar.gz")[0].headers
    assert seen["Accept-Encoding"] == "identity"


async def test_global_limit_is_never_exceeded(fault_server: FaultServer, tmp_path: Path) -> None:
    files = {f"/f/{i}": os.urandom(2000) for i in range(200)}
    for path, data in files.items():
        fault_server.add(path, data, faults=Fault(delay=0.01))
    requests = [
        pad.DownloadRequest(fault_server.url(p), expected_digests={"sha256": sha256(d)})
        for p, d in files.items()
    ]
    async with pad.DownloadEngine(config(tmp_path, max_connections=7)) as engine:
        results = await engine.download_many(requests)
    assert [r.sha256 for r in results] == [sha256(d) for d in files.values()]
    assert fault_server.totals.peak_inflight == 7
    assert fault_server.totals.requests == 200


async def test_identical_concurrent_requests_make_one_transfer(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    url = fault_server.add("/same", data)
    gate = fault_server.gate("/same")
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        by_digest = [
            asyncio.ensure_future(engine.download(url, expected_digests={"sha256": sha256(data)}))
            for _ in range(3)
        ]
        await fault_server.wait_inflight(1, "/same")
        # The two others joined the first one's transfer when they started (no await
        # comes between looking for a leader and waiting on it).
        gate.set()
        results = await asyncio.gather(*by_digest)
        url_only = fault_server.add("/plain", data)
        fault_server.gate("/plain")
        by_url = [asyncio.ensure_future(engine.download(url_only)) for _ in range(2)]
        await fault_server.wait_inflight(1, "/plain")
        fault_server.release()
        plain = await asyncio.gather(*by_url)
    assert fault_server.stats("/same").requests == 1
    assert sum(1 for r in results if not r.cached) == 1
    assert {r.sha256 for r in results} == {sha256(data)}
    assert fault_server.stats("/plain").requests == 1
    assert plain[0].sha256 == plain[1].sha256 == sha256(data)


async def test_stored_sha256_makes_no_request(fault_server: FaultServer, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    url = fault_server.add("/a", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        first = await engine.download(url, expected_digests={"sha256": sha256(data)})
        fault_server.reset_counters()
        second = await engine.download(
            fault_server.url("/elsewhere"), expected_digests={"sha256": sha256(data)}
        )
    assert fault_server.totals.requests == 0
    assert second.cached and not first.cached
    assert second.path == first.path and second.attempts == 0


async def test_cancellation_leaves_nothing(fault_server: FaultServer, tmp_path: Path) -> None:
    # Below EngineConfig.partial_min_size: no partial is kept (test_partials.py covers those).
    data = os.urandom(3 * 1024 * 1024)
    url = fault_server.add("/slow", data, faults=Fault(trickle=512 * 1024))
    async with pad.DownloadEngine(config(tmp_path, max_connections=1)) as engine:
        task = asyncio.ensure_future(engine.download(url))
        await until(lambda: task.done() or bool(leftovers(tmp_path / "store")))
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert leftovers(tmp_path / "store") == []
        # The slot was given back: another download goes through.
        url2 = fault_server.add("/next", b"next")
        result = await engine.download(url2)
        assert result.path is not None and result.path.read_bytes() == b"next"
    assert stored_files(tmp_path / "store") == [result.path]


async def test_file_sources_inside_and_outside_roots(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "a.bin").write_bytes(b"local bytes")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"nope")
    cfg = config(tmp_path, allowed_file_roots=[allowed])
    async with pad.DownloadEngine(cfg) as engine:
        result = await engine.download((allowed / "a.bin").as_uri())
        assert result.path is not None and result.path.read_bytes() == b"local bytes"
        with pytest.raises(pad.ConfigError, match="outside the allowed file roots"):
            await engine.download(secret.as_uri())
        with pytest.raises(pad.ConfigError, match="outside the allowed file roots"):
            await engine.download(f"file://{allowed}/../secret.txt")
        link = allowed / "link"
        link.symlink_to(secret)
        with pytest.raises(pad.ConfigError, match="outside the allowed file roots"):
            await engine.download(link.as_uri())
    async with pad.DownloadEngine(config(tmp_path / "2")) as engine:
        with pytest.raises(pad.ConfigError, match="allowed_file_roots"):
            await engine.download((allowed / "a.bin").as_uri())


async def test_download_many_order_and_errors(fault_server: FaultServer, tmp_path: Path) -> None:
    good = [fault_server.add(f"/g{i}", bytes([i]) * 100) for i in range(5)]
    bad = fault_server.add("/bad", b"", faults=Fault(status=404))
    urls = [good[0], bad, *good[1:]]
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        results = await engine.download_many(urls, return_exceptions=True)
        assert isinstance(results[1], pad.HTTPStatusError)
        assert [r.path.read_bytes()[:1] for i, r in enumerate(results) if i != 1] == [
            bytes([i]) for i in range(5)
        ]
        with pytest.raises(pad.HTTPStatusError):
            await engine.download_many(urls, return_exceptions=False)
    assert leftovers(tmp_path / "store") == []


async def test_failing_hook_stores_nothing(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"payload")
    seen: list[bytes] = []

    async def before(ctx: pad.DownloadContext) -> None:
        assert ctx.path is not None
        seen.append(await asyncio.to_thread(ctx.path.read_bytes))

    async def after(ctx: pad.DownloadContext) -> None:
        raise RuntimeError("signature check failed")

    cfg = config(tmp_path, hooks=[before, *pad.DEFAULT_HOOKS, after])
    async with pad.DownloadEngine(cfg) as engine:
        with pytest.raises(pad.HookError, match="signature check failed") as info:
            await engine.download(url)
    assert info.value.hook is not None and "after" in info.value.hook
    assert seen == [b"payload"]
    assert stored_files(tmp_path / "store") == []
    assert leftovers(tmp_path / "store") == []


async def test_session_is_shared_connector(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"raw")
    cfg = config(tmp_path, remotes=[pad.RemoteConfig(), pad.RemoteConfig(name="other")])
    async with pad.DownloadEngine(cfg) as engine:
        session = engine.session("default")
        async with session.get(url) as resp:
            assert await resp.read() == b"raw"
        assert session.connector is engine.session("other").connector
        with pytest.raises(pad.ConfigError, match="unknown remote 'nope'"):
            engine.session("nope")
    assert session.closed


async def test_bad_requests_raise_config_error_before_io(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/a", b"a")
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.ConfigError, match="unknown digest algorithm 'sha3'"):
            await engine.download(url, expected_digests={"sha3": "00"})
        with pytest.raises(pad.ConfigError, match="malformed sha256"):
            await engine.download(url, expected_digests={"sha256": "xyz"})
        with pytest.raises(pad.ConfigError, match="unsupported URL scheme 'ftp'"):
            await engine.download("ftp://host/a")
        with pytest.raises(pad.ConfigError, match="unknown remote 'missing'"):
            await engine.download(url, remote="missing")
    assert fault_server.totals.requests == 0


async def test_temp_storage_default_outlives_engine(fault_server: FaultServer) -> None:
    url = fault_server.add("/a", b"temp")
    async with pad.DownloadEngine() as engine:
        result = await engine.download(url)
        root = engine.storage.root  # type: ignore[attr-defined]
    assert engine.catalog is None
    assert result.path is not None and result.path.read_bytes() == b"temp"
    assert result.path.is_relative_to(root)
    import shutil

    shutil.rmtree(root)


async def test_chunked_transfer_encoding_is_read_whole(tmp_path: Path) -> None:
    from aiohttp import web

    data = os.urandom(3_000_000)

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(data), 70_000):
            await resp.write(data[i : i + 70_000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/c", chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with pad.DownloadEngine(config(tmp_path)) as engine:
            result = await engine.download(
                f"http://127.0.0.1:{port}/c", expected_digests={"sha256": sha256(data)}
            )
    finally:
        await runner.cleanup()
    assert result.path is not None and result.path.read_bytes() == data


async def test_download_each_hands_over_every_outcome(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    urls = [fault_server.add(f"/e{i}", bytes([i]) * 50) for i in range(12)]
    urls[5] = fault_server.add("/missing", b"", faults=Fault(status=404))
    seen: dict[int, object] = {}

    def collect(index: int, outcome: object) -> None:
        assert index not in seen
        seen[index] = outcome

    async with pad.DownloadEngine(config(tmp_path, max_connections=3)) as engine:
        assert await engine.download_each(urls, collect) is None
        with pytest.raises(pad.HTTPStatusError):
            await engine.download_each(urls, lambda i, o: None, return_exceptions=False)
    assert sorted(seen) == list(range(12))
    assert isinstance(seen[5], pad.HTTPStatusError) and seen[5].status == 404
    for index, outcome in seen.items():
        if index != 5:
            assert isinstance(outcome, pad.DownloadResult)
            assert outcome.path is not None and outcome.path.read_bytes() == bytes([index]) * 50
    assert leftovers(tmp_path / "store") == []


async def test_download_each_transfers_one_content_once_when_its_copies_come_far_apart(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """Two requests of one sha256 far apart in a batch: the second is served from what the
    first stored, although the batch's lookup found it absent before the first finished."""
    data = b"one content, two urls\n" * 500
    bodies = [data, *(bytes([i]) * 100 for i in range(12)), data]
    paths = ["/copy-a", *(f"/other{i}" for i in range(12)), "/copy-b"]
    requests = [
        pad.DownloadRequest(fault_server.add(path, body), expected_digests={"sha256": sha256(body)})
        for path, body in zip(paths, bodies, strict=True)
    ]
    outcomes: dict[int, object] = {}
    async with make_engine(tmp_path, max_connections=1) as engine:
        await engine.download_each(requests, outcomes.__setitem__)
    assert all(isinstance(outcome, pad.DownloadResult) for outcome in outcomes.values())
    assert len(outcomes) == 14
    last = outcomes[13]
    assert isinstance(last, pad.DownloadResult) and last.cached
    assert last.path is not None and last.path.read_bytes() == data
    assert len(fault_server.requests_for("/copy-a")) == 1
    assert fault_server.requests_for("/copy-b") == []
