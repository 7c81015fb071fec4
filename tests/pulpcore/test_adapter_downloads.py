"""The adapter's downloader against real servers: results as pulpcore's, errors as
pulpcore's, the session view, close_engines()."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

Serve = Callable[[web.Application], Awaitable[str]]
BODY = os.urandom(200_000)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    from pulp_aio_download.integrations.pulpcore import close_engines

    await close_engines()
    for runner in runners:
        await runner.cleanup()


def _app(stall: bool = False) -> web.Application:
    async def blob(request: web.Request) -> web.StreamResponse:
        if not stall:
            return web.Response(body=BODY, headers={"ETag": '"e1"'})
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
        await response.prepare(request)
        await response.write(BODY[:1000])
        await asyncio.sleep(30)
        return response

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {"agent": request.headers.get("User-Agent"), "x": request.headers.get("X-Pulp")}
        )

    app = web.Application()
    app.router.add_get("/blob", blob)
    app.router.add_post("/echo", echo)
    return app


async def _remote(url: str, **kwargs: Any) -> Any:
    """An unsaved FileRemote (made off the loop: its default domain is read from the DB)."""
    from asgiref.sync import sync_to_async
    from pulp_file.app.models import FileRemote

    fields = {"headers": [{"X-Pulp": "yes"}], "sock_read_timeout": 0.5, **kwargs}
    return await sync_to_async(FileRemote)(name="r", url=url, **fields)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A task's working directory under WORKING_DIRECTORY, removed after the test (the
    harness's tests check that nothing is left there)."""
    from django.conf import settings

    work = Path(str(settings.WORKING_DIRECTORY)) / f"t-{os.getpid()}-{tmp_path.name}"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    yield work
    monkeypatch.undo()
    shutil.rmtree(work)


async def test_run_hands_the_file_off_into_the_working_directory_with_every_digest(
    serve: Serve, workdir: Path
) -> None:
    from pulpcore.app.models import Artifact

    from pulp_aio_download.integrations.pulpcore import AioDownloader, AioDownloaderFactory

    base = await serve(_app())
    remote = await _remote(base)
    downloader = AioDownloaderFactory(remote).build(
        f"{base}/blob",
        expected_digests={"sha256": hashlib.sha256(BODY).hexdigest()},
        expected_size=len(BODY),
        some_plugin_kwarg=object(),  # accepted and ignored, as pulpcore does
    )
    assert isinstance(downloader, AioDownloader)
    result = await downloader.run()

    path = Path(result.path)
    assert path.parent == workdir and path.read_bytes() == BODY
    assert result.url == f"{base}/blob"
    assert result.headers["etag"] == '"e1"'  # case-insensitive, as aiohttp's
    expected = {a: hashlib.new(a, BODY).hexdigest() for a in Artifact.DIGEST_FIELDS}
    assert result.artifact_attributes == {"size": len(BODY), **expected}
    assert downloader.artifact_attributes == result.artifact_attributes
    assert sorted(p.name for p in workdir.iterdir()) == [path.name]


async def test_a_wrong_digest_is_pulpcores_digest_validation_error(
    serve: Serve, workdir: Path
) -> None:
    from pulpcore.exceptions import DigestValidationError

    from pulp_aio_download.errors import DownloadError
    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory

    base = await serve(_app())
    downloader = AioDownloaderFactory(await _remote(base)).build(
        f"{base}/blob", expected_digests={"sha256": "0" * 64}, max_retries=1
    )
    with pytest.raises(DigestValidationError) as caught:
        await downloader.run()
    assert isinstance(caught.value.__cause__, DownloadError)
    assert str(caught.value) == (
        f"[PLP0003] A file located at the url {base}/blob failed validation due to checksum. "
        f"Expected '{'0' * 64}', Actual '{hashlib.sha256(BODY).hexdigest()}'"
    )
    assert list(workdir.iterdir()) == []


async def test_a_wrong_size_is_pulpcores_size_validation_error(serve: Serve, workdir: Path) -> None:
    from pulpcore.exceptions import SizeValidationError

    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory

    base = await serve(_app())
    downloader = AioDownloaderFactory(await _remote(base)).build(
        f"{base}/blob", expected_size=len(BODY) + 1, max_retries=1
    )
    with pytest.raises(SizeValidationError) as caught:
        await downloader.run()
    assert (caught.value.actual, caught.value.expected) == (len(BODY), len(BODY) + 1)
    assert list(workdir.iterdir()) == []


async def test_a_404_is_a_client_response_error_with_the_status_and_no_credential(
    serve: Serve, workdir: Path
) -> None:
    from pulp_aio_download.errors import DownloadError
    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory

    base = await serve(_app())
    remote = await _remote(base, username="user", password="s3cret-pw")
    downloader = AioDownloaderFactory(remote).build(
        f"{base}/missing".replace("http://", "http://user:s3cret-url@")
    )
    with pytest.raises(aiohttp.ClientResponseError) as caught:
        await downloader.run()
    assert caught.value.status == 404
    assert isinstance(caught.value.__cause__, DownloadError)
    assert "Not Found" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "s3cret" not in str(caught.value.__cause__)


async def test_a_stall_is_pulpcores_timeout_exception(serve: Serve, workdir: Path) -> None:
    from pulpcore.exceptions import TimeoutException

    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory

    base = await serve(_app(stall=True))
    downloader = AioDownloaderFactory(await _remote(base)).build(f"{base}/blob", max_retries=1)
    with pytest.raises(TimeoutException) as caught:
        await downloader.run()
    assert str(caught.value).startswith(f"[PLP0005] Request timed out for {base}/blob")
    assert list(workdir.iterdir()) == []


async def test_a_refused_connection_is_a_client_connection_error(workdir: Path) -> None:
    import socket

    from pulp_aio_download.errors import DownloadError
    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory, close_engines

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/blob"
    downloader = AioDownloaderFactory(await _remote(url)).build(url, max_retries=1)
    try:
        with pytest.raises(aiohttp.ClientConnectionError) as caught:
            await downloader.run()
    finally:
        await close_engines()
    assert not isinstance(caught.value, aiohttp.ClientResponseError)
    assert isinstance(caught.value.__cause__, DownloadError)
    assert "127.0.0.1" in str(caught.value)


async def test_the_session_view_sends_the_remotes_headers_and_its_close_leaves_the_engines_open(
    serve: Serve, workdir: Path
) -> None:
    from pulpcore.download.factory import DownloaderFactory

    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory
    from pulp_aio_download.integrations.pulpcore._engines import engine_for_running_loop

    base = await serve(_app())
    factory = AioDownloaderFactory(await _remote(base))
    first = factory.build(f"{base}/blob")
    async with first.session.post(f"{base}/echo", json={}) as response:
        assert response.status == 200
        seen = await response.json()
    assert seen == {"agent": DownloaderFactory.user_agent(), "x": "yes"}
    await first.session.close()
    assert first.session.closed

    engine = engine_for_running_loop().engine
    result = await factory.build(f"{base}/blob").run()  # the engine's session still serves
    assert Path(result.path).read_bytes() == BODY
    assert not any(s.closed for s in [engine.session(n) for n in engine.config.remotes])


async def test_an_edited_remote_downloads_with_its_new_settings(
    serve: Serve, workdir: Path
) -> None:
    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory
    from pulp_aio_download.integrations.pulpcore._engines import engine_for_running_loop

    base = await serve(_app())
    remote = await _remote(base, download_concurrency=2)
    await AioDownloaderFactory(remote).build(f"{base}/blob").run()
    remote.download_concurrency = 5
    await AioDownloaderFactory(remote).build(f"{base}/blob").run()

    engine = engine_for_running_loop().engine
    limits = sorted(r.max_connections or 0 for n, r in engine.config.remotes.items() if "#" in n)
    assert limits == [2, 5]


async def test_close_engines_closes_the_loops_engine_and_a_later_download_opens_a_new_one(
    serve: Serve, workdir: Path
) -> None:
    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory, close_engines
    from pulp_aio_download.integrations.pulpcore._engines import engine_for_running_loop

    base = await serve(_app())
    factory = AioDownloaderFactory(await _remote(base))
    await factory.build(f"{base}/blob").run()
    engine = engine_for_running_loop().engine
    await close_engines()
    with pytest.raises(RuntimeError, match="closed"):
        engine.session("default")
    await close_engines()  # nothing left: no error

    await factory.build(f"{base}/blob").run()
    assert engine_for_running_loop().engine is not engine
