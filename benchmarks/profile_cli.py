"""Profile ``pulp-aio-download sync`` (or the raw aiohttp peer) on a benchmark corpus.

Starts the benchmark nginx (:mod:`nginx`) on the cached corpus of a workload
(:mod:`corpus`, the same files ``run.py`` fetches), writes the manifest, and runs one
child process under a profiler, its output on tmpfs as in ``run.py``:

* ``--profiler py-spy`` (default; ``pip install py-spy``): sampling, low overhead, every
  thread, native frames off. The raw stacks go to ``OUT/NAME.pyspy.txt`` and the report
  lists the functions with the largest share of samples, by themselves (*self*) and with
  what they call (*total*), plus the share of samples each thread took.
* ``--profiler cprofile``: ``python -m cProfile -o OUT/NAME.prof`` (the event-loop thread
  only, with its own overhead on every call); the report is pstats' top by ``tottime``
  and by ``cumulative``, and call counts per file are shown (``ncalls / files``).
* ``--profiler none``: just the CPU seconds of the child (as ``run.py`` measures them).

``pulp-cli`` runs with ``--workers 1`` unless ``--workers`` says otherwise: one engine
process, the per-file path (py-spy samples the process it starts, not worker processes).

Usage::

    PYTHONPATH=src python benchmarks/profile_cli.py S20k --profiler py-spy --top 40
    PYTHONPATH=src python benchmarks/profile_cli.py S --profiler cprofile --tool raw-aiohttp

The CLI runs as ``sys.executable -m pulp_aio_download``, so ``PYTHONPATH=src`` profiles
the checkout it is run from.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402
from nginx import Nginx  # noqa: E402
from run import byte_compile_pulp  # noqa: E402

DEFAULT_OUT = HERE / "results" / "profiles"


def _command(
    tool: str, manifest: Path, out: Path, concurrency: int, workers: int | None
) -> list[str]:
    if tool == "pulp-cli":
        extra = [] if workers is None else ["--workers", str(workers)]
        return [
            sys.executable,
            "-m",
            "pulp_aio_download",
            "sync",
            str(manifest),
            "--data-dir",
            str(out),
            "--concurrency",
            str(concurrency),
            "--progress",
            "none",
            *extra,
        ]
    return [
        sys.executable,
        str(HERE / "raw_aiohttp.py"),
        str(manifest),
        str(out),
        "--concurrency",
        str(concurrency),
    ]


def _run(argv: list[str]) -> tuple[int, float, float]:
    """Run ``argv``; (exit code, wall s, CPU s of it and every process it waited for)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - started, usage.ru_utime + usage.ru_stime


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"; keep the function and file.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("site-packages", "pulp_aio_download", "lib"):
        if anchor in parts:
            path = "/".join(parts[parts.index(anchor) + (anchor != "pulp_aio_download") :])
            break
    return f"{name} ({path})"


def _thread_name(frame: str) -> str:
    # "thread (7477): MainThread"; the executor's workers as one line ("asyncio_*").
    name = frame.partition("): ")[2] or frame
    return name.rstrip("0123456789").rstrip("_") + "_*" if name[-1:].isdigit() else name


def report_pyspy(raw: Path, top: int) -> str:
    """Self and total shares of samples per function, and per thread, from raw stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        threads[_thread_name(frames[0])] += count
        names = [_frame_name(f) for f in frames[1:]] or ["(idle)"]
        own[names[-1]] += count
        for name in set(names):
            total[name] += count
    if not samples:
        return "no samples\n"
    lines = [f"{samples} samples\n", "| thread | share |", "|---|---|"]
    lines += [f"| {t} | {c / samples:.1%} |" for t, c in threads.most_common(8)]
    lines += ["", "| self | total | function |", "|---|---|---|"]
    lines += [
        f"| {c / samples:.1%} | {total[name] / samples:.1%} | `{name}` |"
        for name, c in own.most_common(top)
    ]
    lines += ["", "| total | function |", "|---|---|"]
    lines += [f"| {c / samples:.1%} | `{name}` |" for name, c in total.most_common(top)]
    return "\n".join(lines) + "\n"


def report_cprofile(prof: Path, top: int, files: int) -> str:
    """pstats' top by tottime and by cumulative, with calls per file."""
    stats = pstats.Stats(str(prof))
    entries = stats.stats  # type: ignore[attr-defined]
    grand = stats.total_tt  # type: ignore[attr-defined]
    lines = [f"{grand:.2f} s profiled (event-loop thread only)\n"]
    for key, title in ((3, "tottime"), (4, "cumtime")):
        lines += [f"| {title} | share | calls/file | function |", "|---|---|---|---|"]
        ranked = sorted(entries.items(), key=lambda kv: kv[1][key - 1], reverse=True)[:top]
        for (path, line, func), (_cc, nc, tt, ct, _callers) in ranked:
            value = tt if key == 3 else ct
            where = _frame_name(f"{func} ({path}:{line})")
            lines.append(f"| {value:.2f} | {value / grand:.1%} | {nc / files:.2f} | `{where}` |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", default="S20k", choices=sorted(corpus_mod.WORKLOADS))
    parser.add_argument("--tool", choices=("pulp-cli", "raw-aiohttp"), default="pulp-cli")
    parser.add_argument("--profiler", choices=("py-spy", "cprofile", "none"), default="py-spy")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--gil", action="store_true", help="py-spy: only the thread holding the GIL"
    )
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="pulp-cli: --workers N (default 1: the per-file path of one engine process; "
        "0: the CLI's own default)",
    )
    parser.add_argument("--quick", action="store_true", help="the small corpora of run.py")
    parser.add_argument("--corpus-dir", type=Path, default=corpus_mod.DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where profiles go")
    args = parser.parse_args(argv)

    shapes = corpus_mod.QUICK_WORKLOADS if args.quick else corpus_mod.WORKLOADS
    corpus = corpus_mod.ensure_corpus(shapes[args.workload], args.corpus_dir)
    files = len(corpus.entries)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{args.workload}-{args.tool}"
    if args.tool == "pulp-cli":  # as run.py measures it: no module compiled at start-up
        note = byte_compile_pulp()
        if note is not None:
            print(f"profile: {note}", file=sys.stderr)
    base = Path(tempfile.mkdtemp(prefix="pad-profile-", dir="/dev/shm"))
    try:
        with Nginx(args.corpus_dir) as server:
            out = base / "out"
            inputs = corpus_mod.write_client_inputs(corpus, server.base_url, base / "inputs", out)
            workers = args.workers or None
            command = _command(args.tool, inputs.manifest, out, args.concurrency, workers)
            if args.profiler == "py-spy":
                spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                raw = args.out / f"{name}.pyspy.txt"
                command = [
                    spy, "record", "--format", "raw", "--threads", "--rate", str(args.rate),
                    "--output", str(raw), *(["--gil"] if args.gil else []), "--", *command,
                ]  # fmt: skip
            elif args.profiler == "cprofile":
                prof = args.out / f"{name}.prof"
                command = [sys.executable, "-m", "cProfile", "-o", str(prof), *command[1:]]
            code, wall, cpu = _run(command)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"# {name}: exit {code}, wall {wall:.2f} s, CPU {cpu:.2f} s "
          f"({cpu / files * 1000:.3f} ms/file, profiler included)\n")  # fmt: skip
    if code == 0 and args.profiler == "py-spy":
        print(report_pyspy(raw, args.top))
    elif code == 0 and args.profiler == "cprofile":
        print(report_cprofile(prof, args.top, files))
    return code


if __name__ == "__main__":
    sys.exit(main())
