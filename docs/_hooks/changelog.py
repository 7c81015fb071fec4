"""MkDocs hook: the changelog page is CHANGES.md with the unreleased fragments on top.

``docs/changelog.md`` is only a ``<!-- changelog -->`` marker, replaced by ``CHANGES.md``
(the released versions, written by ``towncrier build``) with the output of
``towncrier build --draft`` (the entries of ``CHANGES/`` that no release has gathered
yet) inserted where towncrier would put them. Every change is written once, as a
fragment, and shown as soon as it lands.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- changelog -->"
START = "[//]: # (towncrier release notes start)\n"
PAGE = "changelog.md"


def unreleased_markdown() -> str:
    """The fragments in ``CHANGES/`` rendered as the next version's section."""
    fragments = [p for p in (ROOT / "CHANGES").iterdir() if not p.name.startswith(".")]
    if not fragments:
        return "## Unreleased\n\nNo changes since the last release.\n"
    proc = subprocess.run(
        [sys.executable, "-m", "towncrier", "build", "--draft", "--version", "Unreleased"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"towncrier build --draft failed:\n{proc.stdout}{proc.stderr}")
    text = proc.stdout
    start = text.find("## Unreleased")
    if start < 0:
        raise RuntimeError(f"unexpected towncrier draft:\n{text}")
    # The date towncrier puts in the title is the build's, not a release's.
    return re.sub(r"^## Unreleased \(.*?\)$", "## Unreleased", text[start:], count=1, flags=re.M)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs event: fill the changelog page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its {MARKER} marker")
    changes = (ROOT / "CHANGES.md").read_text(encoding="utf-8")
    if START not in changes:
        raise ValueError(f"CHANGES.md lost its start line {START.strip()!r}")
    head, _, released = changes.partition(START)
    page_text = f"{head}{START}\n{unreleased_markdown()}\n{released}"
    return markdown.replace(MARKER, page_text)
