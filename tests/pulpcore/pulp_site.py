"""A throw-away pulpcore deployment: settings file, database, storage, migrations.

:func:`create_site` writes a dynaconf settings file (``PULP_SETTINGS``) whose database is a
fresh one on the test PostgreSQL server and whose media, working and static directories
live under one temporary directory, runs ``pulpcore-manager migrate`` once, and returns a
:class:`PulpSite`. :func:`PulpSite.environ` is the environment a process needs to use it
(this one, after :func:`setup_django`, and the content app's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

__all__ = ["PULPCORE_WARNINGS", "PulpSite", "create_site", "setup_django"]

#: pulpcore runs here as it does in production, where a warning is never an error: the
#: suite's "error" filter would turn aiohttp's deprecations of pulpcore's calls (its factory's
#: ``ssl_context=``, ``auth=``/``BasicAuth``, its backoff handler's ``.code``) into task
#: failures. They are shown, not raised. Django's save of an Artifact leaves the file pulpcore
#: opened for it to the collector: ignored. The end-to-end modules apply these
#: (``pytestmark``); the adapter's own tests keep the suite's filters.
PULPCORE_WARNINGS = [
    pytest.mark.filterwarnings("default::DeprecationWarning:pulpcore"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"
    ),
]

_SETTINGS = """\
SECRET_KEY = "pulp-aio-download-tests-only"
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": {database!r},
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": {port},
        "CONN_MAX_AGE": 0,
    }}
}}
DEPLOY_ROOT = {root!r}
MEDIA_ROOT = {media!r}
STATIC_ROOT = {static!r}
WORKING_DIRECTORY = {work!r}
FILE_UPLOAD_TEMP_DIR = {work!r}
STORAGES = {{
    "default": {{"BACKEND": "pulpcore.app.models.storage.FileSystem"}},
    "staticfiles": {{"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
}}
DB_ENCRYPTION_KEY = {key!r}
CONTENT_ORIGIN = {content_origin!r}
CACHE_ENABLED = False
ANALYTICS = False
TELEMETRY = False
REDACT_UNSAFE_EXCEPTIONS = False
"""


@dataclass(frozen=True)
class PulpSite:
    """One deployment: its directories, settings file and content app address."""

    root: Path
    settings_file: Path
    content_port: int

    @property
    def media_root(self) -> Path:
        return self.root / "media"

    @property
    def working_directory(self) -> Path:
        return self.root / "work"

    @property
    def content_origin(self) -> str:
        return f"http://127.0.0.1:{self.content_port}"

    def environ(self) -> dict[str, str]:
        """The variables that point pulpcore (and Django) at this deployment."""
        return {
            "PULP_SETTINGS": str(self.settings_file),
            "DJANGO_SETTINGS_MODULE": "pulpcore.app.settings",
        }


def create_site(root: Path, database: str, db_port: int, content_port: int) -> PulpSite:
    """Write the settings of a deployment under ``root`` and migrate its database."""
    site = PulpSite(root, root / "settings.py", content_port)
    for directory in (site.media_root, site.working_directory, root / "static"):
        directory.mkdir(parents=True, exist_ok=True)
    key = root / "database_fields.symmetric.key"
    key.write_bytes(Fernet.generate_key())
    key.chmod(0o600)
    site.settings_file.write_text(
        _SETTINGS.format(
            database=database,
            port=db_port,
            root=str(root),
            media=str(site.media_root),
            static=str(root / "static"),
            work=str(site.working_directory),
            key=str(key),
            content_origin=site.content_origin,
        )
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "pulpcore.app.manage", "migrate", "--no-input", "-v", "0"],
        env={**os.environ, **site.environ()}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if migrate.returncode != 0:
        raise RuntimeError(f"pulpcore migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
    return site


def setup_django(site: PulpSite) -> None:
    """Configure Django in this process for ``site`` (once per process)."""
    os.environ.update(site.environ())
    import django

    django.setup()
