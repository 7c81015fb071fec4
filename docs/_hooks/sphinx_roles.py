"""Griffe extension: the reST bits of our docstrings, as Markdown for mkdocstrings.

The docstrings are Google style with Sphinx roles (``:class:`DownloadError```), which read
well in ``help()`` and in editors. For the site, a role naming a public name of
``pulp_aio_download.__all__`` becomes a cross-reference to its entry in the API
reference; any other role (a private helper, a method, the standard library) becomes
inline code, so no link can point at a page that does not exist. A paragraph ending in
reST's ``::`` ends in ``:`` (the indented block after it is already Markdown code).
"""

from __future__ import annotations

import re
from typing import Any

try:
    from griffe import Extension
except ImportError:  # the test suite checks the conversion without the docs tools
    Extension = object  # type: ignore[assignment,misc]

_ROLE = re.compile(r":(?:py:)?(class|meth|func|mod|attr|data|exc|obj):`([^`]+)`")
_LITERAL_BLOCK = re.compile(r"(\S)::$", re.MULTILINE)


def _public() -> frozenset[str]:
    import pulp_aio_download

    return frozenset(pulp_aio_download.__all__)


class SphinxRoles(Extension):  # type: ignore[misc,valid-type]
    """Rewrite Sphinx roles into autorefs (public names) or inline code (the rest)."""

    def __init__(self) -> None:
        super().__init__()
        self.public = _public()

    def convert(self, text: str) -> str:
        def role(match: re.Match[str]) -> str:
            kind, target = match.group(1), match.group(2).strip()
            short = target.startswith("~")
            path = target.lstrip("~").lstrip(".")
            last = path.rsplit(".", 1)[-1]
            shown = last if short else path
            if kind in ("meth", "func"):
                shown += "()"
            if kind in ("class", "exc", "data", "func") and last in self.public:
                return f"[`{shown}`][pulp_aio_download.{last}]"
            return f"`{shown}`"

        return _LITERAL_BLOCK.sub(r"\1:", _ROLE.sub(role, text))

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = self.convert(obj.docstring.value)
