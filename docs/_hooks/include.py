"""MkDocs hook: ``<!-- include PATH -->`` includes a Markdown file of the repository, its
headings one level down, so that a page can put its own title and text around it.

Used by the performance page for ``benchmarks/README.md``: the file stays the one source
of those figures (it is not copied), and the page shows it under its charts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_INCLUDE = re.compile(r"^<!-- include (\S+) -->$", re.MULTILINE)


def demoted(text: str) -> str:
    """``text`` with every Markdown heading outside code fences one level deeper."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,5} ", line):
            line = "#" + line
        out.append(line)
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs event: replace every include marker by the file it names."""

    def include(match: re.Match[str]) -> str:
        path = (ROOT / match.group(1)).resolve()
        if not path.is_relative_to(ROOT):
            raise ValueError(f"include outside the repository: {match.group(1)}")
        return demoted(path.read_text(encoding="utf-8"))

    return _INCLUDE.sub(include, markdown)
