"""Byte counts and rates as the command line and the remotes file take them."""

from __future__ import annotations

import pytest

from pulp_aio_download.cli.sizes import parse_bytes


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2000000", 2_000_000),
        ("500K", 500 * 1024),
        ("10M", 10 * 1024**2),
        ("10m", 10 * 1024**2),
        ("1.5MiB", 1_572_864),
        ("1G", 1024**3),
        ("64 KB/s", 64 * 1024),
        ("1", 1),
    ],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "fast", "10T", "-5M", "0", "0.1", "10 M M"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace(".", r"\.")):
        parse_bytes(text)
