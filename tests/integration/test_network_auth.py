"""Auth through the engine: basic auth, extra headers, User-Agent, and the registry-style
bearer-token challenge end to end against a real loopback registry."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

import pulp_aio_download as pad
from helpers import basic, make_engine, remote_once, sha256
from pulp_aio_download.auth import BasicAuth, BearerTokenAuth
from pulp_aio_download.testing import FaultServer


async def test_remote_basic_auth(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"secret bytes", auth=("alice", "pw"))
    async with make_engine(tmp_path, remote_once(username="alice", password="pw")) as e:
        result = await e.download(url)
    assert result.size == 12
    assert fault_server.requests_for("/a")[0].headers["Authorization"] == basic("alice", "pw")


async def test_wrong_basic_auth_is_401_not_retried(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    url = fault_server.add("/a", b"x", auth=("alice", "pw"))
    async with make_engine(tmp_path, remote_once(username="alice", password="wrong")) as e:
        with pytest.raises(pad.HTTPStatusError) as info:
            await e.download(url)
    assert info.value.status == 401 and "wrong" not in str(info.value)
    assert fault_server.stats("/a").requests == 1


async def test_basic_auth_object(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"x", auth=("bob", "pä:ss"))
    async with make_engine(tmp_path, remote_once(auth=BasicAuth("bob", "pä:ss"))) as e:
        await e.download(url)


async def test_headers_and_default_user_agent(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"x")
    async with make_engine(tmp_path, remote_once(headers={"X-Mirror": "m1"})) as e:
        await e.download(url)
    headers = fault_server.requests_for("/a")[0].headers
    assert headers["X-Mirror"] == "m1"
    assert headers["User-Agent"].startswith(f"pulp-aio-download/{pad.__version__} ")
    assert headers["Accept-Encoding"] == "identity"


async def test_custom_user_agent(fault_server: FaultServer, tmp_path: Path) -> None:
    url = fault_server.add("/a", b"x")
    async with make_engine(tmp_path, remote_once(user_agent="my-plugin/2")) as e:
        await e.download(url)
    assert fault_server.requests_for("/a")[0].headers["User-Agent"] == "my-plugin/2"


# -- the registry bearer challenge ----------------------------------------------------------


@dataclass
class Registry:
    """A tiny container registry: blobs behind a token challenge, a token endpoint."""

    base: str = ""
    blobs: dict[str, bytes] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> scope
    token_requests: list[dict[str, str]] = field(default_factory=list)
    blob_auth: list[str | None] = field(default_factory=list)

    def add(self, name: str, data: bytes) -> str:
        digest = "sha256:" + sha256(data)
        self.blobs[f"{name}/{digest}"] = data
        return f"{self.base}/v2/{name}/blobs/{digest}"


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    reg = Registry()

    async def token(request: web.Request) -> web.Response:
        reg.token_requests.append(
            {"auth": request.headers.get("Authorization", ""), **dict(request.query)}
        )
        if request.headers.get("Authorization") != basic("robot", "robot-pw"):
            return web.Response(status=401)
        value = secrets.token_hex(8)
        reg.tokens[value] = request.query["scope"]
        return web.json_response({"token": value, "expires_in": 300})

    async def blob(request: web.Request) -> web.Response:
        name, digest = request.match_info["name"], request.match_info["digest"]
        header = request.headers.get("Authorization")
        reg.blob_auth.append(header)
        scope = f"repository:{name}:pull"
        if header is None or reg.tokens.get(header.removeprefix("Bearer ")) != scope:
            challenge = f'Bearer realm="{reg.base}/token",service="test-registry",scope="{scope}"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        return web.Response(body=reg.blobs[f"{name}/{digest}"])

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    reg.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield reg
    finally:
        await runner.cleanup()


async def test_bearer_challenge_end_to_end(registry: Registry, tmp_path: Path) -> None:
    layer1, layer2 = b"layer one" * 1000, b"layer two" * 1000
    url1 = registry.add("library/app", layer1)
    url2 = registry.add("library/app", layer2)
    auth = BearerTokenAuth("robot", "robot-pw")
    async with make_engine(tmp_path, remote_once(auth=auth)) as e:
        r1 = await e.download(url1, expected_digests={"sha256": sha256(layer1)})
        r2 = await e.download(url2, expected_digests={"sha256": sha256(layer2)})
    assert r1.path is not None and r1.path.read_bytes() == layer1
    assert r2.path is not None and r2.path.read_bytes() == layer2
    # One token for the scope: fetched once with the robot's credentials, then reused.
    assert registry.token_requests == [
        {
            "auth": basic("robot", "robot-pw"),
            "service": "test-registry",
            "scope": "repository:library/app:pull",
        }
    ]
    # First blob: challenged, retried once with the token; second: token sent at once.
    assert registry.blob_auth[0] is None
    assert registry.blob_auth[1] is not None and registry.blob_auth[1].startswith("Bearer ")
    assert registry.blob_auth[2] == registry.blob_auth[1]
    assert len(registry.blob_auth) == 3


async def test_bearer_scopes_are_separate(registry: Registry, tmp_path: Path) -> None:
    url_a = registry.add("team/a", b"a" * 100)
    url_b = registry.add("team/b", b"b" * 100)
    async with make_engine(tmp_path, remote_once(auth=BearerTokenAuth("robot", "robot-pw"))) as e:
        await e.download(url_a)
        await e.download(url_b)
    assert [r["scope"] for r in registry.token_requests] == [
        "repository:team/a:pull",
        "repository:team/b:pull",
    ]


async def test_bearer_token_refused(registry: Registry, tmp_path: Path) -> None:
    url = registry.add("library/app", b"x")
    async with make_engine(tmp_path, remote_once(auth=BearerTokenAuth("robot", "wrong"))) as e:
        with pytest.raises(pad.HTTPStatusError) as info:
            await e.download(url)
    assert info.value.status == 401 and "/token" in str(info.value)
    assert "wrong" not in str(info.value)
