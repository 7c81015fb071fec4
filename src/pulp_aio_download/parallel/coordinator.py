"""The parent of a batch over several worker processes: it hands out the work, merges
outcomes and progress, and handles Ctrl-C, failures and workers that die (see the
package's docstring for how the work is distributed)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..config import EngineConfig
from ..errors import ConfigError, DownloadError
from ..models import ActiveTransfer, DownloadRequest, DownloadResult
from ..progress import ProgressTracker, plural, was_retried
from .child import worker_main
from .plan import default_workers, encode_config, prepare_request, worker_configs

__all__ = ["OutcomeCallback", "WorkersDidNotStart", "run_parallel"]

log = logging.getLogger(__name__)

OutcomeCallback = Callable[[int, "DownloadResult | DownloadError"], Any]

#: Seconds the workers get to stop cleanly once told to (then they are killed).
STOP_TIMEOUT = 60.0

#: Workers that may die holding one request before it is reported failed.
_DEATHS_ALLOWED = 1


class WorkersDidNotStart(Exception):
    """No worker process could open its engine (the storage or the catalog): nothing was
    downloaded. ``error`` is the first worker's :class:`DownloadError`."""

    def __init__(self, error: DownloadError) -> None:
        super().__init__(str(error))
        self.error = error


async def run_parallel(
    items: Sequence[str | DownloadRequest],
    config: EngineConfig,
    workers: int,
    callback: OutcomeCallback,
    *,
    return_exceptions: bool = True,
    probe_store: bool = False,
    recap: bool = False,
) -> None:
    """Download ``items`` with ``workers`` engine processes, handing each outcome to
    ``callback(index, outcome)`` as it arrives (in the parent, on its event loop). Every
    item is checked first, as one engine would (:func:`.plan.prepare_request`).

    ``config`` is that of one engine: its limits are split between the workers
    (:func:`.plan.worker_configs`), its progress callback receives the merged reports.
    With ``return_exceptions`` False the first failure is raised once every worker has
    stopped. ``probe_store``: a worker whose store does not answer counts as one that could
    not start. ``recap``: ``workers`` is the default count (:func:`.plan.default_workers`),
    to be capped again by what is left once the stored files are served. A cancellation
    (Ctrl-C) stops every worker cleanly before it propagates.

    Raises:
        ConfigError: an invalid request, or a configuration that cannot cross to a
            worker process; before any worker starts.
        WorkersDidNotStart: no worker could open its engine.
        DownloadError: without ``return_exceptions``, the first failure; or an engine
            that could not be closed cleanly (its catalog writes).
    """
    requests = [prepare_request(item, config) for item in items]
    if not requests:
        return
    tracker = ProgressTracker(
        config.progress,
        message=f"Downloading {plural(len(requests), 'file')}",
        interval=config.progress_interval,
    )
    # What is stored is served here first: a re-sync of a stored repository needs no worker.
    rest = await _serve_stored(requests, config, callback, tracker)
    if not rest:
        await tracker.finish()
        return
    subset = [requests[i] for i in rest]
    if recap:
        workers = min(workers, default_workers(len(subset), config.max_connections))

    metrics = None
    if config.meter_provider is not None:  # the workers cannot report: count here
        from ..metrics import EngineMetrics

        metrics = EngineMetrics(config.meter_provider, lambda: None, dict)

    def outcome(index: int, result: DownloadResult | DownloadError) -> Any:
        if metrics is not None:
            if isinstance(result, DownloadError):
                metrics.failed(subset[index], result)
            else:
                metrics.downloaded(subset[index], result)
        return callback(rest[index], result)

    try:
        await _Coordinator(
            subset, config, workers, outcome, return_exceptions, probe_store, tracker
        ).run()
    finally:
        if metrics is not None:
            metrics.close()


async def _serve_stored(
    requests: Sequence[DownloadRequest],
    config: EngineConfig,
    callback: OutcomeCallback,
    tracker: ProgressTracker,
) -> list[int]:
    """Serve in this process the requests whose files are stored and valid
    (:meth:`DownloadEngine.serve_stored`); the indices of the others, for the workers (all
    of them when this process cannot open the engine: the workers then say why)."""
    from ..engine import DownloadEngine

    if config.storage is None and config.data_dir is None:
        return list(range(len(requests)))  # each engine's fresh temporary store is empty
    # A copy, as a worker gets it: the configured storage and catalog objects stay unopened
    # (an opened one cannot be pickled for the workers).
    try:
        copy = dataclasses.replace(config, progress=None, meter_provider=None)
        own = pickle.loads(pickle.dumps(copy, pickle.HIGHEST_PROTOCOL))
        own = dataclasses.replace(own, meter_provider=config.meter_provider)
    except Exception:  # the coordinator then names what cannot cross to a worker
        return list(range(len(requests)))
    try:
        async with DownloadEngine(own) as engine:
            return await engine.serve_stored(requests, callback, tracker=tracker)
    except DownloadError as exc:
        log.debug("files already stored are not served before the workers start: %s", exc)
        return list(range(len(requests)))


class _Remote:
    """A transfer streaming in a worker, as the parent's tracker sees it."""

    __slots__ = ("expected_size", "size", "url")

    def __init__(self, transfer: ActiveTransfer) -> None:
        self.url = transfer.url
        self.size = transfer.bytes_done
        self.expected_size = transfer.bytes_total


class _Handle:
    """One worker process, as the coordinator sees it."""

    def __init__(self, number: int, process: BaseProcess, conn: Connection, share: int) -> None:
        self.number = number
        self.process = process
        self.conn = conn
        self.window = max(8, 4 * share)
        self.outstanding: dict[int, None] = {}
        self.given: list[int] = []  # every request it was sent
        self.state = "starting"  # then "ready", and "gone" once its pipe is closed
        self.closed = False  # it said goodbye: an exit, not a death
        self.error: DownloadError | None = None

    def __repr__(self) -> str:
        return f"worker {self.number} (pid {self.process.pid})"


def _relay(handle: _Handle, loop: asyncio.AbstractEventLoop, events: asyncio.Queue[Any]) -> None:
    """Hand every message of one worker to the loop, then ``("eof",)`` when it is gone."""
    while True:
        try:
            message = handle.conn.recv()
        except (EOFError, OSError):
            message = ("eof",)
        except Exception as exc:  # a message that cannot be read: the worker is lost to us
            log.warning("%r sent a message that cannot be read: %s", handle, exc)
            message = ("eof",)
        try:
            loop.call_soon_threadsafe(events.put_nowait, (handle, message))
        except RuntimeError:  # the loop is closed
            return
        if message[0] == "eof":
            return


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start a worker with SIGINT ignored, so that it keeps ignoring it: Ctrl-C (which a
    terminal sends to every process of the group) is the parent's to handle."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGINT)
    if old is None:
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _exit_text(process: BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class _Coordinator:
    def __init__(
        self,
        requests: Sequence[DownloadRequest],
        config: EngineConfig,
        workers: int,
        callback: OutcomeCallback,
        return_exceptions: bool,
        probe_store: bool,
        tracker: ProgressTracker | None = None,
    ) -> None:
        self.requests = requests
        self.config = config
        self.callback = callback
        self.return_exceptions = return_exceptions
        self.probe_store = probe_store
        self.group_of: list[int] = []
        self.groups: collections.deque[list[int]] = collections.deque(self._group(requests))
        self.count = max(1, min(workers, len(self.groups)))
        self.queued = len(requests)
        self.remaining = len(requests)
        self.finished = bytearray(len(requests))
        self.deaths: dict[int, int] = {}
        self.handles: list[_Handle] = []
        self.transfers: dict[int, list[_Remote]] = {}
        self.events: asyncio.Queue[tuple[_Handle, tuple[Any, ...]]] = asyncio.Queue()
        self.first_error: DownloadError | None = None
        self.close_error: DownloadError | None = None
        self.ever_ready = False
        self.dead: list[_Handle] = []
        self.stopping = False
        self.tracker = tracker or ProgressTracker(
            config.progress,
            message=f"Downloading {plural(len(requests), 'file')}",
            interval=config.progress_interval,
        )

    def _group(self, requests: Sequence[DownloadRequest]) -> list[list[int]]:
        """The requests by content (sha256, else URL), in the order of first appearance:
        one group goes to one worker, whose engine transfers it once."""
        by_key: dict[str, int] = {}
        groups: list[list[int]] = []
        for index, request in enumerate(requests):
            key = request.sha256 or "url:" + str(request.url)
            number = by_key.setdefault(key, len(groups))
            if number == len(groups):
                groups.append([])
            groups[number].append(index)
            self.group_of.append(number)
        return groups

    # -- the run ----------------------------------------------------------------------------
    async def run(self) -> None:
        configs = worker_configs(self.config, self.count)
        level = logging.getLogger("pulp_aio_download").getEffectiveLevel()
        payloads = [
            encode_config(c, (self.probe_store, level, f"worker {i + 1}"))
            for i, c in enumerate(configs)
        ]
        self.tracker.plan(len(self.requests), sum(r.expected_size or 0 for r in self.requests))
        log.info(
            "%s over %d worker processes, %s connections each",
            plural(len(self.requests), "file"),
            self.count,
            "/".join(str(c.max_connections) for c in configs),
        )
        try:
            try:
                self._spawn(configs, payloads)
                await self._serve()
            except BaseException:
                await self._shutdown(cancel=True)
                raise
            await self._shutdown(cancel=self.first_error is not None)
        finally:
            await self.tracker.finish()
        if self.first_error is not None:
            raise self.first_error
        if self.close_error is not None:
            raise self.close_error

    def _spawn(self, configs: list[EngineConfig], payloads: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        for number, (config, payload) in enumerate(zip(configs, payloads, strict=True), 1):
            ours, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=worker_main,
                args=(theirs, payload),
                name=f"pulp-aio-download worker {number}",
                daemon=True,
            )
            with _sigint_ignored():
                process.start()
            theirs.close()  # its death must close the pipe: our reads then end
            handle = _Handle(number, process, ours, config.max_connections)
            self.handles.append(handle)
            threading.Thread(
                target=_relay, args=(handle, loop, self.events), name=repr(handle), daemon=True
            ).start()

    async def _serve(self) -> None:
        while self.remaining > 0 and self.first_error is None:
            handle, message = await self.events.get()
            self._on(handle, message)

    def _on(self, handle: _Handle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "outcomes":
            for index, outcome in message[1]:
                handle.outstanding.pop(index, None)
                self._deliver(index, outcome)
            self._top_up(handle)
        elif kind == "progress":
            self._show(handle, message[1])
        elif kind == "ready":
            handle.state = "ready"
            self.ever_ready = True
            self._top_up(handle)
        elif kind == "failed":
            handle.error = message[1]
            log.warning("%r could not start: %s", handle, message[1])
        elif kind == "close_failed":
            log.warning("%r could not close its engine cleanly: %s", handle, message[1])
            self.close_error = self.close_error or message[1]
        elif kind == "closed":
            handle.closed = True
        elif kind == "eof":
            self._gone(handle)

    def _deliver(self, index: int, outcome: DownloadResult | DownloadError) -> None:
        if self.finished[index]:
            return
        self.finished[index] = 1
        self.remaining -= 1
        if isinstance(outcome, DownloadError):
            self.tracker.file_failed(retried=was_retried(outcome))
            if not self.return_exceptions and self.first_error is None:
                self.first_error = outcome
        else:
            self.tracker.file_done(
                outcome.size,
                cached=outcome.cached,
                retried=was_retried(outcome),
                carried=outcome.carried,
            )
        self.callback(index, outcome)

    def _show(self, handle: _Handle, active: Sequence[ActiveTransfer]) -> None:
        for old in self.transfers.pop(handle.number, ()):
            self.tracker.end_transfer(old)
        now = [_Remote(transfer) for transfer in active]
        for transfer in now:
            self.tracker.start_transfer(transfer)
        if now:
            self.transfers[handle.number] = now

    # -- handing out work -----------------------------------------------------------------
    def _top_up(self, handle: _Handle) -> None:
        """Fill the worker's window when half of it is done, with the next groups: a share
        of what is queued that shrinks as the queue empties (guided self-scheduling)."""
        if handle.state != "ready" or not self.groups or self.stopping:
            return
        if len(handle.outstanding) > handle.window // 2:
            return
        live = sum(1 for h in self.handles if h.state == "ready")
        target = min(
            handle.window - len(handle.outstanding),
            max(1, math.ceil(self.queued / (2 * live))),
        )
        chunk: list[int] = []
        while self.groups and len(chunk) < target:
            chunk.extend(self.groups.popleft())
        self.queued -= len(chunk)
        for index in chunk:
            handle.outstanding[index] = None
        handle.given.extend(chunk)
        self._send(handle, ("work", [(index, self.requests[index]) for index in chunk]))

    def _send(self, handle: _Handle, message: tuple[Any, ...]) -> None:
        try:
            handle.conn.send(message)
        except OSError:  # it died: its end-of-file is on its way
            pass
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ConfigError(f"a request cannot be sent to a worker process: {exc}") from None

    # -- workers that go ------------------------------------------------------------------
    def _gone(self, handle: _Handle) -> None:
        was = handle.state
        handle.state = "gone"
        self._show(handle, ())
        handle.process.join(1.0)  # its pipe is closed: it is exiting
        if handle.closed:
            return
        how = _exit_text(handle.process)
        if was == "starting" and handle.error is None:
            handle.error = DownloadError(f"{handle!r} {how} before it started")
            log.warning("%r %s before it started", handle, how)
        orphans = list(handle.outstanding)
        handle.outstanding.clear()
        if was == "ready":
            self.dead.append(handle)
            log.warning(
                "%r %s with %s unfinished: the other workers take them over",
                handle,
                how,
                plural(len(orphans), "file"),
            )
        again: dict[int, list[int]] = {}
        for index in orphans:
            self.deaths[index] = self.deaths.get(index, 0) + 1
            if self.deaths[index] > _DEATHS_ALLOWED:
                self._deliver(index, self._lost(index, f"two worker processes died on it ({how})"))
            else:
                again.setdefault(self.group_of[index], []).append(index)
        for group in reversed(list(again.values())):
            self.groups.appendleft(group)
            self.queued += len(group)
        if any(h.state != "gone" for h in self.handles):
            for other in self.handles:
                self._top_up(other)
            return
        if not self.ever_ready:
            first = next(h.error for h in self.handles if h.error is not None)
            raise WorkersDidNotStart(first)
        while self.groups:
            for index in self.groups.popleft():
                self._deliver(index, self._lost(index, f"no worker process is left ({how})"))
        self.queued = 0

    def _lost(self, index: int, why: str) -> DownloadError:
        return DownloadError(f"not downloaded: {why}", url=self.requests[index].url)

    # -- the end ----------------------------------------------------------------------------
    async def _shutdown(self, *, cancel: bool) -> None:
        """Tell every worker to stop (``cancel``: now) and wait until all are gone."""
        self.stopping = True
        live = [h for h in self.handles if h.state != "gone"]
        tidy = bool(self.dead) and not cancel
        for handle in live:
            if tidy and handle.state == "ready":
                sha256s = {self.requests[i].sha256 for dead in self.dead for i in dead.given}
                self._send(handle, ("tidy", sorted(s for s in sha256s if s)))
                tidy = False
            self._send(handle, ("cancel",) if cancel else ("stop",))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        try:
            while any(h.state != "gone" for h in self.handles):
                try:
                    handle, message = await asyncio.wait_for(
                        self.events.get(), max(0.0, deadline - loop.time())
                    )
                except asyncio.TimeoutError:
                    log.warning("workers did not stop within %.0f s: killing them", STOP_TIMEOUT)
                    break
                if message[0] == "eof":
                    handle.state = "gone"
                    self._show(handle, ())
                elif message[0] != "failed":
                    self._on(handle, message)
        finally:
            for handle in self.handles:
                if handle.process.is_alive() and handle.state != "gone":
                    handle.process.kill()
            await loop.run_in_executor(None, self._join_all)

    def _join_all(self) -> None:
        for handle in self.handles:
            handle.process.join(STOP_TIMEOUT)
            if handle.process.is_alive():  # pragma: no cover - a worker that will not die
                handle.process.kill()
                handle.process.join()
            handle.conn.close()
