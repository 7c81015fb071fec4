"""Metrics with ``run_batch(..., workers=2)`` (issue 24, item 6): real worker processes get no
meter provider; the parent counts the files they transferred and those it served itself."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import pulp_aio_download as pad
from pulp_aio_download.testing import FaultServer


def totals(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, object], ...], int]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        tuple(sorted(point.attributes.items())): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    }


def test_the_parent_counts_what_the_workers_transfer_and_what_it_serves(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    files = [os.urandom(1000 + i) for i in range(6)]
    requests = [
        pad.DownloadRequest(
            threaded_server.add(f"/w/{i}", data),
            expected_digests={"sha256": hashlib.sha256(data).hexdigest()},
        )
        for i, data in enumerate(files)
    ]
    missing = pad.DownloadRequest(threaded_server.url("/w/missing"))
    config = pad.EngineConfig(data_dir=tmp_path / "data", meter_provider=provider)
    try:
        first = pad.run_batch([*requests, missing], config, workers=2)
        assert isinstance(first[-1], pad.HTTPStatusError)
        second = pad.run_batch(requests, config, workers=2)  # all stored: the parent serves
        assert all(r.cached for r in second)
        port = threaded_server.port
        assert totals(reader, "pad.download.files") == {
            (("pad.outcome", "done"), ("pad.remote", "default")): 6,
            (("pad.outcome", "cached"), ("pad.remote", "default")): 6,
            (("error.type", "404"), ("pad.outcome", "failed"), ("pad.remote", "default")): 1,
        }
        served = sum(map(len, files))
        assert totals(reader, "pad.download.bytes") == {
            (
                ("pad.cached", False),
                ("pad.remote", "default"),
                ("server.address", "127.0.0.1"),
                ("server.port", port),
            ): served,
            (("pad.cached", True), ("pad.remote", "default")): served,
        }
    finally:
        provider.shutdown()
