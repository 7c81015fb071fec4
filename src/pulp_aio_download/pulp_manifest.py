"""Pulp's ``PULP_MANIFEST``: the file list a Pulp file repository publishes.

One ``relative_path,sha256,size`` line per file; each path is relative to the manifest's
own URL (``https://host/repo/PULP_MANIFEST`` lists ``a/b.iso`` at
``https://host/repo/a/b.iso``). Every line becomes a :class:`DownloadRequest` for a unit of
type ``file`` keyed by its relative path. The whole text is validated before a request is
returned, so a bad line stops a sync before anything is downloaded::

    requests = pad.read_pulp_manifest(text, "https://host/repo/PULP_MANIFEST",
                                      repository="repo")
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import quote, unquote, urljoin, urlsplit

from .errors import ConfigError, ManifestError
from .models import DownloadRequest, Source, UnitSpec, safe_relative_path

__all__ = ["FILE_UNIT_TYPE", "read_pulp_manifest", "repository_from_url"]

#: The unit type of every file a ``PULP_MANIFEST`` lists (as in pulp_file).
FILE_UNIT_TYPE = "file"

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"[0-9]+")
# RFC 3986 characters that may stay as they are in a path; everything else (space, '#',
# '?', '%', non-ASCII) is percent-encoded, since the manifest holds plain file names.
_PATH_SAFE = "/!$&'()*+,;=:@~"


def read_pulp_manifest(
    text: str,
    base_url: str,
    *,
    repository: str | None = None,
    remote: str | None = None,
) -> list[DownloadRequest]:
    """Turn the text of a ``PULP_MANIFEST`` into one request per line.

    Blank lines are skipped. A relative path may itself contain commas (the last two fields
    are the digest and the size). A path listed twice with the same digest and size is
    one request; with different ones it is an error.

    Args:
        text: the manifest's text.
        base_url: the URL the paths are relative to: the manifest's own URL (paths resolve
            against its directory, as :func:`urllib.parse.urljoin` does), or a directory URL
            ending in ``/``.
        repository: the repository the units are added to (None: none).
        remote: the name of the remote whose settings fetch the files.

    Returns:
        One :class:`DownloadRequest` per file, in manifest order, each with its sha256,
        size and a :class:`UnitSpec` ``("file", relative_path, relative_path=...)``.

    Raises:
        ManifestError: a bad line (named by its number): not three fields, an unsafe path,
            a malformed sha256 or size, or a path listed twice with different content; or
            a base URL that is not http(s) or file.
    """
    try:
        Source(base_url)
    except ConfigError as exc:
        raise ManifestError(f"bad base URL: {exc.message}") from None
    requests: list[DownloadRequest] = []
    seen: dict[str, tuple[int, str, int]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        relative, sha256, size = _parse_line(raw, number)
        if relative in seen:
            first, first_sha, first_size = seen[relative]
            if (first_sha, first_size) == (sha256, size):
                continue
            raise ManifestError(
                f"{relative!r} is listed again with a different sha256 or size (first on "
                f"line {first})",
                line=number,
            )
        seen[relative] = (number, sha256, size)
        requests.append(_request(base_url, relative, sha256, size, number, repository, remote))
    return requests


def _parse_line(raw: str, number: int) -> tuple[str, str, int]:
    """The safe relative path, the lower-case sha256 and the size of one manifest line."""
    fields = [part.strip() for part in raw.rsplit(",", 2)]
    if len(fields) != 3:
        raise ManifestError(f"expected 'relative_path,sha256,size', got {_shown(raw)}", line=number)
    path, sha256, size_text = fields
    try:
        relative = safe_relative_path(path, where="relative path")
    except ConfigError as exc:
        raise ManifestError(exc.message, line=number) from None
    if not _SHA256.fullmatch(sha256):
        raise ManifestError(
            f"malformed sha256 {_shown(sha256)} for {relative!r} (expected 64 hex characters)",
            line=number,
        )
    if not _SIZE.fullmatch(size_text):
        raise ManifestError(
            f"malformed size {_shown(size_text)} for {relative!r} "
            "(expected a non-negative integer)",
            line=number,
        )
    return relative, sha256.lower(), int(size_text)


def _request(
    base_url: str,
    relative: str,
    sha256: str,
    size: int,
    number: int,
    repository: str | None,
    remote: str | None,
) -> DownloadRequest:
    """The request of one manifest line: its URL below ``base_url`` and its unit."""
    try:
        url = urljoin(base_url, quote(relative, safe=_PATH_SAFE))
    except UnicodeEncodeError:
        raise ManifestError(
            f"relative path {_shown(relative)} is not valid Unicode (a lone surrogate)",
            line=number,
        ) from None
    try:
        return DownloadRequest(
            url,
            expected_digests={"sha256": sha256},
            expected_size=size,
            remote=remote,
            unit=UnitSpec(FILE_UNIT_TYPE, relative, relative_path=relative),
            repository=repository,
        )
    except ConfigError as exc:
        raise ManifestError(exc.message, line=number) from None


def repository_from_url(url: str) -> str:
    """The repository name a manifest URL suggests: the directory holding the manifest
    (``https://host/pulp/content/isos/PULP_MANIFEST`` -> ``isos``; a URL ending in ``/``
    names that directory), else the host.

    Works for ``file://`` URLs too; never empty (``"default"`` as a last resort).
    """
    parts = urlsplit(url)
    path = unquote(parts.path)
    # A directory URL (trailing slash) names the directory itself.
    directory = PurePosixPath(path) if path.endswith("/") else PurePosixPath(path).parent
    name = directory.name or (parts.hostname or "")
    return name or "default"


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"
