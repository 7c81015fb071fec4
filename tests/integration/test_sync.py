"""The sync helpers: run_batch and download_sync (issue 2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import pulp_aio_download as pad
from pulp_aio_download.testing import Fault, FaultServer


def _config(tmp_path: Path, **kwargs: object) -> pad.EngineConfig:
    return pad.EngineConfig(
        data_dir=tmp_path / "data",
        remotes=[pad.RemoteConfig(retry=pad.RetryPolicy(attempts=1))],
        **kwargs,  # type: ignore[arg-type]
    )


def test_run_batch_keeps_order_and_returns_errors(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    payloads = [f"file {i}".encode() * (i + 1) for i in range(20)]
    urls = [threaded_server.add(f"/f{i}", p) for i, p in enumerate(payloads)]
    urls.insert(7, threaded_server.add("/gone", b"", faults=Fault(status=404)))
    requests = [pad.DownloadRequest(u) for u in urls]
    results = pad.run_batch(requests, config=_config(tmp_path, max_connections=4))
    assert len(results) == 21
    error = results.pop(7)
    assert isinstance(error, pad.HTTPStatusError) and error.status == 404
    for result, payload in zip(results, payloads, strict=True):
        assert isinstance(result, pad.DownloadResult)
        assert result.path is not None and result.path.read_bytes() == payload
        assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert threaded_server.totals.peak_inflight <= 4


def test_run_batch_raise_first_error_leaves_no_staging(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    urls = [threaded_server.add(f"/s{i}", b"x" * 1000, faults=Fault(delay=0.2)) for i in range(10)]
    urls.insert(0, threaded_server.add("/bad", b"", faults=Fault(status=403)))
    with pytest.raises(pad.HTTPStatusError) as info:
        pad.run_batch(urls, config=_config(tmp_path), return_exceptions=False)
    assert info.value.status == 403
    staging = tmp_path / "data" / "artifacts" / ".staging"
    assert list(staging.iterdir()) == []


def test_download_sync(threaded_server: FaultServer, tmp_path: Path) -> None:
    url = threaded_server.add("/one", b"one file")
    result = pad.download_sync(url, config=_config(tmp_path), expected_size=8)
    assert result.path is not None and result.path.read_bytes() == b"one file"
    with pytest.raises(pad.SizeMismatch):
        pad.download_sync(url, config=_config(tmp_path), expected_size=9)


async def test_sync_helpers_refuse_a_running_loop(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"running event loop.*await engine"):
        pad.run_batch(["http://127.0.0.1:9/x"], config=_config(tmp_path))
    with pytest.raises(RuntimeError, match="running event loop"):
        pad.download_sync("http://127.0.0.1:9/x", config=_config(tmp_path))
