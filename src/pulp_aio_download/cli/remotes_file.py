"""The ``--remotes`` file: :class:`RemoteConfig` objects from TOML.

One ``[remotes.NAME]`` table per remote, with every :class:`RemoteConfig` field; the nested
settings are sub-tables (``tls``, ``proxy``, ``timeouts``, ``retry``, ``auth``). Secrets come
from the environment: ``password_env = "VAR"`` (and ``proxy_password_env``, or
``password_env`` inside ``[remotes.NAME.proxy]`` / ``[remotes.NAME.auth]``). Relative paths
(``ca_file``, ``client_cert``, ``client_key``) are relative to the file's directory::

    [remotes.vendor]
    username = "alice"
    password_env = "VENDOR_PASSWORD"
    headers = { "X-Client" = "mirror-1" }
    max_connections = 4
    rate_limit = 10.0
    segments = 4                    # large files over 4 connections at once
    segment_threshold = 67108864    # from 64 MiB on
    mirrors = ["https://a.example/repo/", "https://b.example/repo/"]
    mirrorlist = "https://mirrors.example/metalink?repo=x"   # a yum mirrorlist or metalink

    [remotes.vendor.tls]
    ca_file = "vendor-ca.pem"
    min_version = "TLSv1.2"

    [remotes.vendor.proxy]
    url = "http://proxy.internal:3128"
    username = "svc"
    password_env = "PROXY_PASSWORD"

    [remotes.vendor.timeouts]
    connect = 10
    min_speed = 1024
    stall_window = 30

    [remotes.vendor.retry]
    attempts = 5
    statuses = [429, 502, 503]

    [remotes.registry.auth]
    type = "bearer"            # or "basic"
    username = "robot"
    password_env = "REGISTRY_TOKEN"

Every mistake — unknown key, wrong type, unset environment variable, invalid value — is a
:class:`ConfigError` naming the file, the table and the key; the CLI exits 2 with it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import ProxyConfig, RemoteConfig, RetryPolicy, Timeouts, TLSConfig
from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

from .sizes import parse_bytes

__all__ = ["load_remotes", "parse_remotes"]

_NUMBER = (int, float)

# key -> accepted types, per table. "password_env"-style keys are handled separately.
_REMOTE_KEYS: dict[str, tuple[type, ...]] = {
    "username": (str,),
    "password": (str,),
    "headers": (dict,),
    "user_agent": (str,),
    "max_connections": (int,),
    "rate_limit": _NUMBER,
    "max_redirects": (int,),
    "allow_insecure_redirects": (bool,),
    "trust_env": (bool,),
    "segments": (int,),
    "segment_threshold": (int,),
    "max_speed": (int, str),
    "mirrors": (list,),
    "mirrorlist": (str,),
    "mirrorlist_kind": (str,),
}
_TLS_KEYS: dict[str, tuple[type, ...]] = {
    "verify": (bool,),
    "ca_file": (str,),
    "ca_data": (str,),
    "client_cert": (str,),
    "client_key": (str,),
    "min_version": (str,),
    "ciphers": (str,),
}
_PROXY_KEYS: dict[str, tuple[type, ...]] = {
    "url": (str,),
    "username": (str,),
    "password": (str,),
}
_TIMEOUT_KEYS: dict[str, tuple[type, ...]] = {
    "total": _NUMBER,
    "connect": _NUMBER,
    "sock_connect": _NUMBER,
    "sock_read": _NUMBER,
    "min_speed": _NUMBER,
    "stall_window": _NUMBER,
}
_RETRY_KEYS: dict[str, tuple[type, ...]] = {
    "attempts": (int,),
    "backoff": _NUMBER,
    "max_backoff": _NUMBER,
    "jitter": (bool,),
    "statuses": (list,),
    "respect_retry_after": (bool,),
}
_AUTH_KEYS: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "username": (str,),
    "password": (str,),
}
_SUBTABLES = ("tls", "proxy", "timeouts", "retry", "auth")
_PATH_KEYS = ("ca_file", "client_cert", "client_key")


class _Table:
    """One TOML table being read, for error messages naming file, table and key."""

    def __init__(self, file: Path, name: str, data: object, env: Mapping[str, str]) -> None:
        self.file = file
        self.name = name
        self.env = env
        if not isinstance(data, dict):
            raise self.error(f"must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def error(self, message: str, key: str | None = None) -> ConfigError:
        where = f"{self.file}: [{self.name}]"
        if key is not None:
            where += f" key {key!r}"
        return ConfigError(f"{where}: {message}")

    def values(
        self, spec: Mapping[str, tuple[type, ...]], extra: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The known keys of the table, type-checked; unknown keys are an error."""
        out: dict[str, Any] = {}
        for key, value in self.data.items():
            if key in extra:
                continue
            types = spec.get(key)
            if types is None:
                known = ", ".join(sorted((*spec, *extra)))
                raise self.error(f"unknown key (known: {known})", key)
            # bool is an int in Python, not in TOML.
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                wanted = " or ".join(t.__name__ for t in types)
                raise self.error(f"must be {wanted}, got {value!r}", key)
            out[key] = value
        return out

    def secret(self, key: str, env_key: str) -> str | None:
        """A secret given inline (``key``) or through an environment variable (``env_key``)."""
        inline = self.data.get(key)
        variable = self.data.get(env_key)
        if variable is None:
            return inline if isinstance(inline, str) else None
        if inline is not None:
            raise self.error(f"give either {key!r} or {env_key!r}, not both", env_key)
        if not isinstance(variable, str) or not variable:
            raise self.error("must be the name of an environment variable", env_key)
        value = self.env.get(variable)
        if value is None:
            raise self.error(f"environment variable {variable!r} is not set", env_key)
        return value

    def sub(self, key: str) -> _Table | None:
        if key not in self.data:
            return None
        return _Table(self.file, f"{self.name}.{key}", self.data[key], self.env)

    def build(self, factory: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return factory(**kwargs)
        except ConfigError as exc:
            raise self.error(exc.message) from None


def _tls(table: _Table, base: Path) -> TLSConfig:
    values = table.values(_TLS_KEYS)
    for key in _PATH_KEYS:
        if key in values:
            values[key] = base / Path(values[key]).expanduser()
    return table.build(TLSConfig, **values)  # type: ignore[no-any-return]


def _proxy(table: _Table, top: _Table) -> ProxyConfig:
    values = table.values(_PROXY_KEYS, extra=("password_env",))
    if "url" not in values:
        raise table.error("missing required key 'url'")
    password = table.secret("password", "password_env")
    outer = top.secret("proxy_password", "proxy_password_env")
    if outer is not None:
        if password is not None:
            raise top.error(
                "the proxy password is also given in the proxy table", "proxy_password_env"
            )
        password = outer
    if password is not None:
        values["password"] = password
    return table.build(ProxyConfig, **values)  # type: ignore[no-any-return]


def _auth(table: _Table) -> Any:
    from ..auth import BasicAuth, BearerTokenAuth

    values = table.values(_AUTH_KEYS, extra=("password_env",))
    kind = values.get("type")
    password = table.secret("password", "password_env")
    username = values.get("username")
    if kind == "basic":
        if username is None:
            raise table.error("basic auth needs 'username'")
        return table.build(BasicAuth, username=username, password=password or "")
    if kind == "bearer":
        return table.build(BearerTokenAuth, username=username, password=password)
    raise table.error(f"must be 'basic' or 'bearer', got {kind!r}", "type")


def _remote(table: _Table, name: str, base: Path) -> RemoteConfig:
    secrets = ("password_env", "proxy_username", "proxy_password", "proxy_password_env")
    values = table.values(_REMOTE_KEYS, extra=(*_SUBTABLES, *secrets))
    if "password_env" in table.data:
        values["password"] = table.secret("password", "password_env")
    headers = values.get("headers")
    if headers is not None:
        for key, value in headers.items():
            if not isinstance(value, str):
                raise table.error(f"header {key!r} must be a string, got {value!r}", "headers")
    if isinstance(values.get("max_speed"), str):
        try:
            values["max_speed"] = parse_bytes(values["max_speed"])
        except ValueError as exc:
            raise table.error(str(exc), "max_speed") from None
    kwargs: dict[str, Any] = {"name": name, **values}
    proxy_table: _Table | None
    if isinstance(table.data.get("proxy"), str):
        proxy_table = _Table(
            table.file, f"{table.name}.proxy", {"url": table.data["proxy"]}, table.env
        )
    else:
        proxy_table = table.sub("proxy")
    if proxy_table is not None:
        if "proxy_username" in table.data:
            proxy_table.data.setdefault("username", table.data["proxy_username"])
        kwargs["proxy"] = _proxy(proxy_table, table)
    elif any(k in table.data for k in secrets[1:]):
        raise table.error("proxy credentials given without a proxy URL", "proxy")
    if (sub := table.sub("tls")) is not None:
        kwargs["tls"] = _tls(sub, base)
    if (sub := table.sub("timeouts")) is not None:
        kwargs["timeouts"] = sub.build(Timeouts, **sub.values(_TIMEOUT_KEYS))
    if (sub := table.sub("retry")) is not None:
        retry = sub.values(_RETRY_KEYS)
        if "statuses" in retry:
            retry["statuses"] = tuple(retry["statuses"])
        kwargs["retry"] = sub.build(RetryPolicy, **retry)
    if (sub := table.sub("auth")) is not None:
        kwargs["auth"] = _auth(sub)
    return table.build(RemoteConfig, **kwargs)  # type: ignore[no-any-return]


def parse_remotes(
    text: str, file: str | os.PathLike[str] = "<remotes>", env: Mapping[str, str] | None = None
) -> dict[str, RemoteConfig]:
    """The remotes described by TOML ``text`` (``file`` is for messages and relative paths).

    Raises:
        ConfigError: invalid TOML, an unknown key, a wrong type or value, or an unset
            environment variable; the message names the file, the table and the key.
    """
    path = Path(file)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(document) - {"remotes"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r} (expected [remotes.NAME])")
    top = _Table(path, "remotes", document.get("remotes", {}), os.environ if env is None else env)
    base = path.parent
    remotes: dict[str, RemoteConfig] = {}
    for name in top.data:
        remotes[name] = _remote(top.sub(name), name, base)  # type: ignore[arg-type]
    return remotes


def load_remotes(path: str | os.PathLike[str]) -> dict[str, RemoteConfig]:
    """Read the ``--remotes`` TOML file at ``path``: :class:`RemoteConfig` by name.

    Raises:
        ConfigError: the file cannot be read or describes an invalid remote (see
            :func:`parse_remotes`).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{file}: cannot read the remotes file: {detail}") from None
    return parse_remotes(text, file)
