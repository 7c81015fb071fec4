"""Concurrency and rate limits on top of the engine's global semaphore. Internal.

* :class:`AdaptiveLimiter` — the per-host concurrency limit that reacts to throttling
  (additive increase, multiplicative decrease); :class:`HostLimiters` keeps one per host.
* :class:`RemoteLimiter` — the per-remote ``max_connections`` and ``rate_limit`` of a
  :class:`~pulp_aio_download.config.RemoteConfig`.

Every limiter is an async context manager. ``release()`` is synchronous so that it can run
in a ``finally`` block of a cancelled task without awaiting; a task cancelled while waiting
in ``acquire()`` holds nothing.
"""

from __future__ import annotations

import abc
import asyncio
import collections
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from .._checks import check_int
from ..errors import ConfigError

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

    from ..config import RemoteConfig

__all__ = [
    "AdaptiveLimiter",
    "AdaptiveLimiterStatistics",
    "HostLimiters",
    "RemoteLimiter",
    "RemoteLimiterStatistics",
]


class _Slot(abc.ABC):
    """``async with limiter:`` takes a slot and always gives it back."""

    @abc.abstractmethod
    async def acquire(self) -> None: ...

    @abc.abstractmethod
    def release(self) -> None: ...

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class AdaptiveLimiterStatistics:
    """A snapshot of an :class:`AdaptiveLimiter`."""

    limit: int
    cap: int
    in_flight: int
    waiting: int
    peak_in_flight: int
    throttles: int
    successes: int


class AdaptiveLimiter(_Slot):
    """A concurrency limit that halves on throttling and creeps back up on success (AIMD).

    Args:
        cap: the highest limit, and the initial one.
        successes_per_increase: successes needed to raise the limit by one. ``None`` (the
            default) means "as many as the current limit", i.e. one step per window of
            requests, like TCP congestion avoidance: recovery is slow while the limit is high.

    :meth:`on_throttle` (a 429/503 answer) halves the limit, never below 1, and restarts
    the success count; the requests already in flight keep running, new ones wait until the
    in-flight count drops below the new limit. :meth:`on_success` counts towards the next
    increase.

    Example::

        async with limiter:
            response = await send()
        if response.status in (429, 503):
            limiter.on_throttle()
        else:
            limiter.on_success()
    """

    def __init__(self, cap: int, *, successes_per_increase: int | None = None) -> None:
        check_int("AdaptiveLimiter cap", cap, minimum=1)
        if successes_per_increase is not None and successes_per_increase < 1:
            raise ConfigError(
                "AdaptiveLimiter successes_per_increase must be positive, "
                f"got {successes_per_increase!r}"
            )
        self._cap = cap
        self._limit = cap
        self._per_increase = successes_per_increase
        self._in_flight = 0
        self._peak = 0
        self._streak = 0
        self._throttles = 0
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def limit(self) -> int:
        """The current limit."""
        return self._limit

    @property
    def cap(self) -> int:
        """The highest limit."""
        return self._cap

    @property
    def in_flight(self) -> int:
        """Slots held right now."""
        return self._in_flight

    def on_throttle(self) -> None:
        """The host asked us to slow down: halve the limit (never below 1)."""
        self._throttles += 1
        self._streak = 0
        self._limit = max(1, self._limit // 2)

    def on_success(self) -> None:
        """A request to the host succeeded: count towards raising the limit by one."""
        self._successes += 1
        if self._limit >= self._cap:
            self._streak = 0
            return
        self._streak += 1
        needed = self._per_increase if self._per_increase is not None else self._limit
        if self._streak >= needed:
            self._streak = 0
            self._limit += 1
            self._wake()

    def locked(self) -> bool:
        """True when :meth:`acquire` would wait."""
        return self._in_flight >= self._limit or bool(self._waiters)

    async def acquire(self) -> None:
        """Wait until fewer than ``limit`` slots are held, then hold one (FIFO)."""
        if not self.locked():
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # The slot was granted just as we were cancelled: hand it on.
                self._in_flight -= 1
                self._wake()
            raise
        finally:
            if not waiter.done() or waiter.cancelled():
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass

    def release(self) -> None:
        """Give a slot back; synchronous, so it is safe in ``finally`` under cancellation."""
        if self._in_flight <= 0:
            raise RuntimeError("AdaptiveLimiter released more often than acquired")
        self._in_flight -= 1
        self._wake()

    def statistics(self) -> AdaptiveLimiterStatistics:
        """An immutable snapshot of the limiter."""
        return AdaptiveLimiterStatistics(
            limit=self._limit,
            cap=self._cap,
            in_flight=self._in_flight,
            waiting=len(self._waiters),
            peak_in_flight=self._peak,
            throttles=self._throttles,
            successes=self._successes,
        )

    def _take(self) -> None:
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)

    def __repr__(self) -> str:
        return f"AdaptiveLimiter(limit={self._limit}, cap={self._cap}, in_flight={self._in_flight})"


class HostLimiters:
    """One :class:`AdaptiveLimiter` per host, created on first use.

    Args:
        cap: the cap of every host's limiter.
        successes_per_increase: passed to each :class:`AdaptiveLimiter`.
    """

    def __init__(self, cap: int, *, successes_per_increase: int | None = None) -> None:
        AdaptiveLimiter(cap, successes_per_increase=successes_per_increase)  # validates
        self._cap = cap
        self._per_increase = successes_per_increase
        self._by_host: dict[str, AdaptiveLimiter] = {}

    def get(self, host: str) -> AdaptiveLimiter:
        """The limiter of ``host`` (a host name, or ``host:port`` — the caller's choice)."""
        key = host.lower()
        limiter = self._by_host.get(key)
        if limiter is None:
            limiter = AdaptiveLimiter(self._cap, successes_per_increase=self._per_increase)
            self._by_host[key] = limiter
        return limiter

    def statistics(self) -> dict[str, AdaptiveLimiterStatistics]:
        """A snapshot of every host's limiter."""
        return {host: limiter.statistics() for host, limiter in self._by_host.items()}


@dataclass(frozen=True, slots=True)
class RemoteLimiterStatistics:
    """A snapshot of a :class:`RemoteLimiter`."""

    max_connections: int | None
    rate_limit: float | None
    in_flight: int
    peak_in_flight: int


class RemoteLimiter(_Slot):
    """The per-remote limits: at most ``max_connections`` at once and ``rate_limit`` starts/s.

    Args:
        max_connections: requests to this remote at once (None: no limit).
        rate_limit: requests per second (None: no limit). Requests are spaced evenly, with
            no burst: the first starts at once, then one every ``1 / rate_limit`` seconds,
            so ``n`` requests take at least ``(n - 1) / rate_limit`` seconds.

    A slot is taken first, then the rate token, so a task cancelled while waiting for the
    rate holds nothing.
    """

    def __init__(self, max_connections: int | None = None, rate_limit: float | None = None) -> None:
        if max_connections is not None:
            check_int("max_connections", max_connections, minimum=1)
        if rate_limit is not None and not rate_limit > 0:
            raise ConfigError(f"rate_limit must be positive, got {rate_limit!r}")
        self._max = max_connections
        self._rate = rate_limit
        self._semaphore = asyncio.Semaphore(max_connections) if max_connections else None
        self._limiter: AsyncLimiter | None = None
        if rate_limit:
            from aiolimiter import AsyncLimiter  # (it reads its package metadata: ~15 ms)

            self._limiter = AsyncLimiter(1, 1.0 / rate_limit)
        self._in_flight = 0
        self._peak = 0

    @classmethod
    def for_remote(cls, remote: RemoteConfig) -> RemoteLimiter:
        """The limiter of ``remote``'s ``max_connections`` and ``rate_limit``."""
        return cls(remote.max_connections, remote.rate_limit)

    async def acquire(self) -> None:
        """Wait for a connection slot, then for the rate limit."""
        if self._semaphore is not None:
            await self._semaphore.acquire()
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
        except BaseException:
            if self._semaphore is not None:
                self._semaphore.release()
            raise
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)

    def release(self) -> None:
        """Give the connection slot back (synchronous; safe under cancellation)."""
        if self._in_flight <= 0:
            raise RuntimeError("RemoteLimiter released more often than acquired")
        self._in_flight -= 1
        if self._semaphore is not None:
            self._semaphore.release()

    def statistics(self) -> RemoteLimiterStatistics:
        """An immutable snapshot of the limiter."""
        return RemoteLimiterStatistics(
            max_connections=self._max,
            rate_limit=self._rate,
            in_flight=self._in_flight,
            peak_in_flight=self._peak,
        )

    def __repr__(self) -> str:
        return f"RemoteLimiter(max_connections={self._max}, rate_limit={self._rate})"
