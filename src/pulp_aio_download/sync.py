"""Synchronous helpers for plugin task code: thin facades over the async engine."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from .config import EngineConfig
from .engine import DownloadEngine
from .errors import ConfigError, DownloadError
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
    *,
    workers: int | None = 1,
) -> list[DownloadResult | DownloadError]:
    """Download a batch with one engine, gather-style; results in input order.

    At most ``config.max_connections`` transfers run at once. With ``return_exceptions``
    (the default) each failure is returned in its place as a :class:`DownloadError`;
    otherwise the first failure is raised and the rest are cancelled cleanly. Storage or a
    catalog that cannot be opened fails every file: each gets that error, naming its URL.

    ``workers``: engine processes to spread the batch over (1, the default: this process
    alone; None: the cores, capped by the work, see
    :func:`~pulp_aio_download.parallel.default_workers`). With more than one, each worker
    gets its share of ``config``'s limits and they cooperate through the catalog; the
    requests and ``config`` (hooks, remotes, storage, catalog) must be picklable, and the
    progress callback runs in this process with the merged reports. Worker processes are
    *spawned*: a script that calls this needs the usual ``if __name__ == "__main__":``
    guard. See :mod:`pulp_aio_download.parallel`.

    Raises:
        ConfigError: an invalid request, or (``workers`` > 1) a configuration that cannot
            cross a process boundary (a hook that is a closure, say).
        DownloadError: without ``return_exceptions``, the first failure.
        RuntimeError: when called from inside a running event loop.
    """
    items = list(requests)
    if workers != 1:
        return _run(_parallel_batch(items, config, return_exceptions, workers), "run_batch")

    return _run(_one_engine(items, config, return_exceptions), "run_batch")


async def _one_engine(
    items: Sequence[str | DownloadRequest], config: EngineConfig | None, return_exceptions: bool
) -> list[DownloadResult | DownloadError]:
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


async def _parallel_batch(
    items: list[str | DownloadRequest],
    config: EngineConfig | None,
    return_exceptions: bool,
    workers: int | None,
) -> list[DownloadResult | DownloadError]:
    from .parallel import WorkersDidNotStart, default_workers, run_parallel

    config = config or EngineConfig()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise ConfigError(f"workers must be a positive integer or None, got {workers!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    count = default_workers(len(items), config.max_connections) if workers is None else workers
    if count == 1:
        return await _one_engine(items, config, return_exceptions)
    results: list[DownloadResult | DownloadError] = [None] * len(items)  # type: ignore[list-item]

    def keep(index: int, outcome: DownloadResult | DownloadError) -> None:
        results[index] = outcome

    try:
        await run_parallel(
            items,
            config,
            count,
            keep,
            return_exceptions=return_exceptions,
            recap=workers is None,
        )
    except WorkersDidNotStart as exc:
        if return_exceptions:
            return [exc.error.with_url(_url_of(item)) for item in items]
        raise exc.error.with_url(_url_of(items[0])) from exc.error
    except DownloadError as exc:
        if exc.url is None and items:
            raise exc.with_url(_url_of(items[0])) from exc
        raise
    return results


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
