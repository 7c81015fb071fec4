"""The command line on a data dir it cannot write: one line and exit 2 before any download
for commands that write; commands that only read work.

Two real kinds of "cannot write": a read-only mount (``EROFS``, for every process) and a
directory without write bits read by a process that cannot override file modes
(``EACCES``; as root, the CLI runs with every capability dropped, see plugins/readonly.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import run_cli
from plugins.readonly import remove_write_bits, unprivileged
from pulp_aio_download.testing import FaultServer

FILES = {f"/r/{i}.bin": f"read-only data dir file {i}\n".encode() * (i + 1) for i in range(3)}


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pulp-aio-download: error: ")
    return lines[0]


def populated(server: FaultServer, tmp_path: Path) -> tuple[Path, Path]:
    """A data dir holding FILES (synced into repository ``ro``) and their manifest."""
    manifest = tmp_path / "m.jsonl"
    lines = []
    for path, data in FILES.items():
        url = server.add(path, data)
        unit = {"type": "file", "key": path}
        entry = {"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        lines.append(json.dumps({**entry, "unit": unit, "repository": "ro"}) + "\n")
    manifest.write_text("".join(lines))
    data_dir = tmp_path / "data"
    done = run_cli("sync", str(manifest), "--data-dir", str(data_dir), "--progress", "none")
    assert done.returncode == 0, done.stderr
    return data_dir, manifest


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["read-only mount", "permission denied"])
def locked_down(
    request: pytest.FixtureRequest, read_only_dir: Callable[[Path], None]
) -> Callable[[Path], list[str]]:
    """Make a data dir unwritable; returns the command prefix to run the CLI with."""

    def lock(data_dir: Path) -> list[str]:
        if request.param == "read-only mount":
            read_only_dir(data_dir)
            return []
        request.addfinalizer(remove_write_bits(data_dir))
        return unprivileged()

    return lock


def test_commands_that_write_stop_before_any_download(
    threaded_server: FaultServer, tmp_path: Path, locked_down: Callable[[Path], list[str]]
) -> None:
    data_dir, manifest = populated(threaded_server, tmp_path)
    new = threaded_server.add("/new.bin", b"never fetched\n")
    manifest.write_text(json.dumps({"url": new}) + "\n")
    before = tree(data_dir)
    threaded_server.reset_counters()
    prefix = locked_down(data_dir)
    common = ["--data-dir", str(data_dir)]

    for args in (
        ["get", new, *common],
        ["sync", str(manifest), "--progress", "none", *common],
        ["verify", "--repair", *common],
    ):
        done = run_cli(*args, prefix=prefix)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        line = one_error_line(done)
        assert f"cannot write to storage {data_dir / 'artifacts'}: [Errno " in line, line
        assert done.stdout == ""

    # Only the catalog unwritable (the store given elsewhere): the catalog is named.
    store = tmp_path / "elsewhere"
    store.mkdir()
    os.chmod(store, 0o777)
    done = run_cli("get", new, "--storage", str(store), *common, prefix=prefix)
    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    assert f"cannot open SQLite catalog {data_dir / 'catalog.sqlite3'}: it is not writable" in line
    assert threaded_server.requests == []  # nothing was downloaded
    assert tree(data_dir) == before


def test_commands_that_read_work_on_a_read_only_data_dir(
    threaded_server: FaultServer, tmp_path: Path, locked_down: Callable[[Path], list[str]]
) -> None:
    data_dir, _ = populated(threaded_server, tmp_path)
    before = tree(data_dir)
    prefix = locked_down(data_dir)
    common = ["--data-dir", str(data_dir)]

    verify = run_cli("verify", "--json", "--progress", "none", *common, prefix=prefix)
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert (report["checked"], report["ok"], report["corrupt"]) == (3, 3, [])

    sha = hashlib.sha256(FILES["/r/1.bin"]).hexdigest()
    show = run_cli("catalog", "show", sha, *common, prefix=prefix)
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["sha256"] == sha

    units = run_cli("catalog", "units", "ro", *common, prefix=prefix)
    assert units.returncode == 0, units.stderr
    assert sorted(u["key"] for u in json.loads(units.stdout)) == sorted(FILES)

    missing = run_cli("catalog", "show", "0" * 64, *common, prefix=prefix)
    assert missing.returncode == 1
    assert missing.stderr == f"no unit file for {'0' * 64}\n"
    assert tree(data_dir) == before


def test_read_only_commands_on_a_data_dir_without_catalog(tmp_path: Path) -> None:
    data_dir = tmp_path / "never-used"
    for args in (["verify"], ["catalog", "units", "ro"]):
        done = run_cli(*args, "--data-dir", str(data_dir))
        assert done.returncode == 2, done.stderr
        line = one_error_line(done)
        assert f"cannot open SQLite catalog {data_dir / 'catalog.sqlite3'}" in line
        assert "No such file" in line
    assert not data_dir.exists()  # reading creates nothing
