"""The documentation tells the truth: its reference, its links, its changelog, its claims.

The site itself is built strict by ``nox -s docs`` (which also checks the built reference
page); these tests run with the suite and need none of the documentation tools.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

import pulp_aio_download as pad
from pulp_aio_download.testing import FaultServer

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
# What the README and the pages may link to: files and folders of this repository.
MARKDOWN = [ROOT / "README.md", ROOT / "RELIABILITY.md", ROOT / "benchmarks" / "README.md"]


def _hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / "_hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_api_reference_lists_exactly_the_public_names() -> None:
    reference = _hook("reference")
    page = (DOCS / "reference.md").read_text(encoding="utf-8")
    assert reference.MARKER in page
    generated = reference.reference_markdown()
    listed = re.findall(r"^::: pulp_aio_download\.(\w+)$", generated, flags=re.MULTILINE)
    assert sorted(listed) == sorted(pad.__all__)
    assert len(listed) == len(set(listed))
    # Every entry sits under a section, and the errors follow the tree from its root.
    titles = [title for title, _ in reference.grouped()]
    assert "Other" not in titles, "a public name whose module the reference cannot place"
    errors = dict(reference.grouped())["Errors"]
    assert errors[0] == "DownloadError"
    for name in errors[1:]:
        assert issubclass(getattr(pad, name), pad.DownloadError)


def test_every_public_class_and_function_has_a_docstring() -> None:
    undocumented = [
        name
        for name in pad.__all__
        if isinstance(getattr(pad, name), type) or callable(getattr(pad, name))
        if name != "Hook"  # a type alias: its docstring follows it in hooks.py
        if not (getattr(pad, name).__doc__ or "").strip()
    ]
    assert undocumented == []


def test_sphinx_roles_become_reference_links_or_code() -> None:
    text = (
        "Raises :class:`~pulp_aio_download.errors.ConfigError`, see :meth:`open` and "
        ":class:`ssl.SSLContext`; a list::"
    )
    convert = _hook("sphinx_roles").SphinxRoles().convert
    assert convert(text) == (
        "Raises [`ConfigError`][pulp_aio_download.ConfigError], see `open()` and "
        "`ssl.SSLContext`; a list:"
    )


def test_cli_reference_has_the_options_of_every_command() -> None:
    cli_options = _hook("cli_options")
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    documented = set(cli_options.MARKER.findall(page))
    assert documented == {"common", *cli_options.commands()}
    sync = cli_options.options_table("sync")
    for option in ("`MANIFEST`", "`--progress bar\\|json\\|none`", "`--json`"):
        assert option in sync
    assert "--data-dir" in cli_options.options_table("common")
    assert "--data-dir" not in sync  # the common options have their own table


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [*MARKDOWN, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_sends_readers_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for forbidden in ("DESIGN.md", "STYLE.md", "shared/", "/work/"):
        assert forbidden not in text, f"{page.name} mentions {forbidden}"
    for target in _LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        assert path.exists(), f"{page.name} links to a missing file: {target}"


def test_readme_links_the_documentation_pages() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("RELIABILITY.md", "benchmarks/README.md", "docs/index.md", "docs/cli.md"):
        assert f"]({name}" in readme, f"README.md does not link {name}"


def test_readme_first_screen_keeps_its_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == [
        "pip install . && pulp-aio-download demo",
        "pip install nox && nox -s tests",
    ]


_FRAGMENT = re.compile(r"^\d+\.(feature|bugfix|removal|deprecation|doc|misc)(\.\d+)?$")


def test_changelog_fragments_are_named_issue_dot_type() -> None:
    fragments = [p for p in (ROOT / "CHANGES").iterdir() if not p.name.startswith(".")]
    assert fragments, "CHANGES/ holds the unreleased entries"
    for fragment in fragments:
        assert _FRAGMENT.match(fragment.name), f"CHANGES/{fragment.name}: not ISSUE.TYPE"
        assert fragment.read_text(encoding="utf-8").strip(), f"CHANGES/{fragment.name} is empty"
    changes = (ROOT / "CHANGES.md").read_text(encoding="utf-8")
    assert _hook("changelog").START in changes


def test_download_sync_without_config_leaves_a_temporary_directory_as_documented(
    threaded_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/getting-started.md: what ``download_sync(url)`` with no config leaves behind."""
    data = b"what the docs promise\n" * 100
    url = threaded_server.add("/promise.bin", data)
    sha256 = hashlib.sha256(data).hexdigest()
    # A temporary directory of this test's own: other processes use the shared one too.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("pulp-aio-download-*"))
    first = pad.download_sync(url, expected_digests={"sha256": sha256})
    second = pad.download_sync(url, expected_digests={"sha256": sha256})
    made = set(temp.glob("pulp-aio-download-*")) - before
    partials = temp / f"pulp-aio-download-partials-{os.getuid()}"
    try:
        assert first.path is not None and second.path is not None
        roots = {first.path.parents[1], second.path.parents[1]}
        assert made == roots | {partials} and len(roots) == 2  # one new directory per call
        assert list(partials.iterdir()) == []  # shared by the calls, empty once they succeed
        assert not second.cached  # nothing is shared between the calls
        for root in roots:
            assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
                ".staging",
                sha256[:2],
                f"{sha256[:2]}/{sha256[2:]}",
            ]
            assert (root / sha256[:2] / sha256[2:]).read_bytes() == data
    finally:
        for root in made:
            shutil.rmtree(root)


def test_download_sync_that_stores_nothing_leaves_no_temporary_directory(
    threaded_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/getting-started.md: a call that stored nothing removes its fresh directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(pad.HTTPStatusError):
        pad.download_sync(threaded_server.url("/not-there"))
    partials = tmp_path / f"pulp-aio-download-partials-{os.getuid()}"
    assert set(tmp_path.glob("pulp-aio-download-*")) - {partials} == set()


def test_performance_chart_bars_come_from_the_run_results() -> None:
    """benchmarks/chart.py: throughput from the median wall, the range from min and max."""
    spec = importlib.util.spec_from_file_location("bench_chart", ROOT / "benchmarks" / "chart.py")
    assert spec is not None and spec.loader is not None
    chart = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = chart
    spec.loader.exec_module(chart)

    def row(wall: float, low: float, high: float, ok: int = 2) -> dict[str, object]:
        return {"ok": ok, "wall": wall, "wall_min": low, "wall_max": high, "cpu": wall / 2}

    results = {
        "workloads": {
            "S": {"files": 2000, "bytes": 2000 * 16384},
            "L": {"files": 2, "bytes": 10**9},
        },
        "summary": {
            "S": {"curl": row(0.1, 0.1, 0.1), "pulp-cli": row(2.0, 1.0, 4.0), "zz": row(1, 1, 1)},
            "L": {"aria2c": row(2.0, 2.0, 2.0), "pulp-lib": row(1.0, 1.0, 1.0, ok=0)},
        },
    }
    unit, bars = chart.bars(results, "S")
    assert unit == "files/s"
    assert [b.tool for b in bars] == ["pulp-cli", "curl", "zz"]  # ours first, unknown last
    cli = bars[0]
    assert (cli.value, cli.low, cli.high, cli.cpu) == (1000.0, 500.0, 1000.0, 1.0)
    unit, bars = chart.bars(results, "L")
    assert unit == "MB/s"
    assert [(b.tool, b.value) for b in bars] == [("aria2c", 500.0)]  # failed runs left out


def _section(page: str, heading: str) -> str:
    """The text of ``page`` from ``heading`` to the next heading of the same level."""
    text = (DOCS / page).read_text(encoding="utf-8")
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) :]
    ends = [m.start() for m in re.finditer(rf"^{level} ", rest, flags=re.MULTILINE)]
    return rest[: ends[0]] if ends else rest


@pytest.mark.parametrize(
    ("cls", "heading"),
    [
        (pad.EngineConfig, "## EngineConfig"),
        (pad.RemoteConfig, "## RemoteConfig"),
        (pad.TLSConfig, "### TLSConfig"),
        (pad.ProxyConfig, "### ProxyConfig"),
        (pad.Timeouts, "### Timeouts"),
        (pad.RetryPolicy, "### RetryPolicy"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_configuration_reference_documents_every_field(cls: type, heading: str) -> None:
    section = _section("configuration.md", heading)
    missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}`" not in section]
    assert missing == [], f"docs/configuration.md {heading} lacks {missing}"


def test_configuration_reference_documents_every_remotes_file_key() -> None:
    from pulp_aio_download.cli import remotes_file as rf

    section = _section("configuration.md", "## The remotes file (TOML)")
    keys = {*rf._REMOTE_KEYS, *rf._TLS_KEYS, *rf._PROXY_KEYS, *rf._TIMEOUT_KEYS}
    keys |= {*rf._RETRY_KEYS, *rf._AUTH_KEYS, "password_env"}
    keys |= {"proxy_username", "proxy_password", "proxy_password_env"}
    missing = sorted(k for k in keys if f"`{k}`" not in section)
    missing += [f"[{t}]" for t in rf._SUBTABLES if f"`[remotes.NAME.{t}]`" not in section]
    assert missing == [], f"the remotes file table lacks {missing}"


def test_cli_reference_documents_the_manifest_and_json_keys() -> None:
    from pulp_aio_download.cli import manifest, summarize

    def keys_of(heading: str) -> set[str]:
        return set(re.findall(r"^\| `(\w+)`", _section("cli.md", heading), flags=re.MULTILINE))

    schema = keys_of("### The manifest format")
    assert {*manifest._KEYS, *manifest._UNIT_KEYS, *manifest._SOURCE_KEYS} <= schema
    report = pad.ProgressReport(
        message="m", code="download", total=0, done=0, failed=0, bytes_total=0,
        bytes_done=0, state="running",
    )  # fmt: skip
    assert set(report.to_json()) <= keys_of("### Progress")
    assert set(summarize([], [], 1.0)) <= keys_of("### The summary")
    record = pad.UnitFile(sha256="0" * 64, size=1, digests={}, location=None)
    assert set(record.to_json()) <= keys_of("## `catalog`: what is recorded") | {
        "created_at",
        "verified_at",
    }


_REPO_PATH = re.compile(r"`((?:tests|examples|benchmarks|src|docs)/[\w./-]+\.(?:py|md|sh))")


@pytest.mark.parametrize("page", [*MARKDOWN, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_file_a_page_names_exists(page: Path) -> None:
    named = set(_REPO_PATH.findall(page.read_text(encoding="utf-8")))
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == [], f"{page.name} names files that are not in the repository: {missing}"
