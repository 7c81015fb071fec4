"""install()/uninstall() and what AioDownloaderFactory.build() returns, on real Remotes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def pulpcore_factory_restored() -> Iterator[None]:
    """Each test leaves install() as it found it (the harness installs the adapter)."""
    from pulp_aio_download.integrations.pulpcore import install, installed, uninstall

    was = installed()
    yield
    (install if was else uninstall)()


def _remote(**fields: Any) -> Any:
    from pulp_file.app.models import FileRemote

    return FileRemote(name="r", url="http://127.0.0.1:9/PULP_MANIFEST", **fields)


@pytest.mark.usefixtures("pulpcore_factory_restored")
def test_install_is_idempotent_and_uninstall_restores_pulpcores_factory() -> None:
    from pulpcore.app.models import repository
    from pulpcore.download.factory import DownloaderFactory

    from pulp_aio_download.integrations.pulpcore import (
        AioDownloaderFactory,
        install,
        installed,
        uninstall,
    )

    install()
    install()
    assert installed() and repository.DownloaderFactory is AioDownloaderFactory
    assert type(_remote().download_factory) is AioDownloaderFactory
    uninstall()
    uninstall()
    assert not installed() and repository.DownloaderFactory is DownloaderFactory
    assert type(_remote().download_factory) is DownloaderFactory


def test_http_and_https_are_ours_file_and_overrides_are_pulpcores(tmp_path: Any) -> None:
    from django.test import override_settings
    from pulpcore.download.file import FileDownloader
    from pulpcore.download.http import HttpDownloader

    from pulp_aio_download.integrations.pulpcore import AioDownloader, AioDownloaderFactory

    class PluginDownloader(HttpDownloader):  # a plugin's own class, e.g. token auth
        pass

    factory = AioDownloaderFactory(_remote())
    assert factory._session is None  # pulpcore's session is not opened for our downloads
    for url in ("http://h.test/a", "HTTPS://h.test/a"):
        built = factory.build(url, expected_size=3, headers_ready_callback=None, unknown=1)
        assert type(built) is AioDownloader
    with override_settings(ALLOWED_IMPORT_PATHS=[str(tmp_path)]):
        assert type(factory.build(f"file://{tmp_path}/a")) is FileDownloader
    assert factory._session is None
    with pytest.raises(ValueError, match="not supported"):
        factory.build("ftp://h.test/a")

    overridden = AioDownloaderFactory(_remote(), downloader_overrides={"https": PluginDownloader})
    assert type(overridden.build("http://h.test/a")) is AioDownloader
    plugin = overridden.build("https://h.test/a")
    assert type(plugin) is PluginDownloader
    assert plugin.session is overridden._session is not None  # pulpcore's own path
    overridden._session_cleanup()  # the session pulpcore's atexit handler would close


def test_a_remote_setting_that_cannot_be_honoured_fails_build() -> None:
    from pulp_aio_download.integrations.pulpcore import AioDownloaderFactory, RemoteSettingError

    factory = AioDownloaderFactory(_remote(client_key="KEY"))
    with pytest.raises(RemoteSettingError, match=r"Remote\.client_key"):
        factory.build("https://h.test/a")
