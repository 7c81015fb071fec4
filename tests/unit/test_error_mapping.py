"""Completeness of the aiohttp → DownloadError mapping, and errors that survive pickling."""

from __future__ import annotations

import asyncio
import pickle
import ssl

import aiohttp
import pytest

import pulp_aio_download as pad
from pulp_aio_download import errors
from pulp_aio_download.transports.errors import ERROR_MAP, map_client_error

URL = "https://user:secret@repo.example/x.rpm"


def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= subclasses(sub)
    return found


def test_every_client_error_subclass_has_its_own_entry() -> None:
    """A new aiohttp exception must get a conscious mapping, not the catch-all."""
    catch_all = {aiohttp.ClientError, OSError, asyncio.TimeoutError}
    mapped = {cls for cls, _ in ERROR_MAP} - catch_all
    missing = sorted(
        c.__qualname__
        for c in subclasses(aiohttp.ClientError)
        if c.__module__.startswith("aiohttp") and c not in mapped
    )
    assert missing == []


def test_map_is_ordered_most_specific_first() -> None:
    classes = [cls for cls, _ in ERROR_MAP]
    for i, cls in enumerate(classes):
        for later in classes[i + 1 :]:
            assert not issubclass(later, cls) or later is cls, (
                f"{later.__name__} is shadowed by {cls.__name__}"
            )


def _connection_key() -> object:
    # ConnectionKey is internal; built from a real request's key fields.
    from aiohttp.client_reqrep import ConnectionKey

    return ConnectionKey("repo.example", 443, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exc", "expected", "text"),
    [
        (aiohttp.ConnectionTimeoutError("x"), pad.DownloadTimeout, "connect timeout"),
        (aiohttp.SocketTimeoutError("x"), pad.DownloadTimeout, "sock_read timeout"),
        (asyncio.TimeoutError(), pad.DownloadTimeout, "total timeout"),
        (aiohttp.ServerDisconnectedError(), pad.ConnectionFailed, "client certificate"),
        (aiohttp.ClientPayloadError("cut"), pad.ConnectionFailed, "body transfer broken"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] x"), pad.TLSError, "not a TLS server"),
        (
            aiohttp.ClientConnectorError(
                _connection_key(), ConnectionRefusedError(111, "Connection refused")
            ),  # type: ignore[arg-type]
            pad.ConnectionFailed,
            "cannot connect to repo.example:443: Connection refused",
        ),
        (
            aiohttp.ClientConnectorError(_connection_key(), ConnectionResetError()),  # type: ignore[arg-type]
            pad.ConnectionFailed,
            "TLS handshake cut off",
        ),
    ],
)
def test_mapping_examples(exc: BaseException, expected: type[pad.DownloadError], text: str) -> None:
    error = map_client_error(exc, URL)
    assert type(error) is expected
    assert text in str(error)
    assert "secret" not in str(error) and "repo.example/x.rpm" in str(error)


def _response_error(cls: type[aiohttp.ClientResponseError], status: int) -> BaseException:
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL as YURL

    info = aiohttp.RequestInfo(YURL(URL), "GET", CIMultiDictProxy(CIMultiDict()))
    return cls(info, (), status=status, message="Invalid header value char\nmore")


@pytest.mark.parametrize("status_raised", [True, False])
def test_proxy_errors_keep_their_meaning(status_raised: bool) -> None:
    exc = _response_error(aiohttp.ClientHttpProxyError, 407)
    error = map_client_error(exc, URL, status_raised=status_raised)
    assert type(error) is pad.ProxyError
    assert error.status == 407
    assert str(error).startswith("proxy authentication required (HTTP 407)")


def test_a_response_error_without_raise_for_status_is_a_broken_response() -> None:
    exc = _response_error(aiohttp.ClientResponseError, 400)
    assert type(map_client_error(exc, URL)) is pad.HTTPStatusError
    error = map_client_error(exc, URL, status_raised=False)
    assert type(error) is pad.ConnectionFailed
    detail = "Invalid header value char"
    assert error.message == f"invalid HTTP response status line or headers: {detail}"


def test_timeouts_name_which_one() -> None:
    kinds = {
        map_client_error(e, URL).timeout  # type: ignore[attr-defined]
        for e in (aiohttp.ConnectionTimeoutError(), aiohttp.SocketTimeoutError(), TimeoutError())
    }
    assert kinds == {"connect", "sock_read", "total"}


def _instances() -> list[pad.DownloadError]:
    made: list[pad.DownloadError] = [
        errors.DownloadError("plain", url=URL),
        errors.ConfigError("bad", url=URL),
        errors.ManifestError("no url", line=3, url="manifest.jsonl"),
        errors.ValidationError("invalid", url=URL),
        errors.DigestMismatch(algorithm="sha256", expected="aa", actual="bb", url=URL),
        errors.SizeMismatch(expected=1, actual=2, url=URL),
        errors.HTTPStatusError(status=429, url=URL, reason="Too Many", retry_after=1.5),
        errors.DownloadTimeout("slow", url=URL, timeout="stall"),
        errors.ConnectionFailed("down", url=URL),
        errors.TLSError("TLS failed: unknown CA", url=URL),
        errors.ProxyError("proxy authentication required (HTTP 407)", url=URL),
        errors.StorageError("disk full", url=URL),
        errors.CatalogError(
            "cannot write to the catalog: it is read-only", url=URL, catalog="catalog.sqlite3"
        ),
        errors.HookError("hook raised", url=URL, hook="check"),
    ]
    made.append(errors.AllSourcesFailed(made[-7:], url=URL))
    return made


def test_every_download_error_class_is_covered() -> None:
    covered = {type(e) for e in _instances()}
    every = {errors.DownloadError} | subclasses(errors.DownloadError)
    # The contract tree (errors.py); subclasses elsewhere (e.g. manifest) test their own.
    assert {c for c in every if c.__module__ == errors.__name__} <= covered


@pytest.mark.parametrize("error", _instances(), ids=lambda e: type(e).__name__)
def test_pickle_round_trip(error: pad.DownloadError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.url == error.url
    assert vars(copy).keys() == vars(error).keys()
    for key, value in vars(error).items():
        if key == "errors":
            assert [str(e) for e in copy.errors] == [str(e) for e in value]  # type: ignore[attr-defined]
        else:
            assert getattr(copy, key) == value
    assert "secret" not in str(copy)
