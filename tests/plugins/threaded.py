"""``threaded_server``: a FaultServer on its own event loop in a thread, for sync code and
subprocesses under test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from pulp_aio_download.testing import FaultServer


@pytest.fixture
def threaded_server() -> Iterator[FaultServer]:
    """A started FaultServer served from a background thread; stopped after the test.

    Register files before the code under test requests them (``add`` is a plain dict
    update, safe from the test thread while the server is idle).
    """
    loop = asyncio.new_event_loop()
    server = FaultServer()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name="threaded-fault-server", daemon=True)
    thread.start()
    assert ready.wait(10), "the threaded FaultServer did not start"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
