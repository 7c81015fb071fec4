"""Resume of broken transfers with Range + If-Range, and the fall-backs to a full restart."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import make_engine, sha256
from pulp_aio_download.testing import Fault, FaultServer

RETRY = pad.RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


async def fetch(tmp_path: Path, url: str, data: bytes) -> pad.DownloadResult:
    async with make_engine(tmp_path, pad.RemoteConfig(retry=RETRY)) as e:
        result = await e.download(
            url, expected_digests={"sha256": sha256(data)}, expected_size=len(data)
        )
    assert result.path is not None and result.path.read_bytes() == data
    assert not any((tmp_path / "store" / ".staging").glob("*"))
    return result


async def test_cut_mid_body_is_resumed_with_range(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(1_000_000)
    cut = 400_000
    url = fault_server.add("/a", data, faults=[Fault(truncate_at=cut)])
    result = await fetch(tmp_path, url, data)
    assert result.attempts == 2
    first, second = fault_server.requests_for("/a")
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={cut}-"
    assert second.headers["If-Range"] == f'"{sha256(data)}"'  # the ETag of the first answer
    assert fault_server.stats("/a").statuses == [200, 206]
    # Only the missing bytes were sent again.
    assert fault_server.stats("/a").bytes_sent == len(data)


async def test_each_retry_and_resume_is_one_info_line(
    fault_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(300_000)
    url = fault_server.add("/cut", data, faults=[Fault(truncate_at=100_000)])
    caplog.set_level(logging.INFO, logger="pulp_aio_download")  # what -v shows
    await fetch(tmp_path, url, data)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    retry, resume = (
        [line for line in lines if "retrying in" in line],
        [line for line in lines if "resumes at byte" in line],
    )
    assert len(retry) == 1 and len(resume) == 1, lines
    assert retry[0].startswith(f"{url}: attempt 1 of 3 failed (ConnectionFailed: ")
    assert resume[0].startswith(f"{url}: attempt 2 of 3 resumes at byte 100000 (after ")
    assert "ConnectionFailed: " in resume[0]


async def test_resume_with_last_modified_validator(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    # A weak ETag cannot be used for If-Range: Last-Modified is.
    url = fault_server.add(
        "/a", data, faults=[Fault(truncate_at=50_000, headers={"ETag": 'W/"weak"'})]
    )
    await fetch(tmp_path, url, data)
    second = fault_server.requests_for("/a")[1]
    assert second.headers["Range"] == "bytes=50000-"
    assert second.headers["If-Range"].endswith("GMT")
    assert fault_server.stats("/a").statuses == [200, 206]


async def test_server_ignoring_range_restarts_and_is_valid(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    url = fault_server.add("/a", data, faults=[Fault(truncate_at=100_000)], ignore_range=True)
    result = await fetch(tmp_path, url, data)
    assert result.attempts == 2
    second = fault_server.requests_for("/a")[1]
    assert second.headers.get("Range") == "bytes=100000-"
    assert fault_server.stats("/a").statuses == [200, 200]


async def test_changed_validator_restarts_from_zero(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    # The broken answer carried another ETag: the server's If-Range check fails and it
    # sends the whole (current) file, which the client writes from byte 0.
    url = fault_server.add(
        "/a", data, faults=[Fault(truncate_at=100_000, headers={"ETag": '"old-version"'})]
    )
    await fetch(tmp_path, url, data)
    second = fault_server.requests_for("/a")[1]
    assert second.headers["If-Range"] == '"old-version"'
    assert fault_server.stats("/a").statuses == [200, 200]


async def test_no_validator_no_resume(fault_server: FaultServer, tmp_path: Path) -> None:
    """Without ETag or Last-Modified a Range request could mix two versions: restart."""
    data = os.urandom(100_000)
    url = fault_server.add(
        "/a",
        data,
        faults=[Fault(truncate_at=30_000, headers={"ETag": 'W/"x"', "Last-Modified": ""})],
    )
    await fetch(tmp_path, url, data)
    second = fault_server.requests_for("/a")[1]
    assert "Range" not in second.headers
