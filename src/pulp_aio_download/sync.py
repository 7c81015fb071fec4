"""Synchronous helpers for plugin task code: thin facades over the async engine."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from .config import EngineConfig
from .engine import DownloadEngine
from .errors import DownloadError
from .models import DownloadRequest, DownloadResult

__all__ = ["download_sync", "run_batch"]

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T], name: str) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError(
        f"{name}() cannot be called from a running event loop; "
        "use 'await engine.download(...)' or 'await engine.download_many(...)' instead"
    )


def _url_of(item: object) -> str | None:
    if isinstance(item, DownloadRequest):
        return item.url
    return item if isinstance(item, str) else None


def run_batch(
    requests: Iterable[str | DownloadRequest],
    config: EngineConfig | None = None,
    return_exceptions: bool = True,
) -> list[DownloadResult | DownloadError]:
    """Download a batch with one engine, gather-style; results in input order.

    At most ``config.max_connections`` transfers run at once. With ``return_exceptions``
    (the default) each failure is returned in its place as a :class:`DownloadError`;
    otherwise the first failure is raised and the rest are cancelled cleanly. Storage or a
    catalog that cannot be opened fails every file: each gets that error, naming its URL.

    Raises:
        DownloadError: without ``return_exceptions``, the first failure.
        RuntimeError: when called from inside a running event loop.
    """
    items = list(requests)

    async def main() -> list[DownloadResult | DownloadError]:
        engine = DownloadEngine(config)
        try:
            await engine.start()
        except DownloadError as exc:
            if return_exceptions and items:
                return [exc.with_url(_url_of(item)) for item in items]
            if exc.url is None and items:
                raise exc.with_url(_url_of(items[0])) from exc
            raise
        try:
            return await engine.download_many(items, return_exceptions=return_exceptions)
        finally:
            try:
                await engine.close()
            except DownloadError as exc:
                if exc.url is None and items:
                    raise exc.with_url(_url_of(items[0])) from exc
                raise

    return _run(main(), "run_batch")


def download_sync(
    url_or_request: str | DownloadRequest, config: EngineConfig | None = None, **kwargs: Any
) -> DownloadResult:
    """Download one file synchronously (``kwargs`` as for :meth:`DownloadEngine.download`).

    Raises:
        DownloadError: the download failed.
        RuntimeError: when called from inside a running event loop.
    """

    async def main() -> DownloadResult:
        async with DownloadEngine(config) as engine:
            return await engine.download(url_or_request, **kwargs)

    try:
        return _run(main(), "download_sync")
    except DownloadError as exc:
        if exc.url is None:  # storage or catalog failed to open or close: name the file
            raise exc.with_url(_url_of(url_or_request)) from exc
        raise
