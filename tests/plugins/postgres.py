"""A real PostgreSQL server for the tests, started once per session on 127.0.0.1.

Fixtures:
    postgres_dsn (session): the DSN of the server's ``postgres`` database (superuser
        ``postgres``, trust authentication on loopback only).
    postgres_database (function): the DSN of a fresh, empty database for one test.

The server binaries come from the Debian ``postgresql`` package (``.ci/install-postgres.sh``
installs it). Without them the tests that need PostgreSQL are skipped, except under CI
(``CI`` set), where a missing server is a failure: CI must never silently skip.
When the tests run as root the server runs as user ``postgres`` (or ``nobody``), since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import free_port

__all__ = ["PostgresServer", "find_postgres_bin", "postgres_database", "postgres_dsn"]

MISSING = "PostgreSQL server not installed (Debian package postgresql)"


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _server_user() -> str | None:
    """The user to run the server as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and neither user 'postgres' nor 'nobody' exists")


@dataclass
class PostgresServer:
    """One running server: its data directory, port and the user it runs as."""

    bindir: Path
    workdir: Path
    port: int
    user: str | None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            runner = shutil.which("runuser")
            command = (
                [runner, "-u", self.user, "--", *command]
                if runner
                else ["su", "-s", "/bin/sh", self.user, "-c", " ".join(command)]
            )
        return subprocess.run(
            command, check=check, capture_output=True, text=True, timeout=120, cwd=self.workdir
        )

    def client(self, program: str, *args: str) -> None:
        """Run a client program (``createdb``, ``psql``...) against the server."""
        subprocess.run(
            [str(self.bindir / program), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.workdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self.run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
            "-l", str(self.workdir / "server.log"), "-o", options,
        )  # fmt: skip

    def stop(self) -> None:
        self.run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.datadir), check=False)


def _start_server(bindir: Path) -> PostgresServer:
    user = _server_user()
    workdir = Path(tempfile.mkdtemp(prefix="pad-postgres-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bindir, workdir, 0, user)
    try:
        server.run(
            "initdb", "-D", str(server.datadir), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        # A port found free may be taken before the server binds it: try a few.
        for attempt in range(5):
            server.port = free_port()
            try:
                server.start()
                return server
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")
    except BaseException as exc:
        log = workdir / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        if isinstance(exc, subprocess.CalledProcessError):
            detail = f"{exc.stdout}\n{exc.stderr}\n{detail}"
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {detail}") from exc


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (see the module docstring)."""
    bindir = find_postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING}; CI must run the PostgreSQL tests")
        pytest.skip(MISSING)
    server = _start_server(bindir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of the session's PostgreSQL server (database ``postgres``)."""
    return postgres_server.dsn()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The DSN of a fresh database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    # The client programs, not asyncpg: this fixture may be set up while a loop runs.
    postgres_server.client("createdb", name)
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.client("dropdb", "--force", "--if-exists", name)
