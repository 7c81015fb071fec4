"""An S3-protocol server for the tests: a real ``moto`` server process on 127.0.0.1.

``s3_server`` (session) starts ``python -m moto.server`` on a free loopback port (the server
binds port 0 itself and we read the port it prints, so there is no race for the port) and
yields its endpoint URL. ``s3_bucket`` (function) sets dummy credentials in the environment
for the test only, creates a fresh bucket and yields ``(endpoint_url, bucket)``.
``parts_held(endpoint_url)`` puts a loopback gateway in front of the server that holds the
parts of multipart uploads, so a test can act while an upload is under way.

Every client built from these fixtures is given the ``endpoint_url``: no request leaves
127.0.0.1. ``AWS_EC2_METADATA_DISABLED`` and empty config files keep botocore from looking
for credentials anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

_STARTUP_TIMEOUT = 30.0
_RUNNING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")

S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _wait_for_endpoint(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    endpoint = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}: {log.read_text()}")
        if endpoint is None:
            match = _RUNNING.search(log.read_text(errors="replace"))
            endpoint = match.group(1) if match else None
        if endpoint is not None:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    return endpoint
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)
    raise RuntimeError(f"moto server did not answer within {_STARTUP_TIMEOUT}s: {log.read_text()}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL (``http://127.0.0.1:PORT``) of a moto S3 server process."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        yield _wait_for_endpoint(proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials for this test only, and no AWS configuration from the host."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in S3_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))


@contextlib.asynccontextmanager
async def s3_client(endpoint_url: str) -> AsyncIterator[Any]:
    """A raw aiobotocore S3 client on ``endpoint_url`` (for setting up and inspecting)."""
    from aiobotocore.session import AioSession
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"})
    async with AioSession().create_client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1", config=config
    ) as client:
        yield client


@pytest.fixture
async def s3_bucket(s3_server: str, s3_env: None) -> AsyncIterator[tuple[str, str]]:
    """A fresh, empty bucket on the moto server: ``(endpoint_url, bucket_name)``."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    async with s3_client(s3_server) as client:
        await client.create_bucket(Bucket=bucket)
    yield s3_server, bucket
    async with s3_client(s3_server) as client:
        uploads = await client.list_multipart_uploads(Bucket=bucket)
        for upload in uploads.get("Uploads", []):
            await client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                await client.delete_object(Bucket=bucket, Key=obj["Key"])
        await client.delete_bucket(Bucket=bucket)


#: Headers of one HTTP connection, not of the message: the gateway does not pass them on.
_HOP_BY_HOP = frozenset(
    {"connection", "content-length", "expect", "keep-alive", "transfer-encoding"}
)


@dataclass
class PartGate:
    """A running :func:`parts_held` gateway."""

    url: str
    """The endpoint to give the client under test."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the first part of a multipart upload reached the gateway (and is held)."""


@contextlib.asynccontextmanager
async def parts_held(endpoint_url: str) -> AsyncIterator[PartGate]:
    """A loopback HTTP gateway to the S3 server at ``endpoint_url`` that forwards every
    request but the parts of multipart uploads (``PUT ...?partNumber=``): those it holds
    until the block ends, then answers 503 without forwarding them. The upload itself
    (``CreateMultipartUpload``) and its abort go through."""
    released = asyncio.Event()
    gate: PartGate | None = None
    async with aiohttp.ClientSession(auto_decompress=False) as upstream:

        async def forward(request: web.Request) -> web.Response:
            assert gate is not None
            if request.method == "PUT" and "partNumber" in request.query:
                await request.read()  # all of it: nothing lingers on the connection after
                gate.arrived.set()
                await released.wait()
                return web.Response(status=503)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            async with upstream.request(
                request.method,
                endpoint_url + request.path_qs,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as response:
                body = await response.read()
                back = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=response.status, body=body, headers=back)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            gate = PartGate(f"http://{host}:{port}")
            yield gate
        finally:
            released.set()
            await runner.cleanup()
