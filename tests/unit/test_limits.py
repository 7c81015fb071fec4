"""AdaptiveLimiter arithmetic and concurrency, RemoteLimiter slots and rate."""

from __future__ import annotations

import asyncio

import pytest

from pulp_aio_download.admission.limits import AdaptiveLimiter, HostLimiters, RemoteLimiter
from pulp_aio_download.config import RemoteConfig
from pulp_aio_download.errors import ConfigError


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class PeakCounter:
    """Counts how many tasks are inside a section at once, independently of the limiter."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def section(self, turns: int) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await _turns(turns)
        finally:
            self.now -= 1


# --- AdaptiveLimiter: arithmetic -------------------------------------------------------


def test_throttle_halves_never_below_one() -> None:
    limiter = AdaptiveLimiter(16)
    seen = []
    for _ in range(6):
        limiter.on_throttle()
        seen.append(limiter.limit)
    assert seen == [8, 4, 2, 1, 1, 1]
    odd = AdaptiveLimiter(7)
    odd.on_throttle()
    assert odd.limit == 3


def test_default_increase_is_one_per_window_of_successes() -> None:
    limiter = AdaptiveLimiter(4)
    for _ in range(3):
        limiter.on_throttle()
    assert limiter.limit == 1
    limiter.on_success()  # 1 success at limit 1
    assert limiter.limit == 2
    limiter.on_success()
    assert limiter.limit == 2  # needs 2 at limit 2
    limiter.on_success()
    assert limiter.limit == 3
    for _ in range(2):
        limiter.on_success()
    assert limiter.limit == 3  # needs 3 at limit 3
    limiter.on_success()
    assert limiter.limit == 4
    for _ in range(50):
        limiter.on_success()
    assert limiter.limit == 4  # never above the cap


def test_fixed_successes_per_increase_and_throttle_resets_streak() -> None:
    limiter = AdaptiveLimiter(10, successes_per_increase=3)
    limiter.on_throttle()
    assert limiter.limit == 5
    limiter.on_success()
    limiter.on_success()
    limiter.on_throttle()  # the streak restarts
    assert limiter.limit == 2
    limiter.on_success()
    limiter.on_success()
    assert limiter.limit == 2
    limiter.on_success()
    assert limiter.limit == 3
    stats = limiter.statistics()
    assert (stats.limit, stats.cap, stats.throttles, stats.successes) == (3, 10, 2, 5)


def test_successes_at_cap_do_not_bank_credit() -> None:
    limiter = AdaptiveLimiter(8, successes_per_increase=4)
    for _ in range(100):
        limiter.on_success()
    limiter.on_throttle()
    assert limiter.limit == 4
    for _ in range(3):
        limiter.on_success()
    assert limiter.limit == 4


@pytest.mark.parametrize("cap", [0, -1, True, 1.5])
def test_invalid_cap(cap: object) -> None:
    with pytest.raises(ConfigError, match="cap"):
        AdaptiveLimiter(cap)  # type: ignore[arg-type]


def test_release_without_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        AdaptiveLimiter(2).release()


# --- AdaptiveLimiter: concurrency ------------------------------------------------------


async def test_many_tasks_never_exceed_the_limit() -> None:
    limiter = AdaptiveLimiter(4)
    counter = PeakCounter()

    async def work(i: int) -> None:
        async with limiter:
            await counter.section(3 + i % 5)

    await asyncio.gather(*(work(i) for i in range(60)))
    assert counter.peak == 4
    stats = limiter.statistics()
    assert stats.peak_in_flight == 4
    assert stats.in_flight == 0
    assert stats.waiting == 0


async def test_throttle_lowers_what_new_requests_see() -> None:
    limiter = AdaptiveLimiter(8)
    go = asyncio.Event()

    async def old() -> None:
        async with limiter:
            await go.wait()

    holders = [asyncio.create_task(old()) for _ in range(8)]
    await _turns(3)
    assert limiter.in_flight == 8
    limiter.on_throttle()  # 8 -> 4
    limiter.on_throttle()  # 4 -> 2
    counter = PeakCounter()
    admitted_with: list[int] = []

    async def new(i: int) -> None:
        async with limiter:
            admitted_with.append(limiter.in_flight)
            await counter.section(2 + i % 3)

    newcomers = [asyncio.create_task(new(i)) for i in range(20)]
    await _turns(5)
    assert admitted_with == []  # the 8 already running keep running, nobody new enters
    go.set()
    await asyncio.gather(*holders, *newcomers)
    assert len(admitted_with) == 20
    assert max(admitted_with) <= 2
    assert counter.peak == 2
    assert limiter.statistics().in_flight == 0


async def test_waiter_is_not_admitted_until_in_flight_drops_below_new_limit() -> None:
    limiter = AdaptiveLimiter(4)
    for _ in range(4):
        await limiter.acquire()
    limiter.on_throttle()
    limiter.on_throttle()
    assert limiter.limit == 1
    waiter = asyncio.create_task(limiter.acquire())
    for _ in range(3):
        limiter.release()
        await _turns(3)
        assert not waiter.done()
    limiter.release()
    await _turns(3)
    assert waiter.done()
    assert limiter.in_flight == 1
    limiter.release()


async def test_increase_wakes_waiters() -> None:
    limiter = AdaptiveLimiter(2, successes_per_increase=1)
    limiter.on_throttle()
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await _turns(3)
    assert not waiter.done()
    limiter.on_success()  # limit 1 -> 2, room for the waiter
    await _turns(3)
    assert waiter.done()
    assert limiter.in_flight == 2
    limiter.release()
    limiter.release()


async def test_cancelled_waiter_holds_nothing() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await _turns(2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.statistics().waiting == 0
    limiter.release()
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(), 1)
    limiter.release()


async def test_slot_granted_then_cancelled_is_handed_on() -> None:
    limiter = AdaptiveLimiter(1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await _turns(2)
    limiter.release()  # grants the slot to `first`, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0


async def test_context_manager_releases_on_cancellation() -> None:
    limiter = AdaptiveLimiter(1)
    inside = asyncio.Event()

    async def holder() -> None:
        async with limiter:
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await inside.wait()
    assert limiter.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.in_flight == 0


def test_host_limiters_are_per_host() -> None:
    hosts = HostLimiters(8)
    a = hosts.get("mirror.example")
    assert hosts.get("MIRROR.example") is a
    b = hosts.get("other.example")
    a.on_throttle()
    assert a.limit == 4
    assert b.limit == 8
    assert set(hosts.statistics()) == {"mirror.example", "other.example"}


# --- RemoteLimiter ---------------------------------------------------------------------


async def test_remote_max_connections() -> None:
    limiter = RemoteLimiter(max_connections=3)
    counter = PeakCounter()

    async def work(i: int) -> None:
        async with limiter:
            await counter.section(2 + i % 3)

    await asyncio.gather(*(work(i) for i in range(30)))
    assert counter.peak == 3
    assert limiter.statistics().peak_in_flight == 3
    assert limiter.statistics().in_flight == 0


async def test_remote_rate_limit_spaces_requests() -> None:
    rate = 40.0
    limiter = RemoteLimiter(rate_limit=rate)
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def work() -> None:
        async with limiter:
            starts.append(loop.time())

    await asyncio.gather(*(work() for _ in range(6)))
    starts.sort()
    # No burst: n requests span at least (n - 1) / rate seconds (a lower bound only).
    assert starts[-1] - starts[0] >= (len(starts) - 1) / rate * 0.95


async def test_remote_cancelled_while_waiting_for_rate_releases_slot() -> None:
    limiter = RemoteLimiter(max_connections=1, rate_limit=0.5)
    async with limiter:
        pass  # spends the only token for the next 2 s
    waiter = asyncio.create_task(limiter.acquire())
    await _turns(3)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.statistics().in_flight == 0
    # The connection slot is free again: a limiter without rate would admit at once.
    assert limiter._semaphore is not None
    assert not limiter._semaphore.locked()


def test_remote_limiter_from_config_and_validation() -> None:
    limiter = RemoteLimiter.for_remote(RemoteConfig(max_connections=2, rate_limit=5.0))
    stats = limiter.statistics()
    assert (stats.max_connections, stats.rate_limit) == (2, 5.0)
    unlimited = RemoteLimiter.for_remote(RemoteConfig()).statistics()
    assert (unlimited.max_connections, unlimited.rate_limit) == (None, None)
    with pytest.raises(ConfigError):
        RemoteLimiter(max_connections=0)
    with pytest.raises(ConfigError):
        RemoteLimiter(rate_limit=0)
    with pytest.raises(RuntimeError):
        RemoteLimiter().release()
