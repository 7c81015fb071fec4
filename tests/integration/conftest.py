"""The integration tier: real servers on loopback, nothing else.

Every test here may connect to loopback addresses only (pytest-socket), and fails when the
event loop makes a blocking call from the package's own code (blockbuster: file reads and
writes, ``time.sleep``, ``os.stat`` and the like on the loop's thread). Tests themselves,
the servers of ``pulp_aio_download.testing`` and the fixtures may block: they are not
what is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster

HERE = Path(__file__).parent
LOOPBACK = ["127.0.0.0/8", "::1"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.allow_hosts(LOOPBACK))


#: Blocking calls allowed on the loop, (file, functions) of a frame on the stack: the client
#: libraries read their own files once per client or connection (asyncpg ~/.pgpass and
#: ~/.postgresql, botocore ~/.aws/config and its data files); the SQLite catalog looks at
#: its directory to explain an error it reports; EngineConfig resolves allowed_file_roots
#: when it is constructed.
ALLOWED = [
    ("asyncpg/connect_utils.py", {"_parse_connect_dsn_and_args"}),
    ("aiobotocore/session.py", {"_create_client"}),
    ("aiobotocore/client.py", {"get_paginator"}),
    ("pulp_aio_download/catalog/sqlite.py", {"_why_not_writable"}),
    ("pulp_aio_download/config.py", {"__post_init__"}),
]


@pytest.fixture(autouse=True)
def no_blocking_calls_in_the_loop() -> Iterator[BlockBuster]:
    """Fail the test when the package blocks the event loop."""
    buster = BlockBuster(
        scanned_modules=["pulp_aio_download"], excluded_modules=["pulp_aio_download.testing"]
    )
    for function in buster.functions.values():
        for filename, names in ALLOWED:
            function.can_block_in(filename, names)
    buster.activate()
    try:
        yield buster
    finally:
        buster.deactivate()
