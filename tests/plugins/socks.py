"""A real SOCKS5 server (Debian's ``microsocks``) on 127.0.0.1, per test session.

* ``socks_proxy`` — username/password authentication (RFC 1929) required.
* ``socks_proxy_noauth`` — no authentication.
* ``socks_proxy_own_hosts`` — no authentication, run in a mount namespace of its own in which
  ``/etc/hosts`` also names ``SOCKS_ONLY_HOST`` (127.0.0.1): a name that only the proxy can
  resolve, so a download of ``http://socks-only.test:PORT/`` that works shows that the
  proxy, not this process, resolved it (socks5h). This process never looks the name up:
  that would ask the machine's DNS server, which is not on loopback.

Each yields a :class:`SocksProcess`. microsocks binds its outgoing connections to
``OUTGOING`` (127.0.0.2, ``-b``): an origin that sees a request from 127.0.0.2 got it
through the proxy, not straight from the test. microsocks logs ``client[N] IP: connected
to HOST:PORT`` on stderr for each tunnel, HOST as the client sent it (a name for socks5h,
an address for socks5); the log is a file in the fixture's temporary directory.

microsocks cannot report a port it picked, so a free port is taken from the kernel and
handed to it; if another process takes it first, microsocks exits and is started again on
another one. ``.ci/install-socks.sh`` installs it on a fresh machine (``.ci/run`` and the nox
test sessions call it). A machine without it fails these tests, naming the script.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import free_port

SOCKS_USER = "sockuser"
SOCKS_PASSWORD = "s0cks-s3cret"
SOCKS_ONLY_HOST = "socks-only.test"
OUTGOING = "127.0.0.2"
_START_TIMEOUT = 15.0


@dataclass(frozen=True)
class SocksProcess:
    """A running microsocks: where it listens and the credentials it wants (if any)."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    log_path: Path
    pid: int

    def url(self, scheme: str = "socks5h", *, credentials: bool = False) -> str:
        """``scheme://[user:password@]host:port``."""
        userinfo = f"{self.username}:{self.password}@" if credentials and self.username else ""
        return f"{scheme}://{userinfo}{self.host}:{self.port}"

    def log_text(self) -> str:
        """What microsocks wrote so far."""
        return self.log_path.read_text(errors="replace")

    def tunnels(self) -> list[str]:
        """The ``HOST:PORT`` of every tunnel opened so far, as the client named it."""
        return [
            line.rsplit(" ", 1)[-1]
            for line in self.log_text().splitlines()
            if ": connected to " in line
        ]


def _binary() -> str:
    for candidate in (shutil.which("microsocks"), "/usr/bin/microsocks"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("microsocks is not installed: run 'sh .ci/install-socks.sh'")


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


def _own_hosts(directory: Path, command: list[str]) -> list[str]:
    """``command`` run in a new mount namespace whose /etc/hosts also names
    SOCKS_ONLY_HOST (``unshare -m``: root, as on CI; exec keeps the pid)."""
    hosts = directory / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {SOCKS_ONLY_HOST}\n")
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, str(hosts), *command]


def _start(
    directory: Path, *, username: str | None, password: str | None, own_hosts: bool = False
) -> Iterator[SocksProcess]:
    binary = _binary()
    log = directory / "microsocks.log"
    for _ in range(5):
        port = free_port()
        command = [binary, "-i", "127.0.0.1", "-p", str(port), "-b", OUTGOING]
        if username is not None and password is not None:
            command += ["-u", username, "-P", password]
        if own_hosts:
            command = _own_hosts(directory, command)
        with log.open("ab") as sink:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        if _listening(port, process):
            break
        _stop(process)
    else:
        pytest.fail(f"microsocks did not start:\n{log.read_text(errors='replace')}")
    try:
        yield SocksProcess(
            host="127.0.0.1",
            port=port,
            username=username,
            password=password,
            log_path=log,
            pid=process.pid,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def socks_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocksProcess]:
    """microsocks requiring ``SOCKS_USER``/``SOCKS_PASSWORD``."""
    directory = tmp_path_factory.mktemp("socks-auth")
    yield from _start(directory, username=SOCKS_USER, password=SOCKS_PASSWORD)


@pytest.fixture(scope="session")
def socks_proxy_noauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocksProcess]:
    """microsocks without authentication."""
    directory = tmp_path_factory.mktemp("socks-noauth")
    yield from _start(directory, username=None, password=None)


@pytest.fixture(scope="session")
def socks_proxy_own_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocksProcess]:
    """microsocks without authentication that alone resolves ``SOCKS_ONLY_HOST``."""
    directory = tmp_path_factory.mktemp("socks-hosts")
    yield from _start(directory, username=None, password=None, own_hosts=True)
