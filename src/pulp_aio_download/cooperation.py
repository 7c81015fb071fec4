"""Cooperation between workers that share one catalog: one transfer per sha256.

Many processes on many hosts may run engines against one :class:`PostgresCatalog` (or
several processes of one host against one :class:`SQLiteCatalog` file) and one storage.
Before transferring a sha256, a worker *claims* it in the catalog for a lease::

    cached check ─► claim ─┬─ held ──► re-check ─► transfer ─► store/record ─► release
                           └─ taken ─► poll (backoff, no connection slot held)
                                         ├─ stored by the other worker ─► served as cached
                                         └─ claim free or expired ─────► take over

A batch that knows which of its files are coming (what its lookup found not stored)
claims the small ones for a window at a time: the first claim writes the claims of the
next :data:`WINDOW` files of at most :data:`WINDOW_FILE_SIZE` bytes in the same
transaction, and their turns find them claimed without a write of their own (a large file
is claimed on its own, when its turn comes: its claim costs nothing next to its transfer,
and a peer is not kept waiting for a file this worker has not started). A claim taken for
a window and not used (the batch ended first) is released with the batch, or expires.

While the transfer runs, the claim is renewed every ``lease / 3`` seconds; it is released
at the end whatever happens (also on cancellation). A worker that dies keeps its claims
only until their lease expires, so it never blocks a file forever. The lease is timed by
the database's clock, so hosts with skewed clocks agree on when it expires.

The claim is an optimisation, not what keeps storage correct: a content-addressed commit is
atomic and idempotent, so two workers that both transfer a file (a lease lost while a
worker was frozen) waste bandwidth, never corrupt anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import ConfigError

if TYPE_CHECKING:
    from .catalog.base import Catalog

__all__ = [
    "CLAIM_LEASE_ENV",
    "DEFAULT_CLAIM_LEASE",
    "Cooperation",
    "CooperationStatistics",
    "owner_id",
    "release_dead_claims",
    "resolve_claim_lease",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CLAIM_LEASE = 300.0
"""Seconds a claim lasts without renewal (renewed every third of it while transferring)."""

CLAIM_LEASE_ENV = "PULP_AIO_DOWNLOAD_CLAIM_LEASE"
"""Environment variable giving the lease when ``EngineConfig.claim_lease`` is None."""

_POLL_MIN = 0.05
_POLL_MAX = 2.0

WINDOW = 64
"""Files of a batch claimed in one write (the one whose turn it is and those coming next)."""

WINDOW_FILE_SIZE = 1024 * 1024
"""The largest expected size of a file claimed ahead of its turn, in bytes."""


def owner_id() -> str:
    """A worker identity unique across hosts and processes: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def resolve_claim_lease(configured: float | None) -> float:
    """The lease to use: ``configured``, else ``$PULP_AIO_DOWNLOAD_CLAIM_LEASE``, else 300 s.

    0 means no claims at all.

    Raises:
        ConfigError: the environment variable is not a non-negative number.
    """
    if configured is not None:
        return float(configured)
    raw = os.environ.get(CLAIM_LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_CLAIM_LEASE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(
            f"{CLAIM_LEASE_ENV} must be a non-negative number of seconds, got {raw!r}"
        )
    return value


@dataclass(slots=True)
class CooperationStatistics:
    """Counters of one :class:`Cooperation` (mutable; read them, do not write them)."""

    #: Claims taken before a transfer (including take-overs).
    claimed: int = 0
    #: Claims found held by another worker (each waited for once).
    waited: int = 0
    #: Waits that ended with the file stored by the other worker (served as cached).
    served_by_peer: int = 0
    #: Waits that ended with the claim free or expired, taken over by this worker.
    taken_over: int = 0
    #: Renewals that found the claim taken by another worker (this one had stalled).
    lost: int = 0


class Cooperation:
    """Claims in a shared catalog so that workers transfer each sha256 once.

    Args:
        catalog: the shared catalog (opened and closed by its owner).
        lease: seconds a claim lasts without renewal (positive).
        owner: this worker's identity (default: :func:`owner_id`).
        poll_min, poll_max: bounds of the exponential, jittered wait between two looks at a
            claim held by another worker. ``poll_max`` is also capped at a quarter lease.

    Example::

        async with cooperation.turn(sha256, serve_stored) as served:
            if served is None:
                ...  # this worker holds the claim: transfer, store, record
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        lease: float = DEFAULT_CLAIM_LEASE,
        owner: str | None = None,
        poll_min: float = _POLL_MIN,
        poll_max: float = _POLL_MAX,
    ) -> None:
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease > 0:
            raise ConfigError(f"claim lease must be a positive number of seconds, got {lease!r}")
        if not 0 < poll_min <= poll_max:
            raise ConfigError("claim polling needs 0 < poll_min <= poll_max")
        self.catalog = catalog
        self.lease = float(lease)
        self.owner = owner or owner_id()
        self.poll_min = poll_min
        self.poll_max = max(poll_min, min(poll_max, self.lease / 4))
        self.statistics = CooperationStatistics()
        self._cleanups: set[asyncio.Task[None]] = set()
        #: claims held now (how many downloads of this process hold each), renewed together
        self._held: dict[str, int] = {}
        self._renewer: asyncio.Future[None] | None = None
        #: claims given up whose release is not written yet, written together
        self._to_release: dict[str, None] = {}
        self._releaser: asyncio.Task[None] | None = None
        self._maintenance = asyncio.Lock()
        #: claims taken for a window of a batch whose turn has not come yet (renewed too)
        self._ahead: dict[str, None] = {}
        #: the window claims being written: the outcomes of each sha256 in it
        self._windows: dict[str, asyncio.Future[dict[str, str]]] = {}

    def __repr__(self) -> str:
        return f"Cooperation(owner={self.owner!r}, lease={self.lease})"

    @contextlib.asynccontextmanager
    async def turn(
        self,
        sha256: str,
        serve_stored: Callable[[], Awaitable[T | None]],
        coming: Callable[[int, int], Sequence[str]] | None = None,
    ) -> AsyncIterator[T | None]:
        """Wait for this worker's turn to transfer ``sha256``.

        Yields the result of ``serve_stored()`` when the file got stored by another worker
        meanwhile (no claim is held then), or None when this worker holds the claim: the
        body transfers the file, the claim being renewed in the background and released
        on exit. ``serve_stored`` returns None when the file is not (validly) stored.

        ``coming(n, max_size)``: the sha256s of up to ``n`` files of at most ``max_size``
        bytes that the batch transfers next; when given, a claim that must be written is
        written with theirs (see the module).
        """
        served = await self._acquire(sha256, serve_stored, coming)
        if served is not None:
            yield served
            return
        self._to_release.pop(sha256, None)  # claimed again before its release went out
        self._held[sha256] = self._held.get(sha256, 0) + 1
        if self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew())
        try:
            yield None
        finally:
            self._drop(sha256)

    def _drop(self, sha256: str) -> None:
        # Synchronous, so it runs whatever happens to the caller. The release goes out in
        # the background, with every other release due by then in one write: the result
        # need not wait for it (peers look at the recorded location, not at the claim).
        # aclose() waits for it.
        count = self._held.pop(sha256, 1) - 1
        if count > 0:  # another download of this process holds the same claim
            self._held[sha256] = count
            return
        self._to_release[sha256] = None
        if self._releaser is None:
            self._releaser = self._background(self._release_due())

    def _give_back(self, sha256: str) -> None:
        """A claim whose write was interrupted by a cancellation may have been committed
        all the same (the group commit was under way): release it in the background, as
        :meth:`_drop` does, unless another download of this process holds it."""
        if sha256 in self._held:
            return
        self._to_release[sha256] = None
        if self._releaser is None:
            self._releaser = self._background(self._release_due())

    async def _acquire(
        self,
        sha256: str,
        serve_stored: Callable[[], Awaitable[T | None]],
        coming: Callable[[int, int], Sequence[str]] | None = None,
    ) -> T | None:
        delay = self.poll_min
        waited = False
        while True:
            # One transaction: claimed means nobody recorded the file in between (another
            # worker may have stored it since the engine's cache check).
            try:
                if waited:
                    outcome = await self._claim_one(sha256)
                else:
                    outcome = await self._first_claim(sha256, coming)
            except asyncio.CancelledError:
                self._give_back(sha256)
                raise
            if outcome == "stored":
                served = await serve_stored()
                if served is not None:
                    if waited:
                        self.statistics.served_by_peer += 1
                    return served
                # Recorded but not (validly) in storage: transfer it again under a claim.
                try:
                    claimed = await self.catalog.claim(sha256, self.owner, self.lease)
                except asyncio.CancelledError:
                    self._give_back(sha256)
                    raise
                outcome = "claimed" if claimed else "held"
            if outcome == "claimed":
                self.statistics.claimed += 1
                if waited:
                    self.statistics.taken_over += 1
                    log.info("%s: claim free or expired, %s takes over", sha256, self.owner)
                return None
            holder = await self.catalog.claim_holder(sha256)
            if holder is not None and _dead_here(holder):
                # A worker of this host that died mid-transfer: no need to sit out its lease.
                log.info("%s: claim of dead worker %s taken over", sha256, holder)
                await self.catalog.release(sha256, holder)
                continue
            if not waited:
                waited = True
                self.statistics.waited += 1
                log.debug("%s: claimed by another worker, waiting", sha256)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.poll_max)

    async def _claim_one(self, sha256: str) -> str:
        return await self.catalog.claim_unless_stored(sha256, self.owner, self.lease)

    async def _first_claim(
        self, sha256: str, coming: Callable[[int, int], Sequence[str]] | None
    ) -> str:
        """The outcome of the first claim of ``sha256``: taken already for its window, in
        a window being written, or written now (with the window of files coming next)."""
        if sha256 in self._ahead:
            del self._ahead[sha256]
            return "claimed"
        window = self._windows.get(sha256)
        if window is not None:
            try:
                outcomes = await asyncio.shield(window)
            except asyncio.CancelledError:
                if not window.cancelled():
                    raise  # this download was cancelled
                return await self._claim_one(sha256)  # the window's own download was
            except Exception:
                return await self._claim_one(sha256)  # its failure, if any, as this file's
            if sha256 in self._ahead:
                del self._ahead[sha256]
                return "claimed"
            outcome = outcomes[sha256]
            # Claimed for the window but released since (its batch ended): claim again.
            return await self._claim_one(sha256) if outcome == "claimed" else outcome
        if coming is None:
            return await self._claim_one(sha256)
        busy = (self._held, self._ahead, self._windows, self._to_release)
        names = [sha256]
        for other in coming(WINDOW, WINDOW_FILE_SIZE):
            if other != sha256 and not any(other in b for b in busy) and other not in names:
                names.append(other)
                if len(names) == WINDOW:
                    break
        if len(names) == 1:
            return await self._claim_one(sha256)
        future: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        for name in names:
            self._windows[name] = future
        try:
            outcomes = await self.catalog.claim_many_unless_stored(names, self.owner, self.lease)
        except BaseException as exc:
            for name in names:
                del self._windows[name]
            if isinstance(exc, asyncio.CancelledError):
                for name in names[1:]:  # the write may have committed all the same
                    self._give_back(name)
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # the waiters (if any) see it; nobody else must
            raise
        for name in names:
            del self._windows[name]
        for name in names[1:]:
            if outcomes.get(name) == "claimed":
                self._ahead[name] = None
        if self._ahead and self._renewer is None:
            self._renewer = asyncio.ensure_future(self._renew())
        future.set_result(outcomes)
        return outcomes[sha256]

    def release_ahead(self) -> None:
        """Release the claims taken for a window whose turn never came (a batch ended)."""
        for sha256 in list(self._ahead):
            del self._ahead[sha256]
            self._give_back(sha256)

    async def _renew(self) -> None:
        """Every third of a lease, renew every claim held, in one write; stop when none
        is held (the next claim starts a new renewer)."""
        interval = self.lease / 3
        try:
            while self._held or self._ahead:
                await asyncio.sleep(interval)
                held = [*self._held, *self._ahead]
                if not held:
                    break
                async with self._maintenance:  # never interleaved with a release
                    try:
                        kept = await self.catalog.renew_claims(held, self.owner, self.lease)
                    except Exception as exc:
                        log.warning(
                            "could not renew %d claim(s) of %s: %s", len(held), self.owner, exc
                        )
                        continue
                for sha256 in held:
                    if sha256 not in kept and sha256 in self._ahead:
                        del self._ahead[sha256]  # lost before its turn: claimed again then
                    elif sha256 not in kept and sha256 in self._held:
                        self.statistics.lost += 1
                        log.warning(
                            "%s: the claim of %s expired and was taken by another worker; "
                            "both may transfer the file",
                            sha256,
                            self.owner,
                        )
        finally:
            self._renewer = None

    async def _release_due(self) -> None:
        try:
            while self._to_release:
                # A renewal in flight commits before this release, never after it.
                async with self._maintenance:
                    batch = [
                        s for s in self._to_release if s not in self._held and s not in self._ahead
                    ]
                    self._to_release.clear()
                    if batch:
                        await self._release(batch)
        finally:
            self._releaser = None

    async def _release(self, sha256s: list[str]) -> None:
        try:
            await self.catalog.release_claims(sha256s, self.owner)
        except Exception as exc:
            log.warning(
                "%s: could not release the claim(s) of %s (they expire in %.0f s): %s",
                ", ".join(sha256s[:3]) + (", ..." if len(sha256s) > 3 else ""),
                self.owner,
                self.lease,
                exc,
            )

    def _background(self, work: Awaitable[None]) -> asyncio.Task[None]:
        """Run ``work`` to its end whatever happens to the caller."""
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def _shielded(self, work: Awaitable[None]) -> None:
        """Run ``work`` to its end even if the caller is cancelled meanwhile."""
        await asyncio.shield(self._background(work))

    async def aclose(self) -> None:
        """Wait for the releases still due (before the catalog closes); stop renewing."""
        while self._cleanups:
            await asyncio.wait(set(self._cleanups))
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)


async def release_dead_claims(catalog: Catalog, sha256s: Iterable[str]) -> int:
    """Release the claims on ``sha256s`` that processes of this host which are gone still
    hold (a worker killed before its releases were written); returns how many.

    They block nobody (a peer takes a dead holder's claim over when it meets it, and a
    stored file needs no claim), but nothing is left behind.
    """
    released = 0
    for sha256 in sha256s:
        holder = await catalog.claim_holder(sha256)
        if holder is not None and _dead_here(holder):
            await catalog.release(sha256, holder)
            released += 1
    return released


def _dead_here(owner: str) -> bool:
    """True when ``owner`` (``host:pid:token``) is a process of this host that is gone."""
    parts = owner.split(":")
    if len(parts) < 3 or not parts[-2].isdigit():
        return False
    host = ":".join(parts[:-2])
    if host != socket.gethostname():
        return False
    pid = int(parts[-2])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
