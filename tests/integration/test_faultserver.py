"""The fault-injecting test server, exercised with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest

import pulp_aio_download.testing as testing
from helpers import until
from pulp_aio_download.testing import (
    PULP_MANIFEST,
    Fault,
    FaultServer,
    generate_repository,
)

DATA = bytes(range(256)) * 4000  # 1 024 000 bytes: several server write slices
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def stream(
    client: aiohttp.ClientSession,
    url: str,
    sink: bytearray,
    seen: list[aiohttp.ClientResponse],
    **kwargs: object,
) -> None:
    """GET ``url`` into ``sink`` piece by piece; the response is appended to ``seen``."""
    async with client.get(url, **kwargs) as resp:  # type: ignore[arg-type]
        seen.append(resp)
        async for piece in resp.content.iter_any():
            sink += piece


def test_public_names() -> None:
    assert set(testing.__all__) == {
        "PULP_MANIFEST",
        "FakeResponse",
        "FakeTransport",
        "TransportRequest",
        "Fault",
        "FaultServer",
        "PathStats",
        "RecordedRequest",
        "SampleFile",
        "SampleRepository",
        "generate_repository",
    }
    for name in testing.__all__:
        assert getattr(testing, name).__doc__ or name == "PULP_MANIFEST"


# -- correct HTTP ---------------------------------------------------------------------------


async def test_get_serves_body_with_validators(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/repo/a.bin", DATA, last_modified=1_700_000_000)
    assert url == fault_server.base_url + "/repo/a.bin"
    async with client.get(url) as resp:
        body = await resp.read()
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(DATA))
        assert resp.headers["ETag"] == f'"{SHA}"'
        assert resp.headers["Last-Modified"] == email.utils.formatdate(1_700_000_000, usegmt=True)
        assert resp.headers["Accept-Ranges"] == "bytes"
    assert body == DATA
    assert fault_server.stats("/repo/a.bin").bytes_sent == len(DATA)


async def test_head_has_headers_and_no_body(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA)
    async with client.head(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(DATA))
        assert resp.headers["ETag"] == f'"{SHA}"'
        assert await resp.read() == b""
    assert fault_server.stats("/a").bytes_sent == 0


async def test_unknown_path_is_404_and_counted(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(fault_server.url("/missing")) as resp:
        assert resp.status == 404
    assert fault_server.stats("/missing").statuses == [404]


async def test_keep_alive_between_good_responses(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", b"abc")
    for _ in range(3):
        async with client.get(url) as resp:
            assert await resp.read() == b"abc"
    peers = {r.peer for r in fault_server.requests}
    assert len(peers) == 1


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=10-19", 10, 20),
        ("bytes=1000000-", 1_000_000, len(DATA)),
        ("bytes=-5", 1_023_995, len(DATA)),
        ("bytes=5-99999999", 5, len(DATA)),
    ],
)
async def test_single_range(
    fault_server: FaultServer,
    client: aiohttp.ClientSession,
    header: str,
    start: int,
    end: int,
) -> None:
    url = fault_server.add("/a", DATA)
    async with client.get(url, headers={"Range": header}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
        assert resp.headers["Content-Length"] == str(end - start)
        assert await resp.read() == DATA[start:end]


@pytest.mark.parametrize("header", [f"bytes={len(DATA)}-", "bytes=99999999-", "bytes=-0"])
async def test_unsatisfiable_range_is_416(
    fault_server: FaultServer, client: aiohttp.ClientSession, header: str
) -> None:
    url = fault_server.add("/a", DATA)
    async with client.get(url, headers={"Range": header}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=9-3"])
async def test_unsupported_range_gives_full_body(
    fault_server: FaultServer, client: aiohttp.ClientSession, header: str
) -> None:
    url = fault_server.add("/a", DATA)
    async with client.get(url, headers={"Range": header}) as resp:
        assert resp.status == 200
        assert await resp.read() == DATA


async def test_if_range_matching_etag_or_date_gives_206(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, last_modified=1_700_000_000)
    date = email.utils.formatdate(1_700_000_000, usegmt=True)
    for validator in (f'"{SHA}"', date):
        headers = {"Range": "bytes=100-", "If-Range": validator}
        async with client.get(url, headers=headers) as resp:
            assert resp.status == 206
            assert await resp.read() == DATA[100:]


async def test_if_range_not_matching_gives_full_200(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, last_modified=1_700_000_000)
    old_date = email.utils.formatdate(1_600_000_000, usegmt=True)
    for validator in ('"0123"', f'W/"{SHA}"', old_date):
        headers = {"Range": "bytes=100-", "If-Range": validator}
        async with client.get(url, headers=headers) as resp:
            assert resp.status == 200
            assert "Content-Range" not in resp.headers
            assert await resp.read() == DATA


async def test_ignore_range_switch(client: aiohttp.ClientSession) -> None:
    async with FaultServer(ignore_range=True) as srv:
        url = srv.add("/a", DATA)
        async with client.get(url, headers={"Range": "bytes=10-"}) as resp:
            assert resp.status == 200
            assert "Accept-Ranges" not in resp.headers
            assert await resp.read() == DATA


async def test_ignore_range_per_path_and_per_fault(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    a = fault_server.add("/a", DATA, ignore_range=True)
    b = fault_server.add("/b", DATA, faults=[Fault(ignore_range=True)])
    for url, statuses in ((a, (200, 200)), (b, (200, 206))):
        for expected in statuses:
            async with client.get(url, headers={"Range": "bytes=10-"}) as resp:
                assert resp.status == expected


# -- faults ---------------------------------------------------------------------------------


async def test_fault_sequence_is_consumed_one_per_request(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    faults = [Fault(truncate_at=1000), Fault(flip_byte=7), Fault(status=429, retry_after=3), None]
    url = fault_server.add("/a", DATA, faults=faults)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(url) as resp:
            await resp.read()
    async with client.get(url) as resp:
        flipped = await resp.read()
    assert len(flipped) == len(DATA)
    assert flipped != DATA
    async with client.get(url) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "3"
    for _ in range(2):
        async with client.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == DATA
    recorded = fault_server.requests_for("/a")
    assert [r.index for r in recorded] == [0, 1, 2, 3, 4]
    assert [r.fault for r in recorded] == [*faults, None]
    assert fault_server.stats("/a").requests == 5


async def test_single_fault_applies_to_every_request(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=Fault(status=503))
    for _ in range(3):
        async with client.get(url) as resp:
            assert resp.status == 503
    fault_server.set_faults("/a", None)
    async with client.get(url) as resp:
        assert resp.status == 200


async def test_truncate_at_sends_full_length_then_closes(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(truncate_at=300_000)])
    received = bytearray()
    seen: list[aiohttp.ClientResponse] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        await stream(client, url, received, seen)
    assert seen[0].headers["Content-Length"] == str(len(DATA))
    assert bytes(received) == DATA[:300_000]
    assert fault_server.stats("/a").bytes_sent == 300_000


async def test_truncate_at_zero_sends_headers_only(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(truncate_at=0)])
    seen: list[aiohttp.ClientResponse] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        await stream(client, url, bytearray(), seen)
    assert seen[0].status == 200


async def test_truncate_no_length_looks_complete(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(truncate_no_length=1234)])
    async with client.get(url) as resp:
        assert resp.status == 200
        assert "Content-Length" not in resp.headers
        assert "Transfer-Encoding" not in resp.headers
        assert await resp.read() == DATA[:1234]


async def test_truncated_range_response(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(truncate_at=10)])
    received = bytearray()
    seen: list[aiohttp.ClientResponse] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        await stream(client, url, received, seen, headers={"Range": "bytes=500-"})
    assert seen[0].status == 206
    assert seen[0].headers["Content-Range"] == f"bytes 500-{len(DATA) - 1}/{len(DATA)}"
    assert bytes(received) == DATA[500:510]


async def test_flip_byte_changes_exactly_one_byte_at_file_offset(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    offset = 600_000
    url = fault_server.add("/a", DATA, faults=Fault(flip_byte=offset))
    async with client.get(url) as resp:
        assert resp.headers["ETag"] == f'"{SHA}"'
        body = await resp.read()
    assert len(body) == len(DATA)
    diff = [i for i, (x, y) in enumerate(zip(body, DATA, strict=True)) if x != y]
    assert diff == [offset]
    async with client.get(url, headers={"Range": f"bytes={offset - 5}-{offset + 5}"}) as resp:
        part = await resp.read()
    assert part[5] != DATA[offset]
    assert part[:5] + part[6:] == DATA[offset - 5 : offset] + DATA[offset + 1 : offset + 6]
    async with client.get(url, headers={"Range": "bytes=0-99"}) as resp:
        assert await resp.read() == DATA[:100]


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (2, "2"),
        (0.5, "0.5"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
        (datetime(2015, 10, 21, 7, 28, tzinfo=timezone.utc), "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
async def test_status_with_retry_after(
    fault_server: FaultServer,
    client: aiohttp.ClientSession,
    retry_after: float | str | datetime,
    header: str,
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(status=503, retry_after=retry_after)])
    async with client.get(url) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == header
        assert b"fault injected" in await resp.read()
    assert fault_server.stats("/a").statuses == [503]


async def test_status_404_and_extra_headers(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    challenge = 'Bearer realm="http://127.0.0.1/token",service="x"'
    url = fault_server.add(
        "/a",
        DATA,
        faults=[Fault(status=404), Fault(status=401, headers={"WWW-Authenticate": challenge})],
    )
    async with client.get(url) as resp:
        assert resp.status == 404
        assert "Retry-After" not in resp.headers
    async with client.get(url) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == challenge


async def test_stall_after_sends_bytes_then_nothing(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(stall_after=5000)])
    received = bytearray()
    with pytest.raises(asyncio.TimeoutError):
        await stream(client, url, received, [], timeout=aiohttp.ClientTimeout(sock_read=0.3))
    assert bytes(received) == DATA[:5000]
    stats = fault_server.stats("/a")
    await until(lambda: stats.inflight == 0)
    assert stats.client_disconnected
    assert stats.disconnects == 1


async def test_stall_seconds_then_close(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(stall_after=10, stall_seconds=0.05)])
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(url) as resp:
            await resp.read()
    assert not fault_server.stats("/a").client_disconnected


async def test_trickle_delivers_whole_body_in_many_pieces(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    data = DATA[:1000]
    url = fault_server.add("/a", data, faults=[Fault(trickle=4000)])
    pieces = []
    async with client.get(url) as resp:
        assert resp.headers["Content-Length"] == "1000"
        async for piece in resp.content.iter_any():
            pieces.append(piece)
    assert b"".join(pieces) == data
    assert len(pieces) >= 4


async def test_gzip_bytes_are_served_as_is(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    payload = gzip.compress(DATA[:10_000], mtime=0)
    url = fault_server.add("/a.tar.gz", payload, faults=Fault(gzip=True))
    async with client.get(url, headers={"Accept-Encoding": "identity"}) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["ETag"] == f'"{hashlib.sha256(payload).hexdigest()}"'
        body = await resp.read()
    assert body == payload
    assert gzip.decompress(body) == DATA[:10_000]


async def test_never_answer_holds_until_client_gives_up(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=Fault(never_answer=True))
    with pytest.raises(asyncio.TimeoutError):
        async with client.get(url, timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    stats = fault_server.stats("/a")
    await until(lambda: stats.inflight == 0)
    assert stats.requests == 1
    assert stats.disconnects == 1
    assert stats.statuses == []


async def test_close_cuts_off_a_request_never_answered(client: aiohttp.ClientSession) -> None:
    srv = FaultServer()
    await srv.start()
    try:
        url = srv.add("/a", DATA, faults=Fault(never_answer=True))
        task = asyncio.create_task(client.get(url))
        await srv.wait_inflight(1, "/a")
    finally:
        await srv.close()
    # aiohttp may retry the GET once, which then finds the port closed.
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientConnectorError)):
        await task
    assert srv.stats("/a").disconnects == 0


async def test_redirect(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    fault_server.add("/real", DATA)
    url = fault_server.add(
        "/moved", b"", faults=Fault(redirect_to=fault_server.url("/real"), redirect_status=301)
    )
    async with client.get(url, allow_redirects=False) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == fault_server.url("/real")
    async with client.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == DATA
        assert [h.status for h in resp.history] == [301]


async def test_huge_headers(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add("/a", b"abc", faults=Fault(huge_headers=64 * 1024))
    with pytest.raises(aiohttp.ClientResponseError):
        async with client.get(url):
            pass
    async with (
        aiohttp.ClientSession(max_field_size=128 * 1024) as roomy,
        roomy.get(url) as resp,
    ):
        assert len(resp.headers["X-Huge-Header"]) == 64 * 1024
        assert await resp.read() == b"abc"


async def test_extra_bytes_with_length(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(extra_bytes=100)])
    async with client.get(url) as resp:
        assert resp.headers["Content-Length"] == str(len(DATA))
        assert await resp.read() == DATA
    assert fault_server.stats("/a").bytes_sent == len(DATA) + 100


async def test_extra_bytes_without_length(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, faults=[Fault(extra_bytes=100, extra_with_length=False)])
    async with client.get(url) as resp:
        assert "Content-Length" not in resp.headers
        body = await resp.read()
    assert len(body) == len(DATA) + 100
    assert body.startswith(DATA)


async def test_delay(fault_server: FaultServer, client: aiohttp.ClientSession) -> None:
    url = fault_server.add("/a", b"x", faults=[Fault(delay=0.5)])
    with pytest.raises(asyncio.TimeoutError):
        async with client.get(url, timeout=aiohttp.ClientTimeout(total=0.1)):
            pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"truncate_at": -1},
        {"extra_bytes": 0},
        {"status": 99},
        {"redirect_to": "/x", "redirect_status": 200},
        {"trickle": 0},
        {"retry_after": 1},
        {"truncate_at": 1, "stall_after": 1},
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_faults_must_be_fault_objects() -> None:
    srv = FaultServer()
    with pytest.raises(TypeError):
        srv.set_faults("/a", [{"status": 500}])  # type: ignore[list-item]


# -- auth, files on disk --------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_required(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA, auth=("alice", "s3cret"), faults=[Fault(status=500)])
    async with client.get(url) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    async with client.get(url, headers={"Authorization": _basic("alice", "wrong")}) as resp:
        assert resp.status == 401
    # Refused requests did not consume the fault.
    async with client.get(url, headers={"Authorization": _basic("alice", "s3cret")}) as resp:
        assert resp.status == 500
    async with client.get(url, headers={"Authorization": _basic("alice", "s3cret")}) as resp:
        assert resp.status == 200
        assert await resp.read() == DATA
    seen = [r.headers.get("Authorization") for r in fault_server.requests_for("/a")]
    assert seen[0] is None
    assert seen[-1] == _basic("alice", "s3cret")


async def test_serves_directory_and_files(tmp_path: Path, client: aiohttp.ClientSession) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.bin").write_bytes(DATA)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"secret")
    try:
        (tmp_path / "escape").symlink_to(outside)
        async with FaultServer(root=tmp_path) as srv:
            srv.add_file("/other/name.bin", tmp_path / "sub" / "f.bin", faults=[Fault(status=503)])
            srv.set_faults("/sub/f.bin", [Fault(flip_byte=0)])
            async with client.get(srv.url("/sub/f.bin"), headers={"Range": "bytes=0-9"}) as resp:
                assert resp.status == 206
                assert resp.headers["ETag"] == f'"{SHA}"'
                assert (await resp.read())[1:] == DATA[1:10]
            async with client.get(srv.url("/sub/f.bin")) as resp:
                assert await resp.read() == DATA
            async with client.get(srv.url("/other/name.bin")) as resp:
                assert resp.status == 503
            async with client.get(srv.url("/other/name.bin")) as resp:
                assert await resp.read() == DATA
            for path in ("/escape", "/sub", "/nothing"):
                async with client.get(srv.url(path)) as resp:
                    assert resp.status == 404
    finally:
        outside.unlink()


# -- counters and concurrency ---------------------------------------------------------------


async def test_requests_record_headers(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    url = fault_server.add("/a", DATA)
    headers = {"Range": "bytes=1-2", "Proxy-Authorization": "Basic eDp5", "X-Test": "1"}
    async with client.get(url + "?q=1", headers=headers) as resp:
        await resp.read()
    (req,) = fault_server.requests
    assert (req.method, req.path, req.query_string) == ("GET", "/a", "q=1")
    assert req.headers["range"] == "bytes=1-2"
    assert req.headers["Proxy-Authorization"] == "Basic eDp5"
    assert req.peer is not None
    assert "eDp5" not in repr(req)
    fault_server.reset_counters()
    assert fault_server.requests == []
    assert fault_server.stats("/a").requests == 0
    assert fault_server.totals.bytes_sent == 0


async def test_gate_holds_responses_and_peak_concurrency_is_counted(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    urls = [fault_server.add(f"/f{i}", DATA[:100]) for i in range(3)]
    gate = fault_server.gate()

    async def fetch(url: str) -> bytes:
        async with client.get(url) as resp:
            return await resp.read()

    tasks = [asyncio.create_task(fetch(u)) for u in urls for _ in range(2)]
    await fault_server.wait_inflight(6)
    assert not any(t.done() for t in tasks)
    assert fault_server.stats("/f0").inflight == 2
    gate.set()
    assert await asyncio.gather(*tasks) == [DATA[:100]] * 6
    assert fault_server.totals.inflight == 0
    assert fault_server.totals.peak_inflight == 6
    assert fault_server.stats("/f1").peak_inflight == 2
    assert fault_server.totals.requests == 6


async def test_peak_concurrency_reflects_client_limit(fault_server: FaultServer) -> None:
    url = fault_server.add("/a", DATA[:100])
    gate = fault_server.gate("/a")
    connector = aiohttp.TCPConnector(limit=2)
    queued = 0

    async def on_queued(*_: object) -> None:
        nonlocal queued
        queued += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_queued_start.append(on_queued)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as limited:

        async def fetch() -> int:
            async with limited.get(url) as resp:
                await resp.read()
                return resp.status

        tasks = [asyncio.create_task(fetch()) for _ in range(5)]
        await fault_server.wait_inflight(2, "/a")
        # The other three wait for a connection in the client: none can reach the server.
        await until(lambda: queued == 3)
        assert fault_server.stats("/a").inflight == 2
        gate.set()
        assert await asyncio.gather(*tasks) == [200] * 5
    assert fault_server.stats("/a").peak_inflight == 2


async def test_wait_inflight_times_out(fault_server: FaultServer) -> None:
    with pytest.raises(TimeoutError):
        await fault_server.wait_inflight(1, timeout=0.05)


async def test_client_abandoning_a_body_is_counted(fault_server: FaultServer) -> None:
    big = DATA * 16  # larger than socket buffers, so the server is still writing
    url = fault_server.add("/big", big)
    async with aiohttp.ClientSession() as session:
        resp = await session.get(url)
        await resp.content.readexactly(1000)
        resp.close()
    stats = fault_server.stats("/big")
    await until(lambda: stats.inflight == 0)
    assert stats.disconnects == 1
    assert stats.bytes_sent < len(big)


# -- sample repository ----------------------------------------------------------------------


def test_generate_repository_is_deterministic() -> None:
    a = generate_repository(None, files=40, large=2, large_size=100_000, corrupt=1, flaky=1)
    b = generate_repository(None, files=40, large=2, large_size=100_000, corrupt=1, flaky=1)
    c = generate_repository(None, files=40, large=2, large_size=100_000, seed=1)
    assert a.files == b.files
    assert [f.sha256 for f in a.files] != [f.sha256 for f in c.files]
    assert len(a.files) == 40
    assert sum(f.size == 100_000 for f in a.files) == 2
    assert len(a.corrupt) == 1
    assert len(a.flaky) == 1
    assert len({f.relative_path for f in a.files}) == 40
    for f in a.files:
        assert f.data is not None
        assert hashlib.sha256(f.data).hexdigest() == f.sha256
        assert len(f.data) == f.size


def test_repository_manifests() -> None:
    repo = generate_repository(None, files=10, large=1, large_size=5000)
    lines = repo.pulp_manifest().splitlines()
    assert len(lines) == 10
    for line, f in zip(lines, repo.files, strict=True):
        assert line == f"{f.relative_path},{f.sha256},{f.size}"
    entries = repo.jsonl_manifest("http://127.0.0.1:1/repo", repository="r1")
    assert entries[0] == {
        "url": "http://127.0.0.1:1/repo/" + repo.files[0].relative_path,
        "sha256": repo.files[0].sha256,
        "size": repo.files[0].size,
        "unit": {
            "type": "file",
            "key": f"{repo.files[0].relative_path}:{repo.files[0].sha256}",
            "relative_path": repo.files[0].relative_path,
        },
        "repository": "r1",
    }
    mirrored = repo.jsonl_manifest(["http://a/", "http://b/"])
    assert [s["url"] for s in mirrored[1]["sources"]] == [
        "http://a/" + repo.files[1].relative_path,
        "http://b/" + repo.files[1].relative_path,
    ]
    assert mirrored[1]["repository"] == "sample"


async def test_repository_served_with_its_faults(
    fault_server: FaultServer, client: aiohttp.ClientSession
) -> None:
    repo = generate_repository(None, files=30, large=1, large_size=300_000, corrupt=1, flaky=1)
    base = repo.serve(fault_server, prefix="/sample/")
    assert base == fault_server.url("/sample/")
    async with client.get(base + PULP_MANIFEST) as resp:
        assert (await resp.text()) == repo.pulp_manifest()
    for entry, f in zip(repo.jsonl_manifest(base), repo.files, strict=True):
        async with client.get(entry["url"]) as resp:
            if f.flaky:
                assert resp.status == 503
                async with client.get(entry["url"]) as again:
                    body = await again.read()
            else:
                body = await resp.read()
            assert resp.headers.get("Content-Encoding") == ("gzip" if f.gzip else None)
        assert len(body) == f.size
        assert (hashlib.sha256(body).hexdigest() == f.sha256) is not f.corrupt


async def test_repository_on_disk(tmp_path: Path, client: aiohttp.ClientSession) -> None:
    repo = generate_repository(tmp_path, files=8, large=1, large_size=70_000, flaky=1)
    assert (tmp_path / PULP_MANIFEST).read_text() == repo.pulp_manifest()
    for f in repo.files:
        assert f.data is None
        assert f.path is not None
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.sha256
    manifest = repo.write_jsonl(tmp_path / "m.jsonl", "http://h/")
    parsed = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [p["sha256"] for p in parsed] == [f.sha256 for f in repo.files]
    async with FaultServer() as srv:
        base = repo.serve(srv)
        good = next(f for f in repo.files if not f.flaky)
        async with client.get(base + good.relative_path) as resp:
            assert hashlib.sha256(await resp.read()).hexdigest() == good.sha256
