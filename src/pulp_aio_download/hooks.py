"""The post-download hook chain.

A hook is an async callable taking the :class:`DownloadContext`. The engine runs
``EngineConfig.hooks`` (default :data:`DEFAULT_HOOKS`) in order once a download is
validated, or once a cached artifact is found. A plugin adds its own around the built-ins::

    hooks = [check_signature, *pad.DEFAULT_HOOKS, make_my_model]

A hook that raises fails the download with :class:`HookError`; what the chain had stored or
recorded for that download is rolled back: a unit file, unit or repository association it
created is deleted, one that existed before gets back exactly what it had (its sources,
digests, verification time, metadata, links), and an artifact it stored is removed, so a
failed download leaves nothing behind. (An artifact that replaced a damaged one stays: its
bytes are validated.)

:func:`run_hooks` runs a chain and owns that rollback; the engine calls it once a file is
validated (or found cached) and knows nothing of what the hooks do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CatalogError, HookError, StorageError
from .models import ContentUnit, DownloadRequest, DownloadResult, Source, UnitFile, UnitSpec

if TYPE_CHECKING:
    from .catalog.base import Catalog
    from .progress import ProgressTracker
    from .storage.base import Storage, StoredArtifact

__all__ = [
    "DEFAULT_HOOKS",
    "DownloadContext",
    "Hook",
    "create_unit",
    "hand_off",
    "record_unit_file",
    "report_progress",
    "run_hooks",
    "store",
]

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class DownloadContext:
    """What a hook sees of one download.

    Attributes:
        request: the :class:`DownloadRequest`.
        storage: the engine's storage.
        catalog: the engine's catalog (None when it records nothing).
        progress: the progress tracker this download counts in.
        path: the validated staged file; after :func:`store`, the stored file (None for
            storage without local files).
        digests: sha256 and every expected algorithm, hex.
        size: bytes.
        url: the source URL used (without credentials).
        source: the :class:`Source` used (None when served from the cache).
        headers: the response headers.
        attempts: attempts made.
        carried: bytes continued from a partial an earlier process left (not transferred
            by this download).
        cached: True when an already stored artifact served the request.
        stored: the :class:`StoredArtifact` once stored.
        result: the :class:`DownloadResult` once stored.
        unit: the :class:`ContentUnit` once created.
        previous: the catalog's unit file as the engine read it before the hook chain
            (set for cached hits; None when unknown).
        previous_unit: the request's content unit as the catalog held it when a batch
            looked it up (cached hits of a batch; None when unknown).
        body: the validated bytes of a small file not written to ``path`` yet: the engine
            keeps them in memory when :func:`store` is the chain's first hook, and
            :func:`store` writes and publishes them in one step
            (:meth:`Storage.commit_body`); None otherwise, and once stored.
    """

    request: DownloadRequest
    storage: Storage
    catalog: Catalog | None
    progress: ProgressTracker
    path: Path | None
    digests: dict[str, str]
    size: int
    url: str
    source: Source | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 1
    carried: int = 0
    cached: bool = False
    stored: StoredArtifact | None = None
    result: DownloadResult | None = None
    unit: ContentUnit | None = None
    previous: UnitFile | None = None
    previous_unit: ContentUnit | None = None
    body: Sequence[bytes] | None = field(default=None, repr=False)
    # The rollback's bookkeeping (run_hooks): whether store published the artifact under a
    # key that held nothing, the catalog writes of the chain (Catalog.undo), and whether
    # report_progress counted the file as done (taken back, so a failed file counts once).
    _newly_stored: bool = field(default=False, init=False, repr=False)
    _undo_log: list[Any] = field(default_factory=list, init=False, repr=False)
    _counted: bool = field(default=False, init=False, repr=False)
    # The file hand_off gave the caller (removed again by the rollback).
    _handed_off: Path | None = field(default=None, init=False, repr=False)

    @property
    def kept(self) -> bool:
        """Whether the staged file is no longer the engine's to remove: stored, or handed
        off to the caller."""
        return self.stored is not None or self._handed_off is not None

    @property
    def sha256(self) -> str:
        return self.digests["sha256"]

    def make_result(self, location: str = "", path: Path | None = None) -> DownloadResult:
        """The :class:`DownloadResult` of this download as it stands."""
        return DownloadResult(
            url=self.url,
            size=self.size,
            digests=dict(self.digests),
            location=location,
            path=path,
            headers=dict(self.headers),
            cached=self.cached,
            attempts=self.attempts,
            carried=self.carried,
            unit=self.unit,
        )


Hook = Callable[[DownloadContext], Awaitable[None]]
"""A post-download hook: an async callable taking the :class:`DownloadContext`."""


async def store(ctx: DownloadContext) -> None:
    """Commit the staged file to storage (content-addressed, atomic) and set ``result``.

    For a request with a ``handoff_dir``, hand the file to the caller instead (see
    :func:`hand_off`).
    """
    if ctx.request.handoff_dir is not None:
        await hand_off(ctx)
        return
    storage = ctx.storage
    if ctx.cached:
        # The cache check found it (ctx.stored); a hook may have cleared that to re-check.
        stored = ctx.stored or await storage.stat(ctx.sha256)
        if stored is None:  # removed since the cache check: the caller downloads again
            raise StorageError(f"artifact {ctx.sha256} vanished from storage", url=ctx.url)
    else:
        assert ctx.path is not None
        body, ctx.body = ctx.body, None
        if body is not None:
            stored = await storage.commit_body(body, ctx.path, ctx.sha256, ctx.size)
        else:
            stored = await storage.commit(ctx.path, ctx.sha256, ctx.size)
        ctx._newly_stored = stored.created
    ctx.stored = stored
    ctx.path = stored.path
    ctx.result = ctx.make_result(stored.location, stored.path)


async def hand_off(ctx: DownloadContext) -> None:
    """Give the validated file to the caller in ``request.handoff_dir``, not to storage.

    A transferred file was written in that directory: it is renamed to its final name (no
    copy). A file served from the store (``ctx.cached``) is copied there, so the caller owns
    a file of its own; a store without local files (S3) raises :class:`StorageError`, and
    the engine then transfers it. ``ctx.result.path`` is the file, ``location`` is ``""``;
    nothing is stored, so :func:`record_unit_file` and :func:`create_unit` record nothing
    for it. Should a later hook fail, the handed-off file is removed.
    """
    assert ctx.request.handoff_dir is not None
    assert ctx.path is not None
    source = ctx.path
    if ctx.cached:
        stored = ctx.stored
        if stored is None or stored.path is None:
            raise StorageError(f"artifact {ctx.sha256} has no local file to hand off", url=ctx.url)
        source = stored.path
    target = ctx.request.handoff_dir / _handoff_name(source, ctx.sha256)
    move = _copy_new if ctx.cached else os.replace
    try:
        await asyncio.get_running_loop().run_in_executor(None, move, source, target)
    except OSError as exc:
        raise StorageError(
            f"cannot hand off {ctx.sha256} into {ctx.request.handoff_dir}: {exc.strerror or exc}",
            url=ctx.url,
        ) from exc
    ctx._handed_off = target
    ctx.stored = None
    ctx.path = target
    ctx.result = ctx.make_result("", target)


def _handoff_name(staged: Path, sha256: str) -> str:
    name = staged.name
    if name.startswith(".pad-") and name.endswith(".part"):  # written in the handoff dir
        return name[1:-5]
    return f"pad-{os.getpid()}-{sha256[:16]}-{os.urandom(4).hex()}"


def _copy_new(source: Path, target: Path) -> None:
    """Copy ``source`` to a new file ``target`` (removed again if the copy fails)."""
    try:
        with open(source, "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise


async def record_unit_file(ctx: DownloadContext) -> None:
    """Record the unit file (size, digests, location) and merge the request's sources.

    One catalog write and no read: the catalog merges digests and sources with what it
    already holds. Each source is recorded with the remote *name* that applies to it (its
    own, else the request's), so a later :meth:`~DownloadEngine.fetch` uses the same
    settings. A fresh download was just validated, so it is also recorded as verified.
    """
    catalog = ctx.catalog
    if catalog is None or ctx.stored is None:
        return
    request = ctx.request
    sources = tuple(
        s
        if s.remote is not None or request.remote is None
        else dataclasses.replace(s, remote=request.remote)
        for s in request.sources
    )
    if _already_recorded(ctx.previous, ctx, sources):
        return  # a cached hit the catalog knows entirely: no write (re-syncs stay cheap)
    # A new record is created when its bytes were verified, not later (the write may wait
    # for a group commit): created_at never comes after verified_at.
    now = datetime.now(timezone.utc)
    await catalog.record_unit_file(
        UnitFile(
            sha256=ctx.sha256,
            size=ctx.size,
            digests=dict(ctx.digests),
            location=ctx.stored.location,
            sources=sources,
            created_at=now,
            verified_at=None if ctx.cached else now,
        ),
        undo_log=ctx._undo_log,
    )


def _already_recorded(
    previous: UnitFile | None, ctx: DownloadContext, sources: tuple[Source, ...]
) -> bool:
    if previous is None or not ctx.cached or ctx.stored is None:
        return False
    return (
        previous.location == ctx.stored.location
        and previous.size == ctx.size
        and all(previous.digests.get(a) == v for a, v in ctx.digests.items())
        and set(sources) <= set(previous.sources)
    )


async def create_unit(ctx: DownloadContext) -> None:
    """Create or find the request's content unit, link the file, add it to the repository."""
    catalog = ctx.catalog
    spec = ctx.request.unit
    if catalog is None or spec is None or ctx._handed_off is not None:
        return
    if _already_linked(ctx.previous_unit, ctx, spec):
        ctx.unit = ctx.previous_unit  # a cached hit the catalog knows entirely: no write
    else:
        ctx.unit = await catalog.save_unit(
            spec, ctx.sha256, ctx.request.repository, undo_log=ctx._undo_log
        )
    if ctx.result is not None:
        ctx.result = dataclasses.replace(ctx.result, unit=ctx.unit)


def _already_linked(previous: ContentUnit | None, ctx: DownloadContext, spec: UnitSpec) -> bool:
    """Whether saving ``spec`` would change nothing of ``previous``: its metadata already
    holds the spec's, it links this file under the spec's path, it is in the repository."""
    if previous is None or not ctx.cached:
        return False
    repository = ctx.request.repository
    return (
        (previous.type, previous.key) == (spec.type, spec.key)
        and all(previous.metadata.get(k, _MISSING) == v for k, v in spec.metadata.items())
        and previous.files.get(spec.relative_path or spec.key) == ctx.sha256
        and (repository is None or repository in previous.repositories)
    )


_MISSING = object()


async def report_progress(ctx: DownloadContext) -> None:
    """Count the file as done in the current progress report."""
    ctx.progress.file_done(
        ctx.size, cached=ctx.cached, retried=ctx.attempts > 1, carried=ctx.carried
    )
    ctx._counted = True


DEFAULT_HOOKS: tuple[Hook, ...] = (store, record_unit_file, create_unit, report_progress)
"""The built-in chain, in order: ``store`` (commit to storage, atomically),
``record_unit_file`` (the catalog record), ``create_unit`` (the content unit and its
repository), ``report_progress``. A plugin adds its own around them:
``hooks=[check_signature, *pad.DEFAULT_HOOKS, make_my_model]``."""


async def run_hooks(hooks: Sequence[Hook], ctx: DownloadContext) -> DownloadResult:
    """Run ``hooks`` in order on ``ctx`` and return the download's result.

    A hook that raises rolls back what the chain stored and recorded for this download
    (see the module docstring): a :class:`StorageError` or :class:`CatalogError` is raised
    as it is, any other
    exception as a :class:`HookError` naming the hook; a cancellation rolls back too, and
    the rollback finishes even then.
    """
    for hook in hooks:
        try:
            await hook(ctx)
        except (StorageError, CatalogError):
            await _rollback(ctx)
            raise
        except Exception as exc:
            await _rollback(ctx)
            name = getattr(hook, "__qualname__", repr(hook))
            raise HookError(f"hook {name} failed: {exc}", url=ctx.url, hook=name) from exc
        except BaseException:
            await asyncio.shield(_rollback(ctx))
            raise
    if ctx.result is None:  # no store hook in the chain
        ctx.result = ctx.make_result()
    return ctx.result


async def _rollback(ctx: DownloadContext) -> None:
    """Undo what the chain of a failed download stored, recorded and counted: the catalog
    first, so that no record ever names an artifact already removed."""
    if ctx._undo_log and ctx.catalog is not None:
        try:
            await ctx.catalog.undo(ctx._undo_log)
        except Exception as exc:
            log.warning("%s: could not undo the catalog writes: %s", ctx.url, exc)
        ctx._undo_log.clear()
    if ctx._newly_stored:
        try:
            await ctx.storage.delete(ctx.sha256)
        except Exception as exc:
            log.warning("%s: could not remove artifact %s: %s", ctx.url, ctx.sha256, exc)
        ctx._newly_stored = False
    if ctx._handed_off is not None:
        unlink = functools.partial(ctx._handed_off.unlink, missing_ok=True)
        try:
            await asyncio.get_running_loop().run_in_executor(None, unlink)
        except OSError as exc:
            log.warning("%s: could not remove the handed-off file: %s", ctx.url, exc)
        ctx._handed_off = None
    if ctx._counted:
        ctx.progress.file_undone(ctx.size, cached=ctx.cached, retried=ctx.attempts > 1)
        ctx._counted = False
