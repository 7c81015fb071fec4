"""Conditional GET for metadata (``pad.fetch_metadata``): validators kept per remote and URL
in the catalog (SQLite and a real PostgreSQL), ``If-None-Match`` / ``If-Modified-Since``
sent, a 304 answered from storage, the fallback to a full GET when the stored body is gone
or damaged, and a changed file giving a 200 and new validators. Against an aiohttp server
that records the request headers, and against a real nginx (its own 304 logic)."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from plugins.nginx import NginxServer
from pulp_aio_download.catalog.postgres import PostgresCatalog
from pulp_aio_download.catalog.sqlite import SQLiteCatalog

REPOMD = b"<repomd><revision>1</revision></repomd>\n" * 50
CHANGED = b"<repomd><revision>2</revision></repomd>\n" * 60
LAST_MODIFIED = "Mon, 07 Dec 2026 10:00:00 GMT"


@dataclass
class MetadataServer:
    """Serves ``/repomd.xml`` with a strong ETag (the body's sha256) and Last-Modified,
    answering 304 to a matching ``If-None-Match``; records every request's validators."""

    body: bytes = REPOMD
    last_modified: str | None = LAST_MODIFIED
    etag: bool = True
    seen: list[dict[str, str | None]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/repomd.xml", self.repomd)
        app.router.add_get("/missing.xml", self.missing)
        return app

    async def repomd(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "If-None-Match": request.headers.get("If-None-Match"),
                "If-Modified-Since": request.headers.get("If-Modified-Since"),
                "Authorization": request.headers.get("Authorization"),
            }
        )
        headers = {}
        etag = f'"{sha256(self.body)}"'
        if self.etag:
            headers["ETag"] = etag
        if self.last_modified:
            headers["Last-Modified"] = self.last_modified
        if self.etag and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        if (
            not self.etag
            and self.last_modified
            and request.headers.get("If-Modified-Since") == self.last_modified
        ):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers=headers)

    async def missing(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such file")


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> pad.Catalog:
    if request.param == "sqlite":
        return SQLiteCatalog(tmp_path / "catalog.sqlite3")
    dsn: str = request.getfixturevalue("postgres_database")
    return PostgresCatalog(dsn, max_size=3)


def engine_for(tmp_path: Path, catalog: pad.Catalog | None) -> pad.DownloadEngine:
    return pad.DownloadEngine(
        pad.EngineConfig(
            storage=pad.LocalStorage(tmp_path / "store"),
            catalog=catalog,
            remotes=[
                pad.RemoteConfig(retry=NO_RETRY),
                pad.RemoteConfig(name="private", username="alice", password="s3cret-pw"),
            ],
        )
    )


async def on_disk(path: Path | None) -> bytes:
    assert path is not None
    return await asyncio.to_thread(path.read_bytes)


def staging_left(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "store").rglob("*.part")]


async def test_304_is_answered_from_storage_and_validators_are_kept(
    tmp_path: Path, catalog: pad.Catalog
) -> None:
    served = MetadataServer()
    async with TestServer(served.app(), host="127.0.0.1") as server:
        url = str(server.make_url("/repomd.xml"))
        async with engine_for(tmp_path, catalog) as engine:
            first = await pad.fetch_metadata(engine, url)
            assert (first.status, first.not_modified) == (200, False)
            assert first.sha256 == sha256(REPOMD) and first.size == len(REPOMD)
            assert first.path is not None and await on_disk(first.path) == REPOMD
            assert await asyncio.to_thread(first.read_bytes) == REPOMD
            assert first.etag == f'"{sha256(REPOMD)}"'
            assert first.last_modified == LAST_MODIFIED
            kept = await catalog.get_validators("default", url)
            assert kept is not None
            assert (kept.remote, kept.url, kept.etag, kept.last_modified) == (
                "default",
                url,
                first.etag,
                LAST_MODIFIED,
            )
            assert (kept.sha256, kept.size) == (sha256(REPOMD), len(REPOMD))
            assert kept.updated_at is not None and kept.updated_at.tzinfo is not None
            record = await catalog.get_unit_file(first.sha256)
            assert record is not None and record.location == first.location
            assert [s.url for s in record.sources] == [url]

            second = await pad.fetch_metadata(engine, url)
            assert (second.status, second.not_modified) == (304, True)
            assert (second.sha256, second.size, second.path) == (
                first.sha256,
                first.size,
                first.path,
            )
            assert await asyncio.to_thread(second.read_bytes) == REPOMD

            forced = await pad.fetch_metadata(engine, url, conditional=False)
            assert (forced.status, forced.not_modified) == (200, False)
    assert served.seen == [
        {"If-None-Match": None, "If-Modified-Since": None, "Authorization": None},
        {"If-None-Match": first.etag, "If-Modified-Since": LAST_MODIFIED, "Authorization": None},
        {"If-None-Match": None, "If-Modified-Since": None, "Authorization": None},
    ]
    assert staging_left(tmp_path) == []


async def test_a_changed_file_gives_a_200_and_new_validators(
    tmp_path: Path, catalog: pad.Catalog
) -> None:
    served = MetadataServer()
    async with TestServer(served.app(), host="127.0.0.1") as server:
        url = str(server.make_url("/repomd.xml"))
        async with engine_for(tmp_path, catalog) as engine:
            first = await pad.fetch_metadata(engine, url)
            served.body = CHANGED
            served.last_modified = "Tue, 08 Dec 2026 10:00:00 GMT"
            second = await pad.fetch_metadata(engine, url)
            assert (second.status, second.not_modified) == (200, False)
            assert second.sha256 == sha256(CHANGED) != first.sha256
            assert second.path is not None and await on_disk(second.path) == CHANGED
            kept = await catalog.get_validators("default", url)
            assert kept is not None
            assert (kept.etag, kept.last_modified, kept.sha256, kept.size) == (
                f'"{sha256(CHANGED)}"',
                "Tue, 08 Dec 2026 10:00:00 GMT",
                sha256(CHANGED),
                len(CHANGED),
            )
            # Both bodies stay stored and recorded: a repository version may still use the old.
            assert first.path is not None and await on_disk(first.path) == REPOMD
            third = await pad.fetch_metadata(engine, url)
            assert third.not_modified and third.sha256 == sha256(CHANGED)
    assert served.seen[1]["If-None-Match"] == first.etag
    assert served.seen[2]["If-None-Match"] == second.etag


@pytest.mark.parametrize("damage", ["deleted", "flipped"])
async def test_a_304_whose_stored_body_is_gone_or_damaged_falls_back_to_a_full_get(
    tmp_path: Path, catalog: pad.Catalog, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    served = MetadataServer()
    async with TestServer(served.app(), host="127.0.0.1") as server:
        url = str(server.make_url("/repomd.xml"))
        async with engine_for(tmp_path, catalog) as engine:
            first = await pad.fetch_metadata(engine, url)
            assert first.path is not None
            if damage == "deleted":
                await engine.storage.delete(first.sha256)
            else:
                data = bytearray(await on_disk(first.path))
                data[10] ^= 0xFF
                await asyncio.to_thread(os.chmod, first.path, 0o644)
                await asyncio.to_thread(first.path.write_bytes, bytes(data))
            with caplog.at_level(logging.DEBUG, logger="pulp_aio_download.metadata"):
                again = await pad.fetch_metadata(engine, url)
            assert (again.status, again.not_modified) == (200, False)
            assert again.sha256 == first.sha256
            assert again.path is not None and await on_disk(again.path) == REPOMD
            kept = await catalog.get_validators("default", url)
            assert kept is not None and kept.sha256 == sha256(REPOMD)
    word = "missing" if damage == "deleted" else "damaged"
    assert f"304 Not Modified, but the stored body {first.sha256} is {word}" in caplog.text
    # The conditional request, then the full one without validators.
    assert [s["If-None-Match"] for s in served.seen] == [None, first.etag, None]
    assert staging_left(tmp_path) == []


async def test_last_modified_alone_and_no_validators_at_all(
    tmp_path: Path, catalog: pad.Catalog
) -> None:
    served = MetadataServer(etag=False)
    async with TestServer(served.app(), host="127.0.0.1") as server:
        url = str(server.make_url("/repomd.xml"))
        async with engine_for(tmp_path, catalog) as engine:
            await pad.fetch_metadata(engine, url)
            second = await pad.fetch_metadata(engine, url)
            assert second.not_modified and second.etag is None
            assert served.seen[1] == {
                "If-None-Match": None,
                "If-Modified-Since": LAST_MODIFIED,
                "Authorization": None,
            }
            # The server stops sending validators: they are forgotten, nothing is sent.
            served.last_modified = None
            third = await pad.fetch_metadata(engine, url)
            assert (third.status, third.etag, third.last_modified) == (200, None, None)
            assert await catalog.get_validators("default", url) is None
            await pad.fetch_metadata(engine, url)
            assert served.seen[3]["If-Modified-Since"] is None


async def test_validators_are_per_remote_and_urls_keep_no_credentials(
    tmp_path: Path, catalog: pad.Catalog
) -> None:
    served = MetadataServer()
    async with TestServer(served.app(), host="127.0.0.1") as server:
        url = str(server.make_url("/repomd.xml"))
        async with engine_for(tmp_path, catalog) as engine:
            await pad.fetch_metadata(engine, url)
            private = await pad.fetch_metadata(engine, url, remote="private")
            assert not private.not_modified  # nothing kept yet for that remote
            assert (await pad.fetch_metadata(engine, url, remote="private")).not_modified
            kept = await catalog.get_validators("private", url)
            assert kept is not None and "s3cret-pw" not in repr(kept)
    assert served.seen[1]["If-None-Match"] is None
    assert served.seen[1]["Authorization"] is not None  # the remote's policy applies
    assert served.seen[2]["If-None-Match"] is not None


async def test_an_error_status_is_an_http_status_error_naming_the_url(
    tmp_path: Path, catalog: pad.Catalog
) -> None:
    served = MetadataServer()
    async with TestServer(served.app(), host="127.0.0.1") as server:
        url = str(server.make_url("/missing.xml"))
        async with engine_for(tmp_path, catalog) as engine:
            with pytest.raises(pad.HTTPStatusError) as info:
                await pad.fetch_metadata(engine, url)
            assert await catalog.get_validators("default", url) is None
    assert info.value.status == 404
    assert info.value.url == url
    assert "HTTP 404" in str(info.value) and url in str(info.value)
    assert staging_left(tmp_path) == []


async def test_a_connection_failure_is_a_download_error(tmp_path: Path) -> None:
    from helpers import free_port

    url = f"http://127.0.0.1:{free_port()}/repomd.xml"
    async with engine_for(tmp_path, None) as engine:
        with pytest.raises(pad.ConnectionFailed) as info:
            await pad.fetch_metadata(engine, url)
    assert info.value.url == url


async def test_without_a_catalog_every_fetch_is_a_plain_get(tmp_path: Path) -> None:
    served = MetadataServer()
    async with TestServer(served.app(), host="127.0.0.1") as server:
        url = str(server.make_url("/repomd.xml"))
        async with engine_for(tmp_path, None) as engine:
            for _ in range(2):
                result = await pad.fetch_metadata(engine, url)
                assert (result.status, result.sha256) == (200, sha256(REPOMD))
    assert [s["If-None-Match"] for s in served.seen] == [None, None]


# -- a third-party server: nginx's own If-None-Match / If-Modified-Since handling -----------


@pytest.mark.parametrize("directives", ["", "etag off;"])
async def test_nginx_answers_304_and_a_changed_file_gets_a_200(
    tmp_path: Path, nginx: object, directives: str
) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "PULP_MANIFEST").write_bytes(REPOMD)
    server: NginxServer = nginx(root, directives=directives)  # type: ignore[operator]
    url = f"{server.base_url}/PULP_MANIFEST"
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite3")
    async with engine_for(tmp_path, catalog) as engine:
        first = await pad.fetch_metadata(engine, url)
        assert (first.status, first.sha256) == (200, sha256(REPOMD))
        assert first.last_modified is not None
        assert (first.etag is None) == (directives == "etag off;")
        second = await pad.fetch_metadata(engine, url)
        assert (second.status, second.not_modified) == (304, True)
        assert second.path is not None and await on_disk(second.path) == REPOMD

        await asyncio.to_thread((root / "PULP_MANIFEST").write_bytes, CHANGED)
        await asyncio.to_thread(os.utime, root / "PULP_MANIFEST", (2_000_000_000, 2_000_000_000))
        third = await pad.fetch_metadata(engine, url)
        assert (third.status, third.not_modified, third.sha256) == (200, False, sha256(CHANGED))
        assert third.last_modified != first.last_modified
        kept = await catalog.get_validators("default", url)
        assert kept is not None
        assert (kept.etag, kept.last_modified, kept.sha256) == (
            third.etag,
            third.last_modified,
            sha256(CHANGED),
        )
        assert (await pad.fetch_metadata(engine, url)).not_modified
    entries = server.wait_logged(4)
    assert [e["status"] for e in entries] == [200, 304, 200, 304]
    assert [e["if_modified_since"] for e in entries] == [
        "",
        first.last_modified,
        first.last_modified,
        third.last_modified,
    ]
    expected_inm = ["", "", "", ""] if directives else ["", first.etag, first.etag, third.etag]
    assert [e["if_none_match"] for e in entries] == expected_inm
    assert [e["body_bytes"] for e in entries] == [len(REPOMD), 0, len(CHANGED), 0]
