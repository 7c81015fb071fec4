"""Admission: whether a transfer may start now, and what its outcome says about the host.

One :class:`Admission` per engine holds every limit a request passes before its bytes
flow — the remote's ``max_connections`` and ``rate_limit``, the bandwidth caps its bytes
share while they flow (``max_speed``, :mod:`.bandwidth`), the host's adaptive limit
(capped by ``EngineConfig.max_connections_per_host``, or by the global limit when that is
0) and the engine's global semaphore — and the health record of every host, fed by the
outcome of each attempt. The transfer stage receives it; nothing else does. An optional
:class:`AttemptObserver` (the engine's metrics) sees every attempt it records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..health import HostHealth
from .bandwidth import Bandwidth
from .limits import AdaptiveLimiter, HostLimiters, RemoteLimiter, RemoteLimiterStatistics

if TYPE_CHECKING:
    from ..config import EngineConfig, RemoteConfig
    from ..errors import DownloadError

__all__ = ["Admission", "AdmissionStatistics", "AttemptObserver"]


class AttemptObserver(Protocol):
    """What sees every attempt :meth:`Admission.observe` records (see
    :class:`~pulp_aio_download.metrics.EngineMetrics`)."""

    def attempt(
        self,
        host: str,
        *,
        ok: bool,
        seconds: float,
        status: int | None = None,
        error: DownloadError | None = None,
        retry: bool = False,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """A snapshot of an :class:`Admission`."""

    transfers: int
    saturated: bool
    host_limits: Mapping[str, int]
    remotes: Mapping[str, RemoteLimiterStatistics]


class Admission:
    """The global, per-remote and per-host limits, and the health of every host.

    Args:
        config: the engine's settings (``max_connections``, ``max_connections_per_host``).
        health: host health records to start from (the catalog's, when it has any).
        observer: sees every attempt recorded (None: nothing more is done per attempt).
    """

    def __init__(
        self,
        config: EngineConfig,
        health: Mapping[str, HostHealth] | None = None,
        *,
        observer: AttemptObserver | None = None,
    ) -> None:
        self._observer = observer
        self._global = asyncio.Semaphore(config.max_connections)
        self._max_connections = config.max_connections
        self._hosts = HostLimiters(config.max_connections_per_host or config.max_connections)
        self._remotes: dict[str, RemoteLimiter] = {}
        self._health: dict[str, HostHealth] = dict(health or {})
        self._dirty: set[str] = set()
        self._transfers = 0
        self._global_cap = Bandwidth(config.max_speed) if config.max_speed else None
        self._caps: dict[str, tuple[Bandwidth, ...]] = {}

    def bandwidth(self, remote: RemoteConfig) -> tuple[Bandwidth, ...]:
        """The bandwidth caps a stream of ``remote`` shares: the remote's ``max_speed``
        and the engine's, when set (empty: no cap, nothing to do per chunk)."""
        caps = self._caps.get(remote.name)
        if caps is None:
            own = (Bandwidth(remote.max_speed),) if remote.max_speed else ()
            caps = own + ((self._global_cap,) if self._global_cap else ())
            self._caps[remote.name] = caps
        return caps

    def limiters(
        self, remote: RemoteConfig, host: str
    ) -> tuple[RemoteLimiter, AdaptiveLimiter, asyncio.Semaphore]:
        """The slots a request to ``host`` for ``remote`` holds, in acquisition order."""
        limiter = self._remotes.get(remote.name)
        if limiter is None:
            limiter = self._remotes[remote.name] = RemoteLimiter.for_remote(remote)
        return limiter, self._hosts.get(host), self._global

    def slot(self, remote: RemoteConfig, host: str) -> _Slots:
        """Hold every slot of a transfer to ``host`` for ``remote`` (given back on exit):
        ``async with admission.slot(remote, host): ...``."""
        return _Slots(self, *self.limiters(remote, host))

    def observe(
        self,
        host: str,
        *,
        ok: bool,
        nbytes: int = 0,
        seconds: float = 0.0,
        status: int | None = None,
        error: DownloadError | None = None,
        retry: bool = False,
    ) -> None:
        """Record the outcome of one attempt against ``host``: a 429/503 lowers its limit,
        a success counts towards raising it, and its health record is updated.

        ``seconds``: how long the attempt took (its speed, when ``ok``, counts towards
        the host's health); ``error``: why it failed; ``retry``: it is tried again."""
        if ok:
            self._hosts.get(host).on_success()
        elif status in (429, 503):
            self._hosts.get(host).on_throttle()
        if not host:
            return
        if self._observer is not None:
            self._observer.attempt(
                host, ok=ok, seconds=seconds, status=status, error=error, retry=retry
            )
        record = self._health.get(host) or HostHealth(host)
        self._health[host] = record.observe(
            ok=ok, now=time.time(), nbytes=nbytes, seconds=seconds, status=status
        )
        self._dirty.add(host)

    @property
    def health(self) -> Mapping[str, HostHealth]:
        """The health record of every host seen (read by source selection)."""
        return self._health

    def changed_health(self) -> list[HostHealth]:
        """The records that changed since the engine started (to persist at close)."""
        return [self._health[h] for h in sorted(self._dirty)]

    def statistics(self) -> AdmissionStatistics:
        """An immutable snapshot: transfers admitted, whether every global slot is
        held, limits."""
        return AdmissionStatistics(
            transfers=self._transfers,
            saturated=self._global.locked(),
            host_limits={h: st.limit for h, st in self._hosts.statistics().items()},
            remotes={name: lim.statistics() for name, lim in self._remotes.items()},
        )

    @property
    def max_connections(self) -> int:
        """The global limit."""
        return self._max_connections


class _Slots:
    """The slots of one transfer, taken in order on entry and given back on exit (a plain
    class, not a generator-based context manager: it runs once per attempt)."""

    __slots__ = ("_admission", "_global", "_host", "_remote")

    def __init__(
        self,
        admission: Admission,
        remote: RemoteLimiter,
        host: AdaptiveLimiter,
        global_slots: asyncio.Semaphore,
    ) -> None:
        self._admission = admission
        self._remote = remote
        self._host = host
        self._global = global_slots

    async def __aenter__(self) -> None:
        await self._remote.acquire()
        try:
            await self._host.acquire()
            try:
                await self._global.acquire()
            except BaseException:
                self._host.release()
                raise
        except BaseException:
            self._remote.release()
            raise
        self._admission._transfers += 1

    async def __aexit__(self, *exc: object) -> None:
        self._admission._transfers -= 1
        self._global.release()
        self._host.release()
        self._remote.release()
