"""Shared fixtures. Fixture plugins live in tests/plugins/ and are loaded automatically."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"plugins.{p.stem}"
    for p in (Path(__file__).parent / "plugins").glob("*.py")
    if not p.stem.startswith("_")
)
