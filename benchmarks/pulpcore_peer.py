"""The pulpcore peer: the manifest fetched by pulpcore's own ``HttpDownloader``.

Run with the interpreter of the separate venv that ``benchmarks/install.sh`` makes
(``pip install pulpcore``; pulpcore is not a dependency of this project). It does what a
plugin's sync stage does on the download path, without a database:

* Django is set up with pulpcore's own settings module; only the settings the download
  path reads are given (``WORKING_DIRECTORY``, ``ALLOWED_CONTENT_CHECKSUMS``, and the
  database-field encryption key file that the settings check at load), in a temporary
  ``PULP_SETTINGS`` file. No database is configured or touched.
* ``pulpcore.download.DownloaderFactory`` is built from a small stand-in for the Remote
  model (:class:`RemoteConfig`, the attributes the factory reads) with
  ``download_concurrency=N``, and every file is ``factory.build(url,
  expected_digests={"sha256": ...}, expected_size=...)``; all downloaders are gathered
  at once, each waiting on the factory's semaphore as the ``ArtifactDownloader`` stage's
  do. pulpcore writes each body to a temporary file in ``WORKING_DIRECTORY`` (fsynced),
  computing every digest of ``ALLOWED_CONTENT_CHECKSUMS``; the file is then renamed to
  its name in the output directory, as the artifact saver would move it into storage.

The start-up (imports, ``django.setup()``, the factory) is printed on stderr as
``bench-startup: WALL_S CPU_S`` for the runner to report separately.

Usage: ``PY benchmarks/pulpcore_peer.py MANIFEST OUTPUT_DIR [--concurrency N]
[--checksums sha224,sha256,sha384,sha512]``. Exit 0 when every file was downloaded and
verified, 1 otherwise (failures on stderr).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()
_C0 = time.process_time()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

# pulpcore's shipped default: every artifact gets all four digests.
PULPCORE_DEFAULT_CHECKSUMS = "sha224,sha256,sha384,sha512"


@dataclass
class RemoteConfig:
    """The attributes of ``pulpcore.app.models.Remote`` that ``DownloaderFactory`` reads."""

    download_concurrency: int
    DEFAULT_DOWNLOAD_CONCURRENCY: int = 10
    DEFAULT_MAX_RETRIES: int = 3
    max_retries: int | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_validation: bool = True
    headers: list[dict[str, str]] | None = None
    total_timeout: float | None = None
    connect_timeout: float | None = None
    sock_connect_timeout: float | None = None
    sock_read_timeout: float | None = None
    proxy_url: str | None = None
    proxy_username: str | None = None
    proxy_password: str | None = None
    username: str | None = None
    password: str | None = None
    rate_limit: int | None = None
    download_throttler: Any = None


def configure_django(settings_dir: Path, working_dir: Path, checksums: list[str]) -> None:
    """Point pulpcore's settings at a temporary file and run ``django.setup()``."""
    from cryptography.fernet import Fernet

    key = settings_dir / "database_fields.symmetric.key"
    key.write_bytes(Fernet.generate_key())
    settings_file = settings_dir / "settings.py"
    settings_file.write_text(
        f"WORKING_DIRECTORY = {str(working_dir)!r}\n"
        f"ALLOWED_CONTENT_CHECKSUMS = {checksums!r}\n"
        f"DB_ENCRYPTION_KEY = {str(key)!r}\n"
        "SECRET_KEY = 'benchmark-only'\n"
    )
    os.environ["PULP_SETTINGS"] = str(settings_file)
    os.environ["DJANGO_SETTINGS_MODULE"] = "pulpcore.app.settings"
    import django

    django.setup()


async def run(manifest: Path, out: Path, concurrency: int) -> int:
    from pulpcore.download import DownloaderFactory

    items = []
    with open(manifest) as f:
        for line in f:
            if line.strip():
                items.append(json.loads(line))
    factory = DownloaderFactory(RemoteConfig(download_concurrency=concurrency))
    print(
        f"bench-startup: {time.perf_counter() - _T0:.3f} {time.process_time() - _C0:.3f}",
        file=sys.stderr,
    )
    failures: list[str] = []

    async def one(item: dict[str, Any]) -> None:
        url = item["url"]
        downloader = factory.build(
            url, expected_digests={"sha256": item["sha256"]}, expected_size=item.get("size")
        )
        try:
            result = await downloader.run()
            os.replace(result.path, out / os.path.basename(urlsplit(url).path))
        except Exception as exc:  # a plugin stage records the failure and goes on
            failures.append(f"{url}: {type(exc).__name__}: {exc}")

    try:
        await asyncio.gather(*(one(item) for item in items))
    finally:
        # Closed here, in the loop it belongs to; the factory's own atexit hook would
        # look for an event loop after asyncio.run has closed it.
        atexit.unregister(factory._session_cleanup)
        await factory._session.close()
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"pulpcore_peer: {len(items) - len(failures)}/{len(items)} ok", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--checksums",
        default=PULPCORE_DEFAULT_CHECKSUMS,
        help=f"ALLOWED_CONTENT_CHECKSUMS (default pulpcore's: {PULPCORE_DEFAULT_CHECKSUMS})",
    )
    args = parser.parse_args(argv)
    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pulpcore-peer-") as settings_dir:
        # On the output's file system, so that the final rename is not a copy.
        working = Path(tempfile.mkdtemp(prefix=".pulpcore-working-", dir=out))
        try:
            configure_django(Path(settings_dir), working, args.checksums.split(","))
            os.chdir(working)  # a pulpcore task runs in its working directory
            return asyncio.run(run(args.manifest.resolve(), out, args.concurrency))
        finally:
            os.chdir("/")
            for leftover in working.iterdir():
                leftover.unlink()
            working.rmdir()


if __name__ == "__main__":
    sys.exit(main())
