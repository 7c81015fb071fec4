"""One :class:`~pulp_aio_download.DownloadEngine` per event loop of the process.

Every pulpcore ``Remote`` downloading on a loop shares that loop's engine (one connector,
one global connection limit); each distinct set of remote settings is one named
:class:`~pulp_aio_download.RemoteConfig` added to it. Nothing here imports pulpcore.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import weakref
from collections.abc import Callable, Hashable

from ...config import EngineConfig, RemoteConfig
from ...engine import DownloadEngine

__all__ = ["LoopEngine", "close_engines", "engine_for_running_loop"]

log = logging.getLogger(__name__)


class LoopEngine:
    """The engine of one event loop and the remotes it serves, by their settings."""

    def __init__(self, config: EngineConfig) -> None:
        self.engine = DownloadEngine(config)
        self._started: asyncio.Task[None] | None = None
        self._names: dict[Hashable, str] = {}
        self._numbers = itertools.count(1)
        self._adding = asyncio.Lock()

    async def started(self) -> DownloadEngine:
        """The engine, started once (concurrent callers wait for the same start)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self.engine.start())
        await asyncio.shield(self._started)
        return self.engine

    async def remote(self, key: Hashable, label: str, build: Callable[[str], RemoteConfig]) -> str:
        """The name of the remote whose settings are ``key`` (built and added once)."""
        name = self._names.get(key)
        if name is not None:
            return name
        async with self._adding:
            name = self._names.get(key)
            if name is None:
                name = f"{label}#{next(self._numbers)}"
                await self.engine.add_remote(build(name))
                self._names[key] = name
            return name


_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopEngine] = (
    weakref.WeakKeyDictionary()
)


def engine_config() -> EngineConfig:
    """The settings of a loop's engine: nothing stored (every file is handed off), no
    catalog, no resumable partials."""
    return EngineConfig(partial_min_size=None)


def engine_for_running_loop() -> LoopEngine:
    """The engine of the running loop (created on first use)."""
    loop = asyncio.get_running_loop()
    entry = _engines.get(loop)
    if entry is None:
        entry = _engines[loop] = LoopEngine(engine_config())
    return entry


async def close_engines() -> None:
    """Close the engine of the running event loop, if it has one. A later download on
    this loop starts a new engine."""
    entry = _engines.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry.engine.close()


def _close_at_exit() -> None:
    """Close every engine left open, whatever state its loop is in, without error."""
    for loop, entry in list(_engines.items()):
        _engines.pop(loop, None)
        try:
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(entry.engine.close())
            else:  # its loop is gone: close what can be closed in a fresh one
                with contextlib.suppress(Exception):
                    asyncio.run(entry.engine.close())
        except Exception as exc:  # at exit nothing is left to report it to
            log.debug("closing a download engine at exit failed: %s", exc)


atexit.register(_close_at_exit)
