"""Charts of a benchmark run: one per workload, every tool side by side.

Reads what ``run.py`` wrote (``benchmarks/results/latest.json`` by default) and draws, for
each workload, the throughput of every tool (files/s for the small-file workloads, MB/s
for the others) from the median wall time, with the fastest and slowest run as a range,
and each tool's median CPU seconds written on its bar. The SVGs go to ``docs/img/``, where
the performance page of the documentation shows them::

    pip install 'pulp-aio-download[bench]'          # matplotlib
    python benchmarks/run.py --workloads S,S20k,M,L --repeat 2
    python benchmarks/chart.py                       # or: chart.py RESULTS.json --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results" / "latest.json"
DEFAULT_OUT = HERE.parent / "docs" / "img"

# Our two ways in first, then the peers; colours stay with a tool across the charts.
TOOL_ORDER = (
    "pulp-cli",
    "pulp-cli-w2",
    "pulp-cli-w4",
    "pulp-lib",
    "raw-aiohttp",
    "aria2c",
    "librepo",
    "pulpcore",
    "curl",
)
COLOURS = {
    "pulp-cli": "#3f51b5",
    "pulp-cli-w2": "#303f9f",
    "pulp-cli-w4": "#1a237e",
    "pulp-lib": "#7986cb",
    "raw-aiohttp": "#9e9e9e",
    "aria2c": "#ef6c00",
    "librepo": "#2e7d32",
    "pulpcore": "#00838f",
    "curl": "#6d4c41",
}
# What a bar does not include, said next to it (see the tool table of benchmarks/README.md).
CAVEATS = {"raw-aiohttp": "no catalog", "curl": "no digest check"}
SMALL_FILES = 1000  # a workload with more files than this is charted in files/s


@dataclass(frozen=True)
class Bar:
    """One tool's bar: throughput from the median wall time, the distance to the slowest
    (``low``) and fastest (``high``) run, and the median CPU seconds."""

    tool: str
    value: float
    low: float
    high: float
    cpu: float


def workload_title(name: str, info: dict[str, Any]) -> str:
    """``"S: 2,000 files, 31 MiB"``."""
    files, size = info["files"], info["bytes"]
    title = f"{name}: {files:,} files, {size / 2**20:,.0f} MiB"
    if info.get("delay"):
        title += f", {info['delay'] * 1000:.0f} ms added latency"
    if info.get("limit_rate"):
        title += f", nginx limit_rate {info['limit_rate']}"
    return title


def bars(results: dict[str, Any], workload: str) -> tuple[str, list[Bar]]:
    """The unit and the bars of one workload: the tools that succeeded, in chart order."""
    info = results["workloads"][workload]
    rows = results["summary"][workload]
    per_file = info["files"] > SMALL_FILES
    unit = "files/s" if per_file else "MB/s"
    amount = info["files"] if per_file else info["bytes"] / 1e6
    good = [t for t, row in rows.items() if row["ok"] and row["wall"]]
    tools = [t for t in TOOL_ORDER if t in good] + sorted(t for t in good if t not in TOOL_ORDER)
    out = []
    for tool in tools:
        row = rows[tool]
        value = amount / row["wall"]
        out.append(
            Bar(
                tool=tool,
                value=value,
                low=value - amount / row["wall_max"],
                high=amount / row["wall_min"] - value,
                cpu=row["cpu"],
            )
        )
    return unit, out


def draw(results: dict[str, Any], out: Path) -> list[Path]:
    """Write ``bench-WORKLOAD.svg`` for every workload of ``results``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Reproducible files: no timestamp, fixed ids, text as paths (no font needed to view).
    plt.rcParams.update({"svg.hashsalt": "pulp-aio-download", "svg.fonttype": "path"})
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for workload in results["summary"]:
        info = results["workloads"][workload]
        concurrency = info.get("concurrency", results["concurrency"])
        caption = (
            f"{results['date']}, {results['machine']['nproc']} CPUs, output on "
            f"{results['output_fs']}, concurrency {concurrency}, "
            f"median of {results['repeat']} (range: fastest-slowest)"
        )
        unit, chart = bars(results, workload)
        if not chart:
            continue
        tools = [b.tool for b in chart]
        values = [b.value for b in chart]
        low = [b.low for b in chart]
        high = [b.high for b in chart]
        fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(tools)), dpi=100)
        drawn = ax.barh(
            tools,
            values,
            xerr=[low, high],
            color=[COLOURS.get(t, "#607d8b") for t in tools],
            error_kw={"ecolor": "#212121", "capsize": 3, "linewidth": 1},
        )
        ax.invert_yaxis()
        ax.set_xlabel(f"{unit} (higher is faster)")
        ax.set_title(workload_title(workload, info), loc="left", fontsize=11)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        top = max(v + h for v, h in zip(values, high, strict=True))
        ax.set_xlim(0, top * 1.45)
        for patch, b in zip(drawn, chart, strict=True):
            label = f" {b.value:,.0f} {unit}, CPU {b.cpu:.2f} s"
            if b.tool in CAVEATS:
                label += f" ({CAVEATS[b.tool]})"
            ax.text(
                patch.get_width() + b.high,
                patch.get_y() + patch.get_height() / 2,
                label,
                va="center",
                fontsize=8,
            )
        fig.text(0.01, 0.01, caption, fontsize=7, color="#616161")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        path = out / f"bench-{workload}.svg"
        fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=DEFAULT_RESULTS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the SVGs go")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"{args.results}: not found; run benchmarks/run.py first", file=sys.stderr)
        return 2
    for path in draw(results, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
