"""SOCKS5 proxy settings: what ProxyConfig and RemoteConfig accept and refuse, before any
I/O, with messages naming the field and never a credential."""

from __future__ import annotations

import pickle
import sys

import pytest

import pulp_aio_download as pad
from pulp_aio_download.retry import is_retryable_error
from pulp_aio_download.transports.errors import SocksProxyError, map_client_error
from pulp_aio_download.transports.socks import proxy_key

SECRET = "s0cks-Secret"
PASSWORD_RULE = "ProxyConfig.password of a SOCKS5 proxy must be 1 to 255 ASCII characters"
USERNAME_RULE = "ProxyConfig.username of a SOCKS5 proxy must be 1 to 255 ASCII characters"


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks_urls_are_accepted_userinfo_split_off(scheme: str) -> None:
    proxy = pad.ProxyConfig(url=f"{scheme}://svc:{SECRET}@proxy.internal:1080")
    assert proxy.url == f"{scheme}://proxy.internal:1080"
    assert (proxy.username, proxy.password) == ("svc", SECRET)
    assert proxy.is_socks
    assert SECRET not in repr(proxy)
    remote = pad.RemoteConfig(proxy=proxy)
    assert SECRET not in repr(remote)


def test_percent_encoded_userinfo_and_default_port() -> None:
    proxy = pad.ProxyConfig(url="socks5h://svc:p%40ss@proxy.internal")
    assert proxy.password == "p@ss"
    assert proxy_key(proxy) == ("socks5h", "proxy.internal", 1080, "svc", "p@ss")


def test_a_string_proxy_on_a_remote() -> None:
    remote = pad.RemoteConfig(proxy="socks5h://127.0.0.1:1080")  # type: ignore[arg-type]
    assert remote.proxy is not None and remote.proxy.is_socks
    assert not pad.ProxyConfig(url="http://127.0.0.1:3128").is_socks


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"ftp://u:{SECRET}@proxy:21",
            "ProxyConfig.url must be an http://, https://, socks5:// or socks5h:// URL, "
            "got 'ftp://***@proxy:21'",
        ),
        ("socks4://proxy:1080", "SOCKS4 has no password authentication: use socks5://"),
        ("socks4a://proxy:1080", "SOCKS4 has no password authentication"),
        ("socks5://", "ProxyConfig.url must be an http://"),
        ("proxy.internal:1080", "ProxyConfig.url must be an http://"),
        ("socks5h://proxy:99999", "ProxyConfig.url has an invalid port"),
        ("socks5h://proxy:1080/path", "ProxyConfig.url of a SOCKS5 proxy takes no path"),
    ],
)
def test_bad_urls_name_the_field(url: str, message: str) -> None:
    with pytest.raises(pad.ConfigError) as info:
        pad.ProxyConfig(url=url)
    assert message in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        (
            "svc",
            "pässword",
            PASSWORD_RULE,
        ),
        (
            "svc",
            "x" * 256,
            PASSWORD_RULE,
        ),
        ("svc", "", PASSWORD_RULE),
        ("", SECRET, USERNAME_RULE),
        (None, SECRET, "ProxyConfig.password of a SOCKS5 proxy needs ProxyConfig.username"),
        ("svc", None, "ProxyConfig.username of a SOCKS5 proxy needs ProxyConfig.password"),
    ],
)
def test_bad_credentials_name_the_field_not_the_value(
    username: str | None, password: str | None, message: str
) -> None:
    with pytest.raises(pad.ConfigError) as info:
        pad.ProxyConfig(url="socks5h://proxy:1080", username=username, password=password)
    assert str(info.value) == message
    if password:
        assert password not in str(info.value)


def test_trust_env_with_a_socks_proxy_is_refused() -> None:
    with pytest.raises(pad.ConfigError) as info:
        pad.RemoteConfig(name="r", proxy="socks5h://proxy:1080", trust_env=True)  # type: ignore[arg-type]
    assert str(info.value) == (
        "remote 'r': RemoteConfig.trust_env cannot be combined with a SOCKS5 proxy "
        "(the environment's HTTP(S)_PROXY would be tunnelled through it)"
    )
    pad.RemoteConfig(name="r", proxy="http://proxy:3128", trust_env=True)  # type: ignore[arg-type]


def test_without_the_extra_a_socks_url_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if aiohttp-socks were not installed: a None entry makes its import fail.
    monkeypatch.setitem(sys.modules, "aiohttp_socks", None)
    with pytest.raises(pad.ConfigError) as info:
        pad.ProxyConfig(url=f"socks5h://svc:{SECRET}@proxy:1080")
    assert str(info.value) == (
        "ProxyConfig.url (socks5h://) needs the 'socks' extra: "
        "pip install 'pulp-aio-download[socks]'"
    )
    pad.ProxyConfig(url="http://proxy:3128")  # HTTP proxies need nothing more


def test_socks_errors_map_to_proxy_errors() -> None:
    url = "http://repo.example/x.rpm"
    refused = map_client_error(SocksProxyError("refused", auth_refused=True), url)
    assert type(refused) is pad.ProxyError and refused.auth_refused and refused.status is None
    policy = pad.RetryPolicy()
    assert not is_retryable_error(policy, refused)
    down = map_client_error(SocksProxyError("cannot connect"), url)
    assert type(down) is pad.ProxyError and not down.auth_refused
    assert is_retryable_error(policy, down)
    again = pickle.loads(pickle.dumps(refused))
    assert again.auth_refused and str(again) == str(refused)


def test_http_proxy_refusals_are_auth_refused_too() -> None:
    error = pad.ProxyError("proxy authentication required (HTTP 407)", status=407)
    assert error.auth_refused
    assert not pad.ProxyError("proxy refused the request (HTTP 403)", status=403).auth_refused
