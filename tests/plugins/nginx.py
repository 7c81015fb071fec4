"""A real nginx for the tests, run from a config the test writes.

Fixture:
    nginx (function): ``nginx(root)`` starts Debian's nginx serving ``root`` on its own
        loopback port, with its own pid file, error log and access log in a temporary
        directory; every server started is stopped when the test ends. ``nginx(root,
        rate=N)`` sends every response at most at N bytes/s (``limit_rate``, per
        connection: what a CDN's cap on each connection looks like); ``directives`` adds
        nginx directives to the location (e.g. ``"max_ranges 0;"``: a server that ignores
        ``Range``).

The binary comes from the Debian ``nginx`` package (``.ci/install-nginx.sh`` installs it);
without it the test fails (it is never skipped). The packaged service is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import free_port

__all__ = ["NginxServer", "find_nginx", "nginx"]

_CONFIG = """\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format probe escape=json
        '{{"uri":"$uri","status":$status,"range":"$http_range",'
        '"if_range":"$http_if_range","if_none_match":"$http_if_none_match",'
        '"if_modified_since":"$http_if_modified_since","body_bytes":$body_bytes_sent,'
        '"connection":$connection,"end":$msec,"seconds":$request_time}}';
    access_log {tmp}/access.log;
    access_log {tmp}/probe.log probe;
    default_type application/octet-stream;
    types {{ }}
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ {limit} }}
    }}
}}
"""


def find_nginx() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


@dataclass
class NginxServer:
    """One running nginx: ``base_url``, and the request lines of its access log."""

    root: Path
    port: int
    tmp: Path
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """``"GET /path 200"`` for every request logged so far (nginx logs on completion)."""
        log = self.tmp / "access.log"
        if not log.exists():
            return []
        out = []
        for line in log.read_text().splitlines():
            # 127.0.0.1 - - [date] "GET /path HTTP/1.1" 200 123 "-" "ua"
            request, _, rest = line.partition('"')[2].partition('"')
            method, path = request.split(" ")[:2]
            out.append(f"{method} {path} {rest.split()[0]}")
        return out

    def entries(self) -> list[dict[str, object]]:
        """Every request logged so far as a dict: ``uri``, ``status``, ``range`` and
        ``if_range``, ``if_none_match``, ``if_modified_since`` (the request headers, ``""``
        when absent), ``body_bytes`` (sent),
        ``connection`` (its serial number), ``end`` (epoch seconds, ms resolution) and
        ``seconds`` (how long it took)."""
        log = self.tmp / "probe.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line]

    def wait_logged(self, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
        """:meth:`entries` once there are ``count`` (nginx logs a request when it is done
        with it, a moment after a killed client's connection is closed)."""
        deadline = time.monotonic() + timeout
        while len(found := self.entries()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx logged {len(found)} requests, wanted {count}")
            time.sleep(0.02)  # polling the log, not synchronisation by sleep
        return found

    def wait_sent(
        self, total: int, after: int = 0, timeout: float = 10.0
    ) -> list[dict[str, object]]:
        """The entries after the first ``after`` once their ``body_bytes`` add up to
        ``total`` (or more)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries()[after:]
            if sum(int(str(e["body_bytes"])) for e in found) >= total:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx logged {found} after {after}, not {total} bytes")
            time.sleep(0.02)  # polling the log, not synchronisation by sleep

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def _start(
    binary: str, root: Path, tmp: Path, rate: int | None = None, directives: str = ""
) -> NginxServer:
    tmp.mkdir(parents=True)
    port = free_port()
    # As root, nginx would switch its worker to "nobody", who may not read a test's files.
    user = "user root;" if os.geteuid() == 0 else ""
    config = tmp / "nginx.conf"
    limit = (f"limit_rate {rate};" if rate else "") + directives
    config.write_text(
        _CONFIG.format(user=user, tmp=tmp, port=port, root=root.resolve(), limit=limit)
    )
    process = subprocess.Popen(
        [binary, "-p", str(tmp), "-e", f"{tmp}/error.log", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = NginxServer(root=root, port=port, tmp=tmp, process=process)
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"nginx exited with {process.returncode}: {error}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"nginx did not listen on port {port} within 10 s") from None
            time.sleep(0.02)  # polling for readiness, not synchronisation by sleep


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., NginxServer]]:
    """``nginx(root, rate=None, directives="")``: a started nginx serving ``root``;
    stopped after the test."""
    binary = find_nginx()
    if binary is None:
        pytest.fail("nginx is not installed: run sh .ci/install-nginx.sh")
    started: list[NginxServer] = []

    def start(root: Path, rate: int | None = None, directives: str = "") -> NginxServer:
        assert binary is not None
        server = _start(binary, root, tmp_path / f"nginx-{len(started)}", rate, directives)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
