"""What follows a failed attempt at a host: one rule for whole files, ranges and streams.

The failure is recorded against the host (unless it was our own disk), and either the
error is final (``gave_up_after`` says how many attempts it took) or the next attempt
waits the remote's backoff, ``Retry-After`` honoured, with a log line saying why.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..errors import DownloadError, HTTPStatusError, StorageError
from ..retry import backoff_delay, is_retryable_error

if TYPE_CHECKING:
    from ..admission import Admission
    from ..config import RetryPolicy

__all__ = ["failed_attempt", "reason"]

log = logging.getLogger(__name__)


def reason(error: DownloadError | None) -> str:
    """An error in a log line that already names the URL: its type and message only."""
    if error is None:
        return "an interrupted transfer"
    return f"{type(error).__name__}: {error.message}"


def failed_attempt(
    admission: Admission,
    policy: RetryPolicy,
    host: str,
    error: DownloadError,
    *,
    attempt: int,
    started: float,
    what: str,
) -> float | None:
    """Record attempt number ``attempt`` (begun at monotonic ``started``) at ``host`` as
    failed with ``error``; the seconds to wait before the next one, or None when ``error``
    is final. ``what`` starts the log line (the URL, redacted)."""
    retry = is_retryable_error(policy, error) and attempt < policy.attempts
    if not isinstance(error, StorageError):  # our disk, not the host's fault
        admission.observe(
            host,
            ok=False,
            seconds=time.monotonic() - started,
            status=getattr(error, "status", None),
            error=error,
            retry=retry,
        )
    if not retry:
        error.gave_up_after(attempt)
        return None
    retry_after = error.retry_after if isinstance(error, HTTPStatusError) else None
    delay = backoff_delay(policy, attempt, retry_after=retry_after)
    log.info(
        "%s: attempt %d of %d failed (%s); retrying in %.2f s",
        what,
        attempt,
        policy.attempts,
        reason(error),
        delay,
    )
    return delay
