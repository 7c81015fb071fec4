"""``pulp-aio-download sync`` of Metalink documents (4 and 3.0) served by a real server, as
a user runs it (issue 15, part 1); how ``sync`` tells its inputs apart."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest

from helpers import BILLION_LAUGHS, run_cli, sha256
from pulp_aio_download.cli.sources import detect_kind
from pulp_aio_download.testing import Fault, FaultServer


def dead_base() -> str:
    """A loopback base URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def remotes_file(tmp_path: Path) -> Path:
    # No retries, so that a dead mirror costs one attempt; a header to see the policy used.
    path = tmp_path / "remotes.toml"
    path.write_text(
        '[remotes.default]\nheaders = { "X-Mirror-Key" = "k-123" }\n'
        "[remotes.default.retry]\nattempts = 1\n"
    )
    return path


def stored(data_dir: Path, data: bytes) -> Path:
    sha = sha256(data)
    return data_dir / "artifacts" / sha[:2] / sha[2:]


def catalog(*args: str) -> object:
    proc = run_cli("catalog", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


class Release:
    """Three files on two live mirrors, a mirror answering 404 and a dead one; the
    document's hash of ``checksums.txt`` is wrong."""

    names = ("images/boot.iso", "images/efi.img", "checksums.txt")

    def __init__(self, server: FaultServer) -> None:
        self.server = server
        self.data = {name: os.urandom(5000 + 100 * i) for i, name in enumerate(self.names)}
        self.dead = dead_base()
        for name, data in self.data.items():
            server.add(f"/us/{name}", data, faults=Fault(status=404))
            server.add(f"/fr/{name}", data)
            server.add(f"/jp/{name}", data)

    def digest(self, name: str) -> str:
        return sha256(b"wrong") if name == "checksums.txt" else sha256(self.data[name])

    def meta4(self) -> str:
        files = []
        for name, data in self.data.items():
            files.append(
                f"""  <file name="{name}">
    <size>{len(data)}</size>
    <hash type="md5">{hashlib.md5(data).hexdigest()}</hash>
    <hash type="sha-256">{self.digest(name)}</hash>
    <metaurl mediatype="torrent" priority="1">{self.server.url("/t/" + name)}.torrent</metaurl>
    <url location="de" priority="1">{self.dead}/de/{name}</url>
    <url location="us" priority="2">{self.server.url("/us/" + name)}</url>
    <url location="fr" priority="3">{self.server.url("/fr/" + name)}</url>
    <url location="jp" priority="3">{self.server.url("/jp/" + name)}</url>
    <url location="de" priority="4">ftp://ftp.example.org/{name}</url>
  </file>
"""
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<metalink xmlns="urn:ietf:params:xml:ns:metalink">\n'
            "  <generator>MirrorBrain/2.19.0</generator>\n"
            "  <published>2026-11-30T10:00:00Z</published>\n" + "".join(files) + "</metalink>\n"
        )

    def metalink3(self) -> str:
        files = []
        for name, data in self.data.items():
            files.append(
                f"""  <file name="{name}">
   <mm0:timestamp>1764621000</mm0:timestamp>
   <size>{len(data)}</size>
   <verification>
    <hash type="md5">{hashlib.md5(data).hexdigest()}</hash>
    <hash type="sha1">{hashlib.sha1(data).hexdigest()}</hash>
    <hash type="sha256">{self.digest(name)}</hash>
   </verification>
   <resources maxconnections="1">
{self._v3_urls(name)}
   </resources>
  </file>
"""
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<metalink version="3.0" xmlns="http://www.metalinker.org/" type="dynamic" '
            'generator="mirrormanager" xmlns:mm0="http://fedorahosted.org/mirrormanager">\n'
            " <files>\n" + "".join(files) + " </files>\n</metalink>\n"
        )

    def _v3_urls(self, name: str) -> str:
        urls = [
            ("http", "DE", 100, f"{self.dead}/de/{name}"),
            ("rsync", "DE", 100, f"rsync://de.example.org/{name}"),
            ("http", "US", 99, self.server.url(f"/us/{name}")),
            ("http", "FR", 60, self.server.url(f"/fr/{name}")),
            ("http", "JP", 60, self.server.url(f"/jp/{name}")),
        ]
        return "\n".join(
            f'    <url protocol="{p}" type="{p}" location="{loc}" preference="{pref}">{u}</url>'
            for p, loc, pref, u in urls
        )

    def requested(self, mirror: str) -> int:
        return sum(len(self.server.requests_for(f"/{mirror}/{n}")) for n in self.names)

    def check(self, proc_stdout: str, data_dir: Path) -> None:
        """Two files stored and recorded with every source; checksums.txt failed on every
        live mirror with a sha256 mismatch."""
        summary = json.loads(proc_stdout)
        assert (summary["files"], summary["done"], summary["failed"]) == (3, 2, 1)
        [failure] = summary["failures"]
        assert failure["error"] == "AllSourcesFailed"
        assert failure["reason"].startswith("all 4 sources failed: ")  # de, us, fr, jp
        assert "sha256 mismatch" in failure["reason"]  # (the summary cuts the rest)
        for name in self.names[:2]:
            assert stored(data_dir, self.data[name]).read_bytes() == self.data[name]
        assert not stored(data_dir, self.data["checksums.txt"]).exists()
        record = catalog("show", sha256(self.data["images/boot.iso"]), "--data-dir", str(data_dir))
        assert isinstance(record, dict)
        assert {s["url"] for s in record["sources"]} == {
            f"{self.dead}/de/images/boot.iso",
            self.server.url("/us/images/boot.iso"),
            self.server.url("/fr/images/boot.iso"),
            self.server.url("/jp/images/boot.iso"),
        }


def test_sync_metalink4_url_dead_mirror_priorities_and_a_wrong_hash(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    release = Release(threaded_server)
    url = threaded_server.add("/release/boot.meta4", release.meta4().encode())
    data_dir = tmp_path / "d"
    proc = run_cli(
        "sync", url, "--repository", "boot", "--remotes", str(remotes_file(tmp_path)),
        "--data-dir", str(data_dir), "--json", "--progress", "none", "--concurrency", "1",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    release.check(proc.stdout, data_dir)
    # Dead (priority 1) then the 404 mirror (priority 2) were tried before fr/jp (3).
    assert release.requested("us") == 3
    assert release.requested("fr") + release.requested("jp") == 2 + 2
    units = catalog("units", "boot", "--data-dir", str(data_dir))
    assert isinstance(units, list)
    assert {u["key"]: u["files"] for u in units} == {
        name: {name: sha256(release.data[name])} for name in release.names[:2]
    }
    [manifest_request] = threaded_server.requests_for("/release/boot.meta4")
    assert manifest_request.headers["X-Mirror-Key"] == "k-123"  # the remote's policy


def test_sync_metalink4_file_with_preferred_location(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    release = Release(threaded_server)
    document = tmp_path / "boot.meta4"
    document.write_text(release.meta4())
    data_dir = tmp_path / "d"
    proc = run_cli(
        "sync", str(document), "--location", "JP", "--remotes", str(remotes_file(tmp_path)),
        "--data-dir", str(data_dir), "--json", "--progress", "none",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    release.check(proc.stdout, data_dir)
    # The jp mirror came first for every file; the others only for the file it failed.
    assert release.requested("jp") == 3
    assert release.requested("us") + release.requested("fr") <= 2


def test_sync_metalink3_detected_by_content_preference_100_first(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    release = Release(threaded_server)
    # Served as mirror manager does: no extension, Content-Type application/metalink+xml.
    url = threaded_server.add(
        "/metalink",
        release.metalink3().encode(),
        faults=Fault(headers={"Content-Type": "application/metalink+xml"}),
    )
    data_dir = tmp_path / "d"
    proc = run_cli(
        "sync", url + "?repo=fedora-43&arch=x86_64", "--remotes", str(remotes_file(tmp_path)),
        "--data-dir", str(data_dir), "--json", "--progress", "none", "--concurrency", "1",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    release.check(proc.stdout, data_dir)
    assert release.requested("us") == 3  # preference 99, after the dead 100


def test_pieces_checked_through_the_cli(threaded_server: FaultServer, tmp_path: Path) -> None:
    good, bad = os.urandom(2500), os.urandom(2500)
    threaded_server.add("/p/good.bin", good)
    threaded_server.add("/p/bad.bin", bad)

    def file(name: str, data: bytes, spoil: bool) -> str:
        hashes = [hashlib.sha1(data[i : i + 1000]).hexdigest() for i in range(0, 2500, 1000)]
        if spoil:
            hashes[1] = hashlib.sha1(b"other").hexdigest()
        return (
            f'<file name="{name}"><size>2500</size><pieces length="1000" type="sha-1">'
            + "".join(f"<hash>{h}</hash>" for h in hashes)
            + f"</pieces><url>{threaded_server.url('/p/' + name)}</url></file>"
        )

    document = tmp_path / "p.metalink"  # a Metalink 4 document under the older extension
    document.write_text(
        '<metalink xmlns="urn:ietf:params:xml:ns:metalink">'
        + file("good.bin", good, False)
        + file("bad.bin", bad, True)
        + "</metalink>"
    )
    data_dir = tmp_path / "d"
    # Given as a file:// URL, as well as a path.
    proc = run_cli(
        "sync", document.as_uri(), "--data-dir", str(data_dir), "--json", "--progress", "none"
    )
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["done"] == 1
    [failure] = summary["failures"]
    assert failure["url"] == threaded_server.url("/p/bad.bin")
    assert "piece 1 of 3 (1000 bytes each) sha1 mismatch" in failure["reason"]
    assert stored(data_dir, good).read_bytes() == good
    assert not stored(data_dir, bad).exists()


def test_billion_laughs_url_refused_quickly_exit_2(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    url = threaded_server.add("/bomb.meta4", BILLION_LAUGHS.encode())
    started = time.monotonic()
    proc = run_cli("sync", url, "--data-dir", str(tmp_path / "d"))
    assert time.monotonic() - started < 30  # a process start; expansion would take minutes
    assert proc.returncode == 2
    assert "document type declaration (<!DOCTYPE>) is not allowed" in proc.stderr
    assert url in proc.stderr and "Traceback" not in proc.stderr
    assert [r.path for r in threaded_server.requests] == ["/bomb.meta4"]


def test_bad_metalink_element_exits_2_naming_it(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    document = tmp_path / "x.meta4"
    document.write_text(
        '<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a.iso">'
        f"<size>12 MB</size><url>{threaded_server.url('/a.iso')}</url></file></metalink>"
    )
    proc = run_cli("sync", str(document), "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f'pulp-aio-download: error: {document}: <file name="a.iso"> <size>: size must be a '
        "non-negative integer, got '12 MB'"
    )
    assert threaded_server.requests == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--location", "de", "--location applies to Metalink documents, not to a JSONL"),
        ("--base-url", "http://h/", "--base-url applies to a PULP_MANIFEST, not to a JSONL"),
        ("--repository", "r", "--repository does not apply to a JSONL manifest"),
    ],
)
def test_options_that_do_not_apply_exit_2(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"url": "http://127.0.0.1:9/x"}\n')
    proc = run_cli("sync", str(manifest), option, value, "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize(
    ("name", "head", "content_type", "kind"),
    [
        ("x.meta4", b"", None, "metalink"),
        ("dir/x.METALINK", b"", None, "metalink"),
        ("repo/PULP_MANIFEST", b"", None, "pulp"),
        ("m.jsonl", b"<metalink", None, "jsonl"),
        ("/metalink", b"{}", "application/metalink+xml; charset=utf-8", "metalink"),
        ("doc", b'\xef\xbb\xbf<?xml version="1.0"?>\n<metalink xmlns="x">', None, "metalink"),
        ("doc", b"<ml:metalink xmlns:ml='urn:ietf:params:xml:ns:metalink'>", None, "metalink"),
        ("doc", b"<rss/>", None, "jsonl"),
        ("listing", b"\na/b.iso," + b"ab" * 32 + b",123\r\n", None, "pulp"),
        ("listing", b'{"url": "http://h/a"}\n', None, "jsonl"),
        ("empty", b"", None, "jsonl"),
    ],
)
def test_detect_kind(name: str, head: bytes, content_type: str | None, kind: str) -> None:
    assert detect_kind(name, head, content_type) == kind
