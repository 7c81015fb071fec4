"""Mirrors of a whole remote: base URLs, yum mirrorlists and MirrorManager metalinks.

A remote (:class:`~pulp_aio_download.config.RemoteConfig`) lists the base URLs of its
mirrors in ``mirrors`` and/or names a ``mirrorlist`` URL: a yum mirrorlist (one base URL a
line, ``#`` comments) or a MirrorManager metalink of ``repomd.xml``
(``<metalink><files><file name="repomd.xml">`` with ``<verification>`` hashes, ``<size>``
and ``<resources><url preference=..>`` ending in ``/repodata/repomd.xml``).

When the engine starts (or :meth:`~pulp_aio_download.DownloadEngine.add_remote` adds such a
remote) the list is fetched once through that remote's own session (its TLS, proxy and
auth) and the mirrors are resolved: with a metalink, each mirror's ``repodata/repomd.xml``
is fetched and compared with the metalink's size and hashes (or one of its
``<mm0:alternates>``); a mirror that serves another repomd.xml, or none, is stale and
skipped; a mirror that cannot be reached is kept, unchecked, and host health (cooldown)
decides. The debug log of ``pulp_aio_download.mirrors`` says which mirror was kept or
skipped and why; the one of :mod:`~pulp_aio_download.selection` which one each file uses.

A :class:`~pulp_aio_download.DownloadRequest` with a ``relative_path`` on such a remote
gets one :class:`~pulp_aio_download.Source` per resolved mirror: base URL + relative path,
priority = the metalink's ``preference`` (0 for base URLs and mirrorlist lines), so that
equal mirrors are tried in health order and each file fails over to the next mirror.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from .config import RemoteConfig
from .errors import AllSourcesFailed, ConfigError, DownloadError, HTTPStatusError, ManifestError
from .models import DownloadRequest, Source
from .urls import redact_url

if TYPE_CHECKING:  # aiohttp and the XML parser load with the first mirror list, not at import
    from xml.etree.ElementTree import Element

    import aiohttp

__all__ = [
    "Mirror",
    "MirrorSet",
    "RepomdExpectation",
    "parse_mirrorlist",
    "parse_repomd_metalink",
    "resolve_mirrors",
]

log = logging.getLogger(__name__)

#: The most bytes read of a mirrorlist, metalink or repomd.xml.
MAX_LIST_BYTES = 8 * 1024 * 1024
REPOMD = "repodata/repomd.xml"
_PATH_SAFE = "/%:@!$&'()*+,;=~"


@dataclass(frozen=True, slots=True)
class Mirror:
    """One mirror of a remote: its base URL and the priority of its sources."""

    base_url: str
    priority: int = 0

    def url_for(self, relative_path: str) -> str:
        """The URL of ``relative_path`` on this mirror."""
        return self.base_url.rstrip("/") + "/" + quote(relative_path, safe=_PATH_SAFE)


@dataclass(frozen=True, slots=True)
class RepomdExpectation:
    """What a metalink says repomd.xml is: size and digests, and its accepted alternates
    (older versions a mirror may still serve)."""

    size: int | None
    digests: Mapping[str, str]
    timestamp: int | None = None
    alternates: tuple[tuple[int | None, Mapping[str, str]], ...] = ()

    def mismatch(self, data: bytes) -> str | None:
        """None when ``data`` is this repomd.xml (or an alternate), else why it is not."""
        first = _mismatch(self.size, self.digests, data)
        if first is None or any(_mismatch(s, d, data) is None for s, d in self.alternates):
            return None
        return first


def _mismatch(size: int | None, digests: Mapping[str, str], data: bytes) -> str | None:
    if size is not None and len(data) != size:
        return f"repomd.xml has {len(data)} bytes, the metalink says {size}"
    for algorithm, expected in digests.items():
        actual = hashlib.new(algorithm, data).hexdigest()
        if actual != expected:
            return f"repomd.xml {algorithm} is {actual}, the metalink says {expected}"
    return None


# -- parsing --------------------------------------------------------------------------------
def parse_mirrorlist(text: str, *, url: str | None = None) -> list[Mirror]:
    """The mirrors of a yum mirrorlist: one base URL a line; blank lines and ``#``
    comments are ignored, and so are URLs of other schemes (``rsync://``, ``ftp://``).

    Raises:
        ManifestError: a line that is not a URL, or no http(s) mirror at all.
    """
    mirrors: list[Mirror] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = urlsplit(line)
        if not parts.scheme or not parts.netloc or " " in line:
            raise ManifestError(
                f"mirrorlist: {line[:80]!r} is not a mirror URL", line=number, url=url
            )
        if parts.scheme not in ("http", "https"):
            log.debug(
                "mirrorlist %s line %d: skipping %s mirror %s",
                url,
                number,
                parts.scheme,
                redact_url(line),
            )
            continue
        mirrors.append(Mirror(line))
    if not mirrors:
        raise ManifestError("mirrorlist lists no http or https mirror", url=url)
    return mirrors


def _local(element: Element) -> str:
    return element.tag.rpartition("}")[2]


def _child(element: Element, name: str) -> Element | None:
    return next((c for c in element if _local(c) == name), None)


def _int(text: str | None, what: str, url: str | None) -> int:
    try:
        value = int((text or "").strip())
    except ValueError:
        raise ManifestError(
            f"{(text or '').strip()!r} is not an integer", element=what, url=url
        ) from None
    return value


def _verification(file: Element, where: str, url: str | None) -> tuple[int | None, dict[str, str]]:
    size_el = _child(file, "size")
    size = _int(size_el.text, f"{where} <size>", url) if size_el is not None else None
    digests: dict[str, str] = {}
    verification = _child(file, "verification")
    for hash_el in verification if verification is not None else ():
        if _local(hash_el) != "hash":
            continue
        algorithm = (hash_el.get("type") or "").lower().replace("-", "")
        value = (hash_el.text or "").strip().lower()
        if algorithm in hashlib.algorithms_available and value:
            digests[algorithm] = value
    return size, digests


def parse_repomd_metalink(
    data: bytes, *, url: str | None = None
) -> tuple[list[Mirror], RepomdExpectation]:
    """The mirrors and the expected repomd.xml of a MirrorManager metalink.

    Raises:
        ManifestError: not XML, no ``<file name="repomd.xml">``, a bad ``<size>`` or
            ``preference``, a URL that does not end in ``/repodata/repomd.xml``, no hash
            and no size to check mirrors with, or no http(s) mirror.
    """
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        root = SafeET.fromstring(data)
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise ManifestError(f"metalink is not valid XML: {exc}", url=url) from None
    if _local(root) != "metalink":
        raise ManifestError(f"metalink's root element is <{_local(root)}>", url=url)
    files = _child(root, "files")
    file = next(
        (f for f in (files if files is not None else ()) if f.get("name") == "repomd.xml"),
        None,
    )
    if file is None:
        raise ManifestError('metalink has no <file name="repomd.xml">', url=url)
    where = '<file name="repomd.xml">'
    size, digests = _verification(file, where, url)
    if size is None and not digests:
        raise ManifestError(
            "no <size> and no known <hash>: stale mirrors cannot be told", element=where, url=url
        )
    timestamp_el = _child(file, "timestamp")
    timestamp = (
        _int(timestamp_el.text, f"{where} <mm0:timestamp>", url)
        if timestamp_el is not None
        else None
    )
    alternates_el = _child(file, "alternates")
    alternates = tuple(
        _verification(alt, f"{where} <mm0:alternate>", url)
        for alt in (alternates_el if alternates_el is not None else ())
        if _local(alt) == "alternate"
    )
    resources = _child(file, "resources")
    mirrors: list[Mirror] = []
    for url_el in resources if resources is not None else ():
        if _local(url_el) != "url":
            continue
        link = (url_el.text or "").strip()
        scheme = urlsplit(link).scheme
        if scheme not in ("http", "https"):
            log.debug(
                "metalink %s: skipping %s mirror %s", url, scheme or "no-scheme", redact_url(link)
            )
            continue
        if not link.endswith("/" + REPOMD):
            raise ManifestError(
                f"mirror URL {redact_url(link)!r} does not end in /{REPOMD}",
                element=f"{where} <url>",
                url=url,
            )
        preference = url_el.get("preference")
        priority = (
            _int(preference, f'{where} <url preference="{preference}">', url)
            if preference is not None
            else 0
        )
        mirrors.append(Mirror(link[: -len(REPOMD)], priority))
    if not mirrors:
        raise ManifestError("metalink lists no http or https mirror", element=where, url=url)
    return mirrors, RepomdExpectation(size, digests, timestamp, alternates)


# -- resolving ------------------------------------------------------------------------------
@dataclass
class MirrorSet:
    """The resolved mirrors of every remote that has some, and why others were skipped."""

    mirrors: dict[str, tuple[Mirror, ...]] = field(default_factory=dict)
    skipped: dict[str, list[DownloadError]] = field(default_factory=dict)

    def expand(self, request: DownloadRequest, default_remote: str) -> DownloadRequest:
        """``request`` (which has a ``relative_path``) with one source per mirror of its
        remote, after the sources it already has.

        Raises:
            ConfigError: the remote has no mirrors.
            AllSourcesFailed: every mirror of the remote was skipped as stale.
        """
        path = request.relative_path
        assert path is not None
        name = request.remote or default_remote
        mirrors = self.mirrors.get(name)
        if mirrors is None:
            raise ConfigError(
                f"relative_path {path!r} needs remote {name!r} to have "
                "RemoteConfig.mirrors or RemoteConfig.mirrorlist"
            )
        if not mirrors:
            raise AllSourcesFailed(
                self.skipped.get(name, []),
                message=f"remote {name!r} has no usable mirror for {path!r}: "
                + "; ".join(str(e) for e in self.skipped.get(name, [])),
            )
        known = {s.url for s in request.sources}
        added = [
            Source(url, priority=m.priority, remote=name)
            for m in mirrors
            if (url := m.url_for(path)) not in known
        ]
        return dataclasses.replace(request, sources=(*request.sources, *added))


SessionFor = Callable[[str], "aiohttp.ClientSession"]


async def resolve_mirrors(
    remotes: Iterable[RemoteConfig], session_for: SessionFor, into: MirrorSet | None = None
) -> MirrorSet:
    """Resolve the mirrors of every remote in ``remotes`` that has ``mirrors`` or a
    ``mirrorlist`` (the others cost nothing), into ``into`` (a new set by default).

    Raises:
        ManifestError: a malformed mirrorlist or metalink (named).
        DownloadError: the mirrorlist could not be fetched (the setting is named).
    """
    found = into if into is not None else MirrorSet()
    wanted = [r for r in remotes if r.mirrors or r.mirrorlist is not None]
    for remote in wanted:
        kept, skipped = await _resolve(remote, session_for(remote.name))
        found.mirrors[remote.name] = kept
        found.skipped[remote.name] = skipped
    return found


async def _resolve(
    remote: RemoteConfig, session: aiohttp.ClientSession
) -> tuple[tuple[Mirror, ...], list[DownloadError]]:
    mirrors = [Mirror(base) for base in remote.mirrors]
    skipped: list[DownloadError] = []
    if remote.mirrorlist is not None:
        setting = f"remote {remote.name!r}: RemoteConfig.mirrorlist"
        status, data = await _get(session, remote.mirrorlist, setting)
        if status != 200:
            raise HTTPStatusError(
                status=status,
                url=remote.mirrorlist,
                message=f"{setting}: HTTP {status} from the mirrorlist URL",
            )
        kind = remote.mirrorlist_kind
        if kind == "auto":
            kind = "metalink" if data.lstrip()[:1] == b"<" else "mirrorlist"
        if kind == "metalink":
            listed, expected = parse_repomd_metalink(data, url=remote.mirrorlist)
            checked = await asyncio.gather(
                *(_check(session, m, expected, remote.name) for m in listed)
            )
            for mirror, problem in zip(listed, checked, strict=True):
                if problem is None:
                    mirrors.append(mirror)
                else:
                    skipped.append(problem)
        else:
            text = data.decode("utf-8", errors="replace")
            mirrors.extend(parse_mirrorlist(text, url=remote.mirrorlist))
    unique = tuple(dict.fromkeys(mirrors))
    log.debug(
        "remote %r: %d mirror(s) kept: %s; %d skipped",
        remote.name,
        len(unique),
        ", ".join(f"{redact_url(m.base_url)} (priority {m.priority})" for m in unique),
        len(skipped),
    )
    return unique, skipped


async def _get(session: aiohttp.ClientSession, url: str, what: str) -> tuple[int, bytes]:
    import aiohttp

    from .transports.errors import map_client_error

    try:
        async with session.get(url) as response:
            if response.status != 200:
                return response.status, b""
            data = await response.content.read(MAX_LIST_BYTES + 1)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        error = map_client_error(exc, url)
        raise type(error)(f"{what}: {error.message}", url=url) from exc
    if len(data) > MAX_LIST_BYTES:
        raise ManifestError(f"{what}: more than {MAX_LIST_BYTES} bytes", url=url)
    return 200, data


async def _check(
    session: aiohttp.ClientSession, mirror: Mirror, expected: RepomdExpectation, remote: str
) -> DownloadError | None:
    """None when ``mirror`` is kept, else the error saying why it is stale."""
    url = mirror.url_for(REPOMD)
    try:
        status, data = await _get(session, url, f"remote {remote!r}: mirror check")
    except DownloadError as exc:
        if isinstance(exc, ManifestError):
            return exc
        log.debug(
            "remote %r: keeping mirror %s unchecked: %s", remote, redact_url(mirror.base_url), exc
        )
        return None
    if status != 200:
        reason = f"mirror {redact_url(mirror.base_url)} skipped: HTTP {status} for {REPOMD}"
        log.debug("remote %r: %s", remote, reason)
        return HTTPStatusError(status=status, url=url, message=reason)
    problem = expected.mismatch(data)
    if problem is not None:
        reason = f"mirror {redact_url(mirror.base_url)} is stale and skipped: {problem}"
        log.debug("remote %r: %s", remote, reason)
        return DownloadError(reason, url=url)
    log.debug(
        "remote %r: mirror %s is current (%s matches the metalink), priority %d",
        remote,
        redact_url(mirror.base_url),
        REPOMD,
        mirror.priority,
    )
    return None
