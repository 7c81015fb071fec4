"""A real forwarding HTTP proxy process (proxy.py) on 127.0.0.1, per test session.

* ``http_proxy`` — proxy.py with basic auth (``--basic-auth``); 407 without credentials.
* ``http_proxy_noauth`` — proxy.py without auth.
* ``http_proxy_reserved`` — proxy.py with basic auth whose password holds characters that
  URL userinfo must percent-encode (``@``, ``%``, ``/``, ``:``).

Both yield a :class:`ProxyProcess`: ``url`` (``http://127.0.0.1:<port>``, no credentials),
``username``, ``password``, ``log_path``. The port is chosen by the proxy itself
(``--port 0``) and read back from its ``--port-file``, so there is no race for a port.

proxy.py loads only its HTTP proxy plugin (plus auth) with these flags: no dashboard, no TLS
interception, no DNS-over-HTTPS, no upstream proxy, so it opens no connection at startup;
its data and cache directories are temporary ones.

What the origin sees: the first plain-http request of a client connection is forwarded
with ``Proxy-Authorization`` removed and a ``Via: 1.1 proxy.py`` added, but proxy.py 2.4
pipes later requests on the same kept-alive connection *unparsed* (no auth check, the
client's ``Proxy-Authorization`` reaches the origin); ``Connection: close`` avoids that.
Through CONNECT the origin sees only what the client sends inside the tunnel.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROXY_USER = "proxyuser"
PROXY_PASSWORD = "proxy-s3cret"
RESERVED_PASSWORD = "pr0xy@p%ss/w:rd"
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class ProxyProcess:
    """A running proxy.py: where it listens and the credentials it wants (if any)."""

    url: str
    username: str | None
    password: str | None = field(repr=False)
    log_path: Path
    pid: int

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` header value for the right credentials."""
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def log_text(self) -> str:
        """What the proxy wrote to its log so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")


def _wait_for_port(port_file: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"proxy.py exited at startup with code {process.returncode}")
        try:
            text = port_file.read_text().split()
        except FileNotFoundError:
            text = []
        if text and text[0].isdigit():
            port = int(text[0])
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return port
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"proxy.py did not listen within {_START_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    # proxy.py shuts its acceptor processes down cleanly on SIGINT (KeyboardInterrupt);
    # it runs in its own process group, so the group is what we started and may signal.
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # any acceptor left behind
    except ProcessLookupError:
        pass


def _run_proxy(directory: Path, credentials: tuple[str, str] | None) -> Iterator[ProxyProcess]:
    port_file = directory / "port"
    log_path = directory / "proxy.log"
    args = [
        sys.executable,
        "-m",
        "proxy",
        "--hostname",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--num-acceptors",
        "1",
        "--num-workers",
        "1",
        # Both default to ~/.proxy; keep everything in the temporary directory.
        "--data-dir",
        str(directory / "data"),
        "--cache-dir",
        str(directory / "cache"),
        "--log-level",
        "INFO",
        "--timeout",
        "30",
    ]
    if credentials is not None:
        args += ["--basic-auth", f"{credentials[0]}:{credentials[1]}"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=directory,
        )
    try:
        try:
            port = _wait_for_port(port_file, process)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{log_path.read_text(errors='replace')}")
        yield ProxyProcess(
            url=f"http://127.0.0.1:{port}",
            username=credentials[0] if credentials else None,
            password=credentials[1] if credentials else None,
            log_path=log_path,
            pid=process.pid,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def http_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """proxy.py requiring basic auth (``username``/``password`` on the yielded object)."""
    yield from _run_proxy(tmp_path_factory.mktemp("proxy-auth"), (PROXY_USER, PROXY_PASSWORD))


@pytest.fixture(scope="session")
def http_proxy_noauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """proxy.py without auth."""
    yield from _run_proxy(tmp_path_factory.mktemp("proxy-noauth"), None)


@pytest.fixture(scope="session")
def http_proxy_reserved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """proxy.py requiring basic auth with a password of URL-reserved characters."""
    yield from _run_proxy(
        tmp_path_factory.mktemp("proxy-reserved"), (PROXY_USER, RESERVED_PASSWORD)
    )
