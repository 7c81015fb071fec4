"""The ``fault_server`` fixture: a started :class:`FaultServer` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pulp_aio_download.testing import FaultServer


@pytest.fixture
async def fault_server() -> AsyncIterator[FaultServer]:
    """A started FaultServer with nothing registered; closed after the test."""
    async with FaultServer() as server:
        yield server
