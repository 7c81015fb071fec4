"""The public surface is declared once, in ``pulp_aio_download.__all__``, and all of it works."""

from __future__ import annotations

import pickle

import pytest

import pulp_aio_download as pad

EXPECTED = {
    # DESIGN.md §3-§6: configuration, requests and results, engine, storage, catalog, errors.
    "TLSConfig", "ProxyConfig", "Timeouts", "RetryPolicy", "RemoteConfig", "EngineConfig",
    "Source", "DownloadRequest", "UnitSpec", "DownloadResult", "UnitFile", "ContentUnit",
    "VerifyReport", "ProgressReport",
    "DownloadEngine", "EngineStatistics", "DownloadStream", "download_sync", "run_batch",
    "read_metalink", "read_pulp_manifest", "Pieces",
    "fetch_metadata", "MetadataResult", "MetadataValidators",
    "DEFAULT_HOOKS", "DownloadContext", "Hook",
    "Storage", "LocalStorage", "TempStorage", "S3Storage",
    "Catalog", "SQLiteCatalog", "PostgresCatalog",
    "Auth", "BasicAuth", "BearerTokenAuth",
    "DownloadError", "ConfigError", "ManifestError", "ValidationError", "DigestMismatch",
    "SizeMismatch",
    "HTTPStatusError", "DownloadTimeout", "ConnectionFailed", "TLSError", "ProxyError",
    "StorageError", "CatalogError", "HookError", "AllSourcesFailed",
    "__version__",
}  # fmt: skip


def test_all_is_exactly_the_public_surface() -> None:
    assert set(pad.__all__) == EXPECTED
    assert len(pad.__all__) == len(set(pad.__all__))  # (ruff's RUF022 keeps it sorted)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(pad, name) is not None


def test_error_tree() -> None:
    for cls in (
        pad.ConfigError,
        pad.ValidationError,
        pad.HTTPStatusError,
        pad.DownloadTimeout,
        pad.ConnectionFailed,
        pad.StorageError,
        pad.CatalogError,
        pad.HookError,
        pad.AllSourcesFailed,
    ):
        assert issubclass(cls, pad.DownloadError)
    assert issubclass(pad.ConfigError, ValueError)
    assert issubclass(pad.ManifestError, pad.ConfigError)
    assert issubclass(pad.DownloadTimeout, TimeoutError)
    assert issubclass(pad.DigestMismatch, pad.ValidationError)
    assert issubclass(pad.SizeMismatch, pad.ValidationError)
    assert issubclass(pad.TLSError, pad.ConnectionFailed)
    assert issubclass(pad.ProxyError, pad.ConnectionFailed)


def test_errors_pickle_with_their_fields() -> None:
    error = pad.DigestMismatch(
        algorithm="sha256", expected="a" * 64, actual="b" * 64, url="http://u:p@h/x"
    )
    again = pickle.loads(pickle.dumps(error))
    assert (again.algorithm, again.expected, again.actual) == ("sha256", "a" * 64, "b" * 64)
    assert again.url == "http://***@h/x" and "p@" not in str(again)


@pytest.mark.parametrize(
    "error",
    [
        pad.ManifestError("malformed size 'x'", line=3, url="http://u:p@h/PULP_MANIFEST"),
        pad.ManifestError("size must be an integer", element='<file name="a.iso"> <size>'),
    ],
)
def test_manifest_error_pickles_with_line_and_element(error: pad.ManifestError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is pad.ManifestError
    assert (again.detail, again.line, again.element, again.url) == (
        error.detail,
        error.line,
        error.element,
        error.url,
    )
    assert str(again) == str(error) and "p@" not in str(again)
    assert str(again).startswith("line 3: " if error.line else '<file name="a.iso"> <size>: ')
