"""The JSONL manifest of ``pulp-aio-download sync``: one JSON object per line.

Keys: ``url`` or ``sources`` (a list of URLs or ``{url, priority, weight, remote}``),
``sha256`` or ``digests`` (``{algorithm: hex}``), ``size``, optional ``unit``
(``{type, key, metadata, relative_path}``), ``repository`` and ``remote``. Blank lines and
lines starting with ``#`` are skipped. Any other key, or a bad value, is an error naming the
line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ManifestError
from ..models import DownloadRequest, UnitSpec

__all__ = ["ManifestError", "parse_manifest", "parse_manifest_line", "read_manifest"]

_KEYS = frozenset({"url", "sources", "sha256", "digests", "size", "unit", "repository", "remote"})
_UNIT_KEYS = frozenset({"type", "key", "metadata", "relative_path"})
_SOURCE_KEYS = frozenset({"url", "priority", "weight", "remote"})


def parse_manifest_line(text: str, *, line: int = 0) -> DownloadRequest | None:
    """Parse one manifest line; None for a blank or comment line.

    Raises:
        ManifestError: invalid JSON, unknown key or invalid value.
    """
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"invalid JSON: {exc.msg} at column {exc.colno}", line=line) from None
    except RecursionError:
        raise ManifestError("invalid JSON: nested too deeply", line=line) from None
    if not isinstance(obj, dict):
        raise ManifestError("expected a JSON object", line=line)
    if not _KEYS.issuperset(obj):
        unknown = set(obj) - _KEYS
        raise ManifestError(f"unknown key(s) {', '.join(sorted(map(repr, unknown)))}", line=line)
    try:
        return _request(obj)
    except ManifestError:
        raise
    except ConfigError as exc:
        raise ManifestError(exc.message, line=line) from None


def _request(obj: dict[str, Any]) -> DownloadRequest:
    url = obj.get("url")
    sources = obj.get("sources", [])
    if url is not None and not isinstance(url, str):
        raise ConfigError("'url' must be a string")
    if not isinstance(sources, list):
        raise ConfigError("'sources' must be a list")
    for source in sources:
        if isinstance(source, dict):
            extra = set(source) - _SOURCE_KEYS
            if extra:
                raise ConfigError(f"unknown source key(s) {', '.join(sorted(map(repr, extra)))}")
        elif not isinstance(source, str):
            raise ConfigError("each source must be a URL or an object")
    digests = obj.get("digests", {})
    if not isinstance(digests, dict):
        raise ConfigError("'digests' must be an object")
    digests = dict(digests)
    if "sha256" in obj:
        if "sha256" in digests and digests["sha256"] != obj["sha256"]:
            raise ConfigError("'sha256' and 'digests.sha256' differ")
        digests["sha256"] = obj["sha256"]
    unit = obj.get("unit")
    spec = None
    if unit is not None:
        if not isinstance(unit, dict):
            raise ConfigError("'unit' must be an object")
        extra = set(unit) - _UNIT_KEYS
        if extra:
            raise ConfigError(f"unknown unit key(s) {', '.join(sorted(map(repr, extra)))}")
        if not isinstance(unit.get("metadata", {}), dict):
            raise ConfigError("'unit.metadata' must be an object")
        try:
            spec = UnitSpec(
                unit.get("type"),  # type: ignore[arg-type]
                unit.get("key"),  # type: ignore[arg-type]
                metadata=unit.get("metadata", {}),
                relative_path=unit.get("relative_path"),
            )
        except TypeError as exc:
            raise ConfigError(f"invalid unit: {exc}") from None
    size = obj.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise ConfigError(f"'size' must be an integer, got {size!r}")
    repository = obj.get("repository")
    if repository is not None and spec is None:
        raise ConfigError("'repository' needs a 'unit'")
    remote = obj.get("remote")
    if remote is not None and not isinstance(remote, str):
        raise ConfigError("'remote' must be a string")
    return DownloadRequest(
        url,
        sources=sources,
        expected_digests=digests,
        expected_size=size,
        remote=remote,
        unit=spec,
        repository=repository,
    )


def parse_manifest(lines: Iterable[str]) -> Iterator[tuple[int, DownloadRequest]]:
    """Parse manifest lines; yields ``(line number, request)``."""
    for number, text in enumerate(lines, start=1):
        request = parse_manifest_line(text, line=number)
        if request is not None:
            yield number, request


def read_manifest(path: str | Path) -> list[DownloadRequest]:
    """Read and validate a whole manifest file before anything is downloaded.

    Raises:
        ManifestError: the first invalid line (its number in the message), or an
            unreadable file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            return [request for _, request in parse_manifest(fh)]
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {path} is not UTF-8: {exc.reason}") from None
