"""URL userinfo is percent-encoded (RFC 3986 section 3.2.1): it is decoded before it becomes
basic credentials, for origin URLs (sources) and proxy URLs alike, and never shown."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, basic
from plugins.proxy import ProxyProcess
from pulp_aio_download.testing import FaultServer
from pulp_aio_download.urls import split_userinfo

PASSWORD = "s3cr3t-P@ss"
ENCODED = "s3cr3t-P%40ss"


def test_split_userinfo_decodes() -> None:
    url = "http://pulp%2Badmin:s3cr3t-P%40ss%3A%25%C3%A9@host:8080/x%40y?q=%40"
    assert split_userinfo(url) == ("http://host:8080/x%40y?q=%40", "pulp+admin", "s3cr3t-P@ss:%é")
    assert split_userinfo("http://user@host/x") == ("http://host/x", "user", None)
    assert split_userinfo("http://user:@host/x") == ("http://host/x", "user", "")
    assert split_userinfo("http://host/x") == ("http://host/x", None, None)


async def test_source_userinfo_is_decoded(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fault_server.add("/x", b"behind basic auth", auth=("pulp", PASSWORD))
    url = f"http://pulp:{ENCODED}@127.0.0.1:{fault_server.port}/x"
    source = pad.Source(url)
    assert ENCODED not in repr(source) and PASSWORD not in repr(source)
    config = pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"), remotes=[pad.RemoteConfig(retry=NO_RETRY)]
    )
    async with pad.DownloadEngine(config) as engine:
        result = await engine.download(url)
    assert result.path is not None and result.path.read_bytes() == b"behind basic auth"
    assert fault_server.requests_for("/x")[0].headers["Authorization"] == basic("pulp", PASSWORD)
    assert "@" not in result.url and ENCODED not in result.url
    for record in caplog.records:
        assert ENCODED not in record.getMessage() and PASSWORD not in record.getMessage()


async def test_wrong_encoded_password_fails_without_showing_it(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.add("/x", b"x", auth=("pulp", PASSWORD))
    url = f"http://pulp:{quote('wr@ng', safe='')}@127.0.0.1:{fault_server.port}/x"
    config = pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"), remotes=[pad.RemoteConfig(retry=NO_RETRY)]
    )
    async with pad.DownloadEngine(config) as engine:
        with pytest.raises(pad.HTTPStatusError) as info:
            await engine.download(url)
    assert info.value.status == 401
    assert "wr@ng" not in str(info.value) and "wr%40ng" not in str(info.value)
    assert fault_server.requests_for("/x")[0].headers["Authorization"] == basic("pulp", "wr@ng")


def test_proxy_url_userinfo_is_decoded() -> None:
    proxy = pad.ProxyConfig(url="http://proxy%20user:pr0xy%40p%25ss@127.0.0.1:3128")
    assert proxy.url == "http://127.0.0.1:3128"
    assert proxy.username == "proxy user" and proxy.password == "pr0xy@p%ss"
    for text in (repr(proxy), repr(pad.RemoteConfig(proxy=proxy))):
        assert "pr0xy" not in text


async def test_proxy_url_userinfo_is_decoded_on_the_wire(
    http_proxy_reserved: ProxyProcess, fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/via-proxy", b"through the proxy")
    assert http_proxy_reserved.username is not None and http_proxy_reserved.password is not None
    userinfo = f"{quote(http_proxy_reserved.username, safe='')}:" + quote(
        http_proxy_reserved.password, safe=""
    )
    proxy_url = http_proxy_reserved.url.replace("http://", f"http://{userinfo}@")
    remote = pad.RemoteConfig(proxy=pad.ProxyConfig(url=proxy_url), retry=NO_RETRY)
    config = pad.EngineConfig(storage=pad.LocalStorage(tmp_path / "store"), remotes=[remote])
    async with pad.DownloadEngine(config) as engine:
        result = await engine.download(url)
    assert result.path is not None and result.path.read_bytes() == b"through the proxy"
    (request,) = fault_server.requests_for("/via-proxy")
    assert "proxy.py" in request.headers.get("Via", "")  # the proxy accepted the credentials
