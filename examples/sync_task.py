"""Plugin task code (synchronous, like a Pulp worker task) with hooks and a task report.

    python examples/sync_task.py [BASE_URL] [--data-dir DIR]

Shows ``run_batch`` from sync code, a hook before the built-in chain (a policy check that
refuses a file before anything is stored), one after it (making the plugin's own model
from the stored artifact and its unit), and progress written into a task report.
"""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass, field

from _sample import parse_args, parse_pulp_manifest, repository_in_thread

import pulp_aio_download as pad


@dataclass
class TaskReport:
    """Stands in for the progress report a task framework stores (Pulp's ProgressReport)."""

    message: str = ""
    done: int = 0
    total: int = 0
    state: str = "waiting"
    updates: int = 0

    def update(self, report: pad.ProgressReport) -> None:
        # Called from the engine's event loop: keep it quick (or hand off to a thread).
        self.message, self.done, self.total = report.message, report.done, report.total
        self.state = report.state
        self.updates += 1


@dataclass
class MyModels:
    """Stands in for the plugin's database table of content."""

    rows: dict[str, dict[str, object]] = field(default_factory=dict)


MODELS = MyModels()
REFUSED_SUFFIX = ".tar.gz"


async def check_policy(ctx: pad.DownloadContext) -> None:
    """Runs on the validated staged file, before it is stored: raise to refuse it."""
    path = ctx.request.unit.relative_path if ctx.request.unit else ""
    if path and path.endswith(REFUSED_SUFFIX):
        raise ValueError(f"policy: {REFUSED_SUFFIX} files are not allowed here")


async def make_my_model(ctx: pad.DownloadContext) -> None:
    """Runs after storing, recording the unit file and creating the unit."""
    assert ctx.result is not None
    assert ctx.unit is not None
    MODELS.rows[ctx.unit.key] = {"location": ctx.result.location, "size": ctx.size}


def main() -> int:
    args = parse_args(__doc__ or "")
    with repository_in_thread(args.base_url) as base:
        with urllib.request.urlopen(base.rstrip("/") + "/PULP_MANIFEST") as resp:
            entries = parse_pulp_manifest(resp.read().decode(), base)
        requests = [
            pad.DownloadRequest(
                url,
                expected_digests={"sha256": sha256},
                expected_size=size,
                unit=pad.UnitSpec("file", f"{path}:{sha256}", relative_path=path),
                repository="task-repo",
            )
            for url, path, sha256, size in entries
        ]
        task = TaskReport()
        config = pad.EngineConfig(
            data_dir=args.data_dir,
            hooks=[check_policy, *pad.DEFAULT_HOOKS, make_my_model],
            progress=task.update,
        )
        results = pad.run_batch(requests, config=config)  # input order, errors in place
    refused = [r for r in results if isinstance(r, pad.HookError)]
    other = [r for r in results if isinstance(r, pad.DownloadError) and r not in refused]
    print(
        f"task report: {task.message}: {task.done}/{task.total} {task.state} "
        f"({task.updates} updates)"
    )
    print(f"{len(MODELS.rows)} models made, {len(refused)} refused by policy")
    for error in refused:
        print(f"refused {error.url}: {error}")
    for error in other:
        print(f"FAILED {error.url}: {error}")
    return 1 if other else 0


if __name__ == "__main__":
    sys.exit(main())
