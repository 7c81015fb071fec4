"""The library peer: the manifest fetched through ``pulp_aio_download.run_batch``.

The full pipeline (validation, content-addressed storage, SQLite catalog) with progress off,
as a plugin's sync task code would call it.

Usage: ``python benchmarks/lib_batch.py MANIFEST DATA_DIR [--concurrency N] [--otel]``. Exit 0
when every download succeeded, 1 otherwise (the failures are listed on stderr). ``--otel``
reports metrics to an OpenTelemetry SDK ``MeterProvider`` (an in-memory reader, collected
once at the end and summarised on stderr), to measure what the meter costs per file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--otel", action="store_true")
    args = parser.parse_args(argv)

    import pulp_aio_download as pad

    requests = []
    with open(args.manifest) as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            requests.append(
                pad.DownloadRequest(
                    item["url"],
                    expected_digests={"sha256": item["sha256"]},
                    expected_size=item.get("size"),
                )
            )
    reader = provider = None
    if args.otel:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
    config = pad.EngineConfig(
        data_dir=args.data_dir, max_connections=args.concurrency, meter_provider=provider
    )
    results = pad.run_batch(requests, config=config, return_exceptions=True)
    if reader is not None:
        data = reader.get_metrics_data()
        names = [
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        ]
        print(f"lib_batch: metrics {', '.join(sorted(names))}", file=sys.stderr)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        print(f"{type(failure).__name__}: {failure}", file=sys.stderr)
    print(f"lib_batch: {len(results) - len(failures)}/{len(results)} ok", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
