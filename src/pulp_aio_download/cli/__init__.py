"""The command line: ``pulp-aio-download`` (also ``python -m pulp_aio_download``).

* :mod:`.main` — the entry point and the commands;
* :mod:`.options` — the parser, the data dir, the engine the options describe;
* :mod:`.progress` — the live bar and the JSON progress lines;
* :mod:`.summary` — a batch's summary;
* :mod:`.sources` — what ``sync`` reads: a JSONL manifest (:mod:`.manifest`), a Metalink
  document or a ``PULP_MANIFEST``, from a path or a URL;
* :mod:`.remotes_file` — ``--remotes FILE``;
* :mod:`.demo` — ``demo``: the whole pipeline, offline.

Nothing here is imported by the library.
"""

from __future__ import annotations

from .main import main as main
from .options import build_parser as build_parser
from .options import default_data_dir as default_data_dir
from .summary import summarize as summarize

__all__ = ["build_parser", "default_data_dir", "main", "summarize"]
