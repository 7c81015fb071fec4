"""The download engine: one shared connector, one global limit, the whole pipeline.

::

    DownloadRequest ─► DownloadEngine ─► source selection ─► transport (http | file)
                         │  global connector + semaphore        │ chunks
                         │  per-remote session/limits            ▼
                         │                                  HashingWriter ─► staging file
                         ▼                                       │ validate size/digests
                     hook chain: store ─► record unit file ─► unit/repository ─► progress
                                 (─► the plugin's own hooks, anywhere in the chain)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .admission import Admission
from .config import EngineConfig, RemoteConfig
from .cooperation import Cooperation, resolve_claim_lease
from .errors import (
    AllSourcesFailed,
    CatalogError,
    ConfigError,
    DownloadError,
    HookError,
    StorageError,
)
from .hooks import DEFAULT_HOOKS, DownloadContext, Hook, run_hooks, store
from .lookup import Found, Lookahead, look_up
from .metrics import EngineMetrics
from .mirrors import MirrorSet, resolve_mirrors
from .models import (
    DownloadRequest,
    DownloadResult,
    Source,
    UnitFile,
    VerifyReport,
)
from .progress import ProgressTracker, plural, was_retried
from .selection import order_sources
from .storage.partials import PartialStore
from .transfer import TransferStage
from .transfer.staged import Staged
from .transfer.stream import DownloadStream
from .transports.base import Transport
from .transports.file import resolve_file_url
from .transports.pool import TransportPool
from .urls import redact_url

if TYPE_CHECKING:
    import aiohttp

    from .admission.limits import RemoteLimiterStatistics
    from .catalog.base import Catalog
    from .storage.base import Storage, StoredArtifact

__all__ = ["DownloadEngine", "EngineStatistics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    """An immutable snapshot of the engine's activity."""

    in_flight: int
    transfers: int
    waiting: int
    max_connections: int
    host_limits: Mapping[str, int]
    #: every global slot is held (by transfers or by requests of ``session()``).
    saturated: bool = False
    #: the per-remote limiters, by remote name (those used so far).
    remotes: Mapping[str, RemoteLimiterStatistics] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one batch (``download_each``, a ``verify`` run, or an engine's loose
    ``download()`` calls) shares: its progress tracker, and the sha256s it stored of those
    its lookup had found absent (a later copy in the batch is then served, not fetched)."""

    tracker: ProgressTracker
    stored: set[str] = field(default_factory=set)
    #: the sha256s of up to n files of at most m bytes this batch transfers next
    #: (claims for a window)
    coming: Callable[[int, int], Sequence[str]] | None = None


class DownloadEngine:
    """Fetch, validate, store and record files.

    Use as an async context manager::

        async with DownloadEngine(EngineConfig(data_dir="data")) as engine:
            result = await engine.download(
                "https://host/x.rpm", expected_digests={"sha256": "…"}, expected_size=1234
            )

    All remotes share one ``aiohttp.TCPConnector`` (``max_connections`` in total,
    ``max_connections_per_host`` per host) and one global semaphore; each remote has its
    own ``aiohttp.ClientSession`` on that connector, with its own limits on top.

    Args:
        config: the :class:`EngineConfig` (defaults: temporary storage, no catalog).
        transport: what every transfer opens its responses with, instead of the engine's
            own pool of HTTP and ``file://`` transports: a test's
            :class:`~pulp_aio_download.testing.FakeTransport`, say. :meth:`session`
            still hands out real ``aiohttp`` sessions.
    """

    def __init__(
        self, config: EngineConfig | None = None, *, transport: Transport | None = None
    ) -> None:
        self.config = config or EngineConfig()
        self._storage: Storage | None = self.config.storage
        self._catalog: Catalog | None = self.config.catalog
        self._pool = TransportPool(self.config)
        self._transport: Transport = transport if transport is not None else self._pool
        self._stage: TransferStage | None = None
        self._inflight: dict[tuple[str, ...], asyncio.Future[DownloadResult]] = {}
        self._loose: _Batch | None = None
        self._started = False
        self._closed = False
        self._file_roots = tuple(Path(r) for r in self.config.allowed_file_roots)
        self._cooperation: Cooperation | None = None
        self._partials: PartialStore | None = None
        #: the OpenTelemetry instruments (None: no meter provider, nothing to do per file).
        self._metrics: EngineMetrics | None = None
        if self.config.meter_provider is not None:
            self._metrics = EngineMetrics(
                self.config.meter_provider, self.statistics, lambda: self._admission.health
            )
        self._admission = Admission(self.config, observer=self._metrics)
        self._mirrors = MirrorSet()

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> DownloadEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open storage and catalog. Called by ``async with``."""
        if self._started:
            return
        self._started = True
        cfg = self.config
        if self._storage is None:
            from .storage.local import LocalStorage
            from .storage.temp import TempStorage

            data_dir = Path(cfg.data_dir) if cfg.data_dir is not None else None
            if data_dir is not None:
                self._storage = LocalStorage(data_dir / "artifacts")
            else:  # it makes its directory: not on the event loop
                self._storage = await asyncio.get_running_loop().run_in_executor(None, TempStorage)
        if any(remote.rate_limit for remote in cfg.remotes.values()):
            # aiolimiter reads its package metadata when first imported: not on the loop.
            await asyncio.to_thread(importlib.import_module, "aiolimiter")
        if self._catalog is None and cfg.data_dir is not None:
            from .catalog.sqlite import SQLiteCatalog

            self._catalog = SQLiteCatalog(Path(cfg.data_dir) / "catalog.sqlite3")
        try:
            await self._storage.open()
            self._partials = await self._open_partials(self._storage)
            if self._catalog is not None:
                await self._catalog.open()
                health = await self._catalog.load_health()
                self._admission = Admission(cfg, health, observer=self._metrics)
                lease = resolve_claim_lease(cfg.claim_lease)
                if lease > 0:
                    self._cooperation = Cooperation(self._catalog, lease=lease)
            self._mirrors = await resolve_mirrors(cfg.remotes.values(), self.session)
            self._stage = TransferStage(
                transport=self._transport,
                admission=self._admission,
                storage=self._storage,
                partials=self._partials,
                chunk_size=cfg.chunk_size,
            )
        except BaseException:
            await self.close()
            raise

    async def _open_partials(self, storage: Storage) -> PartialStore | None:
        """The store of resumable partials, pruned of stale ones (None: resume across
        processes is off, or the storage has no place for partials)."""
        cfg = self.config
        directory = storage.partials_dir()
        if cfg.partial_min_size is None or directory is None:
            return None
        if getattr(storage, "read_only", False):  # nothing is downloaded into it
            return None
        partials = PartialStore(
            directory,
            min_size=cfg.partial_min_size,
            max_age=cfg.partial_max_age,
            max_bytes=cfg.partial_max_bytes,
            sync=getattr(storage, "durability", "file") != "none",
        )
        try:
            await asyncio.get_running_loop().run_in_executor(None, partials.prune)
        except OSError as exc:  # a read-only data dir: verify and catalog still work
            log.debug("partial downloads in %s are not available: %s", directory, exc)
            return None
        return partials

    async def close(self) -> None:
        """Close sessions, the connector, the catalog and storage; send the final progress
        report. Stored files stay."""
        if self._closed:
            return
        self._closed = True
        if self._metrics is not None:
            self._metrics.close()
        try:
            if self._loose is not None:
                await self._loose.tracker.finish()
            changed = self._admission.changed_health()
            if self._catalog is not None and changed:
                with contextlib.suppress(Exception):
                    await self._catalog.save_health(changed)
        finally:
            await self._pool.close()
            if self._transport is not self._pool:
                await self._transport.close()
            if self._cooperation is not None:
                await self._cooperation.aclose()
            if self._catalog is not None:
                await self._catalog.close()
            if self._storage is not None:
                await self._storage.close()

    @property
    def storage(self) -> Storage:
        """The storage backend (available once started)."""
        if self._storage is None:
            raise RuntimeError("the engine is not started: use 'async with DownloadEngine(...)'")
        return self._storage

    @property
    def catalog(self) -> Catalog | None:
        """The catalog, or None when the engine records nothing."""
        return self._catalog

    def _require_open(self) -> None:
        if not self._started:
            raise RuntimeError("the engine is not started: use 'async with DownloadEngine(...)'")
        if self._closed:
            raise RuntimeError("the engine is closed")

    # -- connections ------------------------------------------------------------------------
    def session(self, name: str = "default") -> aiohttp.ClientSession:
        """The ``aiohttp.ClientSession`` of remote ``name``, on the shared connector.

        Every request made through it gets the remote's whole network policy, as the
        engine's own transfers do: TLS settings, proxy (and proxy credentials), basic
        credentials or the ``auth`` object (a bearer challenge is answered and the request
        sent again), headers, user agent, timeouts, and the global, per-remote and per-host
        connection limits (a slot is held until the response is released). Credentials go
        only to the origin of the URL requested, never after a redirect to another origin,
        and never over an ``Authorization`` header the caller passes.

        It is for metadata (``repomd.xml``, ``Packages``, manifests): responses are not
        validated, stored or retried; bytes come as served (``Accept-Encoding: identity``,
        never auto-decompressed); aiohttp follows redirects; aiohttp's exceptions are
        raised as they are, except that a failing auth challenge (the token realm down or
        refusing) raises a :class:`DownloadError`. The engine owns and closes it.

        Example::

            async with engine.session("fedora").get(f"{base}/repodata/repomd.xml") as resp:
                resp.raise_for_status()
                text = await resp.text()
        """
        self._require_open()
        remote = self.config.remote(name)
        return self._pool.session(remote, functools.partial(self._admission.limiters, remote))

    async def add_remote(self, remote: RemoteConfig) -> None:
        """Serve one more remote from now on, as if it had been in ``EngineConfig.remotes``.

        For a caller whose remotes are not all known when the engine is built (the pulpcore
        adapter turns each pulpcore ``Remote`` into one). Adding an equal ``RemoteConfig``
        again does nothing; a remote's settings never change under its name (give edited
        settings a new name), so a name already taken by other settings is a ConfigError.
        """
        known = self.config.remotes.get(remote.name)
        if known is not None:
            if known != remote:
                raise ConfigError(f"remote {remote.name!r} is already configured differently")
            return
        if remote.rate_limit:
            # aiolimiter reads its package metadata when first imported: not on the loop.
            await asyncio.to_thread(importlib.import_module, "aiolimiter")
        remotes = self.config.remotes
        assert isinstance(remotes, dict)  # EngineConfig keeps its own dict copy
        remotes[remote.name] = remote
        await resolve_mirrors([remote], self.session, self._mirrors)

    def stream(
        self, url_or_request: str | DownloadRequest | Source, *, store: bool = False, **kwargs: Any
    ) -> contextlib.AbstractAsyncContextManager[DownloadStream]:
        """The body of one download as it arrives, for a caller that serves the bytes on.

        ``async with engine.stream(url, expected_digests=..., store=True) as s:`` enters once
        the response headers are in (``s.status``, ``s.headers``, ``s.url``), after the
        engine's admission, source choice and retries before the first byte; ``async for
        chunk in s`` yields the body under the same limits, stall detection and bandwidth
        caps as a download, and after the last chunk raises :class:`DigestMismatch` or
        :class:`SizeMismatch` if the bytes are wrong. Nothing is retried once a chunk was
        handed out. With ``store=True`` the same bytes are stored and recorded as
        :meth:`download` would (``s.result``), and a concurrent download or stream of that
        sha256 waits for this transfer and is served from the store. A file already stored
        is streamed from the store (``s.cached``). A ``Range`` in ``headers`` passes
        through: the ``206`` comes as served, and then nothing is validated or stored.
        See :class:`~pulp_aio_download.transfer.stream.DownloadStream`.
        """
        self._require_open()
        request = self._make_request(url_or_request, kwargs, whole_file=False)
        return self._stream(request, store)

    @contextlib.asynccontextmanager
    async def _stream(self, request: DownloadRequest, store: bool) -> AsyncIterator[DownloadStream]:
        assert self._stage is not None
        await self._check_files([request])
        ranged = any(k.lower() in _WHOLE_FILE for k in request.headers)
        stream = DownloadStream(request, validate=not ranged)
        batch = self._loose_batch()
        sha = None if ranged else request.sha256
        future: asyncio.Future[DownloadResult] | None = None
        try:
            if sha is not None:
                leader = self._inflight.get(("sha256", sha)) if store else None
                if leader is not None:  # one transfer: wait for it, then serve the store
                    with contextlib.suppress(DownloadError):
                        await asyncio.shield(leader)
                cached = await self._serve_cached(request, sha, batch)
                if cached is not None and cached.path is not None:
                    await stream.open_file(cached.path, cached)
                    yield stream
                    return
                if store and self._inflight.get(("sha256", sha)) is None:
                    future = asyncio.get_running_loop().create_future()
                    self._inflight[("sha256", sha)] = future
            sources = [
                (source, self.config.remote(source.remote or request.remote))
                for source in order_sources(
                    request.sources, self._admission.health, now=time.time()
                )
            ]
            commit = (
                functools.partial(self._commit_streamed, request, batch)
                if store and not ranged
                else None
            )
            await stream.open_network(self._stage, sources, batch.tracker, commit)
            yield stream
        except DownloadError as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()
            if store and not ranged and not stream.cached and self._metrics is not None:
                self._metrics.failed(request, exc)  # counted as a download() would be
            raise
        finally:
            await asyncio.shield(stream.aclose())
            if future is not None:
                if not future.done():
                    if stream.result is not None:
                        future.set_result(stream.result)
                    else:  # left early: whoever waits transfers it itself
                        future.set_exception(
                            DownloadError("the stream of this file ended early", url=request.url)
                        )
                        future.exception()
                if self._inflight.get(("sha256", sha or "")) is future:
                    del self._inflight[("sha256", sha or "")]

    async def _commit_streamed(
        self, request: DownloadRequest, batch: _Batch, staged: Staged, source: Source
    ) -> DownloadResult:
        batch.tracker.add(1, request.expected_size)
        result = await self._commit(request, source, staged, batch)
        if self._metrics is not None:
            self._metrics.downloaded(request, result)
        return result

    def statistics(self) -> EngineStatistics:
        """A snapshot: downloads in flight, transfers holding a slot, per-host limits."""
        admitted = self._admission.statistics()
        return EngineStatistics(
            in_flight=len(self._inflight),
            transfers=admitted.transfers,
            waiting=max(0, len(self._inflight) - admitted.transfers),
            max_connections=self.config.max_connections,
            host_limits=admitted.host_limits,
            saturated=admitted.saturated,
            remotes=admitted.remotes,
        )

    # -- progress ---------------------------------------------------------------------------
    def _loose_batch(self) -> _Batch:
        """The batch of the engine's loose ``download()`` calls (reported at close)."""
        if self._loose is None:
            self._loose = _Batch(
                ProgressTracker(self.config.progress, interval=self.config.progress_interval)
            )
        return self._loose

    # -- requests ----------------------------------------------------------------------------
    def _make_request(
        self,
        url_or_request: str | DownloadRequest | Source,
        kwargs: Mapping[str, Any],
        *,
        whole_file: bool = True,
    ) -> DownloadRequest:
        if isinstance(url_or_request, DownloadRequest):
            if kwargs:
                raise ConfigError("pass either a DownloadRequest or keyword arguments, not both")
            request = url_or_request
        elif isinstance(url_or_request, (str, Source)):
            try:
                request = DownloadRequest(
                    url_or_request if isinstance(url_or_request, str) else None,
                    sources=[url_or_request] if isinstance(url_or_request, Source) else (),
                    **kwargs,
                )
            except TypeError as exc:
                raise ConfigError(f"invalid download arguments: {exc}") from None
        else:
            raise ConfigError(f"expected a URL or a DownloadRequest, got {url_or_request!r}")
        return self._check(request, whole_file=whole_file)

    def _check(self, request: DownloadRequest, *, whole_file: bool = True) -> DownloadRequest:
        """``request`` with the engine's ``compute_digests``; ConfigError for a remote
        that is not configured or, with ``whole_file``, a ``Range`` header (a download is
        of the whole file; :meth:`stream` passes a range through)."""
        if request.relative_path is not None:  # one source per mirror of its remote
            request = self._mirrors.expand(request, self.config.remote(request.remote).name)
        for source in request.sources:
            self.config.remote(source.remote or request.remote)
        if (
            whole_file
            and request.headers
            and any(k.lower() in _WHOLE_FILE for k in request.headers)
        ):
            raise ConfigError(
                "a download is of the whole file: use engine.stream() for a Range request",
                url=request.url,
            )
        extra = self.config.compute_digests
        if extra and not set(extra) <= set(request.compute_digests):
            merged = (*request.compute_digests, *extra)
            request = dataclasses.replace(request, compute_digests=merged)
        return request

    async def _check_files(self, requests: Iterable[DownloadRequest]) -> None:
        """Refuse ``file://`` sources outside the allowed roots (ConfigError), resolving
        their paths in a worker thread: symbolic links are read from the filesystem."""
        items = list(requests)
        urls = [s.url for r in items for s in r.sources if s.scheme == "file"]
        if urls:
            roots = self._file_roots
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: [resolve_file_url(url, roots) for url in urls]
            )
        handoff = {r.handoff_dir: r.url for r in items if r.handoff_dir is not None}
        if handoff:
            await asyncio.get_running_loop().run_in_executor(None, _check_handoff_dirs, handoff)

    async def download(
        self, url_or_request: str | DownloadRequest | Source, **kwargs: Any
    ) -> DownloadResult:
        """Download one file through the whole pipeline.

        Args:
            url_or_request: a URL, a :class:`Source` or a :class:`DownloadRequest`.
            **kwargs: :class:`DownloadRequest` fields when a URL is given
                (``expected_digests``, ``expected_size``, ``remote``, ``unit``, ...).

        Returns:
            The :class:`DownloadResult`; ``cached=True`` when the expected sha256 was
            already stored (no network I/O).

        Raises:
            ConfigError: invalid request, before any I/O.
            DownloadError: any failure; with several sources, :class:`AllSourcesFailed`.
        """
        self._require_open()
        request = self._make_request(url_or_request, kwargs)
        await self._check_files([request])
        return await self._download_one(request, self._loose_batch())

    async def _download_one(
        self, request: DownloadRequest, batch: _Batch, found: Found | None = None
    ) -> DownloadResult:
        """One file; ``found``: what a batch lookup found of its sha256 (None: unknown)."""
        tracker = batch.tracker
        tracker.add(1, request.expected_size)
        try:
            result = await self._single_flight(request, batch, found)
        except DownloadError as exc:
            tracker.file_failed(retried=was_retried(exc))
            if self._metrics is not None:
                self._metrics.failed(request, exc)
            if exc.url is None:  # a shared part (catalog, storage) does not know the file
                raise exc.with_url(request.url) from exc
            raise
        if self._metrics is not None:
            self._metrics.downloaded(request, result)
        return result

    async def _single_flight(
        self, request: DownloadRequest, batch: _Batch, found: Found | None
    ) -> DownloadResult:
        sha = request.sha256
        key: tuple[str, ...] = (
            ("sha256", sha)
            if sha
            else ("url", request.url, *(f"{k}: {v}" for k, v in sorted(request.headers.items())))
        )
        leader = self._inflight.get(key)
        if leader is not None:
            try:
                shared = await asyncio.shield(leader)
            except DownloadError:
                if not sha:
                    raise
            else:
                served = await self._serve_cached(request, shared.sha256, batch)
                if served is not None:
                    return served
        future: asyncio.Future[DownloadResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._download(request, batch, found)
            if found is not None and found.stored is None:
                batch.stored.add(result.sha256)
        except BaseException as exc:
            if isinstance(exc, DownloadError):
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters are optional
            else:
                future.cancel()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def _download(
        self, request: DownloadRequest, batch: _Batch, found: Found | None
    ) -> DownloadResult:
        sha = request.sha256
        if sha:
            if found is not None and found.stored is None and sha in batch.stored:
                found = None  # stored by this batch since its lookup: ask again
            # A batch looked its artifacts up by chunks: no per-file stat or catalog read.
            if found is None:
                cached = await self._serve_cached(request, sha, batch)
            elif found.stored is None:
                cached = None
            else:
                cached = await self._serve_cached(request, sha, batch, found)
            if cached is not None:
                return cached
            if self._cooperation is not None:
                # One transfer per sha256 across the workers sharing the catalog.
                serve = functools.partial(self._serve_cached, request, sha, batch)
                async with self._cooperation.turn(sha, serve, batch.coming) as served:
                    return served if served is not None else await self._transfer(request, batch)
        return await self._transfer(request, batch)

    async def _transfer(self, request: DownloadRequest, batch: _Batch) -> DownloadResult:
        sha = request.sha256
        sources = list(request.sources)
        errors: list[DownloadError] = []
        result = await self._try_sources(request, sources, errors, batch)
        if result is None and sha:
            # Alternate content: mirrors recorded for this sha256 by earlier downloads
            # (looked up only now, so the common path costs no catalog read).
            recorded = await self._recorded_sources(request)
            if recorded:
                result = await self._try_sources(request, recorded, errors, batch)
        if result is not None:
            return result
        if len(errors) == 1 and len(request.sources) == 1:
            raise errors[0]
        raise AllSourcesFailed(errors, url=request.url)

    async def _try_sources(
        self,
        request: DownloadRequest,
        sources: list[Source],
        errors: list[DownloadError],
        batch: _Batch,
    ) -> DownloadResult | None:
        for source in order_sources(sources, self._admission.health, now=time.time()):
            try:
                return await self._from_source(request, source, batch)
            except (ConfigError, HookError, StorageError, CatalogError):
                raise
            except DownloadError as exc:
                log.info("%s failed: %s", redact_url(source.url), exc)
                errors.append(exc)
        return None

    async def _recorded_sources(self, request: DownloadRequest) -> list[Source]:
        if self._catalog is None or request.sha256 is None:
            return []
        record = await self._catalog.get_unit_file(request.sha256)
        if record is None:
            return []
        known = {s.url for s in request.sources}
        extra = []
        for source in record.sources:
            if source.url in known:
                continue
            if source.remote is not None and source.remote not in self.config.remotes:
                log.debug(
                    "skipping recorded source %s: remote %r not configured",
                    redact_url(source.url),
                    source.remote,
                )
                continue
            if source.scheme == "file":
                try:
                    await self._check_files([DownloadRequest(sources=[source])])
                except ConfigError:
                    continue
            extra.append(source)
        return extra

    async def _from_source(
        self, request: DownloadRequest, source: Source, batch: _Batch
    ) -> DownloadResult:
        assert self._stage is not None
        remote = self.config.remote(source.remote or request.remote)
        staged = await self._stage.fetch(request, source, remote, batch.tracker)
        return await self._commit(request, source, staged, batch)

    async def _commit(
        self, request: DownloadRequest, source: Source, staged: Staged, batch: _Batch
    ) -> DownloadResult:
        """Run the hook chain on a validated staging file (store, record, ...)."""
        hooks = self._hooks()
        body = staged.body
        kept = False
        ctx: DownloadContext | None = None
        try:
            if body is not None and (not hooks or hooks[0] is not store):
                # A hook before store may read the staged file: write it now.
                written, body = body, None
                await self.storage.stage_body(written, staged.path)
            ctx = DownloadContext(
                request=request,
                storage=self.storage,
                catalog=self._catalog,
                progress=batch.tracker,
                path=staged.path,
                digests=staged.digests,
                size=staged.size,
                url=staged.url,
                source=source,
                headers=staged.headers,
                attempts=staged.attempts,
                carried=staged.carried,
                body=body,
            )
            result = await run_hooks(hooks, ctx)
            kept = ctx.kept  # the store hook consumed the staged file
        finally:
            # A small file whose bytes never left memory has nothing on disk to remove.
            if not kept and (body is None or ctx is None or ctx.body is None):
                await asyncio.shield(
                    asyncio.get_running_loop().run_in_executor(
                        None, functools.partial(staged.path.unlink, missing_ok=True)
                    )
                )
        return result

    async def _serve_cached(
        self, request: DownloadRequest, sha256: str, batch: _Batch, found: Found | None = None
    ) -> DownloadResult | None:
        """The stored artifact ``sha256`` as a cached result, or None when it is not stored
        or not known valid (the caller then transfers it, and the validated bytes replace a
        damaged artifact in storage).

        Valid means: the size the request expects and the catalog recorded, and, when the
        file changed after it was last verified (local storage tells by its ctime) or the
        request expects a digest the catalog lacks, a re-hash that matches. A byte flipped
        in place without any trace (media bitrot) is found by :meth:`verify`, which re-hashes
        every file: re-hashing on every cache hit would make a re-sync read every byte.

        ``found`` is what a batch lookup found of it (stored, its stat and record): then
        neither is asked for again.
        """
        stored = found.stored if found is not None else await self.storage.stat(sha256)
        if stored is None:
            return None
        if request.expected_size is not None and stored.size not in (None, request.expected_size):
            log.info(
                "stored artifact %s has %s bytes, the request expects %d: transferring it",
                sha256,
                stored.size,
                request.expected_size,
            )
            return None
        if found is not None:
            record = found.record
        else:
            record = await self._catalog.get_unit_file(sha256) if self._catalog else None
        digests = await self._valid_digests(request, sha256, stored, record)
        if digests is None:
            return None
        wanted = set(request.algorithms)
        ctx = DownloadContext(
            request=request,
            storage=self.storage,
            catalog=self._catalog,
            progress=batch.tracker,
            path=stored.path,
            digests={a: v for a, v in digests.items() if a in wanted},
            size=stored.size if stored.size is not None else (record.size or 0 if record else 0),
            url=request.url,
            attempts=0,
            cached=True,
            previous=record,
            previous_unit=found.unit if found is not None else None,
            stored=stored,
        )
        try:
            return await run_hooks(self._hooks(), ctx)
        except StorageError:
            return None

    async def _valid_digests(
        self,
        request: DownloadRequest,
        sha256: str,
        stored: StoredArtifact,
        record: UnitFile | None,
    ) -> dict[str, str] | None:
        """The digests of the stored ``sha256`` the request can be answered with, re-hashed
        where the catalog lacks one or the file changed since it was verified; None when the
        artifact is damaged or does not match what the request expects."""
        if (
            record is not None
            and record.size is not None
            and stored.size not in (None, record.size)
        ):
            log.warning(
                "stored artifact %s is damaged (%s bytes, %d recorded): transferring it again",
                sha256,
                stored.size,
                record.size,
            )
            return None
        digests: dict[str, str] = {"sha256": sha256}
        if record is not None:
            digests.update(record.digests)
        missing = [a for a in request.algorithms if a not in digests]
        changed = _changed_since_verified(stored, record)
        if missing or changed:
            # sha256 is re-hashed only when the bytes changed: unchanged, they are the
            # bytes the catalog verified.
            wanted_now = {*missing, "sha256"} if changed else set(missing)
            computed = await self.storage.digest(sha256, sorted(wanted_now))
            if computed is None:
                return None
            if changed and computed[0]["sha256"] != sha256:
                log.warning(
                    "stored artifact %s is damaged (it hashes to %s): transferring it again",
                    sha256,
                    computed[0]["sha256"],
                )
                return None
            digests.update(computed[0])
            if changed and self._catalog is not None:
                assert stored.changed_at is not None
                # Not before the change the store's clock saw, or a store whose clock runs
                # ahead of ours would have every hit re-hashed again.
                when = max(
                    datetime.now(timezone.utc),
                    datetime.fromtimestamp(stored.changed_at, timezone.utc),
                )
                await self._catalog.mark_verified(sha256, when)
        for algorithm, value in request.expected_digests.items():
            if digests.get(algorithm) != value:
                return None
        return digests

    def _hooks(self) -> Sequence[Hook]:
        return self.config.hooks if self.config.hooks is not None else DEFAULT_HOOKS

    async def download_many(
        self,
        requests: Iterable[str | DownloadRequest],
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Download many files; results in input order.

        At most ``max_connections`` transfers run at once; requests wait without holding
        files or sockets. With ``return_exceptions=True`` a failure is returned in its place;
        otherwise the first failure is raised and the others are cancelled cleanly.
        One progress report stream (code ``download``) covers the batch.
        """
        results: list[Any] = []

        def keep(index: int, outcome: DownloadResult | DownloadError) -> None:
            results[index] = outcome

        items = list(requests)
        results.extend([None] * len(items))
        await self.download_each(items, keep, return_exceptions=return_exceptions)
        return results

    async def download_each(
        self,
        requests: Iterable[str | DownloadRequest],
        callback: Callable[[int, DownloadResult | DownloadError], Any],
        *,
        return_exceptions: bool = True,
        tracker: ProgressTracker | None = None,
    ) -> None:
        """Like :meth:`download_many`, but hand each outcome to ``callback(index, outcome)``
        as soon as it is known, and keep nothing: memory does not grow with the batch.

        ``outcome`` is the :class:`DownloadResult` or, with ``return_exceptions`` (the
        default here), the :class:`DownloadError`; without it the first failure is raised
        and the rest cancelled.

        ``tracker``: count the batch into this :class:`ProgressTracker` (which the caller
        finishes) instead of one of its own reporting to ``EngineConfig.progress``, so that
        several batches that run at once (a worker process fed in chunks) report as one.
        """
        self._require_open()
        items = [self._make_request(r, {}) for r in requests]
        await self._check_files(items)
        own = tracker is None
        if tracker is None:
            tracker = ProgressTracker(
                self.config.progress,
                message=f"Downloading {plural(len(items), 'file')}",
                interval=self.config.progress_interval,
            )
        tracker.plan(len(items), sum(r.expected_size or 0 for r in items))
        queue = Lookahead(items, functools.partial(look_up, self.storage, self._catalog))
        batch = _Batch(tracker, coming=queue.upcoming)
        failure: list[BaseException] = []

        async def worker() -> None:
            while (item := await queue.next()) is not None:
                index, request, found = item
                if failure:
                    return
                outcome: DownloadResult | DownloadError
                try:
                    outcome = await self._download_one(request, batch, found)
                except DownloadError as exc:
                    if not return_exceptions:
                        failure.append(exc)
                        raise
                    outcome = exc
                callback(index, outcome)

        workers: list[asyncio.Future[None]] = []
        try:
            workers = [
                asyncio.ensure_future(worker())
                for _ in range(min(len(items), self.config.max_connections * 4))
            ]
            if workers:
                done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            await queue.aclose()
            if self._cooperation is not None:
                self._cooperation.release_ahead()
            if own:
                tracker.total = max(tracker.total, len(items))
                await tracker.finish()

    async def serve_stored(
        self,
        requests: Sequence[DownloadRequest],
        callback: Callable[[int, DownloadResult], Any],
        *,
        tracker: ProgressTracker | None = None,
    ) -> list[int]:
        """Serve the requests of a batch whose files are stored and known valid, transfer
        nothing, and return the indices of the others, in order, for the caller to
        download: a re-sync spread over several processes serves what is stored in one.

        A request is served as :meth:`download_each` would serve it from the store (the
        same checks and hook chain: its record gains new sources, its unit is created),
        and its result handed to ``callback(index, result)``. Left to the caller: files not
        stored, requests without a sha256, files that would need a re-hash (changed since
        verified, or a digest the record lacks) and any that fails. ``tracker``: count the
        served files into it (the caller goes on counting the rest and finishes it).
        """
        self._require_open()
        items = [self._make_request(r, {}) for r in requests]
        batch = _Batch(tracker or ProgressTracker(None))
        queue = Lookahead(items, functools.partial(look_up, self.storage, self._catalog))
        rest: list[int] = []

        async def serve() -> None:
            while (item := await queue.next()) is not None:
                index, request, found = item
                served = None
                if _servable_as_is(request, found):
                    assert found is not None
                    assert request.sha256 is not None
                    batch.tracker.add(1, request.expected_size)
                    try:
                        served = await self._serve_cached(request, request.sha256, batch, found)
                    except DownloadError as exc:
                        log.debug("%s: left to the transfer: %s", redact_url(request.url), exc)
                    if served is None:
                        batch.tracker.total -= 1  # counted again by whoever downloads it
                        if request.expected_size:
                            batch.tracker.bytes_total -= request.expected_size
                if served is None:
                    rest.append(index)
                else:
                    if self._metrics is not None:
                        self._metrics.downloaded(request, served)
                    callback(index, served)

        # Several at once, so that the writes of files that bring new sources or units are
        # committed together.
        servers = [
            asyncio.ensure_future(serve())
            for _ in range(min(len(items), self.config.max_connections * 4))
        ]
        try:
            await asyncio.gather(*servers)
        except BaseException:
            for task in servers:
                task.cancel()
            await asyncio.gather(*servers, return_exceptions=True)
            raise
        finally:
            await queue.aclose()
        return sorted(rest)

    # -- lazy content -------------------------------------------------------------------
    def _need_catalog(self, what: str) -> Catalog:
        if self._catalog is None:
            raise ConfigError(f"{what} needs a catalog (set EngineConfig.data_dir or catalog)")
        return self._catalog

    async def register(self, url_or_request: str | DownloadRequest, **kwargs: Any) -> UnitFile:
        """Record a unit file, its sources and its unit without transferring (lazy content).

        The request must carry an expected sha256. Returns the recorded :class:`UnitFile`.
        """
        self._require_open()
        catalog = self._need_catalog("register")
        request = self._make_request(url_or_request, kwargs)
        await self._check_files([request])
        sha = request.sha256
        if sha is None:
            raise ConfigError("register needs expected_digests with a sha256", url=request.url)
        try:
            stored = await self.storage.stat(sha)
            record = await catalog.record_unit_file(
                UnitFile(
                    sha256=sha,
                    size=request.expected_size if stored is None else stored.size,
                    digests=dict(request.expected_digests),
                    location=stored.location if stored else None,
                    sources=request.sources,
                )
            )
            if request.unit is not None:
                await catalog.save_unit(request.unit, sha, request.repository)
        except DownloadError as exc:
            if exc.url is None:
                raise exc.with_url(request.url) from exc
            raise
        return record

    async def fetch(self, sha256: str) -> DownloadResult:
        """Download a registered file on demand from its recorded sources."""
        self._require_open()
        return await self._fetch(sha256, self._loose_batch())

    async def _fetch(self, sha256: str, batch: _Batch) -> DownloadResult:
        catalog = self._need_catalog("fetch")
        try:
            record = await catalog.get_unit_file(sha256.lower())
        except CatalogError as exc:  # no URL is known without the record: name the file
            raise CatalogError(
                f"cannot fetch {sha256}: {exc.message}", catalog=exc.catalog
            ) from exc
        if record is None:
            raise ConfigError(f"no unit file recorded for sha256 {sha256}")
        if not record.sources:
            raise ConfigError(f"unit file {sha256} has no recorded source")
        usable = [s for s in record.sources if s.remote is None or s.remote in self.config.remotes]
        lacking = sorted({s.remote for s in record.sources if s not in usable and s.remote})
        if not usable:
            raise ConfigError(
                f"unit file {sha256} needs remote {', '.join(map(repr, lacking))}, which is not "
                "configured in this process (its settings and credentials are not available)",
                url=record.sources[0].url,
            )
        if lacking:
            log.warning(
                "fetch %s: skipping sources of unconfigured remote(s) %s",
                sha256,
                ", ".join(lacking),
            )
        request = self._check(
            DownloadRequest(
                sources=usable, expected_digests=record.digests, expected_size=record.size
            )
        )
        await self._check_files([request])
        return await self._download_one(request, batch)

    # -- bitrot ----------------------------------------------------------------------------
    async def verify(self, *, repair: bool = False, concurrency: int = 4) -> VerifyReport:
        """Re-hash every stored file against its unit file.

        Also hashes the files in storage that no record locates (``.unrecorded``) and lists
        what interrupted downloads left (``.partials``). With ``repair=True``, a corrupt
        file is moved aside and, like a missing one, fetched again from its recorded
        sources, and an unrecorded file whose content hashes to its key is recorded
        (adopted); one that does not is moved aside, never deleted. Without ``repair``
        nothing is changed. Progress is reported with code ``verify``. See
        :func:`.verification.verify_stored`.
        """
        self._require_open()
        catalog = self._need_catalog("verify")
        # Repairs are counted by the run's own tracker, not reported as a stream of theirs.
        refetch = functools.partial(self._fetch, batch=_Batch(ProgressTracker(None)))
        from .verification import verify_stored

        return await verify_stored(
            self.storage,
            catalog,
            refetch,
            progress=self.config.progress,
            progress_interval=self.config.progress_interval,
            repair=repair,
            concurrency=concurrency,
        )


#: Request headers a download (of the whole file, validated) cannot take.
_WHOLE_FILE = frozenset({"range", "if-range"})


def _check_handoff_dirs(dirs: Mapping[Path, str]) -> None:
    """ConfigError unless every ``handoff_dir`` is an existing, writable directory."""
    for directory, url in dirs.items():
        if not directory.is_dir():
            raise ConfigError(f"handoff_dir {str(directory)!r} is not a directory", url=url)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"handoff_dir {str(directory)!r} is not writable", url=url)


def _servable_as_is(request: DownloadRequest, found: Found | None) -> bool:
    """Whether the lookup found ``request``'s file stored, recorded, unchanged since it was
    verified and with every digest the request expects: servable with no I/O of its own."""
    if found is None or found.stored is None or found.record is None:
        return False
    digests = found.record.digests
    return all(a == "sha256" or a in digests for a in request.algorithms) and (
        not _changed_since_verified(found.stored, found.record)
    )


def _changed_since_verified(stored: StoredArtifact, record: UnitFile | None) -> bool:
    """Whether the stored bytes changed after the catalog last saw them valid."""
    if stored.changed_at is None or record is None:
        return False
    since = record.verified_at or record.created_at
    return since is not None and stored.changed_at > since.timestamp()
