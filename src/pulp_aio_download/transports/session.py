"""A remote's whole network policy on a plain ``aiohttp.ClientSession``. Internal.

:meth:`DownloadEngine.session` hands plugins a real :class:`aiohttp.ClientSession` on the
shared connector; every request made through it gets what the engine's own transfers get:

* TLS: the remote's :class:`ssl.SSLContext` (private CA, client certificate, minimum
  version) replaces aiohttp's default ``ssl=True`` (see :func:`tls_request_class`);
* proxy: the remote's :class:`ProxyConfig` with its credentials (``Proxy-Authorization``
  on every plain-http request and on the ``CONNECT`` of an https one), or the environment's
  when ``trust_env``;
* credentials: basic (``username``/``password``) or the ``auth`` object, a bearer
  challenge included, only for the origin the request was made to (never after a redirect
  to another origin) and never over an ``Authorization`` the caller set;
* headers, user agent and timeouts of the remote;
* limits: the per-remote, per-host and global slots of the engine, held until the response
  is released (its body read, or the response closed).

aiohttp's client middlewares (aiohttp >= 3.12) are the seam: :class:`PolicyMiddleware`
runs once per request *and per redirect hop*. The origin of the request as the caller made
it is taken from the ``on_request_start`` trace, which aiohttp sends once per call.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from yarl import URL

from ..errors import DownloadError
from ..retry import backoff_delay, is_retryable_error
from ..urls import origin
from .errors import from_proxy, map_client_error

if TYPE_CHECKING:
    from ..config import AuthScheme, RemoteConfig, RetryPolicy

__all__ = [
    "PolicyMiddleware",
    "RemotePolicy",
    "Slot",
    "answer_challenge",
    "build_plugin_session",
    "build_realm_session",
    "tls_request_class",
]

#: The origin of the URL the current ``session.get(...)`` call was made for.
_first_origin: contextvars.ContextVar[tuple[str, str, int | None] | None] = contextvars.ContextVar(
    "pulp_aio_download_first_origin", default=None
)


class RemotePolicy(Protocol):
    """What the sessions take from a remote's HTTP transport (its proxy, TLS, credentials)."""

    remote: RemoteConfig
    user_agent: str
    explicit_proxy: URL | None

    def ssl_for(self, url: str, proxy: Any) -> ssl.SSLContext | bool: ...

    def auth_headers(self, url: str, userinfo: tuple[str, str | None] | None) -> dict[str, str]: ...

    def realm_session(self) -> aiohttp.ClientSession: ...


class Slot(Protocol):
    """A concurrency slot (a semaphore, a per-remote or per-host limiter)."""

    async def acquire(self) -> Any: ...

    def release(self) -> None: ...


def tls_request_class(
    ssl_for: Callable[[str, URL | None], ssl.SSLContext | bool],
) -> type[aiohttp.ClientRequest]:
    """A :class:`aiohttp.ClientRequest` whose default ``ssl=True`` is the remote's context.

    aiohttp has no session-wide TLS setting (only the connector's, which is shared by
    every remote); ``ssl=...`` given on one request still wins.
    """

    class RemoteTLSRequest(aiohttp.ClientRequest):
        def __init__(
            self,
            method: str,
            url: URL,
            *,
            ssl: ssl.SSLContext | bool | aiohttp.Fingerprint = True,
            proxy: URL | None = None,
            **kwargs: Any,
        ) -> None:
            if ssl is True:
                ssl = ssl_for(str(url), proxy)
            super().__init__(method, url, ssl=ssl, proxy=proxy, **kwargs)

    return RemoteTLSRequest


async def _remember_origin(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestStartParams,
) -> None:
    # Awaited inside the caller's own task (no copy of its context): the middleware
    # running later in the same call sees the value.
    _first_origin.set(origin(str(params.url)))


def _origin_trace() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_remember_origin)
    return trace


async def answer_challenge(
    auth: AuthScheme,
    url: str,
    status: int,
    headers: Any,
    session: aiohttp.ClientSession,
    retry: RetryPolicy | None = None,
) -> bool:
    """``auth.challenge(...)``, with every failure a :class:`DownloadError` for ``url``.

    With ``retry``, a retryable failure (the token realm down, a 503 from it...) is tried
    again per that policy; without it the caller's own attempts do the retrying.
    """
    attempt = 1
    while True:
        try:
            try:
                return await auth.challenge(url, status, headers, session)
            except DownloadError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = map_client_error(exc, url)
                raise error.with_message(f"auth challenge: {error.message}") from exc
        except DownloadError as exc:
            if retry is None or attempt >= retry.attempts or not is_retryable_error(retry, exc):
                raise
            await asyncio.sleep(
                backoff_delay(retry, attempt, retry_after=getattr(exc, "retry_after", None))
            )
            attempt += 1


class PolicyMiddleware:
    """The aiohttp client middleware applying a remote's policy (see the module doc).

    Args:
        transport: the remote's :class:`RemotePolicy` (its proxy, TLS and credentials).
        limits: the slots a request to a host must hold, in acquisition order; None for
            none (token requests, made while the request they serve holds its slots).
        credentials: apply the remote's credentials and answer its auth challenges.
    """

    def __init__(
        self,
        transport: RemotePolicy,
        *,
        limits: Callable[[str], Sequence[Slot]] | None = None,
        credentials: bool = True,
    ) -> None:
        self._transport = transport
        self._limits = limits
        self._credentials = credentials

    async def __call__(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if req.proxy is not None and req.url.scheme == "http":
            # As the engine's transfers: one request per proxied plain-http connection
            # (proxy.py 2.4 pipes later kept-alive requests to the origin unparsed).
            req.headers["Connection"] = "close"
        if self._limits is None:
            return await self._send(req, handler)
        taken: list[Slot] = []
        try:
            for slot in self._limits(req.url.host or ""):
                await slot.acquire()
                taken.append(slot)
            resp = await self._send(req, handler)
        except BaseException:
            _release(taken)
            raise
        connection = resp.connection
        if connection is None:  # the body is already in (or there is none)
            _release(taken)
        else:
            connection.add_callback(lambda: _release(taken))
        return resp

    async def _send(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        url = str(req.url)
        ours = (
            self._credentials
            and "Authorization" not in req.headers
            and _first_origin.get() in (None, origin(url))
        )
        if ours:
            req.headers.update(self._transport.auth_headers(url, None))
        resp = await handler(req)
        auth = self._transport.remote.auth
        if not ours or auth is None or resp.status != 401:
            return resp
        if from_proxy(resp, req.proxy):
            return resp  # the proxy's answer (tinyproxy sends 401), not the origin's
        transport = self._transport
        retry = await answer_challenge(
            auth, url, resp.status, resp.headers, transport.realm_session(), transport.remote.retry
        )
        if not retry:
            return resp
        resp.release()
        req.headers.popall("Authorization", None)
        req.headers.update(transport.auth_headers(url, None))
        return await handler(req)


def _release(slots: list[Slot]) -> None:
    while slots:
        slots.pop().release()


def _session(
    transport: RemotePolicy,
    connector: aiohttp.BaseConnector,
    headers: dict[str, str],
    middleware: PolicyMiddleware,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
    *,
    auto_decompress: bool = True,
) -> aiohttp.ClientSession:
    t = transport.remote.timeouts
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=False,
        headers=headers,
        timeout=aiohttp.ClientTimeout(
            total=t.total, connect=t.connect, sock_connect=t.sock_connect, sock_read=t.sock_read
        ),
        trust_env=transport.remote.trust_env,
        proxy=transport.explicit_proxy,
        request_class=tls_request_class(transport.ssl_for),
        middlewares=(middleware,),
        trace_configs=trace_configs,
        auto_decompress=auto_decompress,
    )


def build_plugin_session(
    transport: RemotePolicy,
    connector: aiohttp.BaseConnector,
    limits: Callable[[str], Sequence[Slot]],
) -> aiohttp.ClientSession:
    """The session of :meth:`DownloadEngine.session`: the remote's whole policy.

    Bytes come as served, as for artifacts (``Accept-Encoding: identity``, no automatic
    decompression); redirects are aiohttp's (followed, credentials dropped on leaving the
    origin).
    """
    headers = {
        "User-Agent": transport.user_agent,
        "Accept-Encoding": "identity",
        **transport.remote.headers,
    }
    middleware = PolicyMiddleware(transport, limits=limits)
    return _session(
        transport, connector, headers, middleware, [_origin_trace()], auto_decompress=False
    )


def build_realm_session(
    transport: RemotePolicy, connector: aiohttp.BaseConnector
) -> aiohttp.ClientSession:
    """The session token requests go through: the remote's TLS, proxy, timeouts and user
    agent, but neither its credentials nor its extra headers (the token realm is often
    another host, and the auth object sends what the realm needs itself)."""
    middleware = PolicyMiddleware(transport, credentials=False)
    return _session(transport, connector, {"User-Agent": transport.user_agent}, middleware)
