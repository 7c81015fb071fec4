"""Requests, results and catalog records: plain frozen values validated on construction."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from ._checks import check_int
from .errors import ConfigError
from .urls import SUPPORTED_SCHEMES, redact_url, split_userinfo

__all__ = [
    "DIGEST_ALGORITHMS",
    "ActiveTransfer",
    "ContentUnit",
    "DownloadRequest",
    "DownloadResult",
    "LeftoverFile",
    "MetadataValidators",
    "Pieces",
    "ProgressReport",
    "Source",
    "UnitFile",
    "UnitSpec",
    "VerifyReport",
    "normalize_algorithms",
    "normalize_digests",
    "safe_relative_path",
]

#: Digest algorithms a request may ask for, with their hex length.
DIGEST_ALGORITHMS: Mapping[str, int] = {
    "md5": 32,
    "sha1": 40,
    "sha224": 56,
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
}

_HEX = re.compile(r"[0-9a-f]+")
#: The common URL, checked without ``urlsplit``: http(s), a plain ``host[:port]`` without
#: userinfo, a path without spaces or control characters. Others take the general way.
_PLAIN_URL = re.compile(r"(https?)://([A-Za-z0-9._~-]+(?::[0-9]*)?)(?:[/?#][^\x00-\x20\x7f]*)?")


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def normalize_digests(
    digests: Mapping[str, str] | None, *, where: str = "digests"
) -> dict[str, str]:
    """Validate ``{algorithm: hex}`` and return it lower-cased.

    Raises:
        ConfigError: unknown algorithm, or a value that is not hex of the right length.
    """
    out: dict[str, str] = {}
    for algorithm, value in (digests or {}).items():
        if (
            algorithm == "sha256"
            and type(value) is str
            and len(value) == 64
            and _HEX.fullmatch(value)
        ):
            out["sha256"] = value  # already as it would come out
            continue
        name = str(algorithm).lower().replace("-", "")
        if name not in DIGEST_ALGORITHMS:
            known = ", ".join(DIGEST_ALGORITHMS)
            raise ConfigError(f"{where}: unknown digest algorithm {algorithm!r} (known: {known})")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {name} digest must be a hex string, got {value!r}")
        hexval = value.strip().lower()
        if len(hexval) != DIGEST_ALGORITHMS[name] or not _HEX.fullmatch(hexval):
            raise ConfigError(
                f"{where}: malformed {name} digest {value!r} "
                f"(expected {DIGEST_ALGORITHMS[name]} hex characters)"
            )
        out[name] = hexval
    return out


def normalize_algorithms(
    algorithms: Sequence[str] | str | None, *, where: str = "compute_digests"
) -> tuple[str, ...]:
    """Validate digest algorithm names and return them lower-cased, sorted, once each.

    Raises:
        ConfigError: a name that is not one of :data:`DIGEST_ALGORITHMS`.
    """
    if not algorithms:
        return ()
    if isinstance(algorithms, str):
        raise ConfigError(f"{where} must be a list of algorithm names, got {algorithms!r}")
    names: set[str] = set()
    for algorithm in algorithms or ():
        name = str(algorithm).lower().replace("-", "")
        if name not in DIGEST_ALGORITHMS:
            known = ", ".join(DIGEST_ALGORITHMS)
            raise ConfigError(f"{where}: unknown digest algorithm {algorithm!r} (known: {known})")
        names.add(name)
    return tuple(sorted(names))


def _check_headers(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    if not headers:
        if headers is None or isinstance(headers, Mapping):
            return {}
        raise ConfigError(f"headers must be a mapping of names to values, got {headers!r}")
    if not isinstance(headers, Mapping):
        raise ConfigError(f"headers must be a mapping of names to values, got {headers!r}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigError(f"headers: invalid header name {name!r}")
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise ConfigError(f"headers: the value of {name} must be a one-line string")
        out[name] = value
    return out


def _check_pieces(pieces: Pieces, size: int | None) -> None:
    if not isinstance(pieces, Pieces):
        raise ConfigError(f"pieces must be a Pieces, got {pieces!r}")
    if size is not None and len(pieces.hashes) != -(-size // pieces.length):
        raise ConfigError(
            f"pieces: {len(pieces.hashes)} hashes of {pieces.length}-byte pieces do not "
            f"cover expected_size={size}"
        )


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SHA256 = ("sha256",)


def safe_relative_path(value: str, *, where: str = "relative_path") -> str:
    """Return ``value`` as a normalised relative POSIX path, refusing escapes.

    Raises:
        ConfigError: empty, absolute, containing ``..``, a NUL byte or a backslash.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    if "\x00" in value or "\\" in value:
        raise ConfigError(f"{where} {value!r} contains a NUL byte or a backslash")
    path = PurePosixPath(value)
    if path.is_absolute() or any(part == ".." for part in path.parts):
        raise ConfigError(f"{where} {value!r} must be relative and must not contain '..'")
    if path.parts and path.parts[0].endswith(":"):
        raise ConfigError(f"{where} {value!r} must not name a drive")
    return str(path)


@dataclass(frozen=True, slots=True)
class Source:
    """One place a file can come from.

    Higher ``priority`` is tried first; among equal priorities the choice is weighted-random
    by ``weight`` (and source health). ``remote`` names the :class:`RemoteConfig` whose
    network settings and credentials apply. Userinfo in ``url`` is split off on construction
    (it is used for the request but never shown, logged or recorded).
    """

    url: str
    priority: int = 0
    weight: float = 1.0
    remote: str | None = None
    _userinfo: tuple[str, str | None] | None = field(
        default=None, repr=False, compare=False, kw_only=True
    )
    _scheme: str = field(default="", init=False, repr=False, compare=False)
    _host: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url:
            raise ConfigError(f"source url must be a non-empty string, got {self.url!r}")
        plain = _PLAIN_URL.fullmatch(self.url)
        if plain is not None:
            object.__setattr__(self, "_scheme", plain[1])
            object.__setattr__(self, "_host", plain[2])
        else:
            self._split_url()
        if type(self.priority) is not int:
            check_int("source priority", self.priority)
        weight = self.weight
        if type(weight) is not float and (
            isinstance(weight, bool) or not isinstance(weight, (int, float))
        ):
            raise ConfigError(f"source weight must be a positive number, got {weight!r}")
        if not weight > 0:
            raise ConfigError(f"source weight must be a positive number, got {weight!r}")
        if self.remote is not None and (not isinstance(self.remote, str) or not self.remote):
            raise ConfigError(f"source remote must be a non-empty string, got {self.remote!r}")

    def _split_url(self) -> None:
        try:
            parts = urlsplit(self.url)
        except ValueError as exc:
            raise ConfigError(f"invalid URL {redact_url(self.url)!r}: {exc}") from None
        if parts.scheme not in SUPPORTED_SCHEMES:
            raise ConfigError(
                f"unsupported URL scheme {parts.scheme!r} in {redact_url(self.url)!r} "
                "(supported: file, http, https)"
            )
        if parts.scheme != "file" and not parts.hostname:
            raise ConfigError(f"URL {redact_url(self.url)!r} has no host")
        clean, user, password = split_userinfo(self.url)
        if user is not None:
            _set(self, "url", clean)
            _set(self, "_userinfo", (user, password))
        _set(self, "_scheme", parts.scheme)
        _set(self, "_host", parts.netloc.rpartition("@")[2])

    @property
    def scheme(self) -> str:
        return self._scheme

    @property
    def host(self) -> str:
        """``host[:port]`` of the URL ('' for file://)."""
        return self._host

    @property
    def userinfo(self) -> tuple[str, str | None] | None:
        """The (user, password) the URL carried, for its own origin only; never shown."""
        return self._userinfo


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """The content unit a file belongs to, identified by ``(type, key)``."""

    type: str
    key: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    relative_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("type", "key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "\x00" in value:
                raise ConfigError(f"UnitSpec.{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.metadata, Mapping):
            raise ConfigError("UnitSpec.metadata must be a mapping")
        _set(self, "metadata", dict(self.metadata))
        if self.relative_path is not None:
            _set(
                self,
                "relative_path",
                safe_relative_path(self.relative_path, where="UnitSpec.relative_path"),
            )


_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Pieces:
    """The piece hashes of one file (a Metalink ``<pieces>``): ``hashes[i]`` is the
    digest of bytes ``[i * length, (i + 1) * length)`` (the last piece may be shorter).

    On a request (``DownloadRequest(pieces=...)``, as :func:`~pulp_aio_download.read_metalink`
    gives them), a file whose digest does not match is repaired: only the pieces that are
    wrong are fetched again, from another mirror when there is one.
    """

    algorithm: str
    length: int
    hashes: tuple[str, ...]

    def __post_init__(self) -> None:
        name = str(self.algorithm).lower().replace("-", "")
        if name not in DIGEST_ALGORITHMS:
            known = ", ".join(DIGEST_ALGORITHMS)
            raise ConfigError(
                f"Pieces: unknown digest algorithm {self.algorithm!r} (known: {known})"
            )
        check_int("Pieces.length", self.length, minimum=1)
        hashes = tuple(str(h).lower() for h in self.hashes)
        if any(len(h) != DIGEST_ALGORITHMS[name] or not _HEX.fullmatch(h) for h in hashes):
            raise ConfigError(
                f"Pieces: every hash must be {DIGEST_ALGORITHMS[name]} hex characters"
            )
        _set(self, "algorithm", name)
        _set(self, "hashes", hashes)

    def span(self, index: int, size: int) -> tuple[int, int]:
        """The byte range ``[start, end)`` of piece ``index`` of a file of ``size`` bytes."""
        start = index * self.length
        return start, min(size, start + self.length)

    def mismatches(self, path: Path) -> list[tuple[int, str, str]]:
        """Hash ``path`` piece by piece (blocking: run it in an executor).

        Returns:
            ``(index, expected, actual)`` of every piece that differs (a missing piece
            counts; bytes after the last piece are one more, ``index == len(hashes)``).
        """
        out: list[tuple[int, str, str]] = []
        with open(path, "rb") as fh:
            for index, expected in enumerate(self.hashes):
                hasher = hashlib.new(self.algorithm)
                left = self.length
                got = 0
                while left:
                    chunk = fh.read(min(left, _READ_CHUNK))
                    if not chunk:
                        break
                    hasher.update(chunk)
                    left -= len(chunk)
                    got += len(chunk)
                actual = hasher.hexdigest() if got else "(no bytes)"
                if actual != expected:
                    out.append((index, expected, actual))
            if fh.read(1):
                out.append((len(self.hashes), "(end of file)", "more bytes"))
        return out

    def first_mismatch(self, path: Path) -> tuple[int, str, str] | None:
        """The first of :meth:`mismatches`, or None when every piece matches."""
        found = self.mismatches(path)
        return found[0] if found else None


def _as_source(value: Source | str | Mapping[str, Any], remote: str | None) -> Source:
    if isinstance(value, Source):
        return value
    if isinstance(value, str):
        return Source(value, remote=remote)
    if isinstance(value, Mapping):
        try:
            return Source(**{"remote": remote, **value})
        except TypeError as exc:
            raise ConfigError(f"invalid source {dict(value)!r}: {exc}") from None
    raise ConfigError(f"a source must be a Source, URL or mapping, got {value!r}")


def _check_relative_path(path: object) -> None:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"relative_path must be a non-empty string, got {path!r}")
    if path.startswith("/") or "://" in path or ".." in path.split("/") or "\\" in path:
        raise ConfigError(
            f"relative_path must be a path below the mirrors' base URLs "
            f"(no leading '/', no '..', no scheme), got {path!r}"
        )


@dataclass(frozen=True, slots=True, init=False)
class DownloadRequest:
    """What to fetch: sources, the digests and size the file must have, and optionally the
    content unit it belongs to and the repository to put that unit in.

    ``url`` is shorthand for one :class:`Source`; ``remote`` is the default remote of sources
    that name none. ``repository`` needs ``unit`` (a repository holds units, not files).

    ``headers`` are sent with this request only, over the remote's (``Authorization`` and
    ``Cookie`` only to the first source's origin, never after a redirect elsewhere).
    ``compute_digests`` names more algorithms (``"sha224"``, ``"sha512"``, ...) computed
    while the bytes stream, without validation, and returned in
    :attr:`DownloadResult.digests`. ``pieces``: the file's piece hashes (a Metalink
    ``<pieces>``): after a digest mismatch only the wrong pieces are fetched again.
    ``relative_path``: a path below the base URLs of ``remote``'s mirrors
    (:attr:`RemoteConfig.mirrors` / ``mirrorlist``); the engine gives the request one
    source per mirror that is not stale (see :mod:`~pulp_aio_download.mirrors`), after
    any ``sources`` given.
    ``handoff_dir``: instead of being stored, the validated
    file is moved (a rename: it is written in that directory) into this existing directory
    and handed to the caller, who owns it (:attr:`DownloadResult.path`; ``location`` is
    ``""``); the engine records no unit file for it.

    Example::

        DownloadRequest("https://host/x.rpm", expected_digests={"sha256": "…"},
                        expected_size=1234, remote="fedora")
    """

    sources: tuple[Source, ...]
    expected_digests: Mapping[str, str]
    expected_size: int | None
    remote: str | None
    unit: UnitSpec | None
    repository: str | None
    headers: Mapping[str, str]
    compute_digests: tuple[str, ...]
    handoff_dir: Path | None
    pieces: Pieces | None
    relative_path: str | None

    def __init__(
        self,
        url: str | None = None,
        *,
        sources: Sequence[Source | str | Mapping[str, Any]] = (),
        expected_digests: Mapping[str, str] | None = None,
        expected_size: int | None = None,
        remote: str | None = None,
        unit: UnitSpec | None = None,
        repository: str | None = None,
        headers: Mapping[str, str] | None = None,
        compute_digests: Sequence[str] = (),
        handoff_dir: str | os.PathLike[str] | None = None,
        pieces: Pieces | None = None,
        relative_path: str | None = None,
    ) -> None:
        all_sources = [_as_source(s, remote) for s in sources] if sources else []
        if url is not None:
            all_sources.insert(
                0, Source(url, remote=remote) if type(url) is str else _as_source(url, remote)
            )
        digests = normalize_digests(expected_digests, where="expected_digests")
        if relative_path is not None:
            _check_relative_path(relative_path)
        elif not all_sources:
            raise ConfigError("a download request needs a url or at least one source")
        if expected_size is not None and (type(expected_size) is not int or expected_size < 0):
            check_int("expected_size", expected_size, minimum=0)
        if unit is not None and not isinstance(unit, UnitSpec):
            raise ConfigError(f"unit must be a UnitSpec, got {unit!r}")
        if repository is not None and (not isinstance(repository, str) or not repository):
            raise ConfigError(f"repository must be a non-empty string, got {repository!r}")
        if repository is not None and unit is None:
            raise ConfigError(
                f"repository={repository!r} needs unit=UnitSpec(...): a repository holds "
                "content units, and this request names none"
            )
        set_ = object.__setattr__
        set_(self, "sources", tuple(all_sources))
        set_(self, "expected_digests", digests)
        set_(self, "expected_size", expected_size)
        set_(self, "remote", remote)
        set_(self, "unit", unit)
        set_(self, "repository", repository)
        set_(self, "headers", _check_headers(headers) if headers is not None else {})
        set_(self, "compute_digests", normalize_algorithms(compute_digests))
        if handoff_dir is not None and not isinstance(handoff_dir, (str, os.PathLike)):
            raise ConfigError(f"handoff_dir must be a directory path, got {handoff_dir!r}")
        set_(self, "handoff_dir", Path(handoff_dir) if handoff_dir is not None else None)
        if pieces is not None:
            _check_pieces(pieces, expected_size)
        set_(self, "pieces", pieces)
        set_(self, "relative_path", relative_path)

    @property
    def url(self) -> str:
        """The URL of the first source."""
        return self.sources[0].url

    @property
    def sha256(self) -> str | None:
        return self.expected_digests.get("sha256")

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Every digest computed while the bytes stream: sha256 first, then the expected
        and the ``compute_digests`` algorithms, sorted."""
        expected = self.expected_digests
        if (
            not self.compute_digests
            and len(expected) <= 1
            and ("sha256" in expected or not expected)
        ):
            return _SHA256
        extra = {*expected, *self.compute_digests}
        extra.discard("sha256")
        return ("sha256", *sorted(extra))

    def __repr__(self) -> str:
        # Header values may hold credentials: only their names are shown.
        return (
            f"DownloadRequest(url={self.url!r}, sources={len(self.sources)}, "
            f"expected_digests={dict(self.expected_digests)!r}, "
            f"expected_size={self.expected_size!r}"
            + (f", headers={sorted(self.headers)!r}" if self.headers else "")
            + (f", compute_digests={self.compute_digests!r}" if self.compute_digests else "")
            + (f", handoff_dir={str(self.handoff_dir)!r}" if self.handoff_dir else "")
            + ")"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadResult:
    """The outcome of one successful download.

    ``attempts`` counts the attempts at the source that served it (0 when ``cached``);
    ``carried`` the bytes continued from a partial an earlier process left, so
    :attr:`transferred` is what came over the network this time.
    """

    url: str
    size: int
    digests: Mapping[str, str]
    location: str
    path: Path | None
    headers: Mapping[str, str] = field(default_factory=dict)
    cached: bool = False
    attempts: int = 1
    unit: ContentUnit | None = None
    carried: int = 0

    @property
    def transferred(self) -> int:
        """Bytes this download received over the network: 0 when ``cached``, less than
        ``size`` when it continued a partial an earlier process left (``carried`` bytes)."""
        return 0 if self.cached else self.size - self.carried

    @property
    def sha256(self) -> str:
        return self.digests["sha256"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitFile:
    """The catalog record of one file: where it is stored, how to validate it, and every
    place it can come from (sources carry the remote *name*, never credentials).

    ``location`` is None (and ``size`` may be None) for a file registered lazily with
    :meth:`DownloadEngine.register` and not fetched yet.
    """

    sha256: str
    size: int | None
    digests: Mapping[str, str]
    location: str | None
    sources: tuple[Source, ...] = ()
    created_at: datetime | None = None
    verified_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "digests": dict(self.digests),
            "location": self.location,
            "sources": [
                {"url": s.url, "priority": s.priority, "weight": s.weight, "remote": s.remote}
                for s in self.sources
            ],
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentUnit:
    """A content unit: ``(type, key)``, its metadata, its files and its repositories."""

    type: str
    key: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    repositories: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "key": self.key,
            "metadata": dict(self.metadata),
            "files": dict(self.files),
            "repositories": list(self.repositories),
        }


@dataclass(frozen=True, slots=True)
class LeftoverFile:
    """A file an interrupted download left behind, as :meth:`DownloadEngine.verify` lists
    it. Never under a final key, never served; verify reports it and never deletes it.

    ``kind`` is ``"partial"`` (a resumable partial: the next request for the same file
    continues it), ``"staging"`` (a staging file of another process or host) or
    ``"upload"`` (an incomplete S3 multipart upload). ``location`` is a local path or an
    ``s3://`` URI; ``size`` is in bytes (0 when unknown); ``url`` is where the bytes came
    from, when known (never with credentials).
    """

    kind: str
    location: str
    size: int = 0
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.location, "size": self.size, "url": self.url}


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """The outcome of :meth:`DownloadEngine.verify`; the tuples of str hold sha256 values.

    ``checked`` counts every stored file that was hashed (recorded or not) and every
    recorded one found missing; ``ok`` the recorded ones that matched their record.
    ``unrecorded`` lists the files in storage that no record locates (a crash between
    storing and recording): ``repair`` adopts those whose content hashes to their key
    (they join ``repaired``); one whose content does not is also listed in ``corrupt``.
    ``partials`` lists the :class:`LeftoverFile` s found (they do not make a report
    unclean).
    """

    checked: int = 0
    ok: int = 0
    corrupt: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unrecorded: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    partials: tuple[LeftoverFile, ...] = ()

    @property
    def clean(self) -> bool:
        """True when nothing is corrupt, missing or unrecorded, or everything found was
        repaired."""
        return set(self.corrupt) | set(self.missing) | set(self.unrecorded) <= set(self.repaired)


@dataclass(frozen=True, slots=True)
class ActiveTransfer:
    """One transfer in progress when a :class:`ProgressReport` was taken.

    ``url`` carries no credentials; ``bytes_total`` is the expected size (None if unknown).
    """

    url: str
    bytes_done: int
    bytes_total: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressReport:
    """A snapshot of progress, handed to ``EngineConfig.progress``.

    ``state`` is ``"running"``, ``"completed"`` or ``"failed"`` (the last report of a batch
    in which something failed). ``bytes_total`` counts only files whose size is known.
    ``bytes_done`` counts every finished or streaming byte, also of files the store already
    had (``cached``); ``bytes_transferred`` only those that came over the network, and
    :attr:`rate` is computed from it. ``retried`` counts the finished files whose source
    needed more than one attempt (see :func:`.progress.was_retried`).
    ``active`` lists the transfers streaming at that moment (not part of :meth:`to_json`).
    """

    message: str
    code: str
    total: int
    done: int
    failed: int
    bytes_total: int
    bytes_done: int
    state: str
    cached: int = 0
    retried: int = 0
    elapsed: float = 0.0
    active: tuple[ActiveTransfer, ...] = ()
    bytes_transferred: int = 0

    @property
    def rate(self) -> float:
        """Mean bytes transferred per second since the start (files served from the store
        count for nothing)."""
        return self.bytes_transferred / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "code": self.code,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "cached": self.cached,
            "retried": self.retried,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "bytes_transferred": self.bytes_transferred,
            "state": self.state,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.rate, 1),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataValidators:
    """The HTTP validators kept for one metadata URL of one remote (the catalog's
    ``metadata_validators`` table): what the server sent with the body last fetched
    (``etag``, ``last_modified``, as sent), and that body's ``sha256`` and ``size`` in
    storage. ``url`` is stored without userinfo; ``updated_at`` is set by the catalog.
    """

    remote: str
    url: str
    etag: str | None
    last_modified: str | None
    sha256: str
    size: int
    updated_at: datetime | None = None
