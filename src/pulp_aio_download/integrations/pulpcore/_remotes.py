"""A pulpcore ``Remote`` as a :class:`~pulp_aio_download.RemoteConfig`.

Each setting pulpcore's own ``DownloaderFactory`` honours is mapped as that factory reads
it (the same defaults, the same ``or`` fallbacks); one that cannot be honoured is a
:class:`RemoteSettingError` naming the field. :func:`remote_settings` returns the settings
as a hashable key, so a remote edited since (new values) gets a new RemoteConfig.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from pulpcore.download.factory import DownloaderFactory

from ...config import ProxyConfig, RemoteConfig, RetryPolicy, Timeouts, TLSConfig
from ...errors import ConfigError
from ._errors import RemoteSettingError

__all__ = ["RemoteSettings", "remote_settings"]

#: Retried as pulpcore's HttpDownloader retries: 429 and every 5xx.
RETRY_STATUSES = (429, *range(500, 600))

_DEFAULTS = Timeouts()


@dataclass(frozen=True, slots=True, repr=False)
class RemoteSettings:
    """The network settings of one pulpcore Remote, as plain values (hashable). Its repr
    names the remote only: the values hold credentials (passwords, keys, headers)."""

    label: str
    ca_cert: str | None
    client_cert: str | None
    client_key: str | None
    tls_validation: bool
    proxy_url: str | None
    proxy_username: str | None
    proxy_password: str | None
    username: str | None
    password: str | None
    headers: tuple[tuple[str, str], ...]
    user_agent: str
    total_timeout: float | None
    connect_timeout: float | None
    sock_connect_timeout: float | None
    sock_read_timeout: float | None
    max_retries: int
    download_concurrency: int
    rate_limit: int | None

    def __repr__(self) -> str:
        return f"RemoteSettings(label={self.label!r})"

    def key(self) -> Hashable:
        """What tells two sets of settings apart (the label is only for logs)."""
        return tuple(getattr(self, f) for f in self.__slots__ if f != "label")

    def builder(self) -> Callable[[str], RemoteConfig]:
        """The RemoteConfig of these settings, under the name it is given."""
        return lambda name: to_remote_config(self, name)


def _headers(remote: Any) -> tuple[tuple[tuple[str, str], ...], str]:
    """The remote's extra headers and the User-Agent, as pulpcore builds them: each
    ``User-Agent`` of ``headers`` is appended to pulpcore's own after ", "."""
    agent = DownloaderFactory.user_agent()
    out: list[tuple[str, str]] = []
    entries = remote.headers or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RemoteSettingError("Remote.headers must be a list of objects (name: value)")
    for entry in entries:
        for name, value in entry.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise RemoteSettingError(f"Remote.headers: header {name!r} must have a text value")
            if name.lower() == "user-agent":
                agent = f"{agent}, {value}"
            else:
                out.append((name, value))
    return tuple(out), agent


def _pair(remote: Any, first: str, second: str) -> None:
    """pulpcore uses some settings only in pairs; one of a pair alone is refused."""
    if bool(getattr(remote, first)) != bool(getattr(remote, second)):
        given, missing = (first, second) if getattr(remote, first) else (second, first)
        raise RemoteSettingError(
            f"Remote.{given} is set but Remote.{missing} is not: both are needed"
        )


def remote_settings(remote: Any, max_retries: int | None = None) -> RemoteSettings:
    """The settings of ``remote``; ``max_retries`` as given to ``build()`` wins (pulpcore:
    ``max_retries or remote.max_retries or DEFAULT_MAX_RETRIES``)."""
    _pair(remote, "client_cert", "client_key")
    if remote.proxy_url:
        _pair(remote, "proxy_username", "proxy_password")
    elif remote.proxy_username or remote.proxy_password:
        raise RemoteSettingError("Remote.proxy_username/proxy_password need Remote.proxy_url")
    if remote.password and not remote.username:
        raise RemoteSettingError("Remote.password is set but Remote.username is not")
    headers, agent = _headers(remote)
    return RemoteSettings(
        label=f"pulpcore:{remote.name}",
        ca_cert=remote.ca_cert or None,
        client_cert=remote.client_cert or None,
        client_key=remote.client_key or None,
        tls_validation=bool(remote.tls_validation),
        proxy_url=remote.proxy_url or None,
        proxy_username=remote.proxy_username or None,
        proxy_password=remote.proxy_password or None,
        username=remote.username or None,
        password=remote.password or None,
        headers=headers,
        user_agent=agent,
        total_timeout=remote.total_timeout or None,
        connect_timeout=remote.connect_timeout or None,
        sock_connect_timeout=remote.sock_connect_timeout or None,
        sock_read_timeout=remote.sock_read_timeout or None,
        max_retries=max_retries or remote.max_retries or remote.DEFAULT_MAX_RETRIES,
        download_concurrency=remote.download_concurrency or remote.DEFAULT_DOWNLOAD_CONCURRENCY,
        rate_limit=remote.rate_limit or None,
    )


def _tls(s: RemoteSettings) -> TLSConfig:
    return TLSConfig(
        verify=s.tls_validation,
        ca_data=s.ca_cert,
        client_cert_data=s.client_cert,
        client_key_data=s.client_key,
    )


def _timeouts(s: RemoteSettings) -> Timeouts:
    """An unset timeout takes the engine's default, and ``total`` none: the stall
    detection bounds a dead transfer instead (see the docs, "Using it in Pulp")."""
    return Timeouts(
        total=s.total_timeout,
        connect=s.connect_timeout or _DEFAULTS.connect,
        sock_connect=s.sock_connect_timeout or _DEFAULTS.sock_connect,
        sock_read=s.sock_read_timeout or _DEFAULTS.sock_read,
    )


def _proxy(s: RemoteSettings) -> ProxyConfig | None:
    if s.proxy_url is None:
        return None
    try:
        return ProxyConfig(url=s.proxy_url, username=s.proxy_username, password=s.proxy_password)
    except ConfigError as exc:
        raise RemoteSettingError(f"Remote.proxy_url cannot be used: {exc}") from None


def to_remote_config(s: RemoteSettings, name: str) -> RemoteConfig:
    """The :class:`RemoteConfig` of ``s`` called ``name``."""
    try:
        return RemoteConfig(
            name=name,
            tls=_tls(s),
            proxy=_proxy(s),
            username=s.username,
            password=(s.password or "") if s.username else None,
            headers=dict(_joined(s.headers)),
            user_agent=s.user_agent,
            timeouts=_timeouts(s),
            retry=RetryPolicy(attempts=s.max_retries + 1, statuses=RETRY_STATUSES),
            max_connections=s.download_concurrency,
            rate_limit=float(s.rate_limit) if s.rate_limit else None,
        )
    except ConfigError as exc:
        raise RemoteSettingError(f"{s.label}: {exc}") from None


def _joined(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """Headers named twice (pulpcore sends both) as one, values joined by ", " (the same
    to HTTP, RFC 9110 section 5.3)."""
    merged: dict[str, tuple[str, str]] = {}
    for name, value in headers:
        known = merged.get(name.lower())
        merged[name.lower()] = (name, f"{known[1]}, {value}") if known else (name, value)
    return list(merged.values())
