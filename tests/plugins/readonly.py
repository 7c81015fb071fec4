"""Directories that are really read-only, and processes that really cannot write.

Tests run as root, and root ignores file modes. So:

* ``read_only_dir`` (fixture) makes a directory read-only for the rest of the test: as root
  it bind-mounts the directory read-only onto itself (writes fail with ``EROFS`` for every
  process, this one included), otherwise it takes the write bits away (``EACCES``). It is
  writable again after the test.
* :func:`unprivileged` is the command prefix that runs a process without the privilege to
  ignore file modes: as root, ``setpriv`` with every capability dropped (uid 0 keeps
  owning root's files, so the interpreter and the sources under ``/root`` stay readable,
  but ``CAP_DAC_OVERRIDE`` is gone and mode bits apply to it as to any user); otherwise
  nothing is needed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = ["read_only_dir", "remove_write_bits", "unprivileged"]


def unprivileged() -> list[str]:
    """The prefix of a command that must not be able to override file modes."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root needs setpriv (util-linux) to drop capabilities")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--"]


def remove_write_bits(root: Path) -> Callable[[], None]:
    """Take the write bits off ``root`` and everything below; returns the undo."""
    modes: list[tuple[Path, int]] = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        modes.append((path, stat.S_IMODE(mode)))
    for path, mode in modes:
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    def undo() -> None:
        for path, mode in reversed(modes):
            with contextlib.suppress(FileNotFoundError):
                path.chmod(mode)

    return undo


@contextlib.contextmanager
def _mounted_read_only(path: Path) -> Iterator[None]:
    def run(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.fail(f"mount {' '.join(args)} failed: {done.stderr.strip()}")

    run("--bind", str(path), str(path))
    try:
        run("-o", "remount,ro,bind", str(path))
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def read_only_dir() -> Iterator[Callable[[Path], None]]:
    """Call it with a directory to make that directory read-only until the test ends."""
    with contextlib.ExitStack() as stack:

        def make(path: Path) -> None:
            if os.geteuid() == 0:
                stack.enter_context(_mounted_read_only(path))
            else:
                stack.callback(remove_write_bits(path))

        yield make
