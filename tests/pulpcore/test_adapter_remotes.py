"""Every network field of a real pulpcore Remote mapped onto the engine's RemoteConfig."""

from __future__ import annotations

from typing import Any

import pytest

from pulp_aio_download.config import RemoteConfig


def _remote(**fields: Any) -> Any:
    from pulp_file.app.models import FileRemote

    return FileRemote(name="r1", url="https://origin.test/PULP_MANIFEST", **fields)


def _config(remote: Any, max_retries: int | None = None) -> RemoteConfig:
    from pulp_aio_download.integrations.pulpcore._remotes import (
        remote_settings,
        to_remote_config,
    )

    return to_remote_config(remote_settings(remote, max_retries), "n")


def test_every_remote_field_is_mapped() -> None:
    from pulpcore.download.factory import DownloaderFactory

    headers = [{"X-One": "1", "User-Agent": "plugin/2"}, {"X-Two": "2"}]
    remote = _remote(
        ca_cert="CA PEM",
        client_cert="CERT PEM",
        client_key="KEY PEM",
        tls_validation=False,
        proxy_url="http://proxy.test:3128",
        proxy_username="pu",
        proxy_password="pp",
        username="u",
        password="p",
        headers=headers,
        total_timeout=700.0,
        connect_timeout=11.0,
        sock_connect_timeout=12.0,
        sock_read_timeout=13.0,
        max_retries=5,
        download_concurrency=7,
        rate_limit=9,
    )
    config = _config(remote)

    assert config.tls.verify is False
    assert config.tls.ca_data == "CA PEM"
    assert (config.tls.client_cert_data, config.tls.client_key_data) == ("CERT PEM", "KEY PEM")
    assert config.proxy is not None
    assert (config.proxy.url, config.proxy.username, config.proxy.password) == (
        "http://proxy.test:3128",
        "pu",
        "pp",
    )
    assert (config.username, config.password) == ("u", "p")
    assert config.headers == {"X-One": "1", "X-Two": "2"}
    assert config.user_agent == f"{DownloaderFactory.user_agent()}, plugin/2"
    assert headers == [{"X-One": "1", "User-Agent": "plugin/2"}, {"X-Two": "2"}]  # untouched
    t = config.timeouts
    assert (t.total, t.connect, t.sock_connect, t.sock_read) == (700.0, 11.0, 12.0, 13.0)
    assert config.retry.attempts == 6
    assert 429 in config.retry.statuses and 501 in config.retry.statuses
    assert config.max_connections == 7
    assert config.rate_limit == 9.0
    assert "p'" not in repr(config) and "pp" not in repr(config)
    from pulp_aio_download.integrations.pulpcore._remotes import remote_settings

    shown = repr(remote_settings(remote))
    assert shown == "RemoteSettings(label='pulpcore:r1')"  # no password, key or header


def test_unset_fields_take_pulpcores_fallbacks_and_no_total_timeout() -> None:
    from pulpcore.download.factory import DownloaderFactory

    config = _config(_remote())

    assert config.tls.verify is True and config.tls.ca_data is None
    assert config.proxy is None and config.username is None
    assert config.user_agent == DownloaderFactory.user_agent()
    assert config.timeouts.total is None  # the stall detection bounds a dead transfer
    assert config.timeouts.min_speed
    assert config.retry.attempts == 4  # DEFAULT_MAX_RETRIES 3, plus the first attempt
    assert config.max_connections == 10  # DEFAULT_DOWNLOAD_CONCURRENCY
    assert config.rate_limit is None


def test_max_retries_of_build_wins_and_zero_falls_back_as_pulpcore_does() -> None:
    assert _config(_remote(max_retries=5), max_retries=1).retry.attempts == 2
    assert _config(_remote(max_retries=0)).retry.attempts == 4


def test_username_alone_sends_an_empty_password() -> None:
    config = _config(_remote(username="u"))
    assert (config.username, config.password) == ("u", "")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"client_cert": "CERT"}, "Remote.client_cert is set but Remote.client_key is not"),
        ({"client_key": "KEY"}, "Remote.client_key is set but Remote.client_cert is not"),
        (
            {"proxy_url": "http://p.test", "proxy_username": "pu"},
            "Remote.proxy_username is set but Remote.proxy_password is not",
        ),
        ({"proxy_password": "secret-pp"}, "Remote.proxy_username/proxy_password need"),
        ({"password": "secret-p"}, "Remote.password is set but Remote.username is not"),
        ({"proxy_url": "ftp://p.test"}, "Remote.proxy_url cannot be used"),
        ({"headers": [{"X-N": 1}]}, "Remote.headers: header 'X-N' must have a text value"),
        ({"headers": {"X-N": "1"}}, "Remote.headers must be a list"),
    ],
)
def test_a_setting_that_cannot_be_honoured_names_the_field(
    fields: dict[str, Any], named: str
) -> None:
    from pulp_aio_download.integrations.pulpcore import RemoteSettingError

    with pytest.raises(RemoteSettingError) as caught:
        _config(_remote(**fields))
    assert named in str(caught.value)
    assert str(caught.value).startswith("[PAD0001] ")
    assert "secret" not in str(caught.value)


def test_an_edited_remote_gets_new_settings() -> None:
    from pulp_aio_download.integrations.pulpcore._remotes import remote_settings

    remote = _remote(download_concurrency=3)
    before = remote_settings(remote).key()
    assert remote_settings(remote).key() == before
    remote.download_concurrency = 4
    assert remote_settings(remote).key() != before
