"""A container-registry-style origin behind a bearer challenge, and its token server.

Two real aiohttp servers on 127.0.0.1, each plain http or https (a ``tls_ca`` certificate):

* the **origin** serves ``GET /v2/<name>/blobs/<digest>`` only with
  ``Authorization: Bearer <JWT>`` whose HS256 signature, expiry, audience and ``access``
  claim (``repository:<name>:pull``) check out; otherwise it answers ``401`` with
  ``WWW-Authenticate: Bearer realm="<token server>/token",service=...,scope=...``;
* the **token server** (the realm) issues such JWTs (``{"token", "access_token",
  "expires_in", "issued_at"}``, as the distribution token spec) to ``robot:robot-pw``
  (basic auth), and records every request it gets.

``token_registry`` is a factory (``await token_registry(tls=False, realm_tls=False)``);
``threaded_token_registry(tls=False, realm_tls=False)`` runs the servers on a loop in a
thread, for sync code (``run_batch``). Every server is stopped after the test;
:meth:`TokenRegistry.stop_realm` stops the token server early (the realm is down).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiohttp import web

ROBOT = ("robot", "robot-pw")
SERVICE = "test-registry"
_KEY = b"registry signing key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(claims: dict[str, Any]) -> str:
    """An HS256 JSON Web Token (RFC 7519) of ``claims``."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def read_jwt(token: str) -> dict[str, Any] | None:
    """The claims of a token :func:`make_jwt` signed, or None (bad signature, expired)."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_unb64(signature), expected):
            return None
        claims: dict[str, Any] = json.loads(_unb64(payload))
    except ValueError:
        return None
    if claims.get("exp", 0) < time.time() or claims.get("aud") != SERVICE:
        return None
    return claims


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class TokenRegistry:
    """The two servers and what they saw."""

    base: str = ""
    realm: str = ""
    blobs: dict[str, bytes] = field(default_factory=dict)
    #: Headers and query of every request to the token server.
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    #: The Authorization header of every blob request (None when absent).
    blob_auth: list[str | None] = field(default_factory=list)
    #: Statuses the token server answers with, one per request, before issuing tokens.
    realm_failures: list[int] = field(default_factory=list)
    #: When set, the token server holds every request until this event is set.
    realm_hold: asyncio.Event | None = None
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)
    _realm_runner: web.AppRunner | None = field(default=None, repr=False)

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data`` as a blob of repository ``name``; return its URL."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[f"{name}/{digest}"] = data
        return f"{self.base}/v2/{name}/blobs/{digest}"

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(
            {"headers": dict(request.headers), "query": request.query.getall("scope", [])}
        )
        if self.realm_hold is not None:
            await self.realm_hold.wait()
        if self.realm_failures:
            return web.Response(status=self.realm_failures.pop(0))
        if request.headers.get("Authorization") != _basic(*ROBOT):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        access = []
        for scope in request.query.getall("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = make_jwt(
            {
                "iss": "test-token-server",
                "sub": ROBOT[0],
                "aud": request.query.get("service"),
                "iat": now,
                "exp": now + 300,
                "access": access,
            }
        )
        return web.json_response(
            {"token": token, "access_token": token, "expires_in": 300, "issued_at": now}
        )

    async def _blob(self, request: web.Request) -> web.Response:
        name, digest = request.match_info["name"], request.match_info["digest"]
        header = request.headers.get("Authorization")
        self.blob_auth.append(header)
        claims = read_jwt(header.removeprefix("Bearer ")) if header else None
        granted = claims is not None and any(
            a.get("type") == "repository" and a.get("name") == name and "pull" in a["actions"]
            for a in claims.get("access", [])
        )
        if not granted:
            scope = f"repository:{name}:pull"
            challenge = f'Bearer realm="{self.realm}/token",service="{SERVICE}",scope="{scope}"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        data = self.blobs.get(f"{name}/{digest}")
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data)

    async def _serve(
        self, app: web.Application, cert: trustme.LeafCert | None
    ) -> tuple[str, web.AppRunner]:
        context = None
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(context)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        scheme = "https" if cert is not None else "http"
        return f"{scheme}://127.0.0.1:{runner.addresses[0][1]}", runner

    async def start(
        self, cert: trustme.LeafCert | None, realm_cert: trustme.LeafCert | None
    ) -> None:
        """Start the token server, then the origin."""
        realm_app = web.Application()
        realm_app.router.add_get("/token", self._token)
        self.realm, self._realm_runner = await self._serve(realm_app, realm_cert)
        origin_app = web.Application()
        origin_app.router.add_get("/v2/{name:.+}/blobs/{digest}", self._blob)
        self.base, _ = await self._serve(origin_app, cert)

    async def stop_realm(self) -> None:
        """Stop the token server: its port refuses connections from now on."""
        if self._realm_runner is not None:
            if self.realm_hold is not None:
                self.realm_hold.set()
            await self._realm_runner.cleanup()
            self._runners.remove(self._realm_runner)
            self._realm_runner = None

    async def close(self) -> None:
        if self.realm_hold is not None:
            self.realm_hold.set()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


RegistryFactory = Callable[..., Awaitable[TokenRegistry]]


@pytest.fixture
async def token_registry(tls_server_cert: trustme.LeafCert) -> AsyncIterator[RegistryFactory]:
    """A factory of started :class:`TokenRegistry` servers (https with ``tls=True`` /
    ``realm_tls=True``, certificates of ``tls_ca``)."""
    started: list[TokenRegistry] = []

    async def start(*, tls: bool = False, realm_tls: bool = False) -> TokenRegistry:
        registry = TokenRegistry()
        started.append(registry)
        await registry.start(
            tls_server_cert if tls else None, tls_server_cert if realm_tls else None
        )
        return registry

    try:
        yield start
    finally:
        for registry in started:
            await registry.close()


@dataclass
class ThreadedRegistry:
    """A :class:`TokenRegistry` served by an event loop in a thread."""

    registry: TokenRegistry
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the servers' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]


@pytest.fixture
def threaded_token_registry(tls_server_cert: trustme.LeafCert) -> Iterator[ThreadedRegistry]:
    """A plain-http :class:`TokenRegistry` on a loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="token-registry", daemon=True)
    thread.start()
    served = ThreadedRegistry(TokenRegistry(), loop)
    try:
        served.call(served.registry.start(None, None))
        yield served
    finally:
        served.call(served.registry.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
