"""A worker process: an engine of its own, fed requests in chunks by the coordinator.

What it says to the parent, over its end of a :func:`multiprocessing.Pipe`:
``("ready", pid)`` once its engine is open, or ``("failed", error)`` when it could not be
opened; ``("outcomes", [(index, outcome), ...])`` as downloads finish (a few milliseconds'
worth at once); ``("progress", active)`` with the transfers streaming now, every progress
interval; ``("close_failed", error)`` when the engine could not be closed cleanly; and
``("closed",)`` last. What it hears: ``("work", [(index, request), ...])``,
``("tidy", sha256s)`` (remove the staging files that dead processes of this host left,
and their claims on those sha256s), ``("stop",)`` (the batch
is complete: close and exit) and ``("cancel",)`` (stop now, cleanly: the engine removes
its staging files and releases its claims). A parent that goes away counts as a cancel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DownloadError
from ..progress import ProgressTracker

if TYPE_CHECKING:
    from ..config import EngineConfig
    from ..engine import DownloadEngine
    from ..models import DownloadRequest, DownloadResult, ProgressReport

__all__ = ["worker_main"]

log = logging.getLogger(__name__)

#: Outcomes sent together at most this often (seconds) or this many at once.
_FLUSH_DELAY = 0.005
_FLUSH_COUNT = 128


def worker_main(conn: Connection, payload: bytes) -> None:
    """The target of a worker process: serve the parent until it says stop."""
    # Ctrl-C is the parent's: it tells every worker to stop, and waits for them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        config, probe_store, log_level, name = pickle.loads(payload)
    except Exception as exc:
        conn.send(
            ("failed", ConfigError(f"a worker process could not load the configuration: {exc}"))
        )
        return
    if log_level < logging.WARNING:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [{name}]: %(message)s")
        )
        root = logging.getLogger("pulp_aio_download")
        root.addHandler(handler)
        root.setLevel(log_level)
    asyncio.run(_Worker(conn, config, probe_store).serve())


def _read(conn: Connection, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Any]) -> None:
    """Hand every message of the parent to the loop; the parent gone counts as a cancel."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = ("cancel",)
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, message)
        except RuntimeError:  # the loop is closed: the worker is exiting
            return
        if message[0] in ("cancel", "stop"):
            return


class _Worker:
    def __init__(self, conn: Connection, config: EngineConfig, probe_store: bool) -> None:
        self.conn = conn
        self.config = config
        self.probe_store = probe_store
        self.parent_gone = False
        self._pending: list[tuple[int, DownloadResult | DownloadError]] = []
        self._flush_handle: asyncio.TimerHandle | None = None

    # -- talking to the parent ---------------------------------------------------------------
    def send(self, message: tuple[Any, ...]) -> None:
        if self.parent_gone:
            return
        try:
            self.conn.send(message)
        except OSError:  # the parent died: nobody wants the rest
            self.parent_gone = True

    def _outcome(self, index: int, outcome: DownloadResult | DownloadError) -> None:
        self._pending.append((index, outcome))
        if len(self._pending) >= _FLUSH_COUNT:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(_FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending:
            pending, self._pending = self._pending, []
            self.send(("outcomes", pending))

    def _progress(self, report: ProgressReport) -> None:
        if report.state == "running":
            self.send(("progress", report.active))

    # -- the work ---------------------------------------------------------------------------
    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        threading.Thread(
            target=_read, args=(self.conn, loop, inbox), name="parent-reader", daemon=True
        ).start()
        from ..engine import DownloadEngine  # here: the parent imports this module too

        engine = DownloadEngine(self.config)
        try:
            await engine.start()
            if self.probe_store:  # a store that does not answer is found now, not per file
                await engine.storage.stat("0" * 64)
        except DownloadError as exc:
            await engine.close()
            self.send(("failed", exc))
            return
        self.send(("ready", os.getpid()))
        tracker = ProgressTracker(self._progress, interval=self.config.progress_interval)
        chunks: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await inbox.get()
                kind = message[0]
                if kind == "work":
                    task = asyncio.ensure_future(self._chunk(engine, tracker, message[1]))
                    chunks.add(task)
                    task.add_done_callback(chunks.discard)
                elif kind == "tidy":
                    await _tidy(engine, message[1])
                elif kind == "stop":
                    await asyncio.gather(*chunks)
                    break
                else:  # cancel
                    for task in chunks:
                        task.cancel()
                    await asyncio.gather(*chunks, return_exceptions=True)
                    break
        finally:
            await tracker.finish()
            self._flush()
            try:
                await engine.close()
            except DownloadError as exc:
                self.send(("close_failed", exc))
            self.send(("closed",))

    async def _chunk(
        self,
        engine: DownloadEngine,
        tracker: ProgressTracker,
        chunk: Sequence[tuple[int, DownloadRequest]],
    ) -> None:
        indices = [index for index, _ in chunk]
        reported = [False] * len(indices)

        def keep(position: int, outcome: DownloadResult | DownloadError) -> None:
            reported[position] = True
            self._outcome(indices[position], outcome)

        try:
            await engine.download_each([r for _, r in chunk], keep, tracker=tracker)
        except DownloadError as exc:  # the chunk was refused as a whole, before any I/O
            for position, request in enumerate(chunk):
                if not reported[position]:
                    keep(position, exc.with_url(request[1].url))
        except Exception as exc:  # a bug: said once, and every file of it answered
            log.exception("a worker failed a chunk of %d files", len(chunk))
            for position, request in enumerate(chunk):
                if not reported[position]:
                    error = DownloadError(f"the worker failed: {type(exc).__name__}: {exc}")
                    keep(position, error.with_url(request[1].url))


async def _tidy(engine: DownloadEngine, sha256s: Sequence[str]) -> None:
    """Remove what dead workers of this host left: their staging files (a local store)
    and their claims on ``sha256s`` (those not released yet when they were killed)."""
    from ..cooperation import release_dead_claims

    clean = getattr(engine.storage, "clean_staging", None)
    if clean is not None:
        try:
            removed = await asyncio.get_running_loop().run_in_executor(None, clean)
        except OSError as exc:
            log.warning("could not remove the staging files of dead workers: %s", exc)
        else:
            if removed:
                log.info("removed %d staging files of dead workers", len(removed))
    if engine.catalog is not None and sha256s:
        try:
            released = await release_dead_claims(engine.catalog, sha256s)
        except DownloadError as exc:
            log.warning("could not release the claims of dead workers: %s", exc)
        else:
            if released:
                log.info("released %d claims of dead workers", released)
