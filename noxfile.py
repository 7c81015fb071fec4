"""Developer sessions: tests, lint, typecheck, docs, changelog, bench."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = True
# uv makes the venvs and installs into them when it is installed (`pip install uv`, as
# .ci/run does): 5 s instead of pip's 23 s for a venv with .[test]; virtualenv and pip
# otherwise.
nox.options.default_venv_backend = "uv|virtualenv"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# Pinned so that a new release's rules never fail CI on unchanged code.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
# The layering contract of [tool.importlinter] in pyproject.toml (lint-imports).
IMPORT_LINTER = "import-linter==2.17"


def _interpreter(version: str) -> str | None:
    """A working ``pythonX.Y``: on PATH, else one installed by pyenv but not on PATH."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-V"], capture_output=True).returncode == 0:
        return version
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True):
        return str(candidate)
    return None


# The README's test command runs every Python 3.10-3.13 found here (3.11 at least).
FOUND = [p for p in map(_interpreter, PYTHONS) if p is not None] or ["3.11"]


def _servers(session: nox.Session) -> None:
    """The catalog tests start a real PostgreSQL server, the PULP_MANIFEST tests a real
    nginx and the proxy tests a real tinyproxy: install them when they are missing."""
    session.run("sh", ".ci/install-postgres.sh", external=True)
    session.run("sh", ".ci/install-nginx.sh", external=True)
    session.run("sh", ".ci/install-tinyproxy.sh", external=True)
    session.run("sh", ".ci/install-socks.sh", external=True)


@nox.session(python=FOUND)
def tests(session: nox.Session) -> None:
    """The test suite (fast cases) on every Python 3.10-3.13 found on the machine."""
    _servers(session)
    session.install("-e", ".[test]")
    # Four workers on two cores: the tests mostly wait on servers and timers (-n 0: serial).
    workers = [] if any(a.startswith("-n") for a in session.posargs) else ["-n", "4"]
    session.run("python", "-m", "pytest", "-m", "not slow", *workers, *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    """The slow fault, crash and load cases (run by .ci/run)."""
    _servers(session)
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-m", "slow", *session.posargs)


# One minor version of pulpcore (pulp_file ships inside it): its sync and content app are
# what the tests of tests/pulpcore drive, through the adapter.
PULPCORE = "pulpcore>=3.123,<3.124"


@nox.session(python="3.11")
def pulpcore(session: nox.Session) -> None:
    """pulp_file syncs as real pulpcore tasks, against a real PostgreSQL, through the adapter;
    then the same cases with pulpcore's own downloaders (what the adapter must match)."""
    _servers(session)
    session.install(PULPCORE, "-e", ".[test,pulpcore]")
    session.run("python", "-m", "pytest", "tests/pulpcore", *session.posargs)
    session.run(
        "python", "-m", "pytest", "tests/pulpcore", "--pulp-downloaders=pulpcore",
        *session.posargs,
    )  # fmt: skip


@nox.session(python="3.11")
def pulpcore_bench(session: nox.Session) -> None:
    """pulp_file syncs, pulpcore's own downloaders against the adapter (benchmarks/README.md)."""
    session.run("sh", ".ci/install-postgres.sh", external=True)
    session.run("sh", ".ci/install-nginx.sh", external=True)
    session.install(PULPCORE, "-e", ".[test,pulpcore]")
    session.run("python", "benchmarks/pulp_sync.py", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the import contract (layers, no cycles)."""
    session.install(RUFF, IMPORT_LINTER)
    paths = ["src", "tests", "benchmarks", "examples", "docs/_hooks", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    # lint-imports reads the sources; it needs the package on the path, not installed.
    session.run("lint-imports", env={"PYTHONPATH": "src"})


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the package."""
    session.install("-e", ".[test]", MYPY, "types-aiofiles", "types-defusedxml")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site, built strict (any warning fails), then its reference checked."""
    session.install("-e", ".[docs]")
    # Material prints a banner about its successor on every build unless told not to.
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", "--clean", "--site-dir", "site", *session.posargs)
    session.run("python", "docs/_hooks/check_site.py", "site")


@nox.session(python="3.11")
def changelog(session: nox.Session) -> None:
    """The next release's changelog: a draft, or ``-- --version X`` writes it to CHANGES.md.

    On a branch other than main it also checks that the branch adds a CHANGES/ fragment.
    """
    session.install("towncrier==26.9.0")
    if session.posargs:
        session.run("towncrier", "build", "--yes", *session.posargs)
        return
    session.run("towncrier", "build", "--draft", "--version", "next")
    branch = subprocess.run(
        ["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    if branch not in ("main", "HEAD", ""):
        session.run("towncrier", "check", "--compare-with", "main")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The benchmark suite against the peers (benchmarks/install.sh installs them)."""
    session.install("-e", ".")
    session.run("bash", "benchmarks/install.sh", external=True)
    session.run("python", "benchmarks/run.py", *session.posargs)
