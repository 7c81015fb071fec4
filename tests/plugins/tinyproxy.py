"""A real tinyproxy (Debian's ``tinyproxy`` package) with BasicAuth, per test session.

``tinyproxy_auth`` yields a :class:`plugins.proxy.ProxyProcess` (``url`` without
credentials, ``username``, ``password``, ``log_path``). tinyproxy runs in the foreground
(``-d``) from a config file written here, on its own port on 127.0.0.1, with its own pid
and log files in a temporary directory, and is stopped when the session ends.

How tinyproxy 1.11 refuses: no credentials → ``407`` with ``Proxy-Authenticate``; wrong
credentials → ``401`` with ``WWW-Authenticate`` (and no ``Via``), for plain-http requests
and ``CONNECT`` alike. Answers it forwards carry ``Via: 1.1 <host> (tinyproxy/1.11.x)``.

tinyproxy cannot report a port it picked itself, so a free port is taken from the kernel
and handed to it; if another process takes that port first, tinyproxy exits and is started
again on another one.

``.ci/install-tinyproxy.sh`` installs it on a fresh machine (``.ci/run`` and the nox test
sessions call it). A machine without it fails these tests, naming the script.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import free_port
from plugins.proxy import ProxyProcess

TINYPROXY_USER = "tinyuser"
TINYPROXY_PASSWORD = "tiny-s3cret"
_START_TIMEOUT = 15.0


def _binary() -> str:
    for candidate in (shutil.which("tinyproxy"), "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("tinyproxy is not installed: run 'sh .ci/install-tinyproxy.sh'")


def _config(directory: Path, port: int) -> Path:
    path = directory / "tinyproxy.conf"
    path.write_text(
        f"Port {port}\n"
        "Listen 127.0.0.1\n"
        "Timeout 30\n"
        f'PidFile "{directory / "tinyproxy.pid"}"\n'
        f'LogFile "{directory / "tinyproxy.log"}"\n'
        "LogLevel Info\n"
        "MaxClients 50\n"
        "Allow 127.0.0.1\n"
        f"BasicAuth {TINYPROXY_USER} {TINYPROXY_PASSWORD}\n"
    )
    return path


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def tinyproxy_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """tinyproxy requiring basic auth (``TINYPROXY_USER``/``TINYPROXY_PASSWORD``)."""
    binary = _binary()
    directory = tmp_path_factory.mktemp("tinyproxy")
    output = directory / "stdout.log"
    for _ in range(5):
        port = free_port()
        config = _config(directory, port)
        with output.open("ab") as sink:
            process = subprocess.Popen(
                [binary, "-d", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        if _listening(port, process):
            break
        _stop(process)
    else:
        pytest.fail(f"tinyproxy did not start:\n{output.read_text(errors='replace')}")
    try:
        yield ProxyProcess(
            url=f"http://127.0.0.1:{port}",
            username=TINYPROXY_USER,
            password=TINYPROXY_PASSWORD,
            log_path=directory / "tinyproxy.log",
            pid=process.pid,
        )
    finally:
        _stop(process)
