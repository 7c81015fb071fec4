"""Metalink 4 (RFC 5854) and 3.0 documents as download requests, the pieces hook, and
hostile XML refused (issue 15, part 1). The sync of served documents through the command
line is in test_cli_sources.py."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pulp_aio_download as pad
from helpers import BILLION_LAUGHS
from pulp_aio_download.metalink import (
    MAX_METALINK_BYTES,
    METALINK3_NS,
    METALINK4_NS,
    parse_metalink,
    piece_check,
)
from pulp_aio_download.testing import FaultServer

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SHA256_A = hashlib.sha256(b"a").hexdigest()
SHA1_A = hashlib.sha1(b"a").hexdigest()
MD5_A = hashlib.md5(b"a").hexdigest()

# As MirrorBrain (download.opensuse.org) and aria2 users write them.
META4 = f"""<?xml version="1.0" encoding="UTF-8"?>
<metalink xmlns="urn:ietf:params:xml:ns:metalink">
  <generator>MirrorBrain/2.19.0</generator>
  <origin dynamic="true">http://download.example.org/iso/netinst.iso.meta4</origin>
  <published>2026-11-30T10:00:00Z</published>
  <file name="iso/netinst.iso">
    <size>1</size>
    <identity>netinst</identity>
    <version>15.6</version>
    <hash type="md5">{MD5_A}</hash>
    <hash type="sha-1">{SHA1_A}</hash>
    <hash type="sha-256">{SHA256_A}</hash>
    <hash type="sha3-256">{"0" * 64}</hash>
    <pieces length="262144" type="sha-1">
      <hash>{SHA1_A}</hash>
    </pieces>
    <metaurl mediatype="torrent" priority="1">http://download.example.org/netinst.iso.torrent</metaurl>
    <url location="de" priority="1">http://ftp.de.example.org/iso/netinst.iso</url>
    <url location="de" priority="2">ftp://ftp2.de.example.org/iso/netinst.iso</url>
    <url location="us" priority="3">https://mirror.us.example.org/iso/netinst.iso</url>
    <url location="fr" priority="3">http://miroir.fr.example.org/iso/netinst.iso</url>
    <url>http://fallback.example.org/iso/netinst.iso</url>
  </file>
  <file name="README">
    <url priority="10">http://download.example.org/README</url>
  </file>
</metalink>
"""

# As Fedora's mirror manager serves for repomd.xml (one file, alternates, rsync urls).
META3 = f"""<?xml version="1.0" encoding="utf-8"?>
<metalink version="3.0" xmlns="http://www.metalinker.org/" type="dynamic"
    pubdate="Tue, 01 Dec 2026 20:55:12 GMT" generator="mirrormanager"
    xmlns:mm0="http://fedorahosted.org/mirrormanager">
 <files>
  <file name="repomd.xml">
   <mm0:timestamp>1764621000</mm0:timestamp>
   <size>1</size>
   <verification>
    <hash type="md5">{MD5_A}</hash>
    <hash type="sha1">{SHA1_A}</hash>
    <hash type="sha256">{SHA256_A}</hash>
   </verification>
   <mm0:alternates>
    <mm0:alternate>
     <mm0:timestamp>1764500000</mm0:timestamp>
     <size>99</size>
     <verification><hash type="sha256">{"f" * 64}</hash></verification>
    </mm0:alternate>
   </mm0:alternates>
   <resources maxconnections="1">
    <url protocol="https" type="https" location="US" preference="100">https://dl.example.org/f/repodata/repomd.xml</url>
    <url protocol="rsync" type="rsync" location="DE" preference="100">rsync://de.example.org/f/repodata/repomd.xml</url>
    <url protocol="http" type="http" location="DE" preference="99">http://de.example.org/f/repodata/repomd.xml</url>
    <url protocol="http" type="http" location="DE" preference="99">http://de2.example.org/f/repodata/repomd.xml</url>
    <url protocol="http" type="http" location="JP" preference="12">http://jp.example.org/f/repodata/repomd.xml</url>
   </resources>
  </file>
 </files>
</metalink>
"""


def by_url(request: pad.DownloadRequest) -> dict[str, int]:
    return {s.url: s.priority for s in request.sources}


def test_metalink4_every_usable_url_size_and_known_hash() -> None:
    iso, readme = pad.read_metalink(META4.encode(), repository="isos", remote="suse")
    assert iso.expected_size == 1
    assert iso.expected_digests == {"md5": MD5_A, "sha1": SHA1_A, "sha256": SHA256_A}
    priorities = by_url(iso)
    # ftp and the torrent metaurl are skipped; priority 1 is tried first, none given is last.
    assert list(priorities) == [
        "http://ftp.de.example.org/iso/netinst.iso",
        "https://mirror.us.example.org/iso/netinst.iso",
        "http://miroir.fr.example.org/iso/netinst.iso",
        "http://fallback.example.org/iso/netinst.iso",
    ]
    ranked = sorted(priorities, key=priorities.__getitem__, reverse=True)
    assert ranked[0] == "http://ftp.de.example.org/iso/netinst.iso"
    assert ranked[-1] == "http://fallback.example.org/iso/netinst.iso"
    assert (
        priorities["https://mirror.us.example.org/iso/netinst.iso"]
        == priorities["http://miroir.fr.example.org/iso/netinst.iso"]
    )  # equal priority: chosen weighted-random
    assert {s.weight for s in iso.sources} == {1.0} and {s.remote for s in iso.sources} == {"suse"}
    assert iso.unit == pad.UnitSpec("file", "iso/netinst.iso", relative_path="iso/netinst.iso")
    assert iso.repository == "isos" and iso.remote == "suse"
    assert readme.expected_size is None and readme.expected_digests == {}
    assert readme.url == "http://download.example.org/README"


def test_metalink3_fedora_preference_100_first_and_alternates_ignored() -> None:
    [repomd] = pad.read_metalink(META3)
    assert repomd.expected_size == 1  # the current file, not the <mm0:alternate>
    assert repomd.expected_digests == {"md5": MD5_A, "sha1": SHA1_A, "sha256": SHA256_A}
    priorities = by_url(repomd)
    assert "rsync://de.example.org/f/repodata/repomd.xml" not in priorities
    assert sorted(priorities, key=priorities.__getitem__, reverse=True)[0] == (
        "https://dl.example.org/f/repodata/repomd.xml"
    )
    assert priorities["https://dl.example.org/f/repodata/repomd.xml"] == 100
    assert priorities["http://de.example.org/f/repodata/repomd.xml"] == 99
    assert priorities["http://jp.example.org/f/repodata/repomd.xml"] == 12


@pytest.mark.parametrize(("document", "location"), [(META4, "fr"), (META3, "jp")])
def test_preferred_location_comes_before_every_priority(document: str, location: str) -> None:
    request = pad.read_metalink(document, locations=[location.upper()])[0]
    priorities = by_url(request)
    best = max(priorities, key=priorities.__getitem__)
    assert f"{location}.example.org" in best
    others = [u for u in priorities if f"{location}.example.org" not in u]
    # Among the others the document's order holds.
    plain = by_url(pad.read_metalink(document)[0])
    assert [priorities[u] for u in others] == [plain[u] for u in others]


def test_pieces_are_kept_for_the_hook() -> None:
    [iso, readme] = parse_metalink(META4)
    assert iso.name == "iso/netinst.iso"
    assert iso.pieces is not None
    assert (iso.pieces.algorithm, iso.pieces.length, iso.pieces.hashes) == (
        "sha1",
        262144,
        (SHA1_A,),
    )
    assert readme.pieces is None
    # read_metalink attaches them, so a wrong download is repaired piece by piece.
    assert iso.request.pieces == iso.pieces and readme.request.pieces is None


def _file(body: str, name: str = "a.bin", ns: str = "urn:ietf:params:xml:ns:metalink") -> str:
    return f'<metalink xmlns="{ns}"><file name="{name}">{body}</file></metalink>'


URL = "<url>http://h/a.bin</url>"


@pytest.mark.parametrize(
    ("document", "element", "message"),
    [
        (_file("<size>-3</size>" + URL), '<file name="a.bin"> <size>', "non-negative integer"),
        (
            _file('<hash type="sha-256">abc</hash>' + URL),
            '<file name="a.bin"> <hash type="sha-256">',
            "malformed sha256 digest 'abc'",
        ),
        (
            _file('<url priority="high">http://h/a</url>'),
            '<file name="a.bin"> <url priority="high">',
            "priority must be an integer from 1 to 999999",
        ),
        (
            _file("<url>ftp://h/a.bin</url><metaurl mediatype='torrent'>http://h/t</metaurl>"),
            '<file name="a.bin">',
            "no <url> with an http, https or file URL",
        ),
        (_file(URL, name="../etc/passwd"), '<file name="../etc/passwd">', "must be relative"),
        (_file("<url>http:///nohost</url>"), '<file name="a.bin"> <url>', "has no host"),
        (
            _file(
                '<size>600000</size><pieces length="262144" type="sha-1"><hash>'
                + "0" * 40
                + "</hash></pieces>"
                + URL
            ),
            '<file name="a.bin"> <pieces type="sha-1">',
            "1 piece hashes for 600000 bytes in pieces of 262144 (expected 3)",
        ),
        (
            _file('<pieces length="0" type="sha-1"></pieces>' + URL),
            '<file name="a.bin"> <pieces type="sha-1">',
            "length must be a positive integer",
        ),
        (
            '<metalink xmlns="urn:ietf:params:xml:ns:metalink">'
            f'<file name="a">{URL}</file><file name="a">{URL}</file></metalink>',
            '<file name="a">',
            "a second <file> has this name",
        ),
        ('<metalink xmlns="urn:ietf:params:xml:ns:metalink"/>', "<metalink>", "no <file>"),
        (
            '<metalink xmlns="urn:example:other"><file name="a"/></metalink>',
            "<metalink>",
            "unknown Metalink namespace",
        ),
        (
            '<metalink version="3.0" xmlns="http://www.metalinker.org/"><files>'
            '<file name="r"><resources><url preference="200">http://h/r</url></resources>'
            "</file></files></metalink>",
            '<file name="r"> <url preference="200">',
            "preference must be an integer from 0 to 100",
        ),
    ],
)
def test_bad_elements_are_manifest_errors_naming_them(
    document: str, element: str, message: str
) -> None:
    with pytest.raises(pad.ManifestError) as info:
        pad.read_metalink(document)
    assert info.value.element == element
    assert message in str(info.value)
    assert str(info.value).startswith(element)
    assert isinstance(info.value, pad.ConfigError)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("<metalink xmlns='urn:ietf:params:xml:ns:metalink'><file", "not well-formed XML"),
        ("<rss/>", "not a Metalink document: the root element is <rss>"),
        ("", "not well-formed XML"),
    ],
)
def test_documents_that_are_not_metalink(document: str, message: str) -> None:
    with pytest.raises(pad.ManifestError, match=message):
        pad.read_metalink(document)


def test_billion_laughs_refused_quickly_with_small_memory() -> None:
    assert "&lol8;" in BILLION_LAUGHS  # expanded, &lol9; would be 10**9 "lol"s (3 GB)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(pad.ManifestError, match="document type declaration"):
            pad.read_metalink(BILLION_LAUGHS)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 2 * 1024 * 1024


def test_external_entity_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    document = (
        f'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        '<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a">'
        "<url>http://h/&x;</url></file></metalink>"
    )
    with pytest.raises(pad.ManifestError) as info:
        pad.read_metalink(document)
    assert "TOP-SECRET" not in str(info.value)


def test_oversized_document_refused_unparsed() -> None:
    document = _file(URL).encode() + b" " * MAX_METALINK_BYTES
    with pytest.raises(pad.ManifestError, match="larger than the 33554432 bytes allowed"):
        pad.read_metalink(document)


# -- pieces checked against the bytes, against a real server --------------------------------


def _pieces_document(base: str, files: dict[str, bytes], wrong: str) -> str:
    length = 1000
    parts = []
    for name, data in files.items():
        hashes = [
            hashlib.sha256(data[i : i + length]).hexdigest() for i in range(0, len(data), length)
        ]
        if name == wrong:
            hashes[2] = hashlib.sha256(b"not this").hexdigest()
        pieces = "".join(f"<hash>{h}</hash>" for h in hashes)
        parts.append(
            f'<file name="{name}"><size>{len(data)}</size>'
            f'<pieces length="{length}" type="sha-256">{pieces}</pieces>'
            f'<url priority="1">{base}/{name}</url></file>'
        )
    return f'<metalink xmlns="urn:ietf:params:xml:ns:metalink">{"".join(parts)}</metalink>'


async def test_piece_hashes_checked_after_download(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    files = {"good.bin": os.urandom(4500), "bad.bin": os.urandom(4500)}
    for name, data in files.items():
        fault_server.add(f"/m/{name}", data)
    parsed = parse_metalink(_pieces_document(fault_server.url("/m"), files, wrong="bad.bin"))
    config = pad.EngineConfig(
        data_dir=tmp_path / "d",
        hooks=[piece_check(parsed), *pad.DEFAULT_HOOKS],
        remotes=[pad.RemoteConfig(retry=pad.RetryPolicy(attempts=1))],
    )
    async with pad.DownloadEngine(config) as engine:
        good, bad = await engine.download_many([f.request for f in parsed], return_exceptions=True)
        assert isinstance(good, pad.DownloadResult)
        assert good.path is not None and good.path.read_bytes() == files["good.bin"]
        assert isinstance(bad, pad.HookError)
        assert "piece 2 of 5 (1000 bytes each) sha256 mismatch" in str(bad)
        assert bad.url == fault_server.url("/m/bad.bin")
        sha_bad = hashlib.sha256(files["bad.bin"]).hexdigest()
        assert await engine.storage.stat(sha_bad) is None  # neither stored
        assert engine.catalog is not None
        assert await engine.catalog.get_unit_file(sha_bad) is None  # nor recorded
        assert await engine.catalog.get_unit("file", "good.bin") is not None


# -- fuzzing: whatever a mirror serves, a list of requests or a ManifestError ---------------

_attr = st.one_of(
    st.sampled_from(["1", "0", "999999", "1000000", "-1", "100", "sha-256", "sha1", "de", ""]),
    st.text(max_size=12),
)
_text = st.one_of(
    st.sampled_from(
        ["http://h/a", "https://u:p@h/a", "ftp://h/a", "file:///etc/passwd", "12", SHA256_A]
    ),
    st.text(max_size=30),
)


_VALID_CHILDREN = [
    "<size>1</size>",
    f'<hash type="sha-256">{SHA256_A}</hash>',
    f'<hash type="md5">{MD5_A}</hash>',
    '<hash type="tiger">abc</hash>',
    '<url priority="5" location="de">http://h/x</url>',
    '<url preference="50" location="DE">https://h/y</url>',
    '<url type="bittorrent">http://h/t.torrent</url>',
    '<metaurl mediatype="torrent">http://h/t</metaurl>',
    f'<pieces length="1" type="sha-1"><hash piece="0">{SHA1_A}</hash></pieces>',
]


def _xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


@st.composite
def metalink_documents(draw: st.DrawFn) -> str:
    v4 = draw(st.booleans())
    files = []
    for _ in range(draw(st.integers(0, 3))):
        children = []
        for _ in range(draw(st.integers(0, 5))):
            if draw(st.integers(0, 3)):
                children.append(draw(st.sampled_from(_VALID_CHILDREN)))
                continue
            tag = draw(st.sampled_from(["size", "hash", "url", "metaurl", "pieces", "x"]))
            attrs = " ".join(
                f'{name}="{_xml_escape(draw(_attr))}"'
                for name in draw(
                    st.lists(
                        st.sampled_from(["type", "priority", "preference", "location", "length"]),
                        unique=True,
                        max_size=3,
                    )
                )
            )
            body = _xml_escape(draw(_text))
            if tag == "pieces":
                body = "".join(f"<hash>{_xml_escape(draw(_text))}</hash>" for _ in range(2))
            children.append(f"<{tag} {attrs}>{body}</{tag}>")
        if draw(st.booleans()):
            children.append(f"<url>http://h/{len(files)}</url>")
        inner = "".join(children)
        if not v4:
            inner = f"<verification>{inner}</verification><resources>{inner}</resources>"
        name = draw(
            st.one_of(st.sampled_from(["a", "d/b.iso", "../x", "/abs"]), st.text(max_size=9))
        )
        files.append(f'<file name="{_xml_escape(name + str(len(files)))}">{inner}</file>')
    if v4:
        return f'<metalink xmlns="{METALINK4_NS}">{"".join(files)}</metalink>'
    return (
        f'<metalink version="3.0" xmlns="{METALINK3_NS}"><files>{"".join(files)}</files></metalink>'
    )


@FUZZ
@given(document=st.one_of(metalink_documents(), st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_read_metalink(document: str | bytes) -> None:
    try:
        requests = pad.read_metalink(document, locations=["de"])
    except pad.ManifestError:
        return
    for request in requests:
        assert request.sources and all(
            s.scheme in {"http", "https", "file"} for s in request.sources
        )
        assert request.unit is not None and request.unit.relative_path is not None
        assert not request.unit.relative_path.startswith("/")
        assert ".." not in request.unit.relative_path.split("/")
        assert "u:p@" not in repr(request)
