"""The transfer stage: one source fetched into a validated staging file.

* :mod:`.stage` — attempts, backoff, resume, stall detection (:class:`TransferStage`);
* :mod:`.hashing` — the hashing writer: every digest and the size in one pass, off the
  event loop;
* :mod:`.segments` — a large file fetched as several ranges at once (``segments`` > 1);
* :mod:`.staged` — the validated staging file a transfer hands to the hook chain.

The resumable partials a transfer leaves for a later process are kept by
:mod:`~pulp_aio_download.storage.partials`.
"""

from __future__ import annotations

from .stage import Staged as Staged
from .stage import TransferStage as TransferStage

__all__ = ["Staged", "TransferStage"]
