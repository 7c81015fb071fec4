"""Configuration: frozen, validated value objects.

Every class here is a frozen slotted dataclass validated on construction; an invalid value
raises :class:`~pulp_aio_download.errors.ConfigError` naming the field. Vary a setting per
remote or per test with :func:`dataclasses.replace`.

Secrets (passwords, proxy passwords, URL userinfo) never appear in ``repr()``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ._checks import check_int
from ._extras import require
from .errors import ConfigError
from .models import normalize_algorithms
from .urls import redact_url, split_userinfo

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from .catalog.base import Catalog
    from .models import ProgressReport
    from .storage.base import Storage

__all__ = [
    "DEFAULT_PARTIAL_MAX_AGE",
    "DEFAULT_PARTIAL_MAX_BYTES",
    "DEFAULT_PARTIAL_MIN_SIZE",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_SEGMENT_THRESHOLD",
    "AuthScheme",
    "EngineConfig",
    "ProxyConfig",
    "RemoteConfig",
    "RetryPolicy",
    "TLSConfig",
    "Timeouts",
]


DEFAULT_PARTIAL_MIN_SIZE = 4 * 1024 * 1024
"""Files smaller than this are never kept as partials (they are cheap to fetch again)."""

DEFAULT_PARTIAL_MAX_AGE = 3 * 24 * 3600.0
"""Partials untouched for longer than this (seconds) are removed when an engine starts."""

DEFAULT_PARTIAL_MAX_BYTES = 10 * 1024**3

DEFAULT_SEGMENT_THRESHOLD = 64 * 1024 * 1024
"""Files smaller than this are one stream even when a remote has ``segments`` > 1."""


class AuthScheme(Protocol):
    """What :attr:`RemoteConfig.auth` must be: an :class:`~pulp_aio_download.Auth` (the
    configuration depends on this shape only, not on the transports that call it)."""

    def apply(self, url: str, headers: MutableMapping[str, str]) -> None: ...

    async def challenge(
        self, url: str, status: int, headers: Mapping[str, str], session: Any
    ) -> bool: ...


#: A post-download hook (see :data:`pulp_aio_download.Hook`), as the configuration sees it.
HookFunction = Callable[[Any], Awaitable[None]]

DEFAULT_RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)

_TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _non_negative(owner: str, name: str, value: float | None, *, allow_zero: bool = True) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{owner}.{name} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{owner}.{name} must be {bound}, got {value!r}")


def _check_speed(owner: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{owner}.max_speed must be a positive number of bytes per second (or None for "
            f"no cap), got {value!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """TLS settings of one remote.

    Args:
        verify: verify the server certificate and host name (on by default).
        ca_file: path of a PEM bundle of trusted CAs (added to the system ones).
        ca_data: PEM text of trusted CAs.
        client_cert: path of a PEM client certificate (may include the key).
        client_key: path of the client key when not in ``client_cert``.
        client_cert_data, client_key_data: the client certificate and key as PEM text
            (instead of paths; a caller that keeps them in a database, as pulpcore does).
            They are written to private temporary files only while the context is built.
        min_version: ``"TLSv1.2"`` or ``"TLSv1.3"``.
        ciphers: an OpenSSL cipher string.
    """

    verify: bool = True
    ca_file: str | Path | None = None
    ca_data: str | None = field(default=None, repr=False)
    client_cert: str | Path | None = None
    client_key: str | Path | None = field(default=None, repr=False)
    client_cert_data: str | None = field(default=None, repr=False)
    client_key_data: str | None = field(default=None, repr=False)
    min_version: str | None = None
    ciphers: str | None = None

    def __post_init__(self) -> None:
        if self.min_version is not None and self.min_version not in _TLS_VERSIONS:
            raise ConfigError(
                f"TLSConfig.min_version must be one of TLSv1.2, TLSv1.3, got {self.min_version!r}"
            )
        if self.client_key is not None and self.client_cert is None:
            raise ConfigError("TLSConfig.client_key needs TLSConfig.client_cert")
        if self.client_key_data is not None and self.client_cert_data is None:
            raise ConfigError("TLSConfig.client_key_data needs TLSConfig.client_cert_data")
        if self.client_cert_data is not None and self.client_cert is not None:
            raise ConfigError("TLSConfig: give client_cert or client_cert_data, not both")

    @property
    def tls_version(self) -> ssl.TLSVersion | None:
        """The :class:`ssl.TLSVersion` of ``min_version``, if set."""
        return _TLS_VERSIONS[self.min_version] if self.min_version else None


#: Proxy URL schemes: an HTTP proxy, or a SOCKS5 proxy (``socks5h``: the proxy resolves
#: host names; ``socks5``: they are resolved here and the proxy gets an address).
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
SOCKS_SCHEMES = ("socks5", "socks5h")
SOCKS_DEFAULT_PORT = 1080


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """A proxy: HTTP (``CONNECT`` is used for ``https://`` targets) or SOCKS5.

    ``url`` is ``http://``, ``https://``, ``socks5://`` (host names are resolved here, the
    proxy gets an address) or ``socks5h://`` (the proxy resolves host names); a SOCKS5 URL
    without a port means 1080. Userinfo in ``url`` is moved into ``username``/``password``
    on construction. A SOCKS5 proxy needs the ``socks`` extra (aiohttp-socks).
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
            hint = ""
            if parts.scheme in ("socks4", "socks4a"):
                hint = " (SOCKS4 has no password authentication: use socks5:// or socks5h://)"
            raise ConfigError(
                "ProxyConfig.url must be an http://, https://, socks5:// or socks5h:// URL, "
                f"got {redact_url(self.url)!r}{hint}"
            )
        clean, user, password = split_userinfo(self.url)
        if user is not None:
            _set(self, "url", clean)
            if self.username is None:
                _set(self, "username", user)
            if self.password is None:
                _set(self, "password", password)
        if self.is_socks:
            _check_socks(self)

    @property
    def is_socks(self) -> bool:
        """True for a ``socks5://`` or ``socks5h://`` proxy."""
        return urlsplit(self.url).scheme in SOCKS_SCHEMES


def _check_socks(proxy: ProxyConfig) -> None:
    parts = urlsplit(proxy.url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ConfigError(
            f"ProxyConfig.url has an invalid port: {redact_url(proxy.url)!r}"
        ) from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"ProxyConfig.url of a SOCKS5 proxy takes no path, query or fragment, "
            f"got {redact_url(proxy.url)!r}"
        )
    # RFC 1929: each of username and password is 1 to 255 bytes; aiohttp-socks sends
    # them as ASCII, and offers the method only when both are non-empty.
    for name in ("username", "password"):
        value = getattr(proxy, name)
        if value is None:
            continue
        if not value or not value.isascii() or len(value) > 255:
            raise ConfigError(
                f"ProxyConfig.{name} of a SOCKS5 proxy must be 1 to 255 ASCII characters"
            )
    if proxy.password is not None and proxy.username is None:
        raise ConfigError("ProxyConfig.password of a SOCKS5 proxy needs ProxyConfig.username")
    if proxy.username is not None and proxy.password is None:
        raise ConfigError("ProxyConfig.username of a SOCKS5 proxy needs ProxyConfig.password")
    require("aiohttp_socks", extra="socks", needed_by=f"ProxyConfig.url ({parts.scheme}://)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Timeouts of one remote, in seconds (``None`` disables one).

    ``total``, ``connect``, ``sock_connect`` and ``sock_read`` map 1:1 onto
    :class:`aiohttp.ClientTimeout`. ``sock_read`` bounds the wait for *any* byte, so a slow
    drip never trips it; stall detection does: a transfer whose mean speed over the last
    ``stall_window`` seconds falls below ``min_speed`` bytes/s is dropped (and retried or
    resumed). There is no ``total`` by default, so a huge file on a slow but live link is not
    killed.
    """

    total: float | None = None
    connect: float | None = 30.0
    sock_connect: float | None = 30.0
    sock_read: float | None = 60.0
    min_speed: float | None = 1024.0
    stall_window: float = 60.0

    def __post_init__(self) -> None:
        for name in ("total", "connect", "sock_connect", "sock_read", "min_speed"):
            _non_negative("Timeouts", name, getattr(self, name))
        _non_negative("Timeouts", "stall_window", self.stall_window, allow_zero=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How failed attempts are retried (the behaviour lives in :mod:`.retry`).

    Args:
        attempts: total attempts per source, including the first (1 = no retry).
        backoff: base delay in seconds; attempt *n* waits about ``backoff * 2**(n-1)``.
        max_backoff: cap of one delay, also of an honoured ``Retry-After``.
        jitter: randomise each delay between half and the whole of it.
        statuses: HTTP statuses that are retried; other 4xx never are.
        respect_retry_after: wait what ``Retry-After`` asks (capped by ``max_backoff``).
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True
    statuses: tuple[int, ...] = DEFAULT_RETRY_STATUSES
    respect_retry_after: bool = True

    def __post_init__(self) -> None:
        check_int("RetryPolicy.attempts", self.attempts, minimum=1)
        _non_negative("RetryPolicy", "backoff", self.backoff)
        _non_negative("RetryPolicy", "max_backoff", self.max_backoff)
        statuses = tuple(self.statuses)
        for status in statuses:
            if not isinstance(status, int) or not 100 <= status <= 599:
                raise ConfigError(f"RetryPolicy.statuses has an invalid status {status!r}")
        _set(self, "statuses", statuses)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteConfig:
    """The network settings of one remote (a server or a family of mirrors).

    Args:
        name: the name requests and sources refer to; recorded in the catalog.
        tls: :class:`TLSConfig`.
        proxy: :class:`ProxyConfig` (HTTP or SOCKS5) or None.
        username, password: HTTP basic auth, sent only to the origin of the request.
        auth: a pluggable auth object (:mod:`.auth`), e.g. a bearer-token challenge.
        headers: extra request headers.
        user_agent: defaults to ``pulp-aio-download/<version> aiohttp/<version>``.
        timeouts: :class:`Timeouts`.
        retry: :class:`RetryPolicy`.
        max_connections: connections to this remote at once, on top of the global limit.
        rate_limit: requests per second to this remote.
        max_redirects: redirects followed per request.
        allow_insecure_redirects: allow ``https`` → ``http`` redirects.
        trust_env: take ``HTTP(S)_PROXY``/``NO_PROXY`` and ``.netrc`` from the environment.
        segments: ranges of one large file fetched at once, each over its own connection
            (aria2's ``--split``); 1 (the default) turns segmented downloads off. See
            :mod:`~pulp_aio_download.transfer.segments`.
        segment_threshold: files smaller than this many bytes are one stream (default
            64 MiB).
        max_speed: bytes per second this remote's transfers receive in all, shared
            fairly between them and their segments (None: no cap). See
            :mod:`~pulp_aio_download.admission.bandwidth`.
        mirrors: base URLs (http or https) of the mirrors of this remote: a request
            that gives a ``relative_path`` gets one source per mirror. See
            :mod:`~pulp_aio_download.mirrors`.
        mirrorlist: URL (http or https) of a yum mirrorlist or a MirrorManager metalink
            of repomd.xml, fetched once when the engine starts; its mirrors join
            ``mirrors``, and a metalink's hashes skip stale mirrors.
        mirrorlist_kind: ``"auto"`` (sniffed from the content), ``"mirrorlist"`` or
            ``"metalink"``.
    """

    name: str = "default"
    tls: TLSConfig = field(default_factory=TLSConfig)
    proxy: ProxyConfig | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auth: AuthScheme | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    user_agent: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_connections: int | None = None
    rate_limit: float | None = None
    max_redirects: int = 10
    allow_insecure_redirects: bool = False
    trust_env: bool = False
    segments: int = 1
    segment_threshold: int = DEFAULT_SEGMENT_THRESHOLD
    max_speed: int | None = None
    mirrors: tuple[str, ...] = ()
    mirrorlist: str | None = None
    mirrorlist_kind: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"RemoteConfig.name must be a non-empty string, got {self.name!r}")
        if self.mirrors or self.mirrorlist is not None or self.mirrorlist_kind != "auto":
            _check_mirrors(self)
        if isinstance(self.proxy, str):
            _set(self, "proxy", ProxyConfig(url=self.proxy))
        if self.proxy is not None and self.proxy.is_socks and self.trust_env:
            raise ConfigError(
                f"remote {self.name!r}: RemoteConfig.trust_env cannot be combined with a "
                "SOCKS5 proxy (the environment's HTTP(S)_PROXY would be tunnelled through it)"
            )
        if self.max_connections is not None:
            check_int("RemoteConfig.max_connections", self.max_connections, minimum=1)
        _non_negative("RemoteConfig", "rate_limit", self.rate_limit, allow_zero=False)
        check_int("RemoteConfig.max_redirects", self.max_redirects, minimum=0)
        check_int("RemoteConfig.segments", self.segments, minimum=1)
        check_int("RemoteConfig.segment_threshold", self.segment_threshold, minimum=0)
        _check_speed("RemoteConfig", self.max_speed)
        if self.password is not None and self.username is None:
            raise ConfigError(f"remote {self.name!r}: password given without username")
        headers = dict(self.headers)
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigError(f"remote {self.name!r}: header {key!r} must map str to str")
        _set(self, "headers", headers)

    def __repr__(self) -> str:
        shown = {
            "name": self.name,
            "username": self.username,
            "password": "***" if self.password else None,
            "proxy": self.proxy,
            "auth": type(self.auth).__name__ if self.auth else None,
            "max_connections": self.max_connections,
            "rate_limit": self.rate_limit,
            "segments": self.segments if self.segments != 1 else None,
            "max_speed": self.max_speed,
            "mirrors": len(self.mirrors) or None,
            "mirrorlist": redact_url(self.mirrorlist) if self.mirrorlist else None,
        }
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items() if v is not None)
        return f"RemoteConfig({inner})"


_MIRRORLIST_KINDS = ("auto", "mirrorlist", "metalink")


def _check_mirrors(remote: RemoteConfig) -> None:
    """Validate (and freeze into a tuple) the mirror settings of ``remote``."""
    where = f"remote {remote.name!r}: RemoteConfig"
    mirrors = remote.mirrors
    if isinstance(mirrors, str) or not isinstance(mirrors, (tuple, list)):
        raise ConfigError(f"{where}.mirrors must be a list of base URLs, got {mirrors!r}")
    for base in mirrors:
        _check_http_url(f"{where}.mirrors", base)
    _set(remote, "mirrors", tuple(mirrors))
    if remote.mirrorlist is not None:
        _check_http_url(f"{where}.mirrorlist", remote.mirrorlist)
    if remote.mirrorlist_kind not in _MIRRORLIST_KINDS:
        raise ConfigError(
            f"{where}.mirrorlist_kind must be one of {', '.join(_MIRRORLIST_KINDS)}, "
            f"got {remote.mirrorlist_kind!r}"
        )


def _check_http_url(setting: str, url: object) -> None:
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{setting} entries must be non-empty URL strings, got {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{setting}: invalid URL {redact_url(url)!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{setting} must be http or https URLs with a host, got {redact_url(url)!r}"
        )


ProgressCallback = Callable[["ProgressReport"], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """The settings of one :class:`~pulp_aio_download.DownloadEngine`.

    Args:
        storage: where artifacts go. Default: ``LocalStorage(data_dir/"artifacts")`` when
            ``data_dir`` is set, else a :class:`TempStorage` whose files outlive the engine.
        catalog: where unit files and units are recorded. Default:
            ``SQLiteCatalog(data_dir/"catalog.sqlite3")`` when ``data_dir`` is set, else none.
        data_dir: the directory of the embedded defaults.
        max_connections: connections at once across the whole engine (the global limit).
        max_connections_per_host: per-host cap on the shared connector (0 = none).
        chunk_size: bytes handed to the writer thread at once.
        remotes: :class:`RemoteConfig` by name (a sequence is accepted too).
        hooks: the post-download chain; ``None`` means :data:`DEFAULT_HOOKS`.
        progress: called with :class:`ProgressReport` snapshots.
        allowed_file_roots: directories ``file://`` sources may be read from.
        progress_interval: minimum seconds between two progress reports.
        claim_lease: seconds a claim on a transfer lasts without renewal when workers
            share a catalog (see :mod:`~pulp_aio_download.cooperation`); 0 disables
            claims; None: ``$PULP_AIO_DOWNLOAD_CLAIM_LEASE``, else 300.
        partial_min_size: files of at least this many bytes (or of unknown size) keep
            their bytes as a resumable partial when a transfer is interrupted, so that a
            later process continues it (see :mod:`~pulp_aio_download.partials`); None
            turns resume across processes off.
        partial_max_age: seconds after which an untouched partial is removed when an
            engine starts (default 3 days).
        partial_max_bytes: total bytes of partials kept; the oldest beyond it are
            removed when an engine starts (default 10 GiB).
        max_speed: bytes per second all the engine's transfers receive together, shared
            fairly between them (None: no cap); each remote's own ``max_speed`` applies
            too.
        compute_digests: digest algorithms computed for every request while its bytes
            stream, besides sha256 and the expected ones (``DownloadRequest.compute_digests``
            adds to them), e.g. ``("sha224", "sha384", "sha512")``.
        meter_provider: an OpenTelemetry ``MeterProvider`` to report metrics to (its
            meter ``pulp_aio_download``; see :mod:`~pulp_aio_download.metrics`), e.g.
            ``opentelemetry.metrics.get_meter_provider()``; None (the default): no metrics,
            and OpenTelemetry is never imported. ``--workers`` processes get none: their
            parent counts their files.
    """

    storage: Storage | None = None
    catalog: Catalog | None = None
    data_dir: str | Path | None = None
    max_connections: int = 64
    max_connections_per_host: int = 0
    chunk_size: int = 1024 * 1024
    remotes: Mapping[str, RemoteConfig] = field(default_factory=dict)
    hooks: Sequence[HookFunction] | None = None
    progress: ProgressCallback | None = None
    allowed_file_roots: Sequence[str | Path] = ()
    progress_interval: float = 0.25
    claim_lease: float | None = None
    partial_min_size: int | None = DEFAULT_PARTIAL_MIN_SIZE
    partial_max_age: float = DEFAULT_PARTIAL_MAX_AGE
    partial_max_bytes: int = DEFAULT_PARTIAL_MAX_BYTES
    compute_digests: Sequence[str] = ()
    max_speed: int | None = None
    meter_provider: MeterProvider | None = None

    def __post_init__(self) -> None:
        for name in ("max_connections", "chunk_size"):
            value = getattr(self, name)
            check_int(f"EngineConfig.{name}", value, minimum=1)
        check_int("EngineConfig.max_connections_per_host", self.max_connections_per_host, minimum=0)
        _non_negative("EngineConfig", "progress_interval", self.progress_interval)
        _non_negative("EngineConfig", "claim_lease", self.claim_lease)
        for name in ("partial_min_size", "partial_max_bytes"):
            value = getattr(self, name)
            if value is None and name == "partial_min_size":
                continue
            check_int(f"EngineConfig.{name}", value, minimum=0)
        _non_negative("EngineConfig", "partial_max_age", self.partial_max_age)
        _check_speed("EngineConfig", self.max_speed)
        if self.meter_provider is not None and not callable(
            getattr(self.meter_provider, "get_meter", None)
        ):
            raise ConfigError(
                "EngineConfig.meter_provider must be an OpenTelemetry MeterProvider (with "
                f"get_meter(); not a Meter), got {type(self.meter_provider).__name__}"
            )
        _set(
            self,
            "compute_digests",
            normalize_algorithms(self.compute_digests, where="EngineConfig.compute_digests"),
        )
        remotes: dict[str, RemoteConfig]
        if isinstance(self.remotes, Mapping):
            remotes = dict(self.remotes)
            for key, remote in remotes.items():
                if not isinstance(remote, RemoteConfig):
                    raise ConfigError(f"EngineConfig.remotes[{key!r}] must be a RemoteConfig")
                if key != remote.name:
                    raise ConfigError(
                        f"EngineConfig.remotes key {key!r} differs from its name {remote.name!r}"
                    )
        else:
            remotes = {}
            for remote in self.remotes:
                if not isinstance(remote, RemoteConfig):
                    raise ConfigError("EngineConfig.remotes must hold RemoteConfig objects")
                if remote.name in remotes:
                    raise ConfigError(f"EngineConfig.remotes names {remote.name!r} twice")
                remotes[remote.name] = remote
        remotes.setdefault("default", RemoteConfig())
        _set(self, "remotes", remotes)
        if self.data_dir is not None:
            _set(self, "data_dir", Path(os.fspath(self.data_dir)))
        roots = tuple(Path(os.fspath(r)).resolve() for r in self.allowed_file_roots)
        _set(self, "allowed_file_roots", roots)
        if self.hooks is not None:
            hooks = tuple(self.hooks)
            for hook in hooks:
                if not callable(hook):
                    raise ConfigError(f"EngineConfig.hooks entry {hook!r} is not callable")
            _set(self, "hooks", hooks)

    def remote(self, name: str | None) -> RemoteConfig:
        """The remote called ``name`` (``None`` → ``"default"``); ConfigError if unknown."""
        key = name or "default"
        try:
            return self.remotes[key]
        except KeyError:
            known = ", ".join(sorted(self.remotes))
            raise ConfigError(f"unknown remote {key!r} (known: {known})") from None
