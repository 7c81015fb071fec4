"""The one exception tree of pulp_aio_download.

Every failure of a download is a :class:`DownloadError`::

    DownloadError            .url   (every failure of a download is one of these)
    ├── ConfigError          (also a ValueError) bad input, raised before any I/O
    │   └── ManifestError    .line / .element: the bad manifest, Metalink or PULP_MANIFEST part
    ├── ValidationError
    │   ├── DigestMismatch   .algorithm .expected .actual
    │   └── SizeMismatch     .expected .actual
    ├── HTTPStatusError      .status
    ├── DownloadTimeout      (also a TimeoutError) .timeout names which one expired
    ├── ConnectionFailed
    │   ├── TLSError
    │   └── ProxyError      .status (the proxy's answer, e.g. 407) .auth_refused
    ├── StorageError         the store could not be read or written
    ├── CatalogError         .catalog  the catalog could not be read or written
    ├── HookError            .hook
    └── AllSourcesFailed     .errors  (one DownloadError per source tried)

Messages name the URL (without credentials), what was expected and what happened.
Every exception survives pickling: ``__reduce__`` rebuilds it from its constructor
arguments, so errors can cross process boundaries (Pulp runs work in worker processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .urls import redact_url

__all__ = [
    "AllSourcesFailed",
    "CatalogError",
    "ConfigError",
    "ConnectionFailed",
    "DigestMismatch",
    "DownloadError",
    "DownloadTimeout",
    "HTTPStatusError",
    "HookError",
    "ManifestError",
    "ProxyError",
    "SizeMismatch",
    "StorageError",
    "TLSError",
    "ValidationError",
]


def _rebuild(cls: type[DownloadError], kwargs: dict[str, Any]) -> DownloadError:
    return cls(**kwargs)


class DownloadError(Exception):
    """Base class of every failure of a download.

    ``attempts`` is how many attempts were made at the source that failed (0 when the
    failure came before any attempt, e.g. a :class:`ConfigError`); after more than one the
    message ends with ``"gave up after N attempts"``. An :class:`AllSourcesFailed` counts
    the attempts at every source it tried.

    Args:
        message: what happened, in one sentence.
        url: the URL concerned, if any; credentials are removed before it is stored.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = redact_url(url) if url is not None else None
        self.message = message
        self.attempts = 0
        super().__init__(self._format())

    def gave_up_after(self, attempts: int) -> None:
        """Record that the download gave up after ``attempts`` attempts (said in the message
        when there was more than one). Called once, by the engine, before it raises."""
        self.attempts = attempts
        if attempts > 1:
            self.message = f"{self.message}; gave up after {attempts} attempts"
            self.args = (self._format(),)

    def _format(self) -> str:
        if self.url and self.url not in self.message:
            return f"{self.message} ({self.url})"
        return self.message

    def _kwargs(self) -> dict[str, Any]:
        return {"message": self.message, "url": self.url}

    def __reduce__(self) -> tuple[Any, ...]:
        # The message already says how many attempts were made; the count is state.
        return (_rebuild, (type(self), self._kwargs()), {"attempts": self.attempts})

    def with_message(self, message: str) -> DownloadError:
        """A copy of this error (same type and fields) saying ``message`` instead."""
        return _rebuild(type(self), {**self._kwargs(), "message": message})

    def with_url(self, url: str | None) -> DownloadError:
        """This error naming ``url``: itself when it already names a URL (or ``url`` is
        None), else a copy of the same type and fields with ``url`` set, caused by this one.

        Used where a failure of a shared part (catalog, storage), which does not know the
        file, meets the file it broke.
        """
        if self.url is not None or url is None:
            return self
        copy = _rebuild(type(self), {**self._kwargs(), "url": url})
        copy.__cause__ = self
        return copy


class ConfigError(DownloadError, ValueError):
    """Invalid configuration or request, raised before any I/O."""


class ManifestError(ConfigError):
    """A manifest, Metalink document or ``PULP_MANIFEST`` is invalid, raised before any
    download.

    Args:
        detail: what is wrong.
        line: the 1-based number of the bad line (0 when not line-based).
        element: the bad XML element, e.g. ``<file name="a.iso"> <size>`` (None when not
            XML).
        url: the manifest's URL or path, if known.
    """

    def __init__(
        self,
        detail: str,
        *,
        line: int = 0,
        element: str | None = None,
        url: str | None = None,
    ) -> None:
        self.detail = detail
        self.line = line
        self.element = element
        where = f"line {line}: " if line else f"{element}: " if element else ""
        super().__init__(where + detail, url=url)

    def _kwargs(self) -> dict[str, Any]:
        return {"detail": self.detail, "line": self.line, "element": self.element, "url": self.url}


class ValidationError(DownloadError):
    """The bytes received do not match what the request expected."""


class DigestMismatch(ValidationError):
    """A digest of the received bytes differs from the expected one."""

    def __init__(
        self,
        *,
        algorithm: str,
        expected: str,
        actual: str,
        url: str | None = None,
        message: str | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        super().__init__(
            message or f"{algorithm} mismatch: expected {expected}, got {actual}", url=url
        )

    def _kwargs(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "expected": self.expected,
            "actual": self.actual,
            **super()._kwargs(),
        }


class SizeMismatch(ValidationError):
    """The received size differs from the expected one.

    ``actual`` may be a lower bound when the transfer was stopped early because the body
    already exceeded the expected size.
    """

    def __init__(
        self,
        *,
        expected: int,
        actual: int,
        url: str | None = None,
        message: str | None = None,
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            message or f"size mismatch: expected {expected} bytes, got {actual}", url=url
        )

    def _kwargs(self) -> dict[str, Any]:
        return {"expected": self.expected, "actual": self.actual, **super()._kwargs()}


class HTTPStatusError(DownloadError):
    """The server answered with a status that is not a success.

    ``retry_after`` holds the seconds a ``Retry-After`` header asked for, if any.
    """

    def __init__(
        self,
        *,
        status: int,
        url: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        text = f"HTTP {status}" + (f" {reason}" if reason else "")
        super().__init__(message or text, url=url)

    def _kwargs(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "retry_after": self.retry_after,
            **super()._kwargs(),
        }


class DownloadTimeout(DownloadError, TimeoutError):
    """A timeout expired; ``timeout`` names which one (connect, sock_read, stall, total)."""

    def __init__(self, message: str, *, url: str | None = None, timeout: str | None = None) -> None:
        self.timeout = timeout
        super().__init__(message, url=url)

    def _kwargs(self) -> dict[str, Any]:
        return {"timeout": self.timeout, **super()._kwargs()}


class ConnectionFailed(DownloadError):
    """The connection could not be made or broke during the transfer."""


class TLSError(ConnectionFailed):
    """TLS handshake or certificate verification failed."""


class ProxyError(ConnectionFailed):
    """The proxy refused the request (e.g. 407) or could not be reached.

    ``status`` is the proxy's HTTP status when it answered (407: wrong or missing proxy
    credentials, never retried), None when it could not be reached or is a SOCKS proxy.
    ``auth_refused`` is True when the proxy refused its credentials (an HTTP proxy's 407 or
    401, a SOCKS5 proxy's authentication failure): never retried.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        auth_refused: bool = False,
    ) -> None:
        self.status = status
        self.auth_refused = auth_refused or status in (401, 407)
        super().__init__(message, url=url)

    def _kwargs(self) -> dict[str, Any]:
        return {"status": self.status, "auth_refused": self.auth_refused, **super()._kwargs()}


class StorageError(DownloadError):
    """Storing the artifact failed (disk full, permission, object store error)."""


class CatalogError(DownloadError):
    """The catalog could not be opened, read or written (permission, read-only, locked,
    full disk, database down or unreachable, authentication refused).

    ``catalog`` names the catalog without credentials (a SQLite file, or a PostgreSQL
    ``postgresql://user@host:port/db``); ``url`` names the file whose download, record or
    fetch failed, when there is one.
    """

    def __init__(self, message: str, *, url: str | None = None, catalog: str | None = None) -> None:
        self.catalog = catalog
        super().__init__(message, url=url)

    def _kwargs(self) -> dict[str, Any]:
        return {"catalog": self.catalog, **super()._kwargs()}


class HookError(DownloadError):
    """A post-download hook raised; nothing was stored or recorded for that download."""

    def __init__(self, message: str, *, url: str | None = None, hook: str | None = None) -> None:
        self.hook = hook
        super().__init__(message, url=url)

    def _kwargs(self) -> dict[str, Any]:
        return {"hook": self.hook, **super()._kwargs()}


class AllSourcesFailed(DownloadError):
    """Every source of a request failed; ``errors`` holds one error per source tried."""

    def __init__(
        self,
        errors: Sequence[DownloadError],
        *,
        url: str | None = None,
        message: str | None = None,
    ) -> None:
        self.errors = tuple(errors)
        if message is None:
            lines = "; ".join(str(e) for e in self.errors) or "no source to try"
            message = f"all {len(self.errors)} sources failed: {lines}"
        super().__init__(message, url=url)
        self.attempts = sum(e.attempts for e in self.errors)

    def _kwargs(self) -> dict[str, Any]:
        return {"errors": self.errors, **super()._kwargs()}
