"""Helpers shared by the test tiers (imported as ``from helpers import ...``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pulp_aio_download as pad

__all__ = [
    "BILLION_LAUGHS",
    "NO_RETRY",
    "basic",
    "cli",
    "free_port",
    "make_engine",
    "remote_once",
    "run_cli",
    "sha256",
    "until",
    "until_sync",
]

#: A Metalink document whose entities expand to 10**9 "lol"s (3 GB): it must be refused.
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE metalink [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + ']>\n<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a">'
    "<url>http://h/&lol9;</url></file></metalink>"
)

#: One attempt per source: a failure is seen at once, with no backoff sleep.
NO_RETRY = pad.RetryPolicy(attempts=1)


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP basic auth, computed here (not by the code under
    test)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port() -> int:
    """A loopback port nothing listens on (bound once and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def remote_once(**fields: Any) -> pad.RemoteConfig:
    """A RemoteConfig of ``fields`` that tries each source once (``retry=NO_RETRY``
    unless ``fields`` give another)."""
    return pad.RemoteConfig(**{"retry": NO_RETRY, **fields})


def make_engine(tmp_path: Path, *remotes: pad.RemoteConfig, **config: Any) -> pad.DownloadEngine:
    """A DownloadEngine for a test: the ``remotes`` given (none: those of ``config``, or
    the default remote), the other EngineConfig fields from ``config`` and, unless
    ``config`` names a storage or a data_dir, a LocalStorage in ``tmp_path / "store"``."""
    if remotes:
        config["remotes"] = list(remotes)
    if "storage" not in config and "data_dir" not in config:
        config["storage"] = pad.LocalStorage(tmp_path / "store")
    return pad.DownloadEngine(pad.EngineConfig(**config))


def cli(*args: str) -> list[str]:
    """The command line of ``python -m pulp_aio_download ARGS`` (for a process of its own)."""
    return [sys.executable, "-m", "pulp_aio_download", *args]


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pulp_aio_download ARGS`` in a process of its own; output as text.

    The environment is ``base_env`` (default: this one without ``PULP_AIO_DOWNLOAD*``
    variables, so a developer's settings never leak in) updated with ``env``; ``prefix``
    goes before the interpreter (``["unshare", ...]``, say).
    """
    if base_env is None:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_AIO_DOWNLOAD")}
    return subprocess.run(
        [*prefix, *cli(*args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base_env, **(env or {})},
        timeout=timeout,
        check=False,
    )


async def until(condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (a coroutine function is awaited), looked at every
    few milliseconds: a wait on a state, never a fixed sleep. Fails after ``timeout``
    seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {condition}")
        await asyncio.sleep(0.002)


def until_sync(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """:func:`until` for a test outside an event loop (one that drives processes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {condition}")
        time.sleep(0.01)
