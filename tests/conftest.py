"""Shared fixtures. Fixture plugins live in tests/plugins/ and are loaded automatically.

tests/pulpcore needs pulpcore, which only the ``pulpcore`` nox session installs: it is
collected when named on the command line (``pytest tests/pulpcore``), never by a bare run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = sorted(
    f"plugins.{p.stem}"
    for p in (Path(__file__).parent / "plugins").glob("*.py")
    if not p.stem.startswith("_")
)

PULPCORE_TESTS = Path(__file__).parent / "pulpcore"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path != PULPCORE_TESTS:
        return None
    named = (Path(arg.split("::")[0]).resolve() for arg in config.args)
    return not any(path == PULPCORE_TESTS or PULPCORE_TESTS in path.parents for path in named)
