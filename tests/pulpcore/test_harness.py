"""The harness itself: the downloaders it claims to use are the ones pulpcore builds, and the
tripwire on pulpcore's own HttpDownloader does fail and record."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pulp_origin import Origin, TreeFile, write_tree
from pulp_site import PULPCORE_WARNINGS
from pulp_tasks import file_remote
from pulp_tripwire import PulpcoreDownloaderUsed, arm, calls

pytestmark = PULPCORE_WARNINGS
OriginFactory = Callable[..., Origin]


def test_remotes_build_the_downloaders_of_the_chosen_side(downloaders: str) -> None:
    from pulpcore.download.base import BaseDownloader
    from pulpcore.download.http import HttpDownloader

    remote = file_remote("http://127.0.0.1:9/PULP_MANIFEST")
    downloader = remote.get_downloader(url=remote.url)
    assert isinstance(downloader, BaseDownloader)
    if downloaders == "adapter":
        from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory

        assert isinstance(remote.download_factory, AioDownloaderFactory)
        assert not isinstance(downloader, HttpDownloader)
    else:
        assert type(downloader) is HttpDownloader


def test_the_tripwire_fails_a_run_of_pulpcores_http_downloader_and_records_it(
    origin: OriginFactory, tree: Path, tmp_path: Path
) -> None:
    from pulpcore.download.factory import DownloaderFactory

    item = TreeFile("one.bin", os.urandom(10))
    write_tree(tree, [item])
    server = origin(tree)
    record = tmp_path / "record.log"
    disarm = arm(record)
    # pulpcore's own factory, whatever the Remote would build; driven on the thread's loop,
    # as pulpcore's sync code does (asyncio.run would leave the thread without one).
    factory = DownloaderFactory(file_remote(server.url("PULP_MANIFEST")))
    loop = asyncio.get_event_loop()
    try:
        downloader = factory.build(server.url(item.relative_path))
        with pytest.raises(PulpcoreDownloaderUsed):
            loop.run_until_complete(downloader.run())
    finally:
        disarm()
        loop.run_until_complete(factory._session.close())
    assert calls(record) == [f"{os.getpid()} {server.url(item.relative_path)}"]
    assert server.requests[item.relative_path] == 0
