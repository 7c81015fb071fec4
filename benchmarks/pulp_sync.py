"""pulp_file syncs as real pulpcore tasks: pulpcore's own downloaders against the adapter.

Issue 21, item 5. Reuses the harness of ``tests/pulpcore`` (a migrated pulpcore on a real
PostgreSQL, tasks run by ``execute_task``) in one process; the origin is a private nginx
(``benchmarks/nginx.py``), so that no server shares this process's interpreter. Each run
syncs a fresh corpus (pulpcore skips content whose artifact exists), then the repository,
the remote and the orphaned content are removed (not timed). The two downloaders alternate
within every repeat, the order rotating; ``install()``/``uninstall()`` switch between them.

Run it where pulpcore is installed (``nox -s pulpcore_bench -- --repeat 3``)::

    python benchmarks/pulp_sync.py --repeat 3 [--sets small,large] [--quick] [--profile]

It prints, per set and downloader, the median wall and CPU seconds (this process: the
task's threads included; nginx and PostgreSQL not) and the ratio. ``--profile`` then runs
one sync of each set and downloader under cProfile and prints where its time goes, by package.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent / "tests" / "pulpcore")]

from nginx import Nginx  # noqa: E402
from pulp_origin import TreeFile, write_tree  # noqa: E402
from pulp_site import create_site, setup_django  # noqa: E402
from pulp_tasks import file_remote, run_task, sync  # noqa: E402

from plugins.postgres import _start_server, find_postgres_bin  # noqa: E402

#: name -> (files, bytes each); --quick divides the counts by 10.
SETS = {"small": (2000, 16 * 1024), "large": (200, 1024 * 1024)}
MODES = ("pulpcore", "adapter")


def _corpus(root: Path, count: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    files = [TreeFile(f"d{i % 16}/f{i}.bin", rng.randbytes(size)) for i in range(count)]
    write_tree(root, files)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _use(mode: str, modes: tuple[str, ...] = MODES) -> None:
    if "adapter" not in modes:
        return
    from pulp_aio_download.integrations import pulpcore as adapter

    if mode == "adapter":
        adapter.install()
    else:
        adapter.uninstall()


def _clean(repository: Any, remote: Any) -> None:
    repository.delete()
    remote.delete()
    task = run_task("pulpcore.app.tasks.orphan.orphan_cleanup", orphan_protection_time=0)
    assert task.state == "completed", task.error


def _one_sync(url: str, expected: int) -> tuple[float, float, Any, Any]:
    remote = file_remote(url)
    cpu, start = _cpu(), time.perf_counter()
    repository, task = sync(remote)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    assert task.state == "completed", task.error
    assert repository.latest_version().content.count() == expected
    return wall, cpu, repository, remote


@contextmanager
def _deployment(work: Path) -> Iterator[None]:
    bindir = find_postgres_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (sh .ci/install-postgres.sh)")
    server = _start_server(bindir)
    try:
        server.client("createdb", "pulp")
        site = create_site(work / "pulp", "pulp", server.port, 0)
        setup_django(site)
        from pulpcore.app.models import AppStatus

        AppStatus.objects.create(app_type="worker", name=f"pad-bench-{os.getpid()}@127.0.0.1")
        yield
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def _profile(
    web: Path, base_url: str, mode: str, modes: tuple[str, ...], name: str, size_of: tuple[int, int]
) -> None:
    count, size = size_of
    _use(mode, modes)
    _corpus(web / f"profile-{mode}-{name}", count, size, seed=hash((mode, name)))
    profilers = [cProfile.Profile()]

    def _thread_profile(*_: object) -> None:
        profilers.append(cProfile.Profile())
        profilers[-1].enable()

    # The threads the sync starts (Django calls run through asgiref's executor) get their own.
    threading.setprofile(_thread_profile)
    profilers[0].enable()
    wall, _, repository, remote = _one_sync(
        f"{base_url}/profile-{mode}-{name}/PULP_MANIFEST", count
    )
    profilers[0].disable()
    threading.setprofile(None)  # type: ignore[arg-type]
    for profiler in profilers[1:]:
        profiler.disable()
    _clean(repository, remote)
    by_package: dict[str, float] = defaultdict(float)
    stats = pstats.Stats(profilers[0])
    for profiler in profilers[1:]:
        stats.add(profiler)
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename, function)] += tottime
    total = sum(by_package.values())
    print(f"\nprofile, {mode}, {name} ({count} x {size} B): {wall:.2f} s wall, "
          f"{total:.2f} s in {len(profilers)} threads' functions")  # fmt: skip
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {package:<34} {seconds:7.2f} s  {100 * seconds / total:5.1f} %")
    stats.sort_stats("tottime").print_stats(15)
    if dump := os.environ.get("PAD_PROFILE_DIR"):  # the whole profile, for pstats
        stats.dump_stats(Path(dump) / f"pulp-{mode}-{name}.pstats")


_WAITS = (
    "poll' of 'select",
    "get' of '_queue.SimpleQueue",
    "acquire' of '_thread.lock",
    "wait' of",
    "sleep",
)
_BUILTINS = {
    "hashing": ("_hashlib.HASH", "openssl_"),
    "file I/O and file system": ("_io.", "posix.", "fsync", "rename", "unlink"),
    "sockets": ("_socket.socket", "_ssl."),
}


def _package(filename: str, function: str) -> str:
    """The package a profiled function belongs to; builtins by what they do."""
    if filename == "~":
        if any(marker in function for marker in _WAITS):
            return "(waiting: epoll, locks)"
        for kind, markers in _BUILTINS.items():
            if any(marker in function for marker in markers):
                return f"({kind})"
        return "(other builtins)"
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            return rest.split("/", 1)[0].removesuffix(".py")
    return filename if filename.startswith("<") else Path(filename).name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sets", default="small,large")
    parser.add_argument("--quick", action="store_true", help="a tenth of the files")
    parser.add_argument("--modes", default=",".join(MODES), help="pulpcore,adapter")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))
    sets = {name: SETS[name] for name in args.sets.split(",")}
    if args.quick:
        sets = {name: (count // 10, size) for name, (count, size) in sets.items()}
    results: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="pad-pulp-bench-", dir="/dev/shm") as tmp:
        work = Path(tmp)
        web = work / "web"
        web.mkdir()
        with _deployment(work), Nginx(web) as origin:
            for repeat in range(args.repeat):
                for name, (count, size) in sets.items():
                    order = modes if repeat % 2 == 0 else modes[::-1]
                    for mode in order:
                        root = web / f"{name}-{mode}-{repeat}"
                        _corpus(root, count, size, seed=hash((name, mode, repeat)))
                        _use(mode, modes)
                        url = f"{origin.base_url}/{root.name}/PULP_MANIFEST"
                        wall, cpu, repository, remote = _one_sync(url, count)
                        results[(name, mode)].append((wall, cpu))
                        print(f"{name:<6} {mode:<9} run {repeat + 1}: {wall:6.2f} s wall "
                              f"{cpu:6.2f} s CPU", flush=True)  # fmt: skip
                        _clean(repository, remote)
                        shutil.rmtree(root)
            _report(sets, modes, results)
            if args.profile:
                for mode in modes:
                    for name, size_of in sets.items():
                        _profile(web, origin.base_url, mode, modes, name, size_of)


def _report(
    sets: dict[str, tuple[int, int]],
    modes: tuple[str, ...],
    results: dict[tuple[str, str], list[tuple[float, float]]],
) -> None:
    for (name, mode), runs in sorted(results.items()):
        walls = ", ".join(f"{w:.2f}" for w, _ in runs)
        print(f"{name} {mode}: wall {walls}")
    if len(modes) < 2:
        return
    print("\n| set | pulpcore wall (s) | adapter wall (s) | speed-up | pulpcore CPU (s) "
          "| adapter CPU (s) |\n|---|---|---|---|---|---|")  # fmt: skip
    for name, (count, size) in sets.items():
        pc = results[(name, "pulpcore")]
        ad = results[(name, "adapter")]
        pc_wall, ad_wall = (statistics.median(w for w, _ in runs) for runs in (pc, ad))
        pc_cpu, ad_cpu = (statistics.median(c for _, c in runs) for runs in (pc, ad))
        print(f"| {name} ({count} x {size // 1024} KiB) | {pc_wall:.2f} | {ad_wall:.2f} | "
              f"{pc_wall / ad_wall:.2f}x | {pc_cpu:.2f} | {ad_cpu:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
