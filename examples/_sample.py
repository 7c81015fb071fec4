"""Helpers shared by the examples: where the sample repository comes from.

Every example takes the base URL of a Pulp-file-like repository (a directory served over
HTTP with a ``PULP_MANIFEST`` of ``relative_path,sha256,size`` lines). Without one, it
serves a generated sample repository on 127.0.0.1 itself, so it runs offline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from pulp_aio_download.testing import FaultServer
from pulp_aio_download.testing.repo import generate_repository


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("base_url", nargs="?", help="repository URL (default: serve a sample)")
    parser.add_argument("--data-dir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args()
    if args.data_dir is None:
        args.data_dir = Path(tempfile.mkdtemp(prefix="pad-example-"))
    return args


def parse_pulp_manifest(text: str, base_url: str) -> list[tuple[str, str, str, int]]:
    """``(url, relative_path, sha256, size)`` for each line of a PULP_MANIFEST."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    out = []
    for line in text.splitlines():
        if line.strip():
            path, sha256, size = line.rsplit(",", 2)
            out.append((base + path, path, sha256, int(size)))
    return out


@contextlib.asynccontextmanager
async def repository(base_url: str | None) -> AsyncIterator[str]:
    """``base_url``, or the URL of a sample repository served for the duration."""
    if base_url:
        yield base_url
        return
    repo = generate_repository(None, files=40, large=1, large_size=1024 * 1024)
    async with FaultServer() as server:
        yield repo.serve(server, "/sample/")


@contextlib.contextmanager
def repository_in_thread(base_url: str | None) -> Iterator[str]:
    """Like :func:`repository`, for sync code: the server runs on its own thread's loop."""
    if base_url:
        yield base_url
        return
    loop = asyncio.new_event_loop()
    server = FaultServer()
    repo = generate_repository(None, files=40, large=1, large_size=1024 * 1024)
    ready = threading.Event()

    def run() -> None:
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield repo.serve(server, "/sample/")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
