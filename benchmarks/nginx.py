"""A private nginx on 127.0.0.1 serving a directory, as a context manager.

One worker process, ``sendfile on``, keep-alive without a request limit, access log off
unless a path is given (the runner counts the requests of one run that way). For a WAN-like
server, ``delay`` holds every request that long before the first byte (Debian's
``libnginx-mod-http-lua``: ``access_by_lua_block { ngx.sleep(...) }``, a timer in nginx's
event loop, so it costs no CPU) and ``limit_rate`` caps the bytes per second of each
response (nginx's ``limit_rate``, e.g. ``"4m"``). The config,
pid file, error log and temp paths live in a temporary directory removed on exit; the
system's nginx service is never touched.

Usage::

    with Nginx(root) as server:
        print(server.base_url)  # http://127.0.0.1:PORT
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_CONFIG = """\
{user}
{modules}
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log {access_log};
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    default_type application/octet-stream;
    types {{ }}
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location / {{ {location} }}
    }}
}}
"""


# Where Debian's libnginx-mod-http-lua (and the NDK it needs) put their modules.
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")
LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")


def find_lua_modules() -> list[str] | None:
    """The paths of the NDK and Lua modules, or None when they are not installed."""
    for directory in MODULE_DIRS:
        paths = [os.path.join(directory, name) for name in LUA_MODULES]
        if all(os.path.exists(p) for p in paths):
            return paths
    return None


def find_nginx() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Nginx:
    """Serve ``root`` over HTTP on a free loopback port while the block runs.

    Args:
        root: the directory to serve.
        access_log: a file to log every request to (off when None).
        binary: the nginx executable (found on PATH or in /usr/sbin when None).
        delay: seconds every request waits before its response starts (needs the Lua module).
        limit_rate: nginx's per-response ``limit_rate`` value (``"4m"``: 4 MiB/s), or None.
    """

    def __init__(
        self,
        root: Path,
        *,
        access_log: Path | None = None,
        binary: str | None = None,
        delay: float = 0.0,
        limit_rate: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.access_log = access_log
        self.delay = delay
        self.limit_rate = limit_rate
        self._modules: list[str] = []
        if delay:
            found = find_lua_modules()
            if found is None:
                raise FileNotFoundError(
                    "a per-request delay needs libnginx-mod-http-lua (bash benchmarks/install.sh)"
                )
            self._modules = found
        self.binary = binary or find_nginx()
        if self.binary is None:
            raise FileNotFoundError("nginx is not installed: run bash benchmarks/install.sh")
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request_count(self) -> int:
        """Lines in the access log so far (one per request)."""
        if self.access_log is None or not self.access_log.exists():
            return 0
        with open(self.access_log, "rb") as f:
            return sum(1 for _ in f)

    def __enter__(self) -> Nginx:
        self._tmp = tempfile.TemporaryDirectory(prefix="pad-bench-nginx-")
        tmp = self._tmp.name
        self.port = free_port()
        # As root nginx would switch its worker to "nobody", who may not read the corpus.
        user = "user root;" if os.geteuid() == 0 else ""
        log = f"{self.access_log} combined" if self.access_log else "off"
        config = Path(tmp, "nginx.conf")
        location = []
        if self.delay:
            location.append(f"access_by_lua_block {{ ngx.sleep({self.delay:g}) }}")
        if self.limit_rate:
            location.append(f"limit_rate {self.limit_rate};")
        config.write_text(
            _CONFIG.format(
                user=user,
                modules="\n".join(f"load_module {m};" for m in self._modules),
                tmp=tmp,
                access_log=log,
                port=self.port,
                root=self.root,
                location=" ".join(location),
            )
        )
        assert self.binary is not None
        self._process = subprocess.Popen(
            [self.binary, "-p", tmp, "-e", f"{tmp}/error.log", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"nginx exited with {self._process.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nginx did not listen on port {self.port} within {timeout}s")

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)  # graceful: lets the worker exit
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stderr is not None:
                process.stderr.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()


if __name__ == "__main__":
    import sys

    directory = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    with Nginx(directory) as server:
        print(f"serving {directory} at {server.base_url} (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
