"""Basic and bearer-token auth against a real registry-style server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from helpers import basic
from pulp_aio_download.auth import Auth, BasicAuth, BearerTokenAuth, parse_www_authenticate
from pulp_aio_download.errors import ConfigError, DownloadError, HTTPStatusError

SERVICE = "registry.test"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Registry:
    """A container-registry double: blobs behind Bearer tokens from its own /token."""

    users: dict[str, str] = field(default_factory=dict)  # empty: anonymous tokens
    token_key: str = "token"
    expires_in: float | None = 300
    send_error_param: bool = False
    token_requests: list[dict[str, object]] = field(default_factory=list)
    blob_requests: list[dict[str, str]] = field(default_factory=list)
    grants: dict[str, frozenset[str]] = field(default_factory=dict)  # token -> scopes
    revoked: set[str] = field(default_factory=set)
    unauthorized: int = 0
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    base: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self.blob)
        return app

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(
            {
                "service": request.query.get("service"),
                "scope": request.query.getall("scope", []),
                "authorization": request.headers.get("Authorization"),
            }
        )
        if self.users:
            header = request.headers.get("Authorization", "")
            user, _, password = (
                base64.b64decode(header[6:]).decode().partition(":")
                if header.startswith("Basic ")
                else ("", "", "")
            )
            if self.users.get(user) != password or not user:
                return web.json_response({"errors": ["unauthorized"]}, status=401)
        token = f"secret-token-{next(self.counter)}"
        self.grants[token] = frozenset(request.query.getall("scope", []))
        body: dict[str, object] = {self.token_key: token}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)

    async def blob(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.blob_requests.append(dict(request.headers))
        scope = f"repository:{name}:pull"
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if token and token not in self.revoked and scope in self.grants.get(token, ()):
            return web.Response(body=f"blob of {name}".encode())
        self.unauthorized += 1
        challenge = f'Bearer realm="{self.base}/token",service="{SERVICE}",scope="{scope}"'
        if self.send_error_param and token:
            challenge += ',error="invalid_token"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})


@pytest.fixture
async def registry() -> AsyncIterator[tuple[Registry, str]]:
    reg = Registry()
    async with TestServer(reg.app(), host="127.0.0.1") as server:
        reg.base = str(server.make_url("")).rstrip("/")
        yield reg, reg.base


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def fetch(session: aiohttp.ClientSession, auth: Auth, url: str) -> tuple[int, bytes]:
    """What the engine does: apply, send, on 401 challenge, retry once."""
    for attempt in range(2):
        headers: dict[str, str] = {}
        auth.apply(url, headers)
        async with session.get(url, headers=headers) as response:
            body = await response.read()
            if (
                response.status == 401
                and attempt == 0
                and await auth.challenge(url, response.status, response.headers, session)
            ):
                continue
            return response.status, body
    raise AssertionError("unreachable")


# --- BasicAuth -------------------------------------------------------------------------


def test_basic_auth_header_and_repr() -> None:
    auth = BasicAuth("alice", "p@ss:wörd")
    headers: dict[str, str] = {}
    auth.apply("https://example.org/x", headers)
    raw = base64.b64decode(headers["Authorization"].removeprefix("Basic "))
    assert raw.decode() == "alice:p@ss:wörd"
    assert "p@ss" not in repr(auth)
    assert "alice" in repr(auth)
    with pytest.raises(ConfigError):
        BasicAuth("a:b", "c")


async def test_basic_auth_against_server(session: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization") == basic("u", "pw")
        return web.Response(status=200 if ok else 401)

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/"))
        assert (await fetch(session, BasicAuth("u", "pw"), url))[0] == 200
        assert (await fetch(session, BasicAuth("u", "wrong"), url))[0] == 401


# --- WWW-Authenticate parsing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.example/token",service="reg",'
            'scope="repository:a/b:pull,push"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.example/token",
                        "service": "reg",
                        "scope": "repository:a/b:pull,push",
                    },
                )
            ],
        ),
        (
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [
                ("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
                ("basic", {"realm": "simple"}),
            ],
        ),
        ("Basic dXNlcjpwYXNz==", [("basic", {"": "dXNlcjpwYXNz=="})]),
        (
            'Negotiate abc, BEARER Realm = "x" , error=invalid_token',
            [("negotiate", {"": "abc"}), ("bearer", {"realm": "x", "error": "invalid_token"})],
        ),
        ('Bearer realm="unterminated', [("bearer", {"realm": "unterminated"})]),
        ("Bearer", [("bearer", {})]),
        ("", []),
        (",, ,", []),
    ],
)
def test_parse_www_authenticate(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert parse_www_authenticate(header) == expected


# --- BearerTokenAuth -------------------------------------------------------------------


async def test_anonymous_bearer_flow_and_cache(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    auth = BearerTokenAuth()
    url = f"{base}/v2/library/busybox/blobs/sha256:aaa"
    assert await fetch(session, auth, url) == (200, b"blob of library/busybox")
    assert reg.unauthorized == 1
    assert reg.token_requests == [
        {"service": SERVICE, "scope": ["repository:library/busybox:pull"], "authorization": None}
    ]
    # Later requests to the same repository carry the token at once.
    for digest in ("bbb", "ccc"):
        status, _ = await fetch(session, auth, f"{base}/v2/library/busybox/blobs/sha256:{digest}")
        assert status == 200
    assert reg.unauthorized == 1
    assert len(reg.token_requests) == 1
    assert reg.blob_requests[-1]["Authorization"].startswith("Bearer secret-token-")


async def test_credentials_go_to_token_endpoint(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    reg.users = {"robot": "s3cret"}
    auth = BearerTokenAuth("robot", "s3cret")
    assert "s3cret" not in repr(auth)
    status, _ = await fetch(session, auth, f"{base}/v2/org/app/blobs/sha256:1")
    assert status == 200
    assert reg.token_requests[0]["authorization"] == basic("robot", "s3cret")
    # The registry itself only ever sees the bearer token, never the basic credentials.
    assert all(not h.get("Authorization", "").startswith("Basic") for h in reg.blob_requests)


async def test_wrong_password_raises_http_status_error(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    reg.users = {"robot": "s3cret"}
    auth = BearerTokenAuth("robot", "wrong-pass")
    with pytest.raises(HTTPStatusError) as info:
        await fetch(session, auth, f"{base}/v2/org/app/blobs/sha256:1")
    assert info.value.status == 401
    assert "/token" in str(info.value)
    assert "wrong-pass" not in str(info.value)


async def test_access_token_key_and_expiry(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    reg.token_key = "access_token"
    reg.expires_in = 100
    clock = FakeClock()
    auth = BearerTokenAuth(clock=clock)
    url = f"{base}/v2/org/app/blobs/sha256:1"
    assert (await fetch(session, auth, url))[0] == 200
    clock.now += 90  # within expires_in less the margin
    assert (await fetch(session, auth, url))[0] == 200
    assert len(reg.token_requests) == 1
    clock.now += 6  # 96 s: past expires_in less the 5 s margin
    headers: dict[str, str] = {}
    auth.apply(url, headers)
    assert "Authorization" not in headers  # an expired token is not sent
    assert (await fetch(session, auth, url))[0] == 200
    assert len(reg.token_requests) == 2
    assert reg.unauthorized == 2


async def test_short_lived_token_keeps_half_its_life(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    reg.expires_in = 4
    clock = FakeClock()
    auth = BearerTokenAuth(clock=clock)
    url = f"{base}/v2/org/app/blobs/sha256:1"
    assert (await fetch(session, auth, url))[0] == 200
    clock.now += 1.9
    assert (await fetch(session, auth, url))[0] == 200
    assert len(reg.token_requests) == 1
    clock.now += 0.2
    assert (await fetch(session, auth, url))[0] == 200
    assert len(reg.token_requests) == 2


async def test_default_lifetime_when_no_expires_in(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    reg.expires_in = None
    clock = FakeClock()
    auth = BearerTokenAuth(clock=clock)  # default_expires_in=60, less the 5 s margin
    url = f"{base}/v2/org/app/blobs/sha256:1"
    for _ in range(3):
        assert (await fetch(session, auth, url))[0] == 200
        clock.now += 20
    assert len(reg.token_requests) == 1
    assert (await fetch(session, auth, url))[0] == 200  # at 60 s
    assert len(reg.token_requests) == 2


async def test_tokens_per_scope(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    auth = BearerTokenAuth()
    a = f"{base}/v2/team/a/blobs/sha256:1"
    b = f"{base}/v2/team/b/blobs/sha256:1"
    assert (await fetch(session, auth, a))[0] == 200
    assert (await fetch(session, auth, b))[0] == 200
    assert reg.unauthorized == 2
    scopes = [r["scope"] for r in reg.token_requests]
    assert scopes == [["repository:team/a:pull"], ["repository:team/b:pull"]]
    # Each repository now gets its own token straight away.
    for url in (a, b, a, b):
        assert (await fetch(session, auth, url))[0] == 200
    assert reg.unauthorized == 2
    assert len(reg.token_requests) == 2


async def test_token_not_sent_to_another_origin(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    _, base = registry
    auth = BearerTokenAuth()
    assert (await fetch(session, auth, f"{base}/v2/org/app/blobs/sha256:1"))[0] == 200
    same: dict[str, str] = {}
    auth.apply(f"{base}/v2/org/app/manifests/latest", same)
    assert same["Authorization"].startswith("Bearer ")
    for other in (
        base.replace("127.0.0.1", "localhost") + "/v2/org/app/blobs/sha256:1",
        "http://127.0.0.1:1/v2/org/app/blobs/sha256:1",
        base.replace("http://", "https://") + "/v2/org/app/blobs/sha256:1",
    ):
        headers: dict[str, str] = {}
        auth.apply(other, headers)
        assert headers == {}


async def test_multiple_scopes_become_repeated_parameters(
    session: aiohttp.ClientSession,
) -> None:
    seen: list[list[str]] = []

    async def token(request: web.Request) -> web.Response:
        seen.append(request.query.getall("scope", []))
        return web.json_response({"token": "t"})

    app = web.Application()
    app.router.add_get("/token", token)
    async with TestServer(app, host="127.0.0.1") as server:
        realm = str(server.make_url("/token"))
        headers = {
            "WWW-Authenticate": (
                f'Bearer realm="{realm}",service="s",'
                'scope="repository:a:pull repository:b:pull,push"'
            )
        }
        url = str(server.make_url("/v2/a/blobs/x"))
        assert await BearerTokenAuth().challenge(url, 401, headers, session)
    assert seen == [["repository:a:pull", "repository:b:pull,push"]]


async def test_not_a_bearer_challenge(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    auth = BearerTokenAuth()
    url = f"{base}/v2/org/app/blobs/sha256:1"
    assert not await auth.challenge(url, 401, {"WWW-Authenticate": 'Basic realm="x"'}, session)
    assert not await auth.challenge(url, 401, {}, session)
    bearer = {"www-authenticate": f'Bearer realm="{base}/token"'}
    assert not await auth.challenge(url, 403, bearer, session)
    assert reg.token_requests == []


async def test_https_registry_refuses_http_realm(session: aiohttp.ClientSession) -> None:
    auth = BearerTokenAuth("u", "pw")
    headers = {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:1/token",service="s"'}
    with pytest.raises(DownloadError, match="plain-http"):
        await auth.challenge("https://127.0.0.1:2/v2/a/blobs/x", 401, headers, session)
    with pytest.raises(DownloadError, match="realm"):
        await auth.challenge(
            "https://127.0.0.1:2/v2/a/blobs/x",
            401,
            {"WWW-Authenticate": 'Bearer realm="file:///etc/passwd"'},
            session,
        )


async def test_no_token_in_answer(session: aiohttp.ClientSession) -> None:
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"nothing": "here"})

    app = web.Application()
    app.router.add_get("/token", token)
    async with TestServer(app, host="127.0.0.1") as server:
        headers = {"WWW-Authenticate": f'Bearer realm="{server.make_url("/token")}"'}
        with pytest.raises(DownloadError, match="sent no token"):
            await BearerTokenAuth().challenge(
                str(server.make_url("/v2/a/blobs/x")), 401, headers, session
            )


async def test_concurrent_challenges_fetch_one_token(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    auth = BearerTokenAuth()
    urls = [f"{base}/v2/org/app/blobs/sha256:{i}" for i in range(12)]
    results = await asyncio.gather(*(fetch(session, auth, u) for u in urls))
    assert all(status == 200 for status, _ in results)
    assert len(reg.token_requests) == 1


async def test_rejected_token_is_fetched_again(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    reg.send_error_param = True
    auth = BearerTokenAuth()
    url = f"{base}/v2/org/app/blobs/sha256:1"
    assert (await fetch(session, auth, url))[0] == 200
    reg.revoked.add("secret-token-1")
    assert (await fetch(session, auth, url))[0] == 200
    assert len(reg.token_requests) == 2
    assert reg.blob_requests[-1]["Authorization"] == "Bearer secret-token-2"


async def test_token_never_logged(
    registry: tuple[Registry, str],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg, base = registry
    reg.users = {"robot": "s3cret"}
    auth = BearerTokenAuth("robot", "s3cret")
    with caplog.at_level(logging.DEBUG, logger="pulp_aio_download"):
        assert (await fetch(session, auth, f"{base}/v2/org/app/blobs/sha256:1"))[0] == 200
    assert caplog.records  # the flow is logged ...
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret-token" not in text  # ... without the token
    assert "s3cret" not in text
    assert "secret-token" not in repr(auth._tokens)


def test_bearer_password_needs_username() -> None:
    with pytest.raises(ConfigError):
        BearerTokenAuth(password="x")


async def test_old_token_refused_without_error_param_is_fetched_again(
    registry: tuple[Registry, str], session: aiohttp.ClientSession
) -> None:
    reg, base = registry
    clock = FakeClock()
    auth = BearerTokenAuth(clock=clock)
    url = f"{base}/v2/org/app/blobs/sha256:1"
    assert (await fetch(session, auth, url))[0] == 200
    reg.revoked.add("secret-token-1")
    clock.now += 30  # long after it was fetched: the 401 is about this very token
    assert (await fetch(session, auth, url))[0] == 200
    assert len(reg.token_requests) == 2
    assert reg.blob_requests[-1]["Authorization"] == "Bearer secret-token-2"
