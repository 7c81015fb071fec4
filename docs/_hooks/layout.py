"""MkDocs hook: the module layout table of ``docs/architecture.md``, read from ``src/``.

The ``<!-- layout -->`` marker becomes one row per module of the package with the first
paragraph of its docstring, so the page follows the code when modules move.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "pulp_aio_download"
MARKER = "<!-- layout -->"
PAGE = "architecture.md"
_ROLE = re.compile(r":\w+:`~?\.?([^`]+)`")


def _short(target: str) -> str:
    """``pulp_aio_download.config.RemoteConfig.auth`` -> ``RemoteConfig.auth``."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part[:1].isupper():
            return ".".join(parts[i:])
    return parts[-1]


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    # The first paragraph, which may span lines.
    first = " ".join(doc.strip().split("\n\n", 1)[0].split())
    first = _ROLE.sub(lambda m: f"`{_short(m.group(1))}`", first)
    return first.replace("``", "`").replace("|", "\\|")


def layout_markdown() -> str:
    """``| module | what it is |`` for every module of the package."""
    rows = ["| module | what it is |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py"), key=lambda p: p.relative_to(PACKAGE).parts):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name in ("_version.py", "__main__.py"):
            continue
        rows.append(f"| `{relative}` | {_summary(path)} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs event: fill the layout table."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its {MARKER} marker")
    return markdown.replace(MARKER, layout_markdown())
