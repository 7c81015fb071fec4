"""The real-pulpcore harness: a migrated pulpcore on a real PostgreSQL, its content app, and
origin servers, for pulp_file syncs run as real pulpcore tasks.

Collected only when named (``pytest tests/pulpcore``, the ``pulpcore`` nox session, whose
venv has pulpcore): see ``pytest_ignore_collect`` in ``tests/conftest.py``.

``--pulp-downloaders=adapter`` (the default) installs the adapter in this process and in the
content app's, and arms pulpcore's own ``HttpDownloader`` to fail: every test then checks
that it never ran. ``--pulp-downloaders=pulpcore`` runs the same cases with pulpcore's own
downloaders (the cases hold for both: the adapter must behave as pulpcore does).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from pulp_origin import Origin
from pulp_site import PulpSite, create_site, setup_django
from pulp_tripwire import arm, calls

from helpers import free_port
from plugins.postgres import PostgresServer

HERE = Path(__file__).parent
OriginFactory = Callable[..., Origin]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pulp-downloaders",
        choices=("adapter", "pulpcore"),
        default="adapter",
        help="download through the adapter (default) or pulpcore's own downloaders",
    )


@pytest.fixture(scope="session")
def downloaders(pytestconfig: pytest.Config) -> str:
    """``adapter`` or ``pulpcore``: whose downloaders the syncs use."""
    return str(pytestconfig.getoption("--pulp-downloaders"))


@pytest.fixture(scope="session")
def tripwire(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file where any run of pulpcore's HttpDownloader is recorded (both processes)."""
    return tmp_path_factory.mktemp("tripwire") / "pulpcore-http-downloader.log"


@pytest.fixture(scope="session")
def pulp_site(
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
    downloaders: str,
    tripwire: Path,
) -> Iterator[PulpSite]:
    """pulpcore configured, migrated and set up in this process, with a worker AppStatus."""
    postgres_server.client("createdb", "pulp")
    site = create_site(tmp_path_factory.mktemp("pulp"), "pulp", postgres_server.port, free_port())
    setup_django(site)
    from pulpcore.app.models import AppStatus

    AppStatus.objects.create(app_type="worker", name=f"pad-tests-{os.getpid()}@127.0.0.1")
    if downloaders != "adapter":
        yield site
        return
    from pulp_aio_download.integrations import pulpcore as adapter

    adapter.install()
    arm(tripwire)
    try:
        yield site
    finally:
        adapter.uninstall()


@pytest.fixture(scope="session")
def content_app(pulp_site: PulpSite, downloaders: str, tripwire: Path) -> Iterator[str]:
    """pulpcore's content app for ``pulp_site`` in its own process; its base URL."""
    log = pulp_site.root / "content-app.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "pulp_content_app.py"), str(pulp_site.content_port),
             downloaders, str(tripwire)],
            env={**os.environ, **pulp_site.environ(), "PYTHONPATH": _pythonpath()},
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_listening(pulp_site.content_port, process, log)
        yield pulp_site.content_origin
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _pythonpath() -> str:
    return os.pathsep.join([str(HERE), *sys.path])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the content app did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def worker_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop of this process's main thread, as in a pulpcore worker: made once and
    never closed (a failed sync leaves its pipeline's tasks pending on it, as in pulpcore)."""
    return asyncio.new_event_loop()


@pytest.fixture(autouse=True)
def thread_event_loop(
    request: pytest.FixtureRequest, worker_event_loop: asyncio.AbstractEventLoop
) -> Iterator[None]:
    """A sync test runs as pulpcore's sync code does, with a current event loop in the thread
    (``asyncio.get_event_loop()``): after an async test pytest-asyncio leaves none."""
    if inspect.iscoroutinefunction(request.function):
        yield
        return
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(worker_event_loop)
        try:
            yield
        finally:
            asyncio.set_event_loop(None)
        return
    yield


@pytest.fixture(autouse=True)
def pulpcore_http_downloader_never_used(
    pulp_site: PulpSite, downloaders: str, tripwire: Path
) -> Iterator[None]:
    """Every test runs in ``pulp_site``; with the adapter, none may reach pulpcore's own
    HttpDownloader, in any process."""
    if downloaders == "adapter":
        from pulp_aio_download.integrations import pulpcore as adapter

        # Idempotent: an adapter test that uninstalled it leaves the next test with it.
        adapter.install()
    before = len(calls(tripwire))
    yield
    if downloaders == "adapter":
        assert calls(tripwire)[before:] == []


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[OriginFactory]:
    """``origin(root, ssl_context=None, basic_auth=None)``: a started :class:`Origin`."""
    started: list[Origin] = []

    def start(root: Path, **options: object) -> Origin:
        server = Origin(root, **options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def tls_origin_context(tls_server_cert: trustme.LeafCert) -> Callable[..., ssl.SSLContext]:
    """``context(client_ca=None)``: the server side of an HTTPS origin."""

    def make(client_ca: trustme.CA | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_server_cert.configure_cert(context)
        if client_ca is not None:
            client_ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    return make


@pytest.fixture
def working_directory_empty(pulp_site: PulpSite) -> Callable[[], list[str]]:
    """What is left in pulpcore's WORKING_DIRECTORY (a list of paths; [] when clean)."""

    def left() -> list[str]:
        root = pulp_site.working_directory
        return sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    return left


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh directory for the test's origin tree."""
    path = tmp_path / "tree"
    path.mkdir()
    return path
