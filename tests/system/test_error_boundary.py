"""Every public entry point through every failing part: only DownloadErrors come out, each
naming the file (DESIGN.md section 6).

The parts fail for real: a data dir on a read-only mount, a PostgreSQL server stopped in
the middle of a batch, an S3 endpoint nobody listens on, a registry whose token realm is
down, a proxy that is down. The entry points: ``download``, ``download_many`` (with and
without ``return_exceptions``), ``register`` / ``fetch``, ``verify``, ``download_sync``,
``run_batch`` and the CLI's ``get``, ``sync``, ``verify`` and ``catalog show/units``.
Anything that is not a :class:`DownloadError` propagates out of the test as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import cli, free_port
from pulp_aio_download.catalog.postgres import PostgresCatalog
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.hooks import DownloadContext
from pulp_aio_download.storage.local import LocalStorage
from pulp_aio_download.testing import FaultServer

T = TypeVar("T")

PARTS = [
    "catalog read-only",
    "PostgreSQL stopped mid-batch",
    "S3 endpoint down",
    "token realm down",
    "proxy down",
]
ONE_TRY = pad.RetryPolicy(attempts=1)


@dataclass
class Part:
    """One failing part: how to build engines, CLI arguments and requests that hit it."""

    name: str
    tmp: Path
    requests: list[pad.DownloadRequest] = field(default_factory=list)
    make_config: Callable[..., pad.EngineConfig] = pad.EngineConfig
    cli: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: Run by the first download's hook chain, while the others wait: breaks the part
    #: mid-batch (None: the part is broken from the start).
    break_now: Callable[[], Awaitable[None]] | None = None

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def add_files(self, server_add: Callable[[str, bytes], str], remote: str | None) -> None:
        for i in range(3):
            data = f"{self.name} file {i}\n".encode() * (i + 10)
            url = server_add(f"/boundary/{i}.bin", data)
            self.requests.append(
                pad.DownloadRequest(
                    url,
                    expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
                    expected_size=len(data),
                    remote=remote,
                    unit=pad.UnitSpec("file", f"f{i}"),
                    repository="boundary",
                )
            )


def check(outcome: object, url: str) -> None:
    assert isinstance(outcome, pad.DownloadError), repr(outcome)
    assert outcome.url == url, (outcome.url, url, str(outcome))
    assert url in str(outcome)


async def attempt(work: Awaitable[T]) -> T | pad.DownloadError:
    """The result, or the DownloadError; any other exception fails the test."""
    try:
        return await work
    except pad.DownloadError as exc:
        return exc


# -- the parts ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bearer_origin(realm: str) -> AsyncIterator[tuple[str, Callable[[str, bytes], str]]]:
    """A registry-style origin that answers every request with a Bearer challenge."""

    async def challenge(request: web.Request) -> web.Response:
        scope = "repository:boundary:pull"
        header = f'Bearer realm="{realm}",service="registry",scope="{scope}"'
        return web.Response(status=401, headers={"WWW-Authenticate": header})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", challenge)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", lambda path, data: f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def failing_part(
    name: str, tmp: Path, fixtures: pytest.FixtureRequest
) -> AsyncIterator[Part]:
    part = Part(name, tmp)
    data_dir = tmp / "data"
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(FaultServer())
        part.cli = ["--data-dir", str(data_dir)]

        if name == "catalog read-only":
            part.add_files(server.add, None)
            async with pad.DownloadEngine(pad.EngineConfig(data_dir=data_dir)) as engine:
                await engine.download(part.requests[0])  # something to verify and show
            fixtures.getfixturevalue("read_only_dir")(data_dir)
            catalog = data_dir / "catalog.sqlite3"

            def config(**extra: Any) -> pad.EngineConfig:
                if extra.pop("engine", False):  # a read-only catalog that opens fine
                    return pad.EngineConfig(
                        storage=LocalStorage(tmp / "store"),
                        catalog=SQLiteCatalog(catalog, read_only=True),
                        **extra,
                    )
                return pad.EngineConfig(data_dir=data_dir, **extra)  # the plain data dir

            part.make_config = config

        elif name == "PostgreSQL stopped mid-batch":
            from plugins.postgres import _start_server, find_postgres_bin

            bindir = find_postgres_bin()
            if bindir is None:
                fixtures.getfixturevalue("postgres_dsn")  # fails under CI, skips elsewhere
            assert bindir is not None
            pg = _start_server(bindir)
            stack.callback(shutil.rmtree, pg.workdir, ignore_errors=True)
            stack.callback(pg.stop)
            dsn = pg.dsn()
            part.add_files(server.add, None)
            part.cli += ["--catalog", dsn]

            async def stop() -> None:
                await asyncio.to_thread(
                    pg.run, "pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(pg.datadir)
                )

            part.break_now = stop
            part.make_config = lambda **extra: pad.EngineConfig(
                storage=LocalStorage(tmp / "store"), catalog=PostgresCatalog(dsn), **extra
            )

        elif name == "S3 endpoint down":
            from botocore.config import Config

            from pulp_aio_download.storage.s3 import S3Storage

            fixtures.getfixturevalue("s3_env")
            endpoint = f"http://127.0.0.1:{free_port()}"
            part.add_files(server.add, None)
            part.cli += ["--storage", "s3://boundary/artifacts", "--s3-endpoint-url", endpoint]
            part.env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
            # One attempt per request in the CLI's processes too (standard mode waits up to
            # 15 s over its retries of a refused connection): the outcome is the same.
            part.env["AWS_MAX_ATTEMPTS"] = "1"
            no_retries = Config(retries={"max_attempts": 0, "mode": "standard"})
            part.make_config = lambda **extra: pad.EngineConfig(
                storage=S3Storage(
                    "boundary", "artifacts", endpoint_url=endpoint, client_config=no_retries
                ),
                catalog=SQLiteCatalog(data_dir / "catalog.sqlite3"),
                **extra,
            )

        elif name == "token realm down":
            realm = f"http://127.0.0.1:{free_port()}/token"
            _, add = await stack.enter_async_context(bearer_origin(realm))
            part.add_files(add, "registry")
            remotes = tmp / "remotes.toml"
            remotes.write_text(
                "[remotes.registry]\n[remotes.registry.retry]\nattempts = 1\n"
                '[remotes.registry.auth]\ntype = "bearer"\n'
            )
            part.cli += ["--remotes", str(remotes)]
            # One auth object for every engine (and so every event loop) of the part.
            remote = pad.RemoteConfig(name="registry", auth=pad.BearerTokenAuth(), retry=ONE_TRY)
            part.make_config = lambda **extra: pad.EngineConfig(
                data_dir=data_dir, remotes={"registry": remote}, **extra
            )

        elif name == "proxy down":
            proxy = f"http://127.0.0.1:{free_port()}"
            part.add_files(server.add, "proxied")
            remote = pad.RemoteConfig(
                name="proxied", proxy=pad.ProxyConfig(url=proxy), retry=ONE_TRY
            )
            remotes = tmp / "remotes.toml"
            remotes.write_text(
                f'[remotes.proxied]\n[remotes.proxied.proxy]\nurl = "{proxy}"\n'
                "[remotes.proxied.retry]\nattempts = 1\n"
            )
            part.cli += ["--remotes", str(remotes)]
            part.make_config = lambda **extra: pad.EngineConfig(
                data_dir=data_dir, remotes={"proxied": remote}, **extra
            )
        yield part


# -- the entry points -----------------------------------------------------------------------


def mid_batch_hooks(part: Part) -> list[pad.Hook]:
    """Hooks that break the part once the first file is done, with the others held before
    their built-in hooks until then: the first succeeds, the rest meet the broken part."""
    broken = asyncio.Event()
    first = part.requests[0]

    async def hold(ctx: DownloadContext) -> None:
        if ctx.request is not first:
            await broken.wait()

    async def break_after_first(ctx: DownloadContext) -> None:
        if ctx.request is first:
            assert part.break_now is not None
            await part.break_now()
            broken.set()

    return [hold, *pad.DEFAULT_HOOKS, break_after_first]


async def library_entry_points(part: Part) -> None:
    reqs, urls = part.requests, part.urls
    extra: dict[str, Any] = {"engine": True} if part.name == "catalog read-only" else {}
    if part.break_now is not None:
        extra["hooks"] = mid_batch_hooks(part)
    async with contextlib.AsyncExitStack() as stack:
        engine = await stack.enter_async_context(pad.DownloadEngine(part.make_config(**extra)))

        outcomes = await engine.download_many(reqs, return_exceptions=True)
        if part.break_now is not None:
            assert isinstance(outcomes[0], pad.DownloadResult), outcomes[0]
            assert all(isinstance(o, pad.CatalogError) for o in outcomes[1:]), outcomes
            outcomes, urls, reqs = outcomes[1:], urls[1:], reqs[1:]
        for outcome, url in zip(outcomes, urls, strict=True):
            check(outcome, url)

        with pytest.raises(pad.DownloadError) as first:
            await engine.download_many(reqs)
        assert first.value.url in urls
        for request in reqs:
            check(await attempt(engine.download(request)), request.url)

        lazy = reqs[-1]
        registered = await attempt(engine.register(lazy))
        if not isinstance(registered, pad.DownloadError):
            check(await attempt(engine.fetch(lazy.sha256 or "")), lazy.url)
        elif isinstance(registered, pad.StorageError):  # the store failed: nothing recorded
            check(registered, lazy.url)
            fetched = await attempt(engine.fetch(lazy.sha256 or ""))
            assert isinstance(fetched, pad.ConfigError), repr(fetched)
        else:  # the catalog failed
            assert isinstance(registered, pad.CatalogError), repr(registered)
            check(registered, lazy.url)
            known = part.requests[0]  # recorded before the part broke
            fetched = await attempt(engine.fetch(known.sha256 or ""))
            assert isinstance(fetched, pad.CatalogError), repr(fetched)
            if fetched.url is None:  # the record itself could not be read: no URL known
                assert str(fetched).startswith(f"cannot fetch {known.sha256}: "), fetched
            else:
                check(fetched, known.url)

        for repair in (False, True):
            report = await attempt(engine.verify(repair=repair))
            assert isinstance(report, (pad.VerifyReport, pad.DownloadError)), repr(report)

        await attempt(stack.aclose())  # closing a broken part is a DownloadError at most

    # The sync helpers, each with a fresh engine (run in a thread: they own their loop).
    for request in part.requests:
        done = await attempt(asyncio.to_thread(pad.download_sync, request, part.make_config()))
        check(done, request.url)
    batch = await asyncio.to_thread(pad.run_batch, part.requests, part.make_config())
    for outcome, url in zip(batch, part.urls, strict=True):
        check(outcome, url)
    raised = await attempt(
        asyncio.to_thread(pad.run_batch, part.requests, part.make_config(), False)
    )
    assert isinstance(raised, pad.DownloadError) and raised.url in part.urls, repr(raised)


async def run_cli_async(part: Part, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")}
    env.update(part.env)
    process = await asyncio.create_subprocess_exec(
        *cli(*args, *part.cli),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def cli_entry_points(part: Part) -> None:
    manifest = part.tmp / "manifest.jsonl"
    with manifest.open("w") as out:
        for r in part.requests:
            where = (
                {"sources": [{"url": r.url, "remote": r.remote}]} if r.remote else {"url": r.url}
            )
            out.write(json.dumps({**where, "sha256": r.sha256, "size": r.expected_size}) + "\n")
    request = part.requests[1]
    remote = ["--remote", request.remote] if request.remote else []
    commands = [
        ["get", request.url, "--sha256", request.sha256 or "", *remote],
        ["sync", str(manifest), "--progress", "none"],
        ["verify"],
        ["catalog", "show", request.sha256 or ""],
        ["catalog", "units", "boundary"],
    ]
    for command in commands:
        code, out, err = await run_cli_async(part, *command)
        assert "Traceback" not in err, (command, err)
        assert code in (0, 1, 2), (command, code, err)
        if code == 2:  # cannot open what the command needs: one line, nothing downloaded
            assert len(err.splitlines()) == 1 and err.startswith("pulp-aio-download: error: ")
        elif code == 1 and command[0] == "get":
            assert err.startswith("error: ") and request.url in err, err
        elif code == 1 and command[0] == "sync":
            assert all(f"FAILED {url}: " in out for url in part.urls), out


@pytest.mark.parametrize("name", PARTS)
async def test_only_download_errors_come_out(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with failing_part(name, tmp_path, request) as part:
        await library_entry_points(part)
        await cli_entry_points(part)


async def test_one_config_serves_many_sync_calls_through_a_token_realm(tmp_path: Path) -> None:
    """A plugin builds its EngineConfig once and calls the sync helpers many times, each
    in its own event loop: the remote's BearerTokenAuth must work in every one of them."""
    realm = f"http://127.0.0.1:{free_port()}/token"
    async with bearer_origin(realm) as (_, add):
        part = Part("token realm reused", tmp_path)
        part.add_files(add, "registry")
        auth = pad.BearerTokenAuth()
        config = pad.EngineConfig(
            data_dir=tmp_path / "data",
            remotes={"registry": pad.RemoteConfig(name="registry", auth=auth, retry=ONE_TRY)},
        )
        for _ in range(3):
            batch = await asyncio.to_thread(pad.run_batch, part.requests, config)
            for outcome, url in zip(batch, part.urls, strict=True):
                check(outcome, url)
                assert "token realm" in str(outcome) or realm in str(outcome), outcome
