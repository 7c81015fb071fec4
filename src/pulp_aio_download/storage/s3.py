"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, moto), through aiobotocore.

Needs the ``s3`` extra (``pip install 'pulp-aio-download[s3]'``). aiobotocore and botocore
are imported only when a storage is opened, so importing this module costs nothing.

Why aiobotocore: it is the asyncio flavour of botocore, so it reads credentials from every
source AWS users expect (explicit arguments, environment, shared config and credentials
files, profiles, SSO, container and instance metadata), speaks every S3 dialect botocore
knows (path or virtual-host addressing, SigV4, custom endpoints) and runs on aiohttp, which
we already depend on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError, StorageError
from ..urls import redact_url
from .base import Storage, StoredArtifact, artifact_key, pid_alive, sha256_of_key

if TYPE_CHECKING:
    from ..models import LeftoverFile

__all__ = ["DEFAULT_PART_SIZE", "MIN_PART_SIZE", "S3Storage"]

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024
"""S3's minimum size of every part of a multipart upload but the last."""

DEFAULT_PART_SIZE = 8 * 1024 * 1024
"""Files larger than this are uploaded in parts of this size."""

_MAX_PARTS = 10_000
_QUARANTINE = "quarantine"
_STAGING_PREFIX = "pulp-aio-download-s3-"
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})

_SendPart = Callable[[str, int, int, int], Awaitable[str]]
"""Sends one part of a multipart upload: ``(upload_id, number, offset, length)`` → ETag."""


_RETRY_MODES = ("legacy", "standard", "adaptive")


def _retries_from_environment() -> dict[str, Any]:
    """botocore's ``retries`` option: standard mode and 5 retries, unless ``AWS_RETRY_MODE``
    or ``AWS_MAX_ATTEMPTS`` say otherwise (an explicit ``retries`` would hide them)."""
    retries: dict[str, Any] = {"mode": "standard", "max_attempts": 5}
    mode = os.environ.get("AWS_RETRY_MODE", "").strip()
    if mode:
        if mode not in _RETRY_MODES:
            raise ConfigError(
                f"S3Storage: AWS_RETRY_MODE must be one of {', '.join(_RETRY_MODES)}, got {mode!r}"
            )
        retries["mode"] = mode
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if attempts:
        total = int(attempts) if attempts.isdigit() else 0
        if total < 1:
            raise ConfigError(
                f"S3Storage: AWS_MAX_ATTEMPTS must be a positive integer, got {attempts!r}"
            )
        del retries["max_attempts"]
        retries["total_max_attempts"] = total
    return retries


class S3Storage(Storage):
    """Artifacts as objects ``[prefix/]ab/cdef…`` (sha256) in an S3-compatible bucket.

    The engine writes each download to a staging file in a local temporary directory
    (:meth:`staging_dir`); :meth:`commit` uploads the validated file and removes it. An
    object therefore appears under its final key only once its bytes were validated: a
    single-part upload is one ``PutObject`` (sent with its sha256 so the server rejects
    different bytes), a multipart upload becomes visible only when it is completed and is
    aborted on any error or cancellation. Memory stays bounded by one part.

    Credentials come from the explicit arguments or, when they are not given, from the usual
    AWS sources (environment, ``~/.aws`` config and credentials files, ``profile``, instance
    metadata). They are never logged and never shown by ``repr()`` or in error messages.

    Permissions needed on the prefix: ``s3:GetObject``, ``s3:PutObject``, ``s3:DeleteObject``,
    ``s3:AbortMultipartUpload``, and ``s3:ListBucket`` on the bucket (without it S3 answers a
    missing object with 403, which is reported as a :class:`StorageError`, not as absent).

    Args:
        bucket: the bucket (it must exist).
        prefix: a key prefix under which the artifacts live (``"pulp/artifacts"``).
        endpoint_url: the endpoint of an S3-compatible server (``http://127.0.0.1:9000``);
            None for AWS.
        region: the region; None to take it from the AWS configuration.
        access_key_id: explicit credentials (with ``secret_access_key`` and, for temporary
            credentials, ``session_token``).
        profile: a named profile of the AWS configuration files.
        part_size: files larger than this are uploaded in parts of this size (at least 5 MiB;
            raised automatically so that a file never needs more than 10,000 parts).
        staging_root: where the local staging directory is created (default: the system
            temporary directory). Put it on a disk with room for the downloads in flight.
            Staging directories of dead processes of this host are removed on :meth:`open`.
        addressing_style: ``"path"`` or ``"virtual"``; default ``"path"`` with an
            ``endpoint_url`` (what S3-compatible servers expect) and ``"auto"`` without.
        checksums: send the sha256 with single-part uploads and the MD5 of each part, so the
            server refuses bytes damaged on the way. Turn off for servers that reject the
            ``x-amz-checksum-sha256`` header.
        max_pool_connections: the size of the client's connection pool.
        client_config: a ``botocore.config.Config`` merged over these defaults (timeouts,
            retries, proxies...).

    Retries: botocore's ``standard`` mode with 5 retries, unless the environment sets the
    standard AWS variables ``AWS_RETRY_MODE`` (``legacy``, ``standard``, ``adaptive``) or
    ``AWS_MAX_ATTEMPTS`` (every attempt counted, the first included); ``client_config``
    wins over both.

    Raises:
        ConfigError: an empty bucket, a part size below 5 MiB, half of a key pair, or an
            invalid ``AWS_RETRY_MODE`` or ``AWS_MAX_ATTEMPTS``.

    Example::

        storage = S3Storage("artifacts", prefix="pulp", endpoint_url="http://127.0.0.1:9000")
        async with pad.DownloadEngine(pad.EngineConfig(storage=storage)) as engine:
            result = await engine.download(url, expected_digests={"sha256": digest})
            result.location  # 's3://artifacts/pulp/ab/cdef…'
    """

    copy_object_limit: ClassVar[int] = 5 * 1024**3
    """Objects larger than this are copied part by part (S3's ``CopyObject`` limit)."""

    #: The object store keeps what it acknowledged; staged files need no local fsync.
    fsync_staged = False

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        staging_root: str | os.PathLike[str] | None = None,
        addressing_style: str | None = None,
        checksums: bool = True,
        max_pool_connections: int = 10,
        client_config: Any = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"S3Storage: invalid bucket name {bucket!r}")
        if part_size < MIN_PART_SIZE:
            raise ConfigError(
                f"S3Storage: part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum), "
                f"got {part_size}"
            )
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigError(
                "S3Storage: access_key_id and secret_access_key must be given together"
            )
        if session_token is not None and access_key_id is None:
            raise ConfigError("S3Storage: session_token needs access_key_id and secret_access_key")
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise ConfigError(
                f"S3Storage: addressing_style must be 'auto', 'path' or 'virtual', "
                f"got {addressing_style!r}"
            )
        if max_pool_connections < 1:
            raise ConfigError(
                f"S3Storage: max_pool_connections must be positive, got {max_pool_connections}"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        self.staging_root = Path(staging_root) if staging_root is not None else None
        self.checksums = checksums
        self._profile = profile
        self._credentials = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "aws_session_token": session_token,
        }
        self._addressing_style = addressing_style or ("path" if endpoint_url else "auto")
        self._max_pool_connections = max_pool_connections
        self._client_config = client_config
        self._retries = _retries_from_environment()
        self._stack: AsyncExitStack | None = None
        self._client_obj: Any = None
        self._staging: Path | None = None
        self._errors: tuple[type[BaseException], ...] = ()

    def __repr__(self) -> str:
        endpoint = redact_url(self.endpoint_url) if self.endpoint_url else None
        return (
            f"{type(self).__name__}(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"endpoint_url={endpoint!r})"
        )

    async def __aenter__(self) -> S3Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- keys -------------------------------------------------------------------------------

    def key_of(self, sha256: str) -> str:
        """The object key of artifact ``sha256`` (whether or not it exists)."""
        key = artifact_key(sha256)
        return f"{self.prefix}/{key}" if self.prefix else key

    def quarantine_key_of(self, sha256: str) -> str:
        """The key under which :meth:`quarantine` puts artifact ``sha256``."""
        key = f"{_QUARANTINE}/{artifact_key(sha256)}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def location_of(self, sha256: str) -> str:
        """The ``s3://bucket/key`` URI of artifact ``sha256``."""
        return self._uri(self.key_of(sha256))

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the local staging directory and the S3 client (no request is sent)."""
        if self._client_obj is not None:
            return
        import aiohttp
        import botocore.exceptions
        from aiobotocore.session import AioSession
        from botocore.config import Config

        self._errors = (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            aiohttp.ClientError,
            asyncio.TimeoutError,
            OSError,
        )
        loop = asyncio.get_running_loop()
        try:
            staging = await loop.run_in_executor(None, self._make_staging)
        except OSError as exc:
            raise StorageError(f"cannot create a staging directory for {self!r}: {exc}") from exc

        options: dict[str, Any] = {
            "retries": self._retries,
            "s3": {"addressing_style": self._addressing_style},
            "max_pool_connections": self._max_pool_connections,
        }
        # botocore >= 1.36 adds CRC checksums with aws-chunked bodies by default, which many
        # S3-compatible servers refuse; we send our own checksums instead.
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        config = Config(**options)
        if self._client_config is not None:
            config = config.merge(self._client_config)

        stack = AsyncExitStack()
        try:
            session = AioSession(profile=self._profile)
            creator = session.create_client(
                "s3",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=config,
                **{k: v for k, v in self._credentials.items() if v is not None},
            )
            self._client_obj = await stack.enter_async_context(creator)
        except self._errors as exc:
            await stack.aclose()
            await loop.run_in_executor(None, _rmdir_if_empty, staging)
            raise StorageError(
                f"cannot create the S3 client for {self!r}: {self._describe(exc)}"
            ) from exc
        self._stack = stack
        self._staging = staging

    def _make_staging(self) -> Path:
        root = self.staging_root if self.staging_root is not None else Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        self.clean_staging(root)
        prefix = f"{_STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-"
        return Path(tempfile.mkdtemp(prefix=prefix, dir=root))

    @staticmethod
    def clean_staging(root: Path) -> list[Path]:
        """Remove the staging directories under ``root`` left by dead processes of this host
        (a crash mid-download); return what was removed. :meth:`open` calls it."""
        start = f"{_STAGING_PREFIX}{socket.gethostname()}-"
        removed = []
        for entry in root.iterdir():
            if not entry.name.startswith(start):
                continue
            pid_text = entry.name[len(start) :].partition("-")[0]
            if pid_text.isdigit() and not pid_alive(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        return removed

    async def close(self) -> None:
        """Close the S3 client and remove the staging directory if it is empty."""
        stack, self._stack, self._client_obj = self._stack, None, None
        staging, self._staging = self._staging, None
        try:
            if stack is not None:
                await stack.aclose()
        finally:
            if staging is not None:
                await asyncio.get_running_loop().run_in_executor(None, _rmdir_if_empty, staging)

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            raise RuntimeError(f"{self!r} is not open: call 'await storage.open()' first")
        return self._client_obj

    def partials_dir(self) -> Path:
        """``pulp-aio-download-partials-UID`` beside the staging directory (partials are
        keyed by content or URL, so storages may share it)."""
        return self.staging_dir().parent / f"pulp-aio-download-partials-{os.getuid()}"

    def staging_dir(self) -> Path:
        if self._staging is None:
            raise RuntimeError(f"{self!r} is not open: call 'await storage.open()' first")
        return self._staging

    # -- errors -----------------------------------------------------------------------------

    def _describe(self, exc: BaseException) -> str:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = error.get("Code") or "error"
            text = f"{code} (HTTP {status})" if status else str(code)
            if error.get("Message"):
                text += f": {error['Message']}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        for secret in self._credentials.values():
            if secret:
                text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def _translate(self, action: str, key: str) -> Iterator[None]:
        """Turn botocore/aiohttp/OS errors raised inside the block into StorageError."""
        try:
            yield
        except StorageError:
            raise
        except self._errors as exc:
            raise StorageError(f"cannot {action} {self._uri(key)}: {self._describe(exc)}") from exc

    # -- storage operations -----------------------------------------------------------------

    async def _head(self, key: str) -> dict[str, Any] | None:
        import botocore.exceptions

        try:
            response: dict[str, Any] = await self._client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _is_not_found(exc):
                return None
            raise
        return response

    async def commit(self, staged: Path, sha256: str, size: int) -> StoredArtifact:
        key = self.key_of(sha256)
        loop = asyncio.get_running_loop()
        existed = False
        try:
            with self._translate("store", key):
                head = await self._head(key)
                existed = head is not None
                if head is not None and await self._holds(head, staged, size):
                    log.debug("%s already stored", self._uri(key))
                    return StoredArtifact(self._uri(key), None, size)
                if head is not None:
                    # Another size or other bytes: damaged. An upload replaces an object
                    # atomically, so readers never see a mix of the two.
                    log.info("%s is damaged: replacing it with validated bytes", self._uri(key))
                if size > self.part_size:
                    await self._upload_multipart(staged, key, size)
                else:
                    await self._put(staged, key, sha256, size)
        finally:
            with contextlib.suppress(OSError):
                await loop.run_in_executor(None, _unlink, staged)
        return StoredArtifact(self._uri(key), None, size, not existed, existed)

    async def _holds(self, head: dict[str, Any], staged: Path, size: int) -> bool:
        """Whether the stored object (``head``) has exactly the bytes of ``staged``.

        Told by size and ETag: the ETag of an object uploaded whole is the MD5 of its bytes,
        of one uploaded in parts the MD5 of the parts' MD5s; both are recomputed here with
        this storage's part size. Any other ETag (another part size, server-side
        encryption) is not proof, and the object is replaced.
        """
        if int(head.get("ContentLength", -1)) != size:
            return False
        etag = str(head.get("ETag", "")).strip('"')
        mine = await asyncio.get_running_loop().run_in_executor(
            None, _etag_of, staged, size, self._part_size_for(size)
        )
        return etag == mine

    def _part_size_for(self, size: int) -> int | None:
        """The part size of a multipart upload of ``size`` bytes; None when it is one PUT."""
        return max(self.part_size, -(-size // _MAX_PARTS)) if size > self.part_size else None

    async def _put(self, staged: Path, key: str, sha256: str, size: int) -> None:
        data = await asyncio.get_running_loop().run_in_executor(None, staged.read_bytes)
        if len(data) != size:
            raise StorageError(
                f"cannot store {self._uri(key)}: the staged file has {len(data)} bytes, "
                f"expected {size}"
            )
        extra: dict[str, Any] = {}
        if self.checksums:
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        await self._client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentLength=size, **extra
        )
        log.debug("uploaded %s (%d bytes)", self._uri(key), size)

    async def _upload_multipart(self, staged: Path, key: str, size: int) -> None:
        loop = asyncio.get_running_loop()
        fh: IO[bytes] = await loop.run_in_executor(None, staged.open, "rb")

        async def send(upload_id: str, number: int, offset: int, length: int) -> str:
            data = await loop.run_in_executor(None, fh.read, length)
            if len(data) != length:
                raise StorageError(
                    f"cannot store {self._uri(key)}: the staged file has "
                    f"{offset + len(data)} bytes, expected {size}"
                )
            last = offset + length == size
            if last and len(await loop.run_in_executor(None, fh.read, 1)):
                raise StorageError(
                    f"cannot store {self._uri(key)}: the staged file is larger than {size} bytes"
                )
            extra: dict[str, Any] = {}
            if self.checksums:
                extra["ContentMD5"] = await loop.run_in_executor(None, _md5_b64, data)
            response = await self._client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentLength=length,
                **extra,
            )
            return str(response["ETag"])

        try:
            parts = await self._multipart(key, size, send)
        finally:
            await loop.run_in_executor(None, fh.close)
        log.debug("uploaded %s (%d bytes, %d parts)", self._uri(key), size, parts)

    async def _multipart(self, key: str, size: int, send: _SendPart) -> int:
        """Create a multipart upload of ``key``, send the parts of its ``size`` bytes with
        ``send(upload_id, number, offset, length)`` (which returns the part's ETag) and
        complete it; abort it on any error or cancellation. Return the number of parts."""
        part_size = self._part_size_for(size) or self.part_size
        created = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id: str = created["UploadId"]
        try:
            parts = []
            for number, offset in enumerate(range(0, size, part_size), start=1):
                etag = await send(upload_id, number, offset, min(part_size, size - offset))
                parts.append({"ETag": etag, "PartNumber": number})
            await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            # Shielded: a cancelled upload still releases the parts already sent.
            await asyncio.shield(self._abort(key, upload_id))
            raise
        return len(parts)

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except self._errors as exc:
            log.warning(
                "could not abort the multipart upload of %s: %s (a bucket lifecycle rule "
                "for incomplete multipart uploads will remove it)",
                self._uri(key),
                self._describe(exc),
            )

    def _listing_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def artifacts(self) -> AsyncIterator[str]:
        """Every object ``[prefix/]ab/cdef…``, in key (so sha256) order, a page at a time."""
        start = self._listing_prefix()
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=start)
        with self._translate("list", start):
            async for page in pages:
                for item in page.get("Contents", ()):
                    sha = sha256_of_key(item["Key"][len(start) :])
                    if sha is not None:
                        yield sha

    async def _leftover_staging(self) -> list[LeftoverFile]:
        """The incomplete multipart uploads under the prefix (a process killed while it
        uploaded a large file; a bucket lifecycle rule can expire them)."""
        from ..models import LeftoverFile

        start = self._listing_prefix()
        found = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        with self._translate("list the multipart uploads of", start):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for upload in page.get("Uploads", ()):
                    found.append(LeftoverFile("upload", self._uri(upload["Key"])))
        return found

    async def stat(self, sha256: str) -> StoredArtifact | None:
        key = self.key_of(sha256)
        with self._translate("look up", key):
            head = await self._head(key)
        if head is None:
            return None
        return StoredArtifact(self._uri(key), None, int(head["ContentLength"]))

    async def read(self, sha256: str, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        key = self.key_of(sha256)
        with self._translate("read", key):
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            while True:
                with self._translate("read", key):
                    chunk: bytes = await body.read(chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def quarantine(self, sha256: str) -> None:
        """Copy the artifact to ``[prefix/]quarantine/ab/cdef…``, then delete it."""
        key = self.key_of(sha256)
        target = self.quarantine_key_of(sha256)
        with self._translate("quarantine", key):
            head = await self._head(key)
            if head is None:
                return
            size = int(head["ContentLength"])
            if size > self.copy_object_limit:
                await self._copy_multipart(key, target, size)
            else:
                await self._client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": key},
                )
            await self._client.delete_object(Bucket=self.bucket, Key=key)
        log.info("quarantined %s as %s", self._uri(key), self._uri(target))

    async def _copy_multipart(self, source: str, target: str, size: int) -> None:
        async def send(upload_id: str, number: int, offset: int, length: int) -> str:
            response = await self._client.upload_part_copy(
                Bucket=self.bucket,
                Key=target,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceRange=f"bytes={offset}-{offset + length - 1}",
            )
            return str(response["CopyPartResult"]["ETag"])

        await self._multipart(target, size, send)

    async def delete(self, sha256: str) -> None:
        import botocore.exceptions

        key = self.key_of(sha256)
        with self._translate("delete", key):
            try:
                await self._client.delete_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if not _is_not_found(exc):
                    raise


def _is_not_found(exc: Any) -> bool:
    """A 404 about the object (a missing bucket is an error, not an absent object)."""
    response = exc.response
    code = response.get("Error", {}).get("Code")
    if code == "NoSuchBucket":
        return False
    return code in _NOT_FOUND or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404


def _etag_of(path: Path, size: int, part_size: int | None) -> str:
    """The ETag S3 gives ``path`` uploaded whole (``part_size`` None) or in parts."""
    step = part_size or max(size, 1)
    digests = []
    with path.open("rb") as fh:
        for _ in range(0, max(size, 1), step):
            part = hashlib.md5(usedforsecurity=False)
            left = step
            while left and (chunk := fh.read(min(left, 1024 * 1024))):
                part.update(chunk)
                left -= len(chunk)
            digests.append(part.digest())
    if part_size is None:
        return digests[0].hex()
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
