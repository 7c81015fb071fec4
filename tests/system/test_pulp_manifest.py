"""PULP_MANIFEST sources (issue 15, part 2): the reader, and a Pulp file repository served
by a real nginx mirrored with ``sync``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pulp_aio_download as pad
from helpers import run_cli, sha256
from plugins.nginx import NginxServer
from pulp_aio_download.pulp_manifest import repository_from_url

A, B = sha256(b"a"), sha256(b"bb")


def test_lines_become_file_units_relative_to_the_manifest_url() -> None:
    text = f"iso/a.iso,{A},1\n\nb, with comma.txt,{B.upper()},2\r\nsp ace#1?.txt,{A},1\n"
    requests = pad.read_pulp_manifest(
        text, "https://h/pulp/content/isos/PULP_MANIFEST", repository="isos", remote="pulp"
    )
    assert [r.url for r in requests] == [
        "https://h/pulp/content/isos/iso/a.iso",
        "https://h/pulp/content/isos/b,%20with%20comma.txt",
        "https://h/pulp/content/isos/sp%20ace%231%3F.txt",
    ]
    assert [r.expected_digests for r in requests] == [{"sha256": A}, {"sha256": B}, {"sha256": A}]
    assert [r.expected_size for r in requests] == [1, 2, 1]
    assert requests[1].unit == pad.UnitSpec(
        "file", "b, with comma.txt", relative_path="b, with comma.txt"
    )
    assert {r.repository for r in requests} == {"isos"} and {r.remote for r in requests} == {"pulp"}


def test_base_url_may_be_the_directory() -> None:
    [request] = pad.read_pulp_manifest(f"x/y.bin,{A},1", "http://h/repo/")
    assert request.url == "http://h/repo/x/y.bin" and request.repository is None


def test_same_line_twice_is_one_request() -> None:
    assert len(pad.read_pulp_manifest(f"a,{A},1\na,{A},1\n", "http://h/m/PULP_MANIFEST")) == 1


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (f"a,{A},1\nb,{B}\n", 2, "expected 'relative_path,sha256,size', got 'b,"),
        (f"a,{A[:-1]},1", 1, "malformed sha256"),
        (f"a,{'g' * 64},1", 1, "malformed sha256"),
        (f"a,{A},-1", 1, "malformed size '-1' for 'a'"),
        (f"a,{A},1.5", 1, "malformed size '1.5'"),
        (f"a,{A},", 1, "malformed size ''"),
        (f"../etc/passwd,{A},1", 1, "must be relative and must not contain '..'"),
        (f"/etc/passwd,{A},1", 1, "must be relative"),
        (f",{A},1", 1, "relative path must be a non-empty string"),
        (f"a,{A},1\n\nb,{A},1\na,{B},2\n", 4, "'a' is listed again with a different sha256"),
    ],
)
def test_bad_lines_are_manifest_errors_naming_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(pad.ManifestError) as info:
        pad.read_pulp_manifest(text, "http://h/repo/PULP_MANIFEST")
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert message in str(info.value)


def test_bad_base_url() -> None:
    with pytest.raises(pad.ManifestError, match="bad base URL"):
        pad.read_pulp_manifest("", "ftp://h/PULP_MANIFEST")


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://h/pulp/content/isos/PULP_MANIFEST", "isos"),
        ("https://h/PULP_MANIFEST", "h"),
        ("file:///srv/repos/my%20repo/PULP_MANIFEST", "my repo"),
        ("http://h/repo/", "repo"),
    ],
)
def test_repository_name_from_the_url(url: str, name: str) -> None:
    assert repository_from_url(url) == name


# -- a Pulp file repository published on nginx ----------------------------------------------


def _publish(root: Path, files: dict[str, bytes], *, wrong_size: str | None = None) -> Path:
    """Lay the files out as Pulp publishes a file repository, with its PULP_MANIFEST."""
    repo = root / "pulp" / "content" / "isos"
    lines = []
    for name, data in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        size = len(data) + 7 if name == wrong_size else len(data)
        lines.append(f"{name},{sha256(data)},{size}\n")
    (repo / "PULP_MANIFEST").write_text("".join(lines))
    return repo / "PULP_MANIFEST"


def _units(data_dir: Path, repository: str) -> dict[str, str]:
    """relative_path -> sha256 of the repository's file units, read from the catalog."""
    proc = run_cli("catalog", "units", repository, "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    units = json.loads(proc.stdout)
    assert {u["type"] for u in units} == {"file"}
    return {path: sha for u in units for path, sha in u["files"].items()}


def test_sync_a_pulp_manifest_from_nginx_with_one_wrong_size(
    nginx: Callable[[Path], NginxServer], tmp_path: Path
) -> None:
    files = {f"images/disk-{i}.img": os.urandom(3000 + i) for i in range(5)}
    files["README, first.txt"] = b"read me\n"
    _publish(tmp_path / "www", files, wrong_size="images/disk-3.img")
    server = nginx(tmp_path / "www")
    url = f"{server.base_url}/pulp/content/isos/PULP_MANIFEST"
    data_dir = tmp_path / "d"
    proc = run_cli("sync", url, "--data-dir", str(data_dir), "--json", "--progress", "none")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["files"], summary["done"], summary["failed"]) == (6, 5, 1)
    [failure] = summary["failures"]
    assert failure["url"] == f"{server.base_url}/pulp/content/isos/images/disk-3.img"
    assert failure["error"] == "SizeMismatch" and "expected 3010 bytes" in failure["reason"]
    # The other files are stored and are units of the repository named after the URL.
    units = _units(data_dir, "isos")
    assert units == {
        name: sha256(data) for name, data in files.items() if name != "images/disk-3.img"
    }
    for name, sha in units.items():
        assert (data_dir / "artifacts" / sha[:2] / sha[2:]).read_bytes() == files[name]
    bad = sha256(files["images/disk-3.img"])
    assert not (data_dir / "artifacts" / bad[:2] / bad[2:]).exists()
    logged = server.requests()
    assert logged[0] == "GET /pulp/content/isos/PULP_MANIFEST 200"
    assert "GET /pulp/content/isos/README,%20first.txt 200" in logged


def test_bad_line_served_by_nginx_exits_2_before_any_download(
    nginx: Callable[[Path], NginxServer], tmp_path: Path
) -> None:
    files = {f"f{i}.bin": os.urandom(100) for i in range(3)}
    manifest = _publish(tmp_path / "www", files)
    manifest.write_text(manifest.read_text() + "f9.bin,not-a-digest,100\n")
    server = nginx(tmp_path / "www")
    url = f"{server.base_url}/pulp/content/isos/PULP_MANIFEST"
    proc = run_cli("sync", url, "--data-dir", str(tmp_path / "d"), "--repository", "mine")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"pulp-aio-download: error: {url}: line 4: malformed sha256 'not-a-digest' for "
        "'f9.bin' (expected 64 hex characters)"
    )
    assert server.requests() == ["GET /pulp/content/isos/PULP_MANIFEST 200"]


def test_missing_manifest_url_exits_2(nginx: Callable[[Path], NginxServer], tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    server = nginx(tmp_path / "www")
    url = f"{server.base_url}/nothing/PULP_MANIFEST"
    proc = run_cli("sync", url, "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2
    assert "cannot fetch the manifest: HTTP 404 Not Found" in proc.stderr and url in proc.stderr


def test_local_pulp_manifest_with_and_without_base_url(
    nginx: Callable[[Path], NginxServer], tmp_path: Path
) -> None:
    files = {"a/one.bin": os.urandom(500), "two.bin": os.urandom(600)}
    manifest = _publish(tmp_path / "www", files)
    # Without --base-url the files are read next to the manifest (file://).
    proc = run_cli("sync", str(manifest), "--data-dir", str(tmp_path / "d1"), "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert _units(tmp_path / "d1", "isos") == {n: sha256(d) for n, d in files.items()}
    # With --base-url (a directory, slash or not) they come from there.
    local = tmp_path / "elsewhere" / "PULP_MANIFEST"
    local.parent.mkdir()
    local.write_bytes(manifest.read_bytes())
    server = nginx(tmp_path / "www")
    proc = run_cli(
        "sync",
        str(local),
        "--base-url",
        f"{server.base_url}/pulp/content/isos",
        "--repository",
        "copy",
        "--data-dir",
        str(tmp_path / "d2"),
        "--progress",
        "none",
    )
    assert proc.returncode == 0, proc.stderr
    assert _units(tmp_path / "d2", "copy") == {n: sha256(d) for n, d in files.items()}
    assert sorted(server.requests()) == [
        "GET /pulp/content/isos/a/one.bin 200",
        "GET /pulp/content/isos/two.bin 200",
    ]


_field = st.one_of(
    st.sampled_from([A, A.upper(), "0", "-1", "1.5", "", " 7 ", "../x", "/x", "a\x00", "a\udcff"]),
    st.text(max_size=15),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(
        st.one_of(
            st.lists(_field, min_size=1, max_size=4).map(",".join),
            st.text(max_size=40),
        ),
        max_size=6,
    )
)
def test_fuzz_read_pulp_manifest(lines: list[str]) -> None:
    try:
        requests = pad.read_pulp_manifest("\n".join(lines), "https://h/repo/PULP_MANIFEST")
    except pad.ManifestError as exc:
        error: pad.ManifestError | None = exc
        requests = []
    else:
        error = None
    assert error is None or error.line >= 1  # every bad input names its line
    for request in requests:
        assert request.url.startswith("https://h/repo/")
        assert request.unit is not None and request.unit.relative_path is not None
        assert ".." not in request.unit.relative_path.split("/")
        assert request.sha256 is not None and request.expected_size is not None


def test_a_resync_of_an_unchanged_manifest_url_sends_its_validators_and_says_so(
    nginx: Callable[[Path], NginxServer], tmp_path: Path
) -> None:
    files = {f"f-{i}.bin": os.urandom(2000 + i) for i in range(3)}
    manifest = _publish(tmp_path / "www", files)
    server = nginx(tmp_path / "www")
    url = f"{server.base_url}/pulp/content/isos/PULP_MANIFEST"
    data_dir = tmp_path / "d"
    sync = ("sync", url, "--data-dir", str(data_dir), "--json", "--progress", "none")
    first = run_cli(*sync)
    assert first.returncode == 0, first.stderr
    assert "unchanged" not in first.stderr
    again = run_cli(*sync)
    assert again.returncode == 0, again.stderr
    assert f"{url}: unchanged since the last sync (HTTP 304)" in again.stderr
    assert json.loads(again.stdout)["done"] == 3  # still checked: all served from the store
    forced = run_cli(*sync, "--no-conditional-get")
    assert forced.returncode == 0 and "unchanged" not in forced.stderr
    manifest.write_text(manifest.read_text() + "")  # same bytes, but a new mtime
    os.utime(manifest, (2_000_000_000, 2_000_000_000))
    changed = run_cli(*sync)
    assert changed.returncode == 0 and "unchanged" not in changed.stderr
    manifest_requests = [e for e in server.entries() if str(e["uri"]).endswith("PULP_MANIFEST")]
    assert [e["status"] for e in manifest_requests] == [200, 304, 200, 200]
    assert [bool(e["if_none_match"]) for e in manifest_requests] == [False, True, False, True]
    assert (data_dir / "catalog.sqlite3").exists()
