"""Test helpers for pulp_aio_download and for plugins built on it.

:class:`FaultServer` is a loopback HTTP file server that injects faults on request;
:func:`generate_repository` makes a deterministic sample repository to serve from it;
:class:`FakeTransport` answers an engine's requests from a handler, with no socket at all.
This package imports ``aiohttp.web``; the engine never imports it.
"""

from __future__ import annotations

from ..transports.base import TransportRequest as TransportRequest
from .fake import FakeResponse as FakeResponse
from .fake import FakeTransport as FakeTransport
from .repo import PULP_MANIFEST as PULP_MANIFEST
from .repo import SampleFile as SampleFile
from .repo import SampleRepository as SampleRepository
from .repo import generate_repository as generate_repository
from .server import Fault as Fault
from .server import FaultServer as FaultServer
from .server import PathStats as PathStats
from .server import RecordedRequest as RecordedRequest

__all__ = [
    "PULP_MANIFEST",
    "FakeResponse",
    "FakeTransport",
    "Fault",
    "FaultServer",
    "PathStats",
    "RecordedRequest",
    "SampleFile",
    "SampleRepository",
    "TransportRequest",
    "generate_repository",
]
