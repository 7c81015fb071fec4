"""Our errors as pulpcore expects them.

pulpcore records a task's exception as it is only when it is a ``PulpException``, an
``APIException`` or an ``aiohttp.ClientError``; anything else becomes a generic internal
error. So every failure leaves the adapter as one of those, chained (``raise ... from``) to
the :class:`~pulp_aio_download.DownloadError` behind it.
"""

from __future__ import annotations

import http

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from pulpcore.exceptions import (
    DigestValidationError,
    PulpException,
    SizeValidationError,
    TimeoutException,
)
from yarl import URL

from ...errors import (
    AllSourcesFailed,
    ConnectionFailed,
    DigestMismatch,
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    SizeMismatch,
)
from ...urls import redact_url

__all__ = ["DownloadFailed", "RemoteSettingError", "translate"]


class RemoteSettingError(PulpException):
    """A setting of a pulpcore Remote that the adapter cannot honour (it names the field)."""

    error_code = "PAD0001"

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def __str__(self) -> str:
        return f"[{self.error_code}] {self.message}"


class DownloadFailed(PulpException):
    """A download failure pulpcore has no exception of its own for (storage, hook, ...)."""

    error_code = "PAD0002"

    def __init__(self, message: str, url: str) -> None:
        super().__init__()
        self.message = message
        self.url = url

    def __str__(self) -> str:
        return f"[{self.error_code}] {self.message}"


def _cause(exc: DownloadError) -> DownloadError:
    """The error of the last source tried (a pulpcore downloader has one URL)."""
    while isinstance(exc, AllSourcesFailed) and exc.errors:
        exc = exc.errors[-1]
    return exc


def _lowest(exc: BaseException) -> BaseException | None:
    """The aiohttp or OS error at the bottom of ``exc``'s chain (its text is what pulpcore's
    own downloader would show: "certificate verify failed", "Connection refused")."""
    found: BaseException | None = None
    seen: set[int] = set()
    current: BaseException | None = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientError | OSError) and str(current):
            found = current
        current = current.__cause__ or current.__context__
    return found


def _response_error(exc: HTTPStatusError, url: str) -> aiohttp.ClientResponseError:
    clean = URL(redact_url(url))
    info = aiohttp.RequestInfo(clean, "GET", CIMultiDictProxy(CIMultiDict()), clean)
    reason = exc.reason
    if not reason:
        try:
            reason = http.HTTPStatus(exc.status).phrase
        except ValueError:
            reason = ""
    return aiohttp.ClientResponseError(info, (), status=exc.status, message=reason)


def translate(exc: DownloadError, url: str) -> Exception:
    """The exception pulpcore's own downloader would raise for ``exc`` (raise it
    ``from exc``). No credential is in any message: URLs are shown without userinfo."""
    cause = _cause(exc)
    shown = redact_url(url)
    error: Exception
    if isinstance(cause, DigestMismatch):
        error = DigestValidationError(cause.actual, cause.expected, url=shown)
    elif isinstance(cause, SizeMismatch):
        error = SizeValidationError(cause.actual, cause.expected, url=shown)
    elif isinstance(cause, DownloadTimeout):
        error = TimeoutException(shown)
    else:
        return _ours(exc, cause, url)
    return error


def _ours(exc: DownloadError, cause: DownloadError, url: str) -> Exception:
    if isinstance(cause, HTTPStatusError):
        return _response_error(cause, url)
    if isinstance(cause, ConnectionFailed):
        below = _lowest(cause)
        detail = f": {below}" if below is not None else ""
        return aiohttp.ClientConnectionError(f"{cause}{detail}")
    return DownloadFailed(str(exc), redact_url(url))
