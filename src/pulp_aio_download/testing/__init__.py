"""Test helpers for pulp_aio_download and for plugins built on it.

:class:`FaultServer` is a loopback HTTP file server that injects faults on request;
:func:`generate_repository` makes a deterministic sample repository to serve from it.
This package imports ``aiohttp.web``; the engine never imports it.
"""

from __future__ import annotations

from .server import Fault as Fault
from .server import FaultServer as FaultServer
from .server import PathStats as PathStats
from .server import RecordedRequest as RecordedRequest

__all__ = [
    "Fault",
    "FaultServer",
    "PathStats",
    "RecordedRequest",
]
