"""Retry decisions over a :class:`~pulp_aio_download.config.RetryPolicy`. Internal.

Everything here is pure: no sleeping, no I/O, no clock except where a caller leaves ``now``
out. The engine asks :func:`is_retryable_error` whether a failed attempt may be retried,
:func:`backoff_delay` how long to wait, then releases its concurrency slot and awaits
``asyncio.sleep(delay)`` itself.

Delays (``n`` is the number of the attempt that just failed, from 1)::

    delay = min(backoff * 2 ** (n - 1), max_backoff)
    with jitter:      uniform(delay / 2, delay)
    with Retry-After: min(retry_after, max_backoff), no jitter (the server asked for it)
"""

from __future__ import annotations

import math
import random
import time
from datetime import timezone
from email.utils import parsedate_to_datetime

from .config import RetryPolicy
from .errors import (
    ConnectionFailed,
    DownloadTimeout,
    HTTPStatusError,
    ProxyError,
    TLSError,
    ValidationError,
)

__all__ = [
    "backoff_delay",
    "is_retryable_error",
    "is_retryable_status",
    "parse_retry_after",
]

# 2**64 times any sane base is far beyond any max_backoff; stop before floats overflow.
_MAX_EXPONENT = 64


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait.

    Accepts delta-seconds (``"120"``) or an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``),
    relative to ``now`` (a POSIX timestamp; default: the current time). A negative result
    (a date in the past) gives 0; an unparseable value gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    reference = time.time() if now is None else now
    return max(when.timestamp() - reference, 0.0)


def backoff_delay(
    policy: RetryPolicy,
    attempt: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1).

    ``retry_after`` (already parsed, see :func:`parse_retry_after`) wins over the computed
    backoff when ``policy.respect_retry_after``; both are capped by ``policy.max_backoff``.
    ``rng`` makes jitter reproducible in tests.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    if policy.respect_retry_after and retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_backoff)
    exponent = min(attempt - 1, _MAX_EXPONENT)
    delay = min(policy.backoff * 2.0**exponent, policy.max_backoff)
    if policy.jitter and delay > 0:
        delay = (rng or random).uniform(delay / 2, delay)
    return delay


def is_retryable_status(policy: RetryPolicy, status: int) -> bool:
    """True when an answer with HTTP ``status`` may be retried under ``policy``."""
    return status in policy.statuses


def is_retryable_error(policy: RetryPolicy, exc: BaseException) -> bool:
    """True when a failed attempt that raised ``exc`` may be retried under ``policy``.

    Retried: timeouts, broken or refused connections (also through a proxy), bytes that did
    not validate (a flipped byte or a truncated body may not happen again) and HTTP statuses
    in ``policy.statuses``. Not retried: TLS failures (a certificate does not fix itself),
    other HTTP statuses, a proxy refusing its credentials (``407``, ``401``, SOCKS5), configuration,
    storage and hook errors, and anything that is not a :class:`DownloadError`.
    """
    if isinstance(exc, HTTPStatusError):
        return is_retryable_status(policy, exc.status)
    if isinstance(exc, TLSError):
        return False
    if isinstance(exc, ProxyError) and exc.auth_refused:
        return False
    return isinstance(exc, (DownloadTimeout, ConnectionFailed, ValidationError))
