"""The token realm of a bearer challenge keeps the error contract and the remote's policy.

A real token server issues JWTs to a bearer-challenge origin (tests/plugins/registry.py).
The token request goes through the remote's TLS settings (a private CA), its proxy, its
timeouts and its retries; every failure of it is one :class:`DownloadError` per file, whose
``.url`` is the file and whose message names the token realm.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, sha256
from plugins.proxy import ProxyProcess
from plugins.registry import ROBOT, RegistryFactory, ThreadedRegistry, read_jwt
from pulp_aio_download.auth import BearerTokenAuth


def config(tmp_path: Path, **remote: object) -> pad.EngineConfig:
    settings: dict[str, object] = {"retry": NO_RETRY, "auth": BearerTokenAuth(*ROBOT), **remote}
    return pad.EngineConfig(
        storage=pad.LocalStorage(tmp_path / "store"),
        remotes=[pad.RemoteConfig(**settings)],  # type: ignore[arg-type]
    )


def stored(tmp_path: Path) -> list[Path]:
    root = tmp_path / "store"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_jwt_from_the_realm_opens_the_blob(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry()
    data = b"layer" * 2000
    url = registry.add("library/app", data)
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        result = await engine.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data
    sent = registry.blob_auth[-1]
    assert sent is not None and read_jwt(sent.removeprefix("Bearer ")) is not None


def test_realm_down_is_one_connection_failed_per_file(
    threaded_token_registry: ThreadedRegistry, tmp_path: Path
) -> None:
    registry = threaded_token_registry.registry
    urls = [registry.add("library/app", f"layer {i}".encode()) for i in range(3)]
    threaded_token_registry.call(registry.stop_realm())
    retry = pad.RetryPolicy(attempts=2, backoff=0.0, jitter=False)
    results = pad.run_batch(urls, config(tmp_path, retry=retry), return_exceptions=True)
    assert len(results) == 3
    for url, result in zip(urls, results, strict=True):
        assert isinstance(result, pad.ConnectionFailed), repr(result)
        assert result.url == url
        message = str(result)
        assert f"token realm {registry.realm}/token" in message
        assert "cannot connect to 127.0.0.1:" in message and url in message
    assert registry.blob_auth == [None] * 6  # every file, both attempts: challenged once
    assert stored(tmp_path) == []


async def test_realm_down_from_download_and_download_many(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry()
    url = registry.add("library/app", b"x")
    await registry.stop_realm()
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.ConnectionFailed) as info:
            await engine.download(url)
        assert info.value.url == url and "token realm" in str(info.value)
        (outcome,) = await engine.download_many([url], return_exceptions=True)
    assert isinstance(outcome, pad.ConnectionFailed) and outcome.url == url


async def test_realm_refusal_names_the_file_and_the_realm(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry()
    url = registry.add("library/app", b"x")
    async with pad.DownloadEngine(config(tmp_path, auth=BearerTokenAuth("robot", "nope"))) as e:
        with pytest.raises(pad.HTTPStatusError) as info:
            await e.download(url)
    error = info.value
    assert error.status == 401 and error.url == url
    assert str(error) == (
        f"token realm {registry.realm}/token refused the token request: "
        f"HTTP 401 Unauthorized ({url})"
    )
    assert "nope" not in str(error) and "nope" not in repr(error)


async def test_realm_503_is_retried_with_the_remote_policy(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry()
    registry.realm_failures.append(503)
    url = registry.add("library/app", b"after a 503")
    retry = pad.RetryPolicy(attempts=2, backoff=0.0, jitter=False)
    async with pad.DownloadEngine(config(tmp_path, retry=retry)) as engine:
        result = await engine.download(url)
    assert result.attempts == 2 and result.path is not None
    assert result.path.read_bytes() == b"after a 503"
    assert len(registry.token_requests) == 2


async def test_realm_timeout_is_a_download_timeout_naming_the_realm(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry()
    registry.realm_hold = asyncio.Event()  # the realm never answers
    url = registry.add("library/app", b"x")
    timeouts = pad.Timeouts(sock_read=0.3)
    async with pad.DownloadEngine(config(tmp_path, timeouts=timeouts)) as engine:
        with pytest.raises(pad.DownloadTimeout) as info:
            await engine.download(url)
    assert info.value.url == url and f"token realm {registry.realm}/token" in str(info.value)
    assert len(registry.token_requests) == 1


async def test_https_realm_uses_the_remote_private_ca(
    token_registry: RegistryFactory, tls_ca_file: Path, tmp_path: Path
) -> None:
    registry = await token_registry(tls=True, realm_tls=True)
    assert registry.realm.startswith("https://")
    data = b"over tls" * 500
    url = registry.add("library/app", data)
    tls = pad.TLSConfig(ca_file=tls_ca_file)
    async with pad.DownloadEngine(config(tmp_path, tls=tls)) as engine:
        result = await engine.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data
    assert len(registry.token_requests) == 1


async def test_https_realm_with_an_unknown_ca_is_a_tls_error(
    token_registry: RegistryFactory, tmp_path: Path
) -> None:
    registry = await token_registry(tls=False, realm_tls=True)
    url = registry.add("library/app", b"x")
    async with pad.DownloadEngine(config(tmp_path)) as engine:
        with pytest.raises(pad.TLSError) as info:
            await engine.download(url)
    assert info.value.url == url
    assert f"token realm {registry.realm}/token: TLS failed" in str(info.value)


async def test_token_request_goes_through_the_remote_proxy(
    token_registry: RegistryFactory, http_proxy: ProxyProcess, tmp_path: Path
) -> None:
    registry = await token_registry()
    data = b"proxied layer" * 100
    url = registry.add("library/app", data)
    proxy = pad.ProxyConfig(
        url=http_proxy.url, username=http_proxy.username, password=http_proxy.password
    )
    async with pad.DownloadEngine(config(tmp_path, proxy=proxy)) as engine:
        result = await engine.download(url, expected_digests={"sha256": sha256(data)})
    assert result.path is not None and result.path.read_bytes() == data
    (token_request,) = registry.token_requests
    assert "proxy.py" in token_request["headers"].get("Via", "")  # through the proxy
    assert "Proxy-Authorization" not in token_request["headers"]
