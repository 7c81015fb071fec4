"""MkDocs hook: the option tables of ``docs/cli.md``, read from the command line's parser.

``<!-- options: COMMAND -->`` (``get``, ``sync``, ``catalog show``..., or ``common`` for
the options every command shares) becomes a table of that command's arguments and options
with their defaults and help, taken from ``pulp_aio_download.cli.build_parser()``: an
option added to the command line is in its reference with no edit here.
``tests/integration/test_docs.py`` checks that every command has its table.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

MARKER = re.compile(r"^<!-- options: ([a-z ]+) -->$", re.MULTILINE)
PAGE = "cli.md"
COMMON = "common options"


def _parser() -> argparse.ArgumentParser:
    from pulp_aio_download.cli import build_parser

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command (``"catalog show"`` for the nested ones) and its parser."""
    out: dict[str, argparse.ArgumentParser] = {}
    for name, sub in _subcommands(_parser()).items():
        nested = _subcommands(sub)
        if nested:
            out.update({f"{name} {n}": p for n, p in nested.items()})
        else:
            out[name] = sub
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{(action.metavar or action.dest).upper()}`"
    value = ""
    if action.nargs != 0:
        if action.metavar is not None:
            value = f" {action.metavar}"
        elif action.choices is not None:
            value = " " + "\\|".join(map(str, action.choices))
        else:
            value = f" {action.dest.upper()}"
    return ", ".join(f"`{option}{value}`" for option in action.option_strings)


def _meaning(action: argparse.Action) -> str:
    text = _cell(action.help or "")
    shown = action.option_strings and action.nargs != 0
    if shown and action.default not in (None, [], ()) and "default" not in text:
        text += f" (default: `{action.default}`)"
    return text


def _rows(actions: list[argparse.Action]) -> list[str]:
    rows = ["| argument | meaning |", "|---|---|"]
    for action in actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        rows.append(f"| {_name(action)} | {_meaning(action)} |")
    return rows


def options_table(command: str) -> str:
    """The table of ``command`` (its own arguments, not the common options), or of
    ``"common"``."""
    parsers = commands()
    if command == "common":
        groups = [g for g in parsers["get"]._action_groups if g.title == COMMON]
        return "\n".join(_rows(groups[0]._group_actions)) + "\n"
    if command not in parsers:
        raise ValueError(f"docs/{PAGE}: no command {command!r} (known: {', '.join(parsers)})")
    actions = [
        action
        for group in parsers[command]._action_groups
        if group.title != COMMON
        for action in group._group_actions
    ]
    return "\n".join(_rows(actions)) + "\n"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs event: fill the option tables."""
    if page.file.src_uri != PAGE:
        return markdown
    return MARKER.sub(lambda m: options_table(m.group(1)), markdown)
