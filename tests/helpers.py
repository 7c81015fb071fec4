"""Helpers shared by the test tiers (imported as ``from helpers import ...``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pulp_aio_download as pad

__all__ = ["NO_RETRY", "run_cli", "sha256"]

#: One attempt per source: a failure is seen at once, with no backoff sleep.
NO_RETRY = pad.RetryPolicy(attempts=1)


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pulp_aio_download ARGS`` in a process of its own; output as text."""
    return subprocess.run(
        [sys.executable, "-m", "pulp_aio_download", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
