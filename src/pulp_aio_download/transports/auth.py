"""Composable request authentication for :attr:`RemoteConfig.auth`.

* :class:`Auth` — the interface the transports call.
* :class:`BasicAuth` — HTTP basic credentials on every request to the remote's origin.
* :class:`BearerTokenAuth` — the token challenge of container registries (Docker/OCI
  distribution "token authentication"): a ``401`` with
  ``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` makes it fetch a token
  from ``realm`` and the request is retried once with ``Authorization: Bearer <token>``.

Tokens and passwords never appear in ``repr()``, logs or exception messages.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import logging
import time
import weakref
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import ConfigError, DownloadError, HTTPStatusError
from ..retry import parse_retry_after
from ..urls import origin, redact_url

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "Auth",
    "BasicAuth",
    "BearerTokenAuth",
    "basic_auth_header",
    "parse_www_authenticate",
]

log = logging.getLogger(__name__)

Origin = tuple[str, str, int | None]


class Auth(abc.ABC):  # noqa: B024 (every method has a do-nothing default)
    """An auth scheme: adds headers to a request and may answer a 401 challenge.

    The engine calls :meth:`apply` before every request to the request's origin (never on a
    redirect to another origin) and, on a ``401``, :meth:`challenge`; when that returns True
    the request is retried once with :meth:`apply` called again.
    """

    def apply(self, url: str, headers: MutableMapping[str, str]) -> None:  # noqa: B027
        """Add credentials to ``headers`` for a request to ``url``."""

    async def challenge(
        self,
        url: str,
        status: int,
        headers: Mapping[str, str],
        session: aiohttp.ClientSession,
    ) -> bool:
        """Handle a ``401`` answer to ``url``; True to retry the request once."""
        return False


def basic_auth_header(username: str, password: str) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value of HTTP basic auth (RFC 7617, UTF-8).

    Raises:
        ConfigError: the username contains ``:``.
    """
    if ":" in username:
        raise ConfigError("a basic-auth username cannot contain ':'")
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class BasicAuth(Auth):
    """HTTP basic auth (RFC 7617, UTF-8) on every request to the remote's origin.

    Example::

        RemoteConfig(name="vendor", auth=BasicAuth("alice", os.environ["VENDOR_PASSWORD"]))
    """

    __slots__ = ("_header", "username")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._header = basic_auth_header(username, password)

    def apply(self, url: str, headers: MutableMapping[str, str]) -> None:
        """Set ``Authorization: Basic ...``."""
        headers["Authorization"] = self._header

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password='***')"


# --- WWW-Authenticate parsing ----------------------------------------------------------

# tchar of RFC 9110 plus "/" so that a token68 is read as one word.
_WORD_CHARS = frozenset(
    "!#$%&'*+-.^_`|~/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    # text[i] is the opening quote; a backslash escapes any character (quoted-pair).
    i += 1
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return "".join(out), i  # unterminated: take the rest, leniently


def parse_www_authenticate(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a ``WWW-Authenticate`` value into ``[(scheme, {param: value}), ...]``.

    Follows RFC 9110 section 11: several comma-separated challenges in one header, quoted
    values holding commas or escaped quotes (``scope="repository:a/b:pull,push"``),
    unquoted values, optional spaces around ``=``, and a token68 (kept under the key
    ``""``). Schemes and parameter names are lower-cased; values are kept as sent; the
    first of repeated parameters wins. Malformed parts are skipped, never raised.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    after_scheme = False  # a token68 may only follow the scheme directly
    n = len(value)
    i = 0
    while i < n:
        i = _skip_space(value, i)
        if i >= n:
            break
        if value[i] == ",":
            after_scheme = False
            i += 1
            continue
        j = i
        while j < n and value[j] in _WORD_CHARS:
            j += 1
        word = value[i:j]
        if not word:
            i += 1  # a stray character
            continue
        p = _skip_space(value, j)
        equals = 0
        while p + equals < n and value[p + equals] == "=":
            equals += 1
        if equals:
            r = _skip_space(value, p + equals)
            if equals == 1 and (not after_scheme or (r < n and value[r] != ",")):
                if r < n and value[r] == '"':
                    param, r = _read_quoted(value, r)
                else:
                    start = r
                    while r < n and value[r] not in ", \t":
                        r += 1
                    param = value[start:r]
                if current is not None:
                    current.setdefault(word.lower(), param)
                after_scheme = False
                i = r
                continue
            if after_scheme and current is not None:
                current[""] = word + "=" * equals
            after_scheme = False
            i = p + equals
            continue
        if after_scheme and current is not None and not current:
            current[""] = word
            after_scheme = False
        else:
            current = {}
            challenges.append((word.lower(), current))
            after_scheme = True
        i = j
    return challenges


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values: list[str] = list(getall(name, []))
        return values
    lowered = name.lower()
    return [v for k, v in headers.items() if k.lower() == lowered]


# --- Bearer tokens ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    fetched_at: float  # by the auth's clock
    expires_at: float

    def valid(self, now: float) -> bool:
        return now < self.expires_at

    def __repr__(self) -> str:
        return f"_Token(value='***', expires_at={self.expires_at!r})"


_ScopeKey = tuple[str, str, str]  # (realm, service, scope)


class BearerTokenAuth(Auth):
    """Bearer-token challenge auth, as container registries use it.

    Args:
        username, password: basic credentials sent to the token endpoint (``realm``) only;
            anonymous token requests when not given (public registries).
        default_expires_in: token lifetime in seconds when the endpoint gives none
            (the distribution spec says 60).
        clock: a monotonic clock in seconds (tests pass a fake one).

    How tokens are remembered: each token is cached under its (realm, service, scope) and
    used until ``expires_in`` (less a small margin) is over. The scope of a challenged URL
    is remembered by **origin + path prefix**: for the registry API (``/v2/<name>/
    {manifests,blobs,tags,referrers}/...``) the prefix is ``/v2/<name>/``, otherwise the
    directory of the path. :meth:`apply` sends the token of the longest remembered prefix
    of the request's path, else the latest token obtained for the origin (registries often
    accept it; if not, the next 401 fetches the right one). A token is never sent to
    another origin than the one that challenged for it.

    Example::

        auth = BearerTokenAuth(username="robot", password=os.environ["REGISTRY_TOKEN"])
        RemoteConfig(name="quay", auth=auth)
    """

    #: Seconds before ``expires_in`` at which a token is considered expired (at most half
    #: of the lifetime).
    EXPIRY_MARGIN = 5.0

    #: A token fetched this recently is reused on a 401 rather than fetched again: the 401
    #: most likely answered a request sent before the token existed (concurrent requests).
    RECENT = 2.0

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        default_expires_in: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if password is not None and username is None:
            raise ConfigError("BearerTokenAuth: password given without username")
        self.username = username
        self._basic = basic_auth_header(username, password or "") if username is not None else None
        self._default_expires_in = default_expires_in
        self._clock = clock
        self._tokens: dict[_ScopeKey, _Token] = {}
        self._prefixes: dict[Origin, dict[str, _ScopeKey]] = {}
        self._latest: dict[Origin, _ScopeKey] = {}
        # One token request per scope at a time, per event loop: an asyncio.Lock belongs
        # to the loop that first waited on it, and the sync helpers run each engine in a
        # loop of its own (one config, many download_sync calls).
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[_ScopeKey, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        password = ", password='***'" if self._basic is not None else ""
        return f"BearerTokenAuth(username={self.username!r}{password})"

    def __getstate__(self) -> dict[str, Any]:
        # The locks belong to this process's event loops: a copy (in a worker process,
        # see pulp_aio_download.parallel) makes its own. Tokens cross with the rest.
        state = self.__dict__.copy()
        del state["_locks"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._locks = weakref.WeakKeyDictionary()

    # -- what the engine calls ----------------------------------------------------------

    def apply(self, url: str, headers: MutableMapping[str, str]) -> None:
        """Set ``Authorization: Bearer <token>`` when a valid token is known for ``url``."""
        token = self._token_for(url)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"

    async def challenge(
        self,
        url: str,
        status: int,
        headers: Mapping[str, str],
        session: aiohttp.ClientSession,
    ) -> bool:
        """Answer a ``401`` with a Bearer challenge by fetching a token; True to retry.

        Returns False when the answer carries no Bearer challenge (or is not a 401).

        The token request goes through ``session`` (the engine gives one with the remote's
        TLS, proxy and timeouts). Every failure is a :class:`DownloadError` whose ``url``
        is ``url`` (the file) and whose message names the token realm.

        Raises:
            HTTPStatusError: the token endpoint refused (its status).
            ConnectionFailed: the token endpoint could not be reached (``TLSError``,
                ``ProxyError``: through the remote's TLS settings and proxy).
            DownloadTimeout: the token endpoint did not answer in time.
            DownloadError: the realm is unusable or the endpoint sent no token.
        """
        if status != 401:
            return False
        params = self._bearer_params(headers)
        if params is None:
            return False
        realm = params["realm"]
        self._check_realm(url, realm)
        key: _ScopeKey = (realm, params.get("service", ""), params.get("scope", ""))
        answered_at = self._clock()
        sent = self._token_for(url)  # what apply() gave this request, as far as we can tell
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        async with locks.setdefault(key, asyncio.Lock()):
            if not self._reusable(self._tokens.get(key), params, sent, answered_at):
                self._tokens[key] = await self._fetch(key, session, url)
        self._remember(url, key)
        return True

    def _reusable(
        self, cached: _Token | None, params: Mapping[str, str], sent: str | None, now: float
    ) -> bool:
        if cached is None or not cached.valid(self._clock()):
            return False
        if params.get("error") == "invalid_token":
            return False
        # The server refused this very token some time after we got it (revoked, or it
        # grants less than the scope says): fetch a new one.
        return cached.value != sent or cached.fetched_at >= now - self.RECENT

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _bearer_params(headers: Mapping[str, str]) -> dict[str, str] | None:
        for value in _header_values(headers, "WWW-Authenticate"):
            for scheme, params in parse_www_authenticate(value):
                if scheme == "bearer" and params.get("realm"):
                    return params
        return None

    @staticmethod
    def _check_realm(url: str, realm: str) -> None:
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DownloadError(
                f"bearer challenge names an unusable token realm {redact_url(realm)!r}", url=url
            )
        if urlsplit(url).scheme == "https" and parts.scheme != "https":
            raise DownloadError(
                f"refusing to send credentials to the plain-http token realm "
                f"{redact_url(realm)!r} of an https registry",
                url=url,
            )

    async def _fetch(self, key: _ScopeKey, session: aiohttp.ClientSession, url: str) -> _Token:
        import aiohttp

        from .errors import map_client_error  # imports aiohttp: only once a token is needed

        realm = key[0]
        try:
            return await self._request_token(key, session, url)
        except DownloadError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = map_client_error(exc, url)
            message = f"token realm {redact_url(realm)}: {error.message}"
            raise error.with_message(message) from exc

    async def _request_token(
        self, key: _ScopeKey, session: aiohttp.ClientSession, url: str
    ) -> _Token:
        realm, service, scope = key
        query: list[tuple[str, str]] = []
        if service:
            query.append(("service", service))
        # Several scopes are space-separated in one challenge; the endpoint wants one
        # "scope" parameter each.
        query.extend(("scope", s) for s in scope.split())
        headers = {"Accept": "application/json"}
        if self._basic is not None:
            headers["Authorization"] = self._basic
        log.debug("fetching a bearer token from %s (service=%r, scope=%r)", realm, service, scope)
        async with session.get(realm, params=query, headers=headers) as response:
            if response.status != 200:
                reason = f" {response.reason}" if response.reason else ""
                raise HTTPStatusError(
                    status=response.status,
                    url=url,
                    reason=response.reason,
                    message=f"token realm {redact_url(realm)} refused the token request: "
                    f"HTTP {response.status}{reason}",
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
            try:
                body: Any = await response.json(content_type=None)
            except ValueError:
                body = None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise DownloadError(f"token realm {redact_url(realm)} sent no token", url=url)
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
            expires_in = self._default_expires_in
        # Short-lived tokens keep at least half their lifetime.
        lifetime = max(float(expires_in) - self.EXPIRY_MARGIN, float(expires_in) / 2, 0.0)
        log.debug("got a bearer token for scope %r valid %.0f s", scope, lifetime)
        now = self._clock()
        return _Token(token, now, now + lifetime)

    @staticmethod
    def _prefix(path: str) -> str:
        parts = path.split("/")
        # /v2/<name...>/(manifests|blobs|tags|referrers)/...
        if len(parts) > 3 and parts[1] == "v2":
            for i in range(len(parts) - 1, 2, -1):
                if parts[i] in ("manifests", "blobs", "tags", "referrers"):
                    return "/".join(parts[:i]) + "/"
        return path.rsplit("/", 1)[0] + "/"

    def _remember(self, url: str, key: _ScopeKey) -> None:
        site = origin(url)
        prefix = self._prefix(urlsplit(url).path or "/")
        self._prefixes.setdefault(site, {})[prefix] = key
        self._latest[site] = key

    def _token_for(self, url: str) -> str | None:
        site = origin(url)
        known = self._prefixes.get(site)
        if not known:
            return None
        path = urlsplit(url).path or "/"
        now = self._clock()
        for prefix in sorted(known, key=len, reverse=True):
            if path.startswith(prefix):
                token = self._tokens.get(known[prefix])
                if token is not None and token.valid(now):
                    return token.value
                break
        latest = self._tokens.get(self._latest[site])
        if latest is not None and latest.valid(now):
            return latest.value
        return None
