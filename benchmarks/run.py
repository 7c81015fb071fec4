"""Benchmark pulp-aio-download against its peers, side by side, in one run.

For every workload, every repeat runs every tool once (tool order rotated each repeat, so
drift hits all tools alike) against a private nginx on 127.0.0.1 serving a cached
deterministic corpus. Each run is one child process, timed whole (start-up included):
wall time and CPU seconds (user + sys) come from ``os.wait4``, peak RSS from GNU time
(see :func:`measure`); open file descriptors are sampled from ``/proc/PID/fd``. The
output directory is on tmpfs (``/dev/shm``) unless ``--ext4`` is given, and is emptied
between runs (not timed).

Tools: ``pulp-cli`` (``pulp-aio-download sync``: validation, storage, SQLite catalog,
progress off), ``pulp-cli-w1``/``-w2``/``-w4`` (the same with ``--workers N``, when the
CLI has that option), ``pulp-lib`` (``run_batch`` via benchmarks/lib_batch.py),
``raw-aiohttp`` (benchmarks/raw_aiohttp.py), ``aria2c`` (per-file sha-256 checksums from
its input file), ``librepo`` (dnf's engine, through Debian's python3-librepo on the system
Python: benchmarks/librepo_peer.py), ``pulpcore`` (pulpcore's ``HttpDownloader`` from a
separate venv: benchmarks/pulpcore_peer.py, its Django start-up reported separately) and
``curl`` (``--parallel``, no check). Tools that are not installed, or pulp tools whose
CLI/API/option is not there yet, are skipped with a note.

Workloads set their own server and concurrency where they say so: WAN is served by an
nginx that holds every request 30 ms before the first byte and sends at most 4 MiB/s per
response, fetched at concurrency 64.

Segmented downloads (issue 15) have an opt-in workload, not in the default list: ``SEG``,
one 1 GiB file from an nginx capped at 50 MB/s per connection (``limit_rate 50m``), for
the tools ``pulp-cli`` (one stream), ``pulp-cli-seg4`` (``sync --segments 4``) and
``aria2c-s4`` (``aria2c -s4 -x4``)::

    python benchmarks/run.py --workloads SEG --tools pulp-cli,pulp-cli-seg4,aria2c-s4

Also measured in the same run: hashlib sha256 throughput on one and two threads, and for
S the re-run of ``pulp-aio-download sync`` with everything already stored (with the number
of HTTP requests it made, counted from an nginx access log enabled only for that check).

The markdown report goes to stdout and ``benchmarks/results/latest.md``, the raw samples
to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus as corpus_mod  # noqa: E402
from nginx import Nginx, find_nginx  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024
WORKERS = (1, 2, 4)
WORKER_TOOLS = tuple(f"pulp-cli-w{n}" for n in WORKERS)
ALL_TOOLS = (
    "pulp-cli",
    *WORKER_TOOLS,
    "pulp-lib",
    "pulp-lib-otel",
    "raw-aiohttp",
    "aria2c",
    "librepo",
    "pulpcore",
    "curl",
)
PULP_TOOLS = ("pulp-cli", "pulp-lib")
DEFAULT_WORKLOADS = "S,S20k,M,L,WAN"
PULP_CLI = "pulp-aio-download"
# Debian's python3-librepo is built for the system interpreter only.
SYSTEM_PYTHON = "/usr/bin/python3"
LIBREPO_MAX_PARALLEL = 20  # librepo_peer.py caps the concurrency there
# pulpcore lives in a venv of its own (benchmarks/install.sh makes it), never in ours.
PULPCORE_VENV = Path(
    os.environ.get("PULPCORE_VENV")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "pulp-aio-download-bench"
    / "pulpcore-venv"
)
PULPCORE_PYTHON = str(PULPCORE_VENV / "bin" / "python")
# A tool that reports its own start-up prints this on stderr: "bench-startup: WALL CPU".
STARTUP_MARK = "bench-startup:"


# ---------------------------------------------------------------------------------------
# Tools


@dataclass
class Context:
    """What a tool needs to build its command line for one run."""

    inputs: corpus_mod.ClientInputs
    out: Path
    concurrency: int


@dataclass
class Tool:
    name: str
    description: str
    command: Callable[[Context], list[str]]
    # Checks the output after a successful exit: an error message or None.
    check: Callable[[Context, corpus_mod.Corpus], str | None]
    available: Callable[[], str | None]  # None when usable, else why not


def _pulp_cli_argv() -> list[str]:
    found = shutil.which(PULP_CLI)
    return [found] if found else [sys.executable, "-m", "pulp_aio_download"]


def _probe(argv: list[str], timeout: float = 60) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        return f"`{' '.join(argv[-3:])}` exited {done.returncode}: " + (
            lines[-1] if lines else "no output"
        )
    return None


def byte_compile_pulp() -> str | None:
    """Byte-compile the package ``python -m pulp_aio_download`` imports (a checkout on
    ``PYTHONPATH``), as ``pip install`` does: with ``PYTHONDONTWRITEBYTECODE`` set (this
    machine's environment) a checkout's modules were compiled from source by every run,
    ~0.1 CPU s of each process's start-up that no installed copy pays. A note, or None."""
    argv = [sys.executable, "-c", "import pulp_aio_download as p; print(p.__file__)"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=60, check=True, text=True)
    except (OSError, subprocess.SubprocessError):
        return None  # pulp-cli is skipped with its own note
    package = str(Path(done.stdout.strip()).parent)
    compiled = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", package], capture_output=True, check=False
    )
    if compiled.returncode != 0:
        return f"byte-compiling {package} failed: pulp-cli start-up includes compiling it"
    return None


def _pulp_cli_available() -> str | None:
    return _probe([*_pulp_cli_argv(), "sync", "--help"])


def _pulp_cli_workers_available() -> str | None:
    """None when ``sync --help`` lists ``--workers``, else why the worker runs are skipped."""
    argv = [*_pulp_cli_argv(), "sync", "--help"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    if done.returncode != 0:
        return f"`pulp-aio-download sync --help` exited {done.returncode}"
    if b"--workers" not in done.stdout:
        return "`pulp-aio-download sync --help` has no --workers option yet (issue 14, item 3)"
    return None


def _pulp_cli_command(c: Context, *extra: str) -> list[str]:
    return [
        *_pulp_cli_argv(),
        "sync",
        str(c.inputs.manifest),
        "--data-dir",
        str(c.out),
        "--concurrency",
        str(c.concurrency),
        "--progress",
        "none",
        *extra,
    ]


def _pulp_cli_segments_available() -> str | None:
    """None when ``sync --help`` lists ``--segments``, else why the runs are skipped."""
    argv = [*_pulp_cli_argv(), "sync", "--help"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    if done.returncode != 0 or b"--segments" not in done.stdout:
        return "`pulp-aio-download sync --help` has no --segments option"
    return None


def _aria2c_command(c: Context, split: int = 1) -> list[str]:
    return [
        "aria2c",
        "--no-conf",
        "-i",
        str(c.inputs.aria2),
        f"--max-concurrent-downloads={c.concurrency}",
        f"--max-connection-per-server={split}",
        f"--split={split}",
        "--file-allocation=none",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--download-result=hide",
        "--quiet=true",
    ]


def _librepo_available() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (python3-librepo is a Debian package)"
    why = _probe([SYSTEM_PYTHON, "-c", "import librepo"])
    return f"python3-librepo not installed (bash benchmarks/install.sh): {why}" if why else None


_PULPCORE_FOUND = (
    "import importlib.util as u, sys; "
    "sys.exit(not (u.find_spec('pulpcore.download') and u.find_spec('django')))"
)


def _pulpcore_available() -> str | None:
    if not os.access(PULPCORE_PYTHON, os.X_OK):
        return f"no pulpcore venv at {PULPCORE_VENV} (bash benchmarks/install.sh)"
    # Found, not imported: pulpcore.download needs Django settings (pulpcore_peer.py has them).
    why = _probe([PULPCORE_PYTHON, "-c", _PULPCORE_FOUND])
    return f"pulpcore not importable in {PULPCORE_VENV}: {why}" if why else None


def _peer_command(python: str, script: str) -> Callable[[Context], list[str]]:
    def command(c: Context) -> list[str]:
        return [
            python,
            str(HERE / script),
            str(c.inputs.manifest),
            str(c.out),
            "--concurrency",
            str(c.concurrency),
        ]

    return command


def _pulp_lib_available() -> str | None:
    return _probe([sys.executable, "-c", "from pulp_aio_download import run_batch, EngineConfig"])


def _pulp_lib_otel_available() -> str | None:
    return _pulp_lib_available() or _probe(
        [sys.executable, "-c", "import opentelemetry.sdk.metrics, pulp_aio_download.metrics"]
    )


def _which(name: str) -> Callable[[], str | None]:
    def available() -> str | None:
        return None if shutil.which(name) else f"{name} not installed (bash benchmarks/install.sh)"

    return available


def _exit_code_only(ctx: Context, corpus: corpus_mod.Corpus) -> str | None:
    return None


def _check_files(ctx: Context, corpus: corpus_mod.Corpus) -> str | None:
    """Every file present with its size (the tools themselves checked sha256 where noted)."""
    bad = 0
    for entry in corpus.entries:
        try:
            if os.stat(ctx.out / entry.name).st_size != entry.size:
                bad += 1
        except FileNotFoundError:
            bad += 1
    return f"{bad} of {len(corpus.entries)} files missing or of the wrong size" if bad else None


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "pulp-cli",
            "`pulp-aio-download sync` (validation, storage, SQLite catalog, progress off)",
            _pulp_cli_command,
            _exit_code_only,
            _pulp_cli_available,
        ),
        *(
            Tool(
                f"pulp-cli-w{n}",
                f"`pulp-aio-download sync --workers {n}`",
                lambda c, n=n: _pulp_cli_command(c, "--workers", str(n)),
                _exit_code_only,
                _pulp_cli_workers_available,
            )
            for n in WORKERS
        ),
        Tool(
            "pulp-lib",
            "`run_batch` via benchmarks/lib_batch.py (same pipeline, library API)",
            lambda c: [
                sys.executable,
                str(HERE / "lib_batch.py"),
                str(c.inputs.manifest),
                str(c.out),
                "--concurrency",
                str(c.concurrency),
            ],
            _exit_code_only,
            _pulp_lib_available,
        ),
        Tool(
            "pulp-lib-otel",
            "the same with an OpenTelemetry SDK meter provider (lib_batch.py --otel)",
            lambda c: [
                sys.executable,
                str(HERE / "lib_batch.py"),
                str(c.inputs.manifest),
                str(c.out),
                "--concurrency",
                str(c.concurrency),
                "--otel",
            ],
            _exit_code_only,
            _pulp_lib_otel_available,
        ),
        Tool(
            "raw-aiohttp",
            "benchmarks/raw_aiohttp.py: stream + sha256 + rename, no catalog/progress/fsync",
            lambda c: [
                sys.executable,
                str(HERE / "raw_aiohttp.py"),
                str(c.inputs.manifest),
                str(c.out),
                "--concurrency",
                str(c.concurrency),
            ],
            _check_files,
            lambda: None,
        ),
        Tool(
            "aria2c",
            "aria2c -i with `checksum=sha-256=...` per file (verified after download)",
            _aria2c_command,
            _check_files,
            _which("aria2c"),
        ),
        Tool(
            "pulp-cli-seg4",
            "`pulp-aio-download sync --segments 4` (large files as 4 ranges at once)",
            lambda c: _pulp_cli_command(c, "--segments", "4"),
            _exit_code_only,
            _pulp_cli_segments_available,
        ),
        Tool(
            "aria2c-s4",
            "aria2c -s4 -x4: 4 connections per file (`--split=4 --max-connection-per-server=4`)",
            lambda c: _aria2c_command(c, 4),
            _check_files,
            _which("aria2c"),
        ),
        Tool(
            "librepo",
            "benchmarks/librepo_peer.py on /usr/bin/python3: one librepo.Handle, "
            "PackageTarget(checksum_type=SHA256, expectedsize) per file, download_packages",
            _peer_command(SYSTEM_PYTHON, "librepo_peer.py"),
            _check_files,
            _librepo_available,
        ),
        Tool(
            "pulpcore",
            "benchmarks/pulpcore_peer.py in its own venv: DownloaderFactory -> HttpDownloader "
            "(expected_digests, expected_size) gathered under the factory's semaphore",
            _peer_command(PULPCORE_PYTHON, "pulpcore_peer.py"),
            _check_files,
            _pulpcore_available,
        ),
        Tool(
            "curl",
            "curl --parallel (no integrity check)",
            lambda c: [
                "curl",
                "-q",
                "--parallel",
                "--parallel-max",
                str(c.concurrency),
                "--no-progress-meter",
                "--fail",
                "-K",
                str(c.inputs.curl),
            ],
            _check_files,
            _which("curl"),
        ),
    )
}


# ---------------------------------------------------------------------------------------
# Measuring one child process


@dataclass
class Sample:
    workload: str
    tool: str
    repeat: int
    ok: bool
    wall: float
    cpu_user: float
    cpu_sys: float
    max_rss_kib: int
    peak_fds: int
    error: str | None = None
    http_requests: int | None = None
    # What the tool itself reported as its start-up (wall s, CPU s), if it does.
    startup_wall: float | None = None
    startup_cpu: float | None = None

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


class FdSampler(threading.Thread):
    """Polls the open fds of a process every ``interval`` seconds, keeping the maximum.

    With ``via_time`` the process is GNU time and the one sampled is its child.
    """

    def __init__(self, pid: int, *, via_time: bool, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.via_time = via_time
        self.interval = interval
        self.peak = 0
        self.stopped = threading.Event()

    def _sampled_pid(self) -> int | None:
        if not self.via_time:
            return self.pid
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def run(self) -> None:
        target = None
        while not self.stopped.is_set():
            if target is None:
                target = self._sampled_pid()
            if target is not None:
                try:
                    self.peak = max(self.peak, len(os.listdir(f"/proc/{target}/fd")))
                except OSError:
                    pass
            self.stopped.wait(self.interval)


def _gnu_time() -> str | None:
    """GNU time, which measures a child's peak RSS from a small parent of its own."""
    path = shutil.which("time") or (
        "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    )
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if b"GNU" in done.stdout + done.stderr else None


GNU_TIME = _gnu_time()


def measure(argv: list[str], log: Path, timeout: float) -> tuple[int, float, Any, int, int]:
    """Run ``argv`` to completion: (exit code, wall s, rusage, peak RSS KiB, peak fds).

    The child's ``ru_maxrss`` from wait4 also counts the memory of the forked runner
    before exec (Linux keeps the high-water mark across exec), which would put a floor
    of this Python process's RSS under every tool. So the child is started by GNU time
    (a tiny process) and its ``%M`` is the peak RSS; without GNU time, ``ru_maxrss``.
    """
    rss_file = log.with_suffix(".rss")
    if GNU_TIME:
        argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *argv]
    with open(log, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        sampler = FdSampler(process.pid, via_time=GNU_TIME is not None)
        sampler.start()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        sampler.stopped.set()
        sampler.join()
    # wait4 reaped it: tell Popen so it does not wait again.
    process.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss
    if GNU_TIME:
        try:
            rss = int(rss_file.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
    return process.returncode, wall, usage, rss, sampler.peak


def _tail(path: Path, lines: int = 2) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _startup(log: Path) -> tuple[float | None, float | None]:
    """The ``bench-startup: WALL CPU`` line a tool printed, as numbers."""
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith(STARTUP_MARK):
                    wall, cpu = line[len(STARTUP_MARK) :].split()[:2]
                    return float(wall), float(cpu)
    except (OSError, ValueError):
        pass
    return None, None


def _empty(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def run_one(
    tool: Tool,
    workload: str,
    corpus: corpus_mod.Corpus,
    ctx: Context,
    repeat: int,
    logs: Path,
    timeout: float,
) -> Sample:
    _empty(ctx.out)
    log = logs / f"{workload}-{tool.name}-{repeat}.log"
    code, wall, usage, rss, fds = measure(tool.command(ctx), log, timeout)
    error = f"exit {code}: {_tail(log)}" if code != 0 else tool.check(ctx, corpus)
    startup_wall, startup_cpu = _startup(log)
    return Sample(
        workload,
        tool.name,
        repeat,
        error is None,
        wall,
        usage.ru_utime,
        usage.ru_stime,
        rss,
        fds,
        error,
        startup_wall=startup_wall,
        startup_cpu=startup_cpu,
    )


# ---------------------------------------------------------------------------------------
# Baselines and machine description


def hashlib_baseline(total: int = 512 * MiB, chunk: int = 1 * MiB) -> dict[str, float]:
    """sha256 MB/s on one thread and on two threads at once (hashlib releases the GIL)."""
    data = os.urandom(chunk)
    view = memoryview(data)

    def hash_bytes(n: int) -> None:
        h = hashlib.sha256()
        for _ in range(n // chunk):
            h.update(view)

    hash_bytes(16 * MiB)  # warm-up
    start = time.perf_counter()
    hash_bytes(total)
    one = total / (time.perf_counter() - start) / MB
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        start = time.perf_counter()
        list(pool.map(hash_bytes, [total, total]))
        two = 2 * total / (time.perf_counter() - start) / MB
    return {"sha256_1thread_MBps": one, "sha256_2threads_MBps": two}


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()
    return text[0] if text else "?"


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nginx = find_nginx()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": _first_line([nginx, "-v"]) if nginx else "not installed",
        "aria2c": _first_line(["aria2c", "--version"]),
        "curl": _first_line(["curl", "--version"]),
        "librepo": _version(SYSTEM_PYTHON, "import librepo; print(librepo.VERSION)"),
        "pulpcore": _version(
            PULPCORE_PYTHON, "import importlib.metadata as m; print(m.version('pulpcore'))"
        ),
    }


def _version(python: str, code: str) -> str:
    if not os.access(python, os.X_OK):
        return "not installed"
    line = _first_line([python, "-c", code])
    return line if line[:1].isdigit() else "not installed"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _fs_type(path: Path) -> str:
    try:
        done = subprocess.run(
            ["stat", "-f", "-c", "%T", str(path)], capture_output=True, check=False
        )
        return done.stdout.decode().strip() or "?"
    except OSError:
        return "?"


# ---------------------------------------------------------------------------------------
# Summaries and the report


@dataclass
class Summary:
    workload: str
    tool: str
    runs: int
    ok: int
    wall: float | None = None
    wall_min: float | None = None
    wall_max: float | None = None
    files_per_s: float | None = None
    mb_per_s: float | None = None
    cpu: float | None = None
    cpu_ms_per_file: float | None = None
    startup_wall: float | None = None
    startup_cpu: float | None = None
    max_rss_mib: float | None = None
    peak_fds: int | None = None
    vs_aria2c: float | None = None
    vs_librepo: float | None = None
    errors: list[str] = field(default_factory=list)


def summarize(
    samples: list[Sample], corpora: dict[str, corpus_mod.Corpus]
) -> dict[str, dict[str, Summary]]:
    table: dict[str, dict[str, Summary]] = {}
    for s in samples:
        row = table.setdefault(s.workload, {}).setdefault(s.tool, Summary(s.workload, s.tool, 0, 0))
        row.runs += 1
        if not s.ok and s.error:
            row.errors.append(s.error)
    for workload, rows in table.items():
        c = corpora[workload]
        for tool, row in rows.items():
            good = [s for s in samples if s.workload == workload and s.tool == tool and s.ok]
            row.ok = len(good)
            if not good:
                continue
            walls = [s.wall for s in good]
            row.wall = statistics.median(walls)
            row.wall_min, row.wall_max = min(walls), max(walls)
            row.files_per_s = len(c.entries) / row.wall
            row.mb_per_s = c.total_bytes / row.wall / MB
            row.cpu = statistics.median(s.cpu for s in good)
            row.cpu_ms_per_file = row.cpu / len(c.entries) * 1000
            startups = [s for s in good if s.startup_wall is not None]
            if startups:
                row.startup_wall = statistics.median(s.startup_wall or 0.0 for s in startups)
                row.startup_cpu = statistics.median(s.startup_cpu or 0.0 for s in startups)
            row.max_rss_mib = max(s.max_rss_kib for s in good) / 1024
            row.peak_fds = max(s.peak_fds for s in good) or None  # 0: ended before a sample
        aria2c, librepo = rows.get("aria2c"), rows.get("librepo")
        for row in rows.values():
            if aria2c and aria2c.wall and row.wall:
                row.vs_aria2c = aria2c.wall / row.wall
            if librepo and librepo.wall and row.wall:
                row.vs_librepo = librepo.wall / row.wall
    return table


def _fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _best_pulp(rows: dict[str, Summary]) -> Summary | None:
    for name in PULP_TOOLS:
        row = rows.get(name)
        if row and row.wall:
            return row
    return None


CLI_TOOLS = ("pulp-cli", *WORKER_TOOLS)


def _best_cli(rows: dict[str, Summary]) -> Summary | None:
    """The fastest ``pulp-aio-download sync`` run (default or any ``--workers``)."""
    found = [rows[n] for n in CLI_TOOLS if n in rows and rows[n].wall]
    return min(found, key=lambda r: r.wall or 0.0) if found else None


def targets_issue14(
    table: dict[str, dict[str, Summary]],
    hashing: dict[str, float],
    reruns: dict[str, dict[str, Any]],
) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target of issue 14 this run can judge.

    Throughput targets use the fastest CLI run, with or without ``--workers`` (named).
    """
    out: list[tuple[str, str, str]] = []

    def versus(workload: str, peer: str, need: float, unit: str) -> None:
        rows = table.get(workload)
        if rows is None:
            return
        label = f"{workload}: >= {need}x {peer} {unit}"
        pulp, other = _best_cli(rows), rows.get(peer)
        if pulp is None or pulp.wall is None or other is None or other.wall is None:
            out.append((label, "-", "pending"))
            return
        ratio = other.wall / pulp.wall
        verdict = "met" if ratio >= need else "NOT met"
        out.append((label, f"{ratio:.2f}x ({pulp.tool})", verdict))

    rows = table.get("S20k")
    if rows is not None:
        label = "S20k: CPU per file of pulp-cli <= 1.5x raw aiohttp's"
        pulp, raw = rows.get("pulp-cli"), rows.get("raw-aiohttp")
        if pulp and raw and pulp.cpu_ms_per_file and raw.cpu_ms_per_file:
            ratio = pulp.cpu_ms_per_file / raw.cpu_ms_per_file
            out.append(
                (
                    label,
                    f"{ratio:.2f}x ({pulp.cpu_ms_per_file:.2f} / {raw.cpu_ms_per_file:.2f} ms)",
                    "met" if ratio <= 1.5 else "NOT met",
                )
            )
        else:
            out.append((label, "-", "pending"))
    versus("S20k", "aria2c", 1.0, "files/s (best --workers)")
    versus("S20k", "librepo", 0.6, "files/s (best --workers)")
    versus("S", "aria2c", 0.8, "files/s, start-up included")
    rerun = reruns.get("S20k")
    if rerun is not None:
        label = "S20k re-run, all stored: >= 15x faster than the first run, 0 requests"
        if rerun.get("speedup") is None:
            out.append((label, "-", "pending"))
        else:
            ok = rerun["speedup"] >= 15 and rerun["rerun_requests"] == 0
            measured = f"{rerun['speedup']:.1f}x, {rerun['rerun_requests']} requests"
            out.append((label, measured, "met" if ok else "NOT met"))
    versus("M", "librepo", 1.0, "MB/s")
    versus("L", "librepo", 1.5, "MB/s")
    if "L" in table:
        pulp = _best_cli(table["L"])
        need = 0.5 * hashing["sha256_1thread_MBps"]
        label = f"L: >= 0.5x hashlib sha256 1-thread ({need:,.0f} MB/s)"
        if pulp is None or pulp.mb_per_s is None:
            out.append((label, "-", "pending"))
        else:
            verdict = "met" if pulp.mb_per_s >= need else "NOT met"
            out.append((label, f"{pulp.mb_per_s:,.0f} MB/s ({pulp.tool})", verdict))
    versus("WAN", "aria2c", 1.2, "files/s at the same concurrency")
    rows = table.get("S20k")
    if rows is not None:
        label = "S20k: peak RSS of the CLI <= 80 MiB per worker"
        cli = [rows[n] for n in CLI_TOOLS if n in rows and rows[n].max_rss_mib is not None]
        if cli:
            worst = max(cli, key=lambda r: r.max_rss_mib or 0.0)
            rss = worst.max_rss_mib or 0.0
            out.append((label, f"{rss:.0f} MiB ({worst.tool})", "met" if rss <= 80 else "NOT met"))
        else:
            out.append((label, "-", "pending"))
    return out


def targets_issue15(table: dict[str, dict[str, Summary]]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the segmented-download targets of issue 15 (SEG)."""
    rows = table.get("SEG")
    if rows is None:
        return []
    seg = rows.get("pulp-cli-seg4")
    out: list[tuple[str, str, str]] = []
    for peer, need in (("pulp-cli", 3.5), ("aria2c-s4", 1.0)):
        label = f"SEG: pulp-cli --segments 4 >= {need}x {peer} MB/s"
        other = rows.get(peer)
        if seg is None or seg.wall is None or other is None or other.wall is None:
            out.append((label, "-", "pending"))
            continue
        ratio = other.wall / seg.wall
        measured = f"{ratio:.2f}x ({_fmt(seg.mb_per_s)} / {_fmt(other.mb_per_s)} MB/s)"
        out.append((label, measured, "met" if ratio >= need else "NOT met"))
    return out


def targets(
    table: dict[str, dict[str, Summary]],
    hashing: dict[str, float],
    rerun: dict[str, Any] | None,
    concurrency: dict[str, int],
    ext4: bool,
) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target of issue 7 this run can judge."""
    out: list[tuple[str, str, str]] = []

    def ratio_check(workload: str, need: float, unit: str) -> None:
        rows = table.get(workload)
        if rows is None:
            return
        pulp = _best_pulp(rows)
        label = f"{workload}: >= {need}x aria2c {unit}"
        if ext4:
            label += " (ext4)"
        if pulp is None or pulp.vs_aria2c is None:
            out.append((label, "-", "pending"))
            return
        verdict = "met" if pulp.vs_aria2c >= need else "NOT met"
        out.append((label, f"{pulp.vs_aria2c:.2f}x ({pulp.tool})", verdict))

    if ext4:
        ratio_check("S", 2.0, "files/s")
        ratio_check("M", 2.0, "MB/s")
    else:
        ratio_check("L", 2.5, "MB/s")
        ratio_check("M", 2.0, "MB/s")
        ratio_check("S20k", 1.5, "files/s")
        ratio_check("S", 0.8, "files/s")
    if "L" in table and not ext4:
        pulp = _best_pulp(table["L"])
        need = 0.5 * hashing["sha256_1thread_MBps"]
        label = f"L: >= 0.5x hashlib sha256 1-thread ({need:,.0f} MB/s)"
        if pulp is None or pulp.mb_per_s is None:
            out.append((label, "-", "pending"))
        else:
            verdict = "met" if pulp.mb_per_s >= need else "NOT met"
            out.append((label, f"{pulp.mb_per_s:,.0f} MB/s ({pulp.tool})", verdict))
    for workload in ("L", "S20k"):
        if workload not in table:
            continue
        pulp = _best_pulp(table[workload])
        label = f"{workload}: peak RSS <= 80 MiB"
        if pulp is None or pulp.max_rss_mib is None:
            out.append((label, "-", "pending"))
        else:
            verdict = "met" if pulp.max_rss_mib <= 80 else "NOT met"
            out.append((label, f"{pulp.max_rss_mib:.0f} MiB ({pulp.tool})", verdict))
    fds = [
        (workload, row.peak_fds, 2 * concurrency[workload] + 32)
        for workload, rows in table.items()
        for name, row in rows.items()
        if (name in PULP_TOOLS or name in WORKER_TOOLS) and row.peak_fds is not None
    ]
    label = "open fds <= 2 x concurrency + 32 (sampled every 50 ms)"
    if table:
        if fds:
            worst = max(fds, key=lambda f: f[1] / f[2])
            out.append(
                (
                    label,
                    f"at most {worst[1]} of {worst[2]} ({worst[0]})",
                    "met" if all(peak <= limit for _, peak, limit in fds) else "NOT met",
                )
            )
        else:
            out.append((label, "-", "pending"))
    if rerun is not None:
        label = "S re-run, all stored: >= 20x faster, 0 HTTP requests"
        if rerun.get("speedup") is None:
            out.append((label, "-", "pending"))
        else:
            ok = rerun["speedup"] >= 20 and rerun["rerun_requests"] == 0
            out.append(
                (
                    label,
                    f"{rerun['speedup']:.1f}x, {rerun['rerun_requests']} requests",
                    "met" if ok else "NOT met",
                )
            )
    out.append(("sha256 + sha512 <= 1.3x sha256 alone", "see micro_hashing.py", "not judged"))
    out.append(("`verify` >= 0.8x hashlib", "not measured here", "not judged"))
    return out


def render(
    info: dict[str, Any],
    table: dict[str, dict[str, Summary]],
    hashing: dict[str, float],
    reruns: dict[str, dict[str, Any]],
    notes: list[str],
    checks: list[tuple[str, str, str]],
    checks14: list[tuple[str, str, str]],
    checks15: list[tuple[str, str, str]] | None = None,
) -> str:
    m = info["machine"]
    lines = [
        f"# pulp-aio-download benchmark — {info['date']}",
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}; "
        f"{m['nginx']}; {m['aria2c']}; {m['curl'].split(' (')[0]}; librepo {m['librepo']}; "
        f"pulpcore {m['pulpcore']}.",
        f"Output on {info['output_fs']} ({info['output_dir']}); concurrency "
        f"{info['concurrency']} unless the workload says otherwise; {info['repeat']} repeats, "
        f"interleaved; medians; MB = 10^6 bytes{'; QUICK corpus' if info['quick'] else ''}.",
        f"Load average at the start: {info.get('loadavg_start', '?')}, at the end: "
        f"{info.get('loadavg_end', '?')}.",
        "",
        f"hashlib sha256 in this run: {hashing['sha256_1thread_MBps']:,.0f} MB/s on one "
        f"thread, {hashing['sha256_2threads_MBps']:,.0f} MB/s on two.",
        "",
    ]
    for workload, rows in table.items():
        w = info["workloads"][workload]
        server = ""
        if w.get("delay") or w.get("limit_rate"):
            server = (
                f"; server: {w['delay'] * 1000:.0f} ms to first byte, "
                f"limit_rate {w['limit_rate'] or 'none'} per response"
            )
        lines += [
            f"## {workload}: {w['files']:,} files, {w['bytes'] / MiB:,.0f} MiB, "
            f"concurrency {w['concurrency']}{server}",
            "",
            "| tool | ok | wall s (min-max) | files/s | MB/s | CPU s | CPU ms/file "
            "| peak RSS MiB | peak fds | x aria2c | x librepo |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows.values():
            wall = (
                f"{row.wall:.2f} ({row.wall_min:.2f}-{row.wall_max:.2f})"
                if row.wall is not None and row.wall_min is not None and row.wall_max is not None
                else "-"
            )
            lines.append(
                f"| {row.tool} | {row.ok}/{row.runs} | {wall} "
                f"| {_fmt(row.files_per_s, 1 if (row.files_per_s or 0) < 10 else 0)} "
                f"| {_fmt(row.mb_per_s)} | {_fmt(row.cpu, 2)} | {_fmt(row.cpu_ms_per_file, 3)} "
                f"| {_fmt(row.max_rss_mib, 1)} | {_fmt(row.peak_fds)} "
                f"| {_fmt(row.vs_aria2c, 2, 'x')} | {_fmt(row.vs_librepo, 2, 'x')} |"
            )
        for row in rows.values():
            if row.startup_wall is not None and row.wall is not None:
                net = row.wall - row.startup_wall
                lines.append(
                    f"\n{row.tool} start-up (imports, Django set-up, downloader factory): "
                    f"{row.startup_wall:.2f} s wall, {row.startup_cpu or 0:.2f} s CPU of its "
                    f"{row.wall:.2f} s; without it {w['files'] / net:,.0f} files/s, "
                    f"{w['bytes'] / net / MB:,.0f} MB/s, "
                    f"{((row.cpu or 0) - (row.startup_cpu or 0)) / w['files'] * 1000:.3f} "
                    "CPU ms/file."
                )
        for row in rows.values():
            for error in row.errors[:2]:
                lines.append(f"\n- {row.tool} failed: {error[:300]}")
        lines.append("")
    scaling = [
        (workload, rows) for workload, rows in table.items() if any(n in rows for n in WORKER_TOOLS)
    ]
    if scaling:
        lines += [
            "## Scaling of `sync --workers`",
            "",
            "| workload | " + " | ".join(f"--workers {n}" for n in WORKERS) + " |",
            "|---|" + "---|" * len(WORKERS),
        ]
        for workload, rows in scaling:
            one = rows.get("pulp-cli-w1")
            cells = []
            for name in WORKER_TOOLS:
                row = rows.get(name)
                if row is None or row.wall is None:
                    cells.append("-")
                    continue
                speedup = f", {one.wall / row.wall:.2f}x" if one and one.wall else ""
                cells.append(
                    f"{_fmt(row.files_per_s)} files/s{speedup}, "
                    f"{_fmt(row.cpu_ms_per_file, 3)} CPU ms/file"
                )
            lines.append(f"| {workload} | " + " | ".join(cells) + " |")
        lines.append("")
    for workload, rerun in reruns.items():
        lines += [f"## {workload} re-run with everything stored (pulp-cli)", ""]
        if rerun.get("speedup") is None:
            lines.append(f"pending: {rerun.get('note', 'not run')}")
        else:
            lines.append(
                f"first run {rerun['first_wall']:.2f} s ({rerun['first_requests']} HTTP "
                f"requests); re-run {rerun['rerun_wall']:.2f} s ({rerun['rerun_requests']} "
                f"HTTP requests, {rerun['rerun_cpu_ms_per_file']:.3f} CPU ms/file): "
                f"{rerun['speedup']:.1f}x faster (medians of {rerun['repeats']})."
            )
        lines.append("")
    if checks15:
        lines += ["## Targets (issue 15)", "", "| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {t} | {m_} | {v} |" for t, m_, v in checks15]
        lines.append("")
    lines += ["## Targets (issue 14)", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m_} | {v} |" for t, m_, v in checks14]
    lines.append("")
    lines += ["## Targets (issue 7)", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m_} | {v} |" for t, m_, v in checks]
    lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The re-run check (S, S20k)

RERUN_WORKLOADS = ("S", "S20k")


def rerun_check(
    corpus: corpus_mod.Corpus, base: Path, concurrency: int, repeat: int, timeout: float
) -> dict[str, Any]:
    """Sync a corpus twice into one data dir; time both and count the HTTP requests of each."""
    name = corpus.workload.name
    access_log = base / f"rerun-{name}-access.log"
    work = base / "rerun"
    logs = base / "logs"
    firsts, reruns, first_requests, rerun_requests = [], [], [], []
    rerun_cpus: list[float] = []
    tool = TOOLS["pulp-cli"]
    with Nginx(corpus.root, access_log=access_log) as server:
        out = work / "out"
        inputs = corpus_mod.write_client_inputs(corpus, server.base_url, work / "inputs", out)
        ctx = Context(inputs, out, concurrency)
        for r in range(repeat):
            _empty(out)
            counts = [server.request_count()]
            for phase, walls in (("first", firsts), ("rerun", reruns)):
                log = logs / f"rerun-{name}-{phase}-{r}.log"
                code, wall, usage, _, _ = measure(tool.command(ctx), log, timeout)
                if code != 0:
                    return {"note": f"{phase} run exit {code}: {_tail(log)}"}
                walls.append(wall)
                if phase == "rerun":
                    rerun_cpus.append(usage.ru_utime + usage.ru_stime)
                time.sleep(0.1)  # let nginx write the last log lines
                counts.append(server.request_count())
            first_requests.append(counts[1] - counts[0])
            rerun_requests.append(counts[2] - counts[1])
    shutil.rmtree(work, ignore_errors=True)
    first, again = statistics.median(firsts), statistics.median(reruns)
    return {
        "repeats": repeat,
        "first_wall": first,
        "rerun_wall": again,
        "speedup": first / again,
        "first_requests": max(first_requests),
        "rerun_requests": max(rerun_requests),
        "first_walls": firsts,
        "rerun_walls": reruns,
        "rerun_cpu": statistics.median(rerun_cpus),
        "rerun_cpu_ms_per_file": statistics.median(rerun_cpus) / len(corpus.entries) * 1000,
    }


# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark pulp-aio-download against raw aiohttp, aria2c, librepo, "
        "pulpcore and curl."
    )
    parser.add_argument(
        "--workloads",
        default=DEFAULT_WORKLOADS,
        help=f"comma-separated, from {','.join(corpus_mod.WORKLOADS)} "
        f"(default {DEFAULT_WORKLOADS})",
    )
    parser.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        help=f"comma-separated, from {','.join(TOOLS)} (default {','.join(ALL_TOOLS)})",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool and workload")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="connections per tool (WAN sets its own: 64)",
    )
    parser.add_argument("--quick", action="store_true", help="small corpus: a smoke run")
    parser.add_argument(
        "--ext4", action="store_true", help="write to a disk directory instead of /dev/shm"
    )
    parser.add_argument("--out-dir", type=Path, help="where downloads go (overrides the default)")
    parser.add_argument("--corpus-dir", type=Path, default=corpus_mod.DEFAULT_ROOT)
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    parser.add_argument(
        "--no-rerun",
        action="store_true",
        help="skip the S and S20k re-run-with-everything-stored checks",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    args = parser.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.tools = [t for t in args.tools.split(",") if t]
    for w in args.workloads:
        if w not in corpus_mod.WORKLOADS:
            parser.error(f"unknown workload {w!r}")
    for t in args.tools:
        if t not in TOOLS:
            parser.error(f"unknown tool {t!r}")
    if args.repeat < 1 or args.concurrency < 1:
        parser.error("--repeat and --concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shapes = corpus_mod.QUICK_WORKLOADS if args.quick else corpus_mod.WORKLOADS
    if find_nginx() is None:
        print("nginx is not installed: run bash benchmarks/install.sh", file=sys.stderr)
        return 2

    notes: list[str] = []
    tools: list[Tool] = []
    probed: dict[Callable[[], str | None], str | None] = {}
    for name in args.tools:
        available = TOOLS[name].available
        seen = available in probed
        why = probed[available] if seen else probed.setdefault(available, available())
        if why is None:
            tools.append(TOOLS[name])
        elif not seen:  # one note for the --workers runs, not one each
            skipped = [n for n in args.tools if TOOLS[n].available is available]
            notes.append(f"{', '.join(skipped)} skipped: {why}")
            print(f"run: {', '.join(skipped)} skipped: {why}", file=sys.stderr)
    if "curl" in args.tools:
        notes.append("curl checks nothing but the exit code and the file sizes.")
    if "pulpcore" in args.tools:
        notes.append(
            "pulpcore computes every digest of its default ALLOWED_CONTENT_CHECKSUMS "
            "(sha224, sha256, sha384, sha512) for each file, as a pulpcore install does, "
            "and fsyncs each file; its start-up (Django set-up) is reported under its tables."
        )

    parent = args.out_dir or (Path("/var/tmp") if args.ext4 else Path("/dev/shm"))
    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="pad-bench-", dir=parent))
    logs = base / "logs"
    logs.mkdir()
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "output_dir": str(parent),
        "output_fs": _fs_type(base),
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "quick": args.quick,
        "tools": [t.name for t in tools],
        "workloads": {},
    }
    corpora = {}
    for name in args.workloads:
        c = corpus_mod.ensure_corpus(shapes[name], args.corpus_dir)
        corpora[name] = c
        info["workloads"][name] = {
            "key": c.workload.key,
            "files": len(c.entries),
            "bytes": c.total_bytes,
            "concurrency": c.workload.concurrency or args.concurrency,
            "delay": c.workload.delay,
            "limit_rate": c.workload.limit_rate,
        }

    capped = [n for n, w in info["workloads"].items() if w["concurrency"] > LIBREPO_MAX_PARALLEL]
    if capped and "librepo" in args.tools:
        notes.append(
            f"librepo allows at most {LIBREPO_MAX_PARALLEL} parallel downloads "
            "(LRO_MAXPARALLELDOWNLOADS; dnf's max_parallel_downloads has the same cap): "
            f"{', '.join(capped)} ran it at {LIBREPO_MAX_PARALLEL}, the others at their "
            "concurrency."
        )

    if any(t.name.startswith("pulp") for t in tools):
        note = byte_compile_pulp()
        if note is not None:
            notes.append(note)
    print("run: hashlib baseline", file=sys.stderr)
    hashing = hashlib_baseline()
    samples: list[Sample] = []
    reruns: dict[str, dict[str, Any]] = {}
    info["loadavg_start"] = _loadavg()
    started = time.monotonic()
    try:
        for name, c in corpora.items():
            w = c.workload
            with Nginx(args.corpus_dir, delay=w.delay, limit_rate=w.limit_rate) as server:
                out = base / "out"
                inputs = corpus_mod.write_client_inputs(
                    c, server.base_url, base / "inputs" / name, out
                )
                ctx = Context(inputs, out, w.concurrency or args.concurrency)
                _warm(c)
                for r in range(args.repeat):
                    order = tools[r % len(tools) :] + tools[: r % len(tools)] if tools else []
                    for tool in order:
                        s = run_one(tool, name, c, ctx, r, logs, args.timeout)
                        samples.append(s)
                        status = "ok" if s.ok else f"FAILED ({s.error})"
                        print(
                            f"run: {name} #{r + 1} {tool.name}: {s.wall:.2f} s, cpu "
                            f"{s.cpu:.2f} s, rss {s.max_rss_kib / 1024:.0f} MiB, {status}",
                            file=sys.stderr,
                        )
                shutil.rmtree(out, ignore_errors=True)
        for name in RERUN_WORKLOADS:
            if name not in corpora or "pulp-cli" not in args.tools or args.no_rerun:
                continue
            if TOOLS["pulp-cli"] in tools:
                print(f"run: {name} re-run with everything stored", file=sys.stderr)
                reruns[name] = rerun_check(
                    corpora[name], base, args.concurrency, min(args.repeat, 3), args.timeout
                )
            else:
                reruns[name] = {"note": "pulp-aio-download CLI not available yet"}
    finally:
        failed_logs = any(not s.ok for s in samples)
        if failed_logs:
            notes.append(f"logs of failed runs kept in {logs}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    info["elapsed_s"] = round(time.monotonic() - started, 1)
    info["loadavg_end"] = _loadavg()

    table = summarize(samples, corpora)
    rerun = reruns.get("S")
    concurrency = {n: w["concurrency"] for n, w in info["workloads"].items()}
    checks = targets(table, hashing, rerun, concurrency, args.ext4)
    checks14 = targets_issue14(table, hashing, reruns)
    checks15 = targets_issue15(table)
    report = render(info, table, hashing, reruns, notes, checks, checks14, checks15)
    print(report)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "latest.md").write_text(report)
    payload = {
        **info,
        "hashlib": hashing,
        "rerun": rerun,
        "reruns": reruns,
        "notes": notes,
        "targets": [dict(zip(("target", "measured", "verdict"), c, strict=True)) for c in checks],
        "targets_issue14": [
            dict(zip(("target", "measured", "verdict"), c, strict=True)) for c in checks14
        ],
        "targets_issue15": [
            dict(zip(("target", "measured", "verdict"), c, strict=True)) for c in checks15
        ],
        "summary": {w: {t: asdict(r) for t, r in rows.items()} for w, rows in table.items()},
        "samples": [asdict(s) for s in samples],
    }
    (args.results_dir / "latest.json").write_text(json.dumps(payload, indent=1) + "\n")
    return 1 if any(not s.ok for s in samples) else 0


def _warm(c: corpus_mod.Corpus) -> None:
    """Read the corpus once so nginx serves it from the page cache in every run."""
    for entry in c.entries:
        with open(c.path / entry.name, "rb") as f:
            while f.read(8 * MiB):
                pass


if __name__ == "__main__":
    sys.exit(main())
