"""One batch over several engine processes: ``run_batch(..., workers=N)`` and
``pulp-aio-download sync --workers N``.

* :mod:`.plan` — how many workers a batch gets, each one's share of the limits, and the
  configuration that crosses to them;
* :mod:`.child` — a worker process: an engine of its own, fed requests in chunks;
* :mod:`.coordinator` — the parent: hands out the work, merges outcomes and progress,
  handles Ctrl-C and workers that die.

How work is distributed: dynamically. The parent keeps the requests (parsed and validated
before any worker starts) in one queue of *groups* — the requests that share a sha256 (or,
without one, a URL) form one group and always go to the same worker, whose engine then
transfers that content once. Each worker holds a window of about four requests per
connection of its share; the parent tops it up with the next groups whenever half of it
is done, in chunks that shrink as the queue empties, so that the workers finish together.
A worker that dies has the requests it had not finished put back at the head of the queue
for the others (once: a request that outlives two workers is reported failed), and its
claims in the catalog are taken over, since its process is gone.
"""

from __future__ import annotations

from .coordinator import WorkersDidNotStart, run_parallel
from .plan import FILES_PER_WORKER, available_cores, default_workers

__all__ = [
    "FILES_PER_WORKER",
    "WorkersDidNotStart",
    "available_cores",
    "default_workers",
    "run_parallel",
]
