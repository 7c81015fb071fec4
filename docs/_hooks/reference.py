"""MkDocs hook: the API reference page, generated from ``pulp_aio_download.__all__``.

``docs/reference.md`` holds the prose; its ``<!-- api -->`` marker is replaced by one
mkdocstrings block (``::: pulp_aio_download.NAME``) per public name, grouped by the module
that defines it. A name added to ``__all__`` appears in the reference with no edit here;
``tests/integration/test_docs.py`` checks that the page lists exactly ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "src" / "pulp_aio_download" / "__init__.py"
MARKER = "<!-- api -->"
PAGE = "reference.md"

# Sections in reading order: (module of the definition, title); modules with the same title
# share a section. A module not listed here gets a section of its own after these, titled
# by its docstring's first line.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("engine", "The engine"),
    ("sync", "Sync helpers"),
    ("models", "Requests, results and records"),
    ("config", "Configuration"),
    ("auth", "Authentication"),
    ("hooks", "Hooks"),
    ("storage", "Storage"),
    ("catalog", "Catalog"),
    ("manifest", "Reading manifests, Metalink and PULP_MANIFEST"),
    ("metalink", "Reading manifests, Metalink and PULP_MANIFEST"),
    ("pulp_manifest", "Reading manifests, Metalink and PULP_MANIFEST"),
    ("errors", "Errors"),
    ("_version", "Version"),
)


def public_names() -> list[str]:
    """``pulp_aio_download.__all__``, as the running package declares it."""
    module = importlib.import_module("pulp_aio_download")
    return list(module.__all__)


def defining_modules() -> dict[str, str]:
    """Public name -> the package module it is imported from in ``__init__.py``.

    Read from the source (no import), so the lazily imported backends (S3, PostgreSQL)
    need none of their optional dependencies. ``from .storage.s3 import S3Storage`` maps
    ``S3Storage`` to ``storage``: the first component names the section.
    """
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                found[alias.asname or alias.name] = node.module.split(".")[0]
    return found


def _section_title(module: str) -> str:
    for name, title in SECTIONS:
        if name == module:
            return title
    imported = importlib.import_module(f"pulp_aio_download.{module}")
    doc = (imported.__doc__ or module).strip().splitlines()[0].rstrip(".").replace("`", "")
    return doc.split(":")[0] if ":" in doc else doc


def _error_order(names: list[str]) -> list[str]:
    """Errors in the order of the tree: each class followed by its subclasses."""
    package = importlib.import_module("pulp_aio_download")
    ordered: list[str] = []

    def walk(cls: type) -> None:
        if cls.__name__ in names and cls.__name__ not in ordered:
            ordered.append(cls.__name__)
        for sub in sorted(cls.__subclasses__(), key=lambda c: c.__name__):
            if sub.__module__.startswith("pulp_aio_download"):
                walk(sub)

    walk(package.DownloadError)
    return ordered + sorted(n for n in names if n not in ordered)


def grouped() -> list[tuple[str, list[str]]]:
    """``[(section title, [public names])]`` covering every name of ``__all__`` once."""
    modules = defining_modules()
    groups: dict[str, list[str]] = {}
    for name in public_names():
        groups.setdefault(modules.get(name, "other"), []).append(name)
    order = [m for m, _ in SECTIONS if m in groups]
    order += sorted(m for m in groups if m not in order)
    sections: dict[str, list[str]] = {}
    for module in order:
        title = "Other" if module == "other" else _section_title(module)
        sections.setdefault(title, []).extend(groups[module])
    out = []
    for title, names in sections.items():
        if title == "Errors":
            names = _error_order(names)
        elif title != "Other":
            names = sorted(names, key=str.lower)
        out.append((title, names))
    return out


def reference_markdown() -> str:
    """The generated part of the reference page."""
    lines: list[str] = []
    for title, names in grouped():
        lines += [f"## {title}", ""]
        for name in names:
            lines += [f"::: pulp_aio_download.{name}", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs event: fill the reference page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lost its {MARKER} marker")
    return markdown.replace(MARKER, reference_markdown())
