"""FakeTransport: an engine built on it runs the whole pipeline with no socket."""

from __future__ import annotations

from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from pulp_aio_download.testing import FakeResponse, FakeTransport, TransportRequest

URL = "https://mirror.invalid/pool/a.rpm"


def config(tmp_path: Path, **kwargs: object) -> pad.EngineConfig:
    return pad.EngineConfig(data_dir=tmp_path / "data", **kwargs)  # type: ignore[arg-type]


async def test_engine_on_a_fake_transport_stores_and_records(tmp_path: Path) -> None:
    body = b"rpm bytes" * 1000
    fake = FakeTransport({URL: body})
    async with pad.DownloadEngine(config(tmp_path), transport=fake) as engine:
        result = await engine.download(URL, expected_digests={"sha256": sha256(body)})
        assert engine.catalog is not None
        record = await engine.catalog.get_unit_file(sha256(body))
    assert result.path is not None and result.path.read_bytes() == body
    assert record is not None and [s.url for s in record.sources] == [URL]
    assert [r.url for r in fake.requests] == [URL]
    assert fake.closed  # the engine closes the transport it was built on


async def test_handler_sees_credentials_and_remote_but_results_do_not(tmp_path: Path) -> None:
    seen: list[TransportRequest] = []

    def handler(request: TransportRequest) -> FakeResponse:
        seen.append(request)
        return FakeResponse(200, b"x")

    remote = pad.RemoteConfig(name="vendor", retry=NO_RETRY)
    cfg = config(tmp_path, remotes={"vendor": remote})
    async with pad.DownloadEngine(cfg, transport=FakeTransport(handler)) as engine:
        result = await engine.download("https://bob:s3cret@mirror.invalid/x", remote="vendor")
    assert seen[0].userinfo == ("bob", "s3cret")
    assert seen[0].remote is remote
    assert "s3cret" not in repr(seen[0]) and "s3cret" not in result.url


async def test_status_retry_after_and_a_cut_body_are_retried(tmp_path: Path) -> None:
    body = b"0123456789" * 100
    answers = iter(
        [
            FakeResponse(503, headers={"Retry-After": "0"}),
            FakeResponse(200, body, cut_after=300),
            FakeResponse(200, body),
        ]
    )
    fake = FakeTransport(lambda request: next(answers))
    remote = pad.RemoteConfig(retry=pad.RetryPolicy(attempts=3, backoff=0.0))
    async with pad.DownloadEngine(
        config(tmp_path, remotes={"default": remote}), transport=fake
    ) as engine:
        result = await engine.download(URL, expected_digests={"sha256": sha256(body)})
    assert result.attempts == 3
    assert len(fake.requests) == 3


async def test_a_404_fails_with_the_status_and_leaves_nothing(tmp_path: Path) -> None:
    remote = pad.RemoteConfig(retry=NO_RETRY)
    cfg = config(tmp_path, remotes={"default": remote})
    async with pad.DownloadEngine(cfg, transport=FakeTransport({})) as engine:
        with pytest.raises(pad.HTTPStatusError) as info:
            await engine.download(URL)
    assert info.value.status == 404 and info.value.url == URL
    staging = tmp_path / "data" / "artifacts" / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


async def test_a_digest_mismatch_is_a_validation_error(tmp_path: Path) -> None:
    remote = pad.RemoteConfig(retry=NO_RETRY)
    cfg = config(tmp_path, remotes={"default": remote})
    async with pad.DownloadEngine(cfg, transport=FakeTransport({URL: b"bad"})) as engine:
        with pytest.raises(pad.DigestMismatch) as info:
            await engine.download(URL, expected_digests={"sha256": sha256(b"good")})
    assert info.value.actual == sha256(b"bad")


async def test_async_handler_and_ranges_of_the_mapping_form() -> None:
    fake = FakeTransport({URL: b"abcdef"})
    resp = await fake.open(TransportRequest(URL, pad.RemoteConfig(), offset=2))
    assert (resp.status, resp.offset, resp.headers["Content-Range"]) == (206, 2, "bytes 2-5/6")
    assert await resp.read() == b"cdef" and await resp.read() == b""

    async def handler(request: TransportRequest) -> FakeResponse:
        return FakeResponse(200, b"from a coroutine")

    resp = await FakeTransport(handler).open(TransportRequest(URL, pad.RemoteConfig()))
    assert await resp.read() == b"from a coroutine"
    await resp.close()
