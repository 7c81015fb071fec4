"""Pure retry logic: no network, no sleeping."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from pulp_aio_download.config import RetryPolicy
from pulp_aio_download.errors import (
    ConfigError,
    ConnectionFailed,
    DigestMismatch,
    DownloadTimeout,
    HookError,
    HTTPStatusError,
    ProxyError,
    SizeMismatch,
    StorageError,
    TLSError,
)
from pulp_aio_download.retry import (
    backoff_delay,
    is_retryable_error,
    is_retryable_status,
    parse_retry_after,
)

NO_JITTER = RetryPolicy(attempts=10, backoff=0.5, max_backoff=30.0, jitter=False)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("  7 ", 7.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after_seconds_and_garbage(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW.timestamp()) == expected


def test_parse_retry_after_http_date_in_future() -> None:
    header = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(header, now=NOW.timestamp()) == pytest.approx(42.0)


def test_parse_retry_after_http_date_in_past_is_zero() -> None:
    header = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(header, now=NOW.timestamp()) == 0.0


def test_parse_retry_after_date_without_zone_is_utc() -> None:
    header = (NOW + timedelta(seconds=10)).strftime("%a, %d %b %Y %H:%M:%S")
    assert parse_retry_after(header, now=NOW.timestamp()) == pytest.approx(10.0)


def test_parse_retry_after_defaults_to_current_time() -> None:
    future = datetime.now(timezone.utc) + timedelta(seconds=3600)
    seconds = parse_retry_after(format_datetime(future, usegmt=True))
    assert seconds is not None
    assert 3500 < seconds <= 3600


def test_backoff_is_exponential_and_capped() -> None:
    delays = [backoff_delay(NO_JITTER, n) for n in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_backoff_huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(NO_JITTER, 10_000) == 30.0


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(NO_JITTER, 0)


def test_backoff_zero_base_is_zero() -> None:
    policy = RetryPolicy(backoff=0.0, jitter=True)
    assert backoff_delay(policy, 3) == 0.0


def test_jitter_stays_between_half_and_whole() -> None:
    policy = dataclasses.replace(NO_JITTER, jitter=True)
    rng = random.Random(1234)
    for attempt in range(1, 9):
        full = backoff_delay(NO_JITTER, attempt)
        samples = [backoff_delay(policy, attempt, rng=rng) for _ in range(200)]
        assert all(full / 2 <= s <= full for s in samples)
        # Jitter really varies the delay.
        assert len(set(samples)) > 100


def test_jitter_is_reproducible_with_rng() -> None:
    policy = dataclasses.replace(NO_JITTER, jitter=True)
    first = [backoff_delay(policy, 4, rng=random.Random(7)) for _ in range(3)]
    second = [backoff_delay(policy, 4, rng=random.Random(7)) for _ in range(3)]
    assert first == second


def test_retry_after_wins_and_is_capped() -> None:
    policy = dataclasses.replace(NO_JITTER, jitter=True, max_backoff=10.0)
    assert backoff_delay(policy, 1, retry_after=3.0) == 3.0
    assert backoff_delay(policy, 1, retry_after=3600.0) == 10.0
    assert backoff_delay(policy, 5, retry_after=0.0) == 0.0
    assert backoff_delay(policy, 1, retry_after=-4.0) == 0.0


def test_retry_after_ignored_when_not_respected() -> None:
    policy = dataclasses.replace(NO_JITTER, respect_retry_after=False)
    assert backoff_delay(policy, 1, retry_after=20.0) == 0.5


def test_statuses() -> None:
    policy = RetryPolicy()
    for status in (429, 500, 502, 503, 504):
        assert is_retryable_status(policy, status)
    for status in (400, 401, 403, 404, 410, 416, 501):
        assert not is_retryable_status(policy, status)
    custom = RetryPolicy(statuses=(408,))
    assert is_retryable_status(custom, 408)
    assert not is_retryable_status(custom, 503)


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (HTTPStatusError(status=503), True),
        (HTTPStatusError(status=429, retry_after=3.0), True),
        (HTTPStatusError(status=404), False),
        (HTTPStatusError(status=401), False),
        (DownloadTimeout("stalled", timeout="stall"), True),
        (ConnectionFailed("reset"), True),
        (ProxyError("proxy refused connection"), True),
        (TLSError("unknown CA"), False),
        (DigestMismatch(algorithm="sha256", expected="a" * 64, actual="b" * 64), True),
        (SizeMismatch(expected=10, actual=5), True),
        (ConfigError("bad"), False),
        (StorageError("disk full"), False),
        (HookError("hook failed"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_retryable_errors(exc: BaseException, retryable: bool) -> None:
    assert is_retryable_error(RetryPolicy(), exc) is retryable
