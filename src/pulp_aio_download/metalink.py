"""Metalink documents (RFC 5854 Metalink 4, and Metalink 3.0) as download requests.

Mirrors publish where a file can be fetched from, and how to check it, as Metalink: aria2
reads Metalink 4 (``<file name>``, ``<size>``, ``<hash type="sha-256">``,
``<url priority="1" location="de">``), and Fedora's mirror manager serves Metalink 3.0 for
``repomd.xml`` (``<url protocol="https" location="US" preference="100">``,
``<hash type="sha256">``). Each ``<file>`` becomes one :class:`DownloadRequest`:

* every usable ``<url>`` (http, https, file) is a :class:`Source`. Metalink 4's priority 1
  (the best) and Metalink 3.0's preference 100 (the best) map to the highest
  :attr:`Source.priority`; a url without one comes last; equal ones are chosen
  weighted-random, as for any request. Sources whose ``location`` is one of ``locations``
  come before all others (aria2's ``--metalink-location``), keeping their order among
  themselves. ``<metaurl>`` (BitTorrent and other metadata) and ftp/rsync urls are skipped;
* ``<size>`` is the expected size, every ``<hash>`` of a known algorithm (md5, sha-1,
  sha-224, sha-256, sha-384, sha-512) an expected digest; others are ignored;
* ``<pieces>`` are validated here (algorithm, length, one hash per piece of the size) and
  checked against the downloaded bytes by the hook :func:`piece_check` makes;
* the file is the unit ``("file", name)`` with ``relative_path=name``, in ``repository``
  when one is given.

The XML is parsed with ``defusedxml``: a document type declaration (so every entity, the
"billion laughs" and external entities alike) is refused before anything is expanded, and
a document larger than :data:`MAX_METALINK_BYTES` is refused unread. Every problem is a
:class:`ManifestError` naming the element.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

from .errors import ConfigError, DigestMismatch, ManifestError
from .hooks import DownloadContext, Hook
from .models import (
    DIGEST_ALGORITHMS,
    DownloadRequest,
    Pieces,
    Source,
    UnitSpec,
    safe_relative_path,
)
from .urls import SUPPORTED_SCHEMES, redact_url

__all__ = [
    "MAX_METALINK_BYTES",
    "METALINK3_NS",
    "METALINK4_NS",
    "MetalinkFile",
    "Pieces",
    "looks_like_metalink",
    "parse_metalink",
    "piece_check",
    "read_metalink",
]

log = logging.getLogger(__name__)

METALINK4_NS = "urn:ietf:params:xml:ns:metalink"
METALINK3_NS = "http://www.metalinker.org/"

#: Larger documents are refused unread (a 4 GiB ISO with 256 KiB sha-256 pieces is ~1.3 MB).
MAX_METALINK_BYTES = 32 * 1024 * 1024

# RFC 5854 4.2.16.3: priority 1 (best) .. 999999 (worst).
_V4_LOWEST = 999_999
# Above every mapped priority: sources in a preferred location come first.
_LOCATION_BONUS = 1_000_000
_INT = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class MetalinkFile:
    """One ``<file>`` of a Metalink document: its request and, if given, its pieces."""

    name: str
    request: DownloadRequest
    pieces: Pieces | None = None


def looks_like_metalink(data: bytes) -> bool:
    """True when ``data`` starts like an XML document whose root is ``<metalink>``."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        return False
    return re.search(rb"<(?:[A-Za-z_][\w.-]*:)?metalink[\s>/]", head) is not None


def read_metalink(
    data: bytes | str,
    *,
    locations: Iterable[str] = (),
    repository: str | None = None,
    remote: str | None = None,
) -> list[DownloadRequest]:
    """Turn a Metalink 4 or 3.0 document into one :class:`DownloadRequest` per ``<file>``.

    Piece hashes are validated and attached to the requests (``request.pieces``): a file
    whose digest does not match is repaired piece by piece, fetching again only the pieces
    that are wrong. To also refuse a file whose pieces differ although its digest matched
    (a document that contradicts itself), use :func:`parse_metalink` and put
    ``piece_check(files)`` before the default hooks.

    Args:
        data: the document (bytes as served; str is encoded as UTF-8).
        locations: preferred mirror locations (e.g. ``["de"]``, case-insensitive), tried
            before all others.
        repository: the repository to add each file's unit to (None: none).
        remote: the name of the remote whose settings fetch the files.

    Raises:
        ManifestError: not well-formed, a DTD or entity, too large, not a Metalink
            document, or a bad element (named).

    Example::

        requests = pad.read_metalink(Path("Fedora.iso.meta4").read_bytes(), locations=["de"])
    """
    files = parse_metalink(data, locations=locations, repository=repository, remote=remote)
    return [f.request for f in files]


def parse_metalink(
    data: bytes | str,
    *,
    locations: Iterable[str] = (),
    repository: str | None = None,
    remote: str | None = None,
) -> list[MetalinkFile]:
    """As :func:`read_metalink`, keeping each file's name and pieces."""
    try:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    except UnicodeEncodeError as exc:
        raise ManifestError(f"not valid Unicode text: {exc.reason} at {exc.start}") from None
    if len(raw) > MAX_METALINK_BYTES:
        raise ManifestError(
            f"Metalink document of {len(raw)} bytes is larger than the "
            f"{MAX_METALINK_BYTES} bytes allowed"
        )
    root = _parse_xml(raw)
    namespace, _, local = (
        root.tag[1:].rpartition("}") if root.tag.startswith("{") else ("", "", root.tag)
    )
    if local != "metalink":
        raise ManifestError(f"not a Metalink document: the root element is <{local}>")
    if namespace == METALINK4_NS:
        version = 4
    elif namespace == METALINK3_NS or (not namespace and root.get("version", "").startswith("3")):
        version = 3
    else:
        raise ManifestError(
            f"unknown Metalink namespace {namespace!r} "
            f"(expected {METALINK4_NS!r} or {METALINK3_NS!r})",
            element="<metalink>",
        )
    reader = _Reader(namespace, version, {loc.strip().lower() for loc in locations})
    if version == 4:
        elements = reader.children(root, "file")
    else:
        elements = [
            f for files in reader.children(root, "files") for f in reader.children(files, "file")
        ]
    if not elements:
        raise ManifestError("no <file> element", element="<metalink>")
    out: list[MetalinkFile] = []
    names: set[str] = set()
    for element in elements:
        parsed = reader.file(element, repository=repository, remote=remote)
        if parsed.name in names:
            raise ManifestError("a second <file> has this name", element=_file_label(parsed.name))
        names.add(parsed.name)
        out.append(parsed)
    return out


def _parse_xml(raw: bytes) -> Element:
    # Imported here: ``import pulp_aio_download`` stays light.
    import defusedxml
    import defusedxml.ElementTree

    try:
        return defusedxml.ElementTree.fromstring(raw, forbid_dtd=True)
    except defusedxml.DTDForbidden:
        raise ManifestError(
            "a document type declaration (<!DOCTYPE>) is not allowed in a Metalink document "
            "(entities are never expanded)"
        ) from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden) as exc:
        raise ManifestError(f"entities are not allowed in a Metalink document: {exc}") from None
    except ParseError as exc:
        raise ManifestError(f"not well-formed XML ({exc})") from None
    except (LookupError, ValueError) as exc:  # e.g. an unknown encoding="..."
        raise ManifestError(f"cannot be parsed as XML: {exc}") from None


def _file_label(name: str) -> str:
    return f"<file name={_quoted(name)}>"


def _quoted(value: str) -> str:
    text = '"' + value.replace('"', "&quot;") + '"'
    return text if len(text) <= 80 else text[:79] + '…"'


class _Reader:
    """Reads the elements of one document, in its namespace and version."""

    def __init__(self, namespace: str, version: int, locations: set[str]) -> None:
        self.prefix = f"{{{namespace}}}" if namespace else ""
        self.version = version
        self.locations = locations

    def children(self, element: Element, name: str) -> list[Element]:
        return element.findall(self.prefix + name)

    def file(self, element: Element, *, repository: str | None, remote: str | None) -> MetalinkFile:
        raw_name = element.get("name")
        if not raw_name:
            raise ManifestError("a <file> has no name attribute", element="<file>")
        label = _file_label(raw_name)
        try:
            name = safe_relative_path(raw_name, where="file name")
        except ConfigError as exc:
            raise ManifestError(exc.message, element=label) from None
        size = self.size(element, label)
        verification = element if self.version == 4 else element.find(self.prefix + "verification")
        digests = self.hashes(verification, label) if verification is not None else {}
        pieces = self.pieces(verification, label, size) if verification is not None else None
        sources = self.sources(element, label, remote)
        if not sources:
            raise ManifestError(
                "no <url> with an http, https or file URL to download from", element=label
            )
        try:
            request = DownloadRequest(
                sources=sources,
                expected_digests=digests,
                expected_size=size,
                remote=remote,
                unit=UnitSpec("file", name, relative_path=name),
                repository=repository,
                pieces=pieces,
            )
        except ConfigError as exc:
            raise ManifestError(exc.message, element=label) from None
        return MetalinkFile(name=name, request=request, pieces=pieces)

    def size(self, element: Element, label: str) -> int | None:
        found = self.children(element, "size")
        if not found:
            return None
        text = (found[0].text or "").strip()
        if not _INT.fullmatch(text):
            raise ManifestError(
                f"size must be a non-negative integer, got {text!r}", element=f"{label} <size>"
            )
        return int(text)

    def hashes(self, verification: Element, label: str) -> dict[str, str]:
        digests: dict[str, str] = {}
        for element in self.children(verification, "hash"):
            kind = element.get("type", "")
            algorithm = _algorithm(kind)
            if algorithm is None:
                log.debug("%s: ignoring <hash type=%r> (unknown algorithm)", label, kind)
                continue
            where = f"{label} <hash type={_quoted(kind)}>"
            value = _hex(element, algorithm, where)
            if digests.get(algorithm, value) != value:
                raise ManifestError(
                    f"a second {algorithm} hash differs from the first", element=where
                )
            digests[algorithm] = value
        return digests

    def pieces(self, verification: Element, label: str, size: int | None) -> Pieces | None:
        found = self.children(verification, "pieces")
        if not found:
            return None
        element = found[0]
        kind = element.get("type", "")
        where = f"{label} <pieces type={_quoted(kind)}>"
        algorithm = _algorithm(kind)
        if algorithm is None:
            log.debug("%s: ignoring pieces of unknown algorithm", where)
            return None
        length_text = (element.get("length") or "").strip()
        if not _INT.fullmatch(length_text) or int(length_text) == 0:
            raise ManifestError(
                f"length must be a positive integer, got {length_text!r}", element=where
            )
        length = int(length_text)
        hash_elements = self.children(element, "hash")
        if self.version == 3:
            hash_elements = self._ordered_v3(hash_elements, where)
        hashes = tuple(_hex(h, algorithm, f"{where} <hash>") for h in hash_elements)
        if size is not None:
            wanted = -(-size // length)
            if len(hashes) != wanted:
                raise ManifestError(
                    f"{len(hashes)} piece hashes for {size} bytes in pieces of {length} "
                    f"(expected {wanted})",
                    element=where,
                )
        try:
            return Pieces(algorithm=algorithm, length=length, hashes=hashes)
        except ConfigError as exc:
            raise ManifestError(exc.message, element=where) from None

    @staticmethod
    def _ordered_v3(elements: list[Element], where: str) -> list[Element]:
        numbered: dict[int, Element] = {}
        for element in elements:
            text = (element.get("piece") or "").strip()
            if not _INT.fullmatch(text) or int(text) in numbered:
                raise ManifestError(
                    f"piece numbers must be distinct integers, got {text!r}",
                    element=f"{where} <hash>",
                )
            numbered[int(text)] = element
        if sorted(numbered) != list(range(len(numbered))):
            raise ManifestError("piece numbers must run from 0 without gaps", element=where)
        return [numbered[i] for i in range(len(numbered))]

    def sources(self, element: Element, label: str, remote: str | None) -> list[Source]:
        container = element if self.version == 4 else element.find(self.prefix + "resources")
        if container is None:
            return []
        sources: list[Source] = []
        for url_element in self.children(container, "url"):
            url = (url_element.text or "").strip()
            where = f"{label} <url>"
            if (
                self.version == 3
                and url_element.get("type", "http").lower() not in SUPPORTED_SCHEMES
            ):
                log.debug("%s: skipping %s url %s", label, url_element.get("type"), redact_url(url))
                continue
            try:
                scheme = urlsplit(url).scheme.lower()
            except ValueError:
                scheme = ""
            if scheme not in SUPPORTED_SCHEMES:
                log.debug("%s: skipping unsupported url %s", label, redact_url(url))
                continue
            priority = self.priority(url_element, where)
            location = (url_element.get("location") or "").strip().lower()
            if location and location in self.locations:
                priority += _LOCATION_BONUS
            try:
                sources.append(Source(url, priority=priority, remote=remote))
            except ConfigError as exc:
                raise ManifestError(exc.message, element=where) from None
        for metaurl in self.children(element, "metaurl"):
            log.debug(
                "%s: skipping <metaurl mediatype=%r> %s",
                label,
                metaurl.get("mediatype"),
                redact_url((metaurl.text or "").strip()),
            )
        return sources

    def priority(self, element: Element, where: str) -> int:
        """The :attr:`Source.priority` of a url: higher is tried first, 0 when not given."""
        attribute = "priority" if self.version == 4 else "preference"
        text = element.get(attribute)
        if text is None:
            return 0
        text = text.strip()
        lowest, highest = (1, _V4_LOWEST) if self.version == 4 else (0, 100)
        if not _INT.fullmatch(text) or not lowest <= int(text) <= highest:
            raise ManifestError(
                f"{attribute} must be an integer from {lowest} to {highest}, got {text!r}",
                element=f"{where[:-1]} {attribute}={_quoted(text)}>",
            )
        value = int(text)
        # Metalink 4: 1 is the best; 3.0: 100 is the best. Both above "not given" (0).
        return _V4_LOWEST + 1 - value if self.version == 4 else value


def _algorithm(kind: str) -> str | None:
    name = kind.strip().lower().replace("-", "")
    return name if name in DIGEST_ALGORITHMS else None


def _hex(element: Element, algorithm: str, where: str) -> str:
    value = (element.text or "").strip().lower()
    if len(value) != DIGEST_ALGORITHMS[algorithm] or not re.fullmatch(r"[0-9a-f]+", value):
        raise ManifestError(
            f"malformed {algorithm} digest {value[:140]!r} "
            f"(expected {DIGEST_ALGORITHMS[algorithm]} hex characters)",
            element=where,
        )
    return value


def _request_key(request: DownloadRequest) -> tuple[object, ...]:
    return (tuple(s.url for s in request.sources), request.expected_size)


def piece_check(files: Sequence[MetalinkFile]) -> Hook:
    """A hook that checks a fresh download against its file's ``<pieces>``.

    Put it before the default hooks, so a file whose pieces differ is neither stored nor
    recorded: ``hooks=[piece_check(files), *pad.DEFAULT_HOOKS]``. Requests that are not
    among ``files``, files without pieces and artifacts already stored (validated by
    sha256 when stored) are let through. The check reads the staged file once more, off
    the event loop. The hook pickles (it holds only the pieces), so it can go to worker
    processes (``run_batch(..., workers=N)``).
    """
    return _PieceCheck({_request_key(f.request): f.pieces for f in files if f.pieces is not None})


class _PieceCheck:
    """The hook :func:`piece_check` returns: the pieces of every file, by request."""

    def __init__(self, table: dict[tuple[object, ...], Pieces]) -> None:
        self.table = table
        self.__qualname__ = "verify_pieces"  # how hook errors name it

    async def __call__(self, ctx: DownloadContext) -> None:
        if ctx.cached or ctx.path is None:
            return
        pieces = self.table.get(_request_key(ctx.request))
        if pieces is None:
            return
        loop = asyncio.get_running_loop()
        mismatch = await loop.run_in_executor(None, pieces.first_mismatch, ctx.path)
        if mismatch is not None:
            index, expected, actual = mismatch
            raise DigestMismatch(
                algorithm=pieces.algorithm,
                expected=expected,
                actual=actual,
                url=ctx.url,
                message=(
                    f"piece {index} of {len(pieces.hashes)} ({pieces.length} bytes each) "
                    f"{pieces.algorithm} mismatch: expected {expected}, got {actual}"
                ),
            )
