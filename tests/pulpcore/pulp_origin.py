"""The origin of the syncs: an aiohttp server in a thread serving ``PULP_MANIFEST`` trees.

Each test writes its own tree with :func:`write_tree` (pulpcore skips content whose artifact
it already has, so bytes are never shared between tests) and serves it from an
:class:`Origin`: plain HTTP or TLS (a trustme certificate, optionally requiring a client
certificate), optionally behind basic auth. Files are served by aiohttp's ``FileResponse``
(``Range`` answered with 206). Every request is counted per path, including the refused.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gc
import hashlib
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

__all__ = ["TLS_LEFTOVERS", "Origin", "TreeFile", "write_tree"]

#: asyncio's TLS server leaves the raw transports of connections a client dropped (or whose
#: handshake it refused) to the collector, which may run in the middle of a later test: the
#: test server's leftovers, not the code under test's. For the modules with HTTPS origins.
TLS_LEFTOVERS = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <(socket.socket fd=|function _SelectorTransport.__del__)"
    ":pytest.PytestUnraisableExceptionWarning"
)


@dataclass(frozen=True)
class TreeFile:
    """One file of a tree: its manifest path and bytes."""

    relative_path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def write_tree(root: Path, files: list[TreeFile], *, manifest_sha256: dict[str, str] | None = None,
               unlisted: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Write ``files`` under ``root`` and a ``PULP_MANIFEST`` listing them.

    ``manifest_sha256`` overrides the digest the manifest gives for some paths (a wrong
    checksum); ``unlisted`` paths are listed but not written (a 404).
    """
    lines = []
    for item in files:
        digest = (manifest_sha256 or {}).get(item.relative_path, item.sha256)
        lines.append(f"{item.relative_path},{digest},{len(item.data)}\n")
        if item.relative_path in unlisted:
            continue
        target = root / item.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.data)
    root.mkdir(parents=True, exist_ok=True)
    (root / "PULP_MANIFEST").write_text("".join(lines))


class Origin:
    """An HTTP(S) file server on 127.0.0.1 run by its own event loop in a thread."""

    def __init__(
        self,
        root: Path,
        *,
        ssl_context: ssl.SSLContext | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.requests: collections.Counter[str] = collections.Counter()
        self.statuses: list[tuple[str, int]] = []
        self.range_headers: list[str] = []
        self._ssl = ssl_context
        self._auth = (
            "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
            if basic_auth
            else None
        )
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self) -> Origin:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        if self._ssl is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()

    def file_requests(self) -> int:
        """Requests for anything but the manifest."""
        return sum(n for path, n in self.requests.items() if not path.endswith("PULP_MANIFEST"))

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        app.on_response_prepare.append(self._prepared)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests[path] += 1
        if "Range" in request.headers:
            self.range_headers.append(request.headers["Range"])
        return self._answer(request, path)

    async def _prepared(self, request: web.Request, response: web.StreamResponse) -> None:
        self.statuses.append((request.match_info.get("path", ""), response.status))

    def _answer(self, request: web.Request, path: str) -> web.StreamResponse:
        if self._auth is not None and request.headers.get("Authorization") != self._auth:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="pulp"'})
        target = (self.root / path).resolve()
        if self.root not in target.parents or not target.is_file():
            return web.Response(status=404, text="not found")
        return web.FileResponse(target)
