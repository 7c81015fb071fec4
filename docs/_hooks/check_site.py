"""Check the built site: the API reference documents exactly ``pulp_aio_download.__all__``.

Run by ``nox -s docs`` after ``mkdocs build``: ``python docs/_hooks/check_site.py site``.
Each public name must have its own entry (a heading whose id is
``pulp_aio_download.NAME``), and no other top-level entry may appear.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pulp_aio_download

_ENTRY = re.compile(r'<h3[^>]*\bid="pulp_aio_download\.([A-Za-z_][A-Za-z0-9_]*)"')


def documented(site: Path) -> set[str]:
    """The names with a top-level entry on the reference page of the built ``site``."""
    page = site / "reference" / "index.html"
    return set(_ENTRY.findall(page.read_text(encoding="utf-8")))


def main(argv: list[str]) -> int:
    site = Path(argv[1] if len(argv) > 1 else "site")
    found = documented(site)
    wanted = set(pulp_aio_download.__all__)
    missing, extra = sorted(wanted - found), sorted(found - wanted)
    if missing or extra:
        print(f"API reference: missing {missing}, not in __all__ {extra}", file=sys.stderr)
        return 1
    print(f"API reference: {len(found)} entries, exactly pulp_aio_download.__all__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
