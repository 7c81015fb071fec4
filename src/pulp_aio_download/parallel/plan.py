"""How many worker processes a batch gets, each one's share of the limits, and the
configuration that crosses to them."""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import EngineConfig, RemoteConfig
from ..errors import ConfigError
from ..models import DownloadRequest
from ..transports.file import resolve_file_url

__all__ = [
    "FILES_PER_WORKER",
    "available_cores",
    "default_workers",
    "encode_config",
    "prepare_request",
    "shares",
    "worker_configs",
]

#: Files per worker below which the default does not start another worker. A worker costs
#: about 0.35 s of CPU to start (an interpreter, aiohttp, the engine) and each file costs
#: it somewhat more than in one process (a smaller share of the connections batches
#: less); measured on 2 busy cores, 2,000 small files ran slower on two workers and
#: 20,000 faster (benchmarks/README.md, issue 14).
FILES_PER_WORKER = 2000


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_workers(files: int, max_connections: int) -> int:
    """The default number of workers: the cores, capped by the work (one per
    :data:`FILES_PER_WORKER` files, so a small batch stays in one process) and by the
    global connection limit (every worker needs one connection)."""
    return max(1, min(available_cores(), files // FILES_PER_WORKER, max_connections))


def shares(total: int, count: int) -> list[int]:
    """``total`` split into ``count`` shares as even as can be, at least 1 each."""
    base, extra = divmod(total, count)
    return [max(1, base + (1 if i < extra else 0)) for i in range(count)]


def worker_configs(config: EngineConfig, count: int) -> list[EngineConfig]:
    """The configuration of each of ``count`` workers: ``config`` with its share of the
    global limit, of the per-host limit, of the bandwidth cap and of every remote's
    ``max_connections``, ``rate_limit`` and ``max_speed``, so that the workers together
    keep the limits of one engine (every worker gets at least one connection). No
    progress callback and no meter provider: the parent reports."""
    global_ = shares(config.max_connections, count)
    per_host = (
        shares(config.max_connections_per_host, count)
        if config.max_connections_per_host
        else [0] * count
    )
    remote_shares = {
        name: shares(remote.max_connections, count) if remote.max_connections else None
        for name, remote in config.remotes.items()
    }
    out = []
    for i in range(count):
        remotes: dict[str, RemoteConfig] = {}
        for name, remote in config.remotes.items():
            limit = remote_shares[name]
            remotes[name] = dataclasses.replace(
                remote,
                max_connections=None if limit is None else limit[i],
                rate_limit=None if remote.rate_limit is None else remote.rate_limit / count,
                max_speed=_share_speed(remote.max_speed, count),
            )
        out.append(
            dataclasses.replace(
                config,
                progress=None,
                meter_provider=None,
                max_connections=global_[i],
                max_connections_per_host=per_host[i],
                remotes=remotes,
                max_speed=_share_speed(config.max_speed, count),
            )
        )
    return out


def _share_speed(speed: int | None, count: int) -> int | None:
    return None if speed is None else max(1, speed // count)


def encode_config(config: EngineConfig, extra: Sequence[Any] = ()) -> bytes:
    """``config`` (and ``extra``) pickled for a worker process.

    Raises:
        ConfigError: something in it cannot cross a process boundary (a hook that is a
            closure or a lambda, an opened catalog, ...), named.
    """
    try:
        return pickle.dumps((config, *extra), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        culprit = _culprit(config)
        raise ConfigError(
            f"with workers > 1 the configuration must be picklable, to reach the worker "
            f"processes, and {culprit} is not ({type(exc).__name__}: {exc}): use functions "
            "and classes defined at module level, not closures or lambdas, and storage or "
            "catalog objects that are not opened yet"
        ) from None


def _culprit(config: EngineConfig) -> str:
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if _picklable(value):
            continue
        if field.name == "hooks" and value is not None:
            for i, hook in enumerate(value):
                if not _picklable(hook):
                    name = getattr(hook, "__qualname__", repr(hook))
                    return f"EngineConfig.hooks[{i}] ({name})"
        if field.name == "remotes":
            for name, remote in value.items():
                for part in dataclasses.fields(remote):
                    if not _picklable(getattr(remote, part.name)):
                        return f"EngineConfig.remotes[{name!r}].{part.name}"
        return f"EngineConfig.{field.name}"
    return "part of it"


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


def prepare_request(item: str | DownloadRequest, config: EngineConfig) -> DownloadRequest:
    """``item`` as a :class:`DownloadRequest` whose remotes ``config`` knows and whose
    ``file://`` sources it allows, checked as the engine would before any I/O.

    Raises:
        ConfigError: it is neither a URL nor a request, names an unknown remote, or has a
            ``file://`` source outside ``config.allowed_file_roots``.
    """
    if isinstance(item, str):
        request = DownloadRequest(item)
    elif isinstance(item, DownloadRequest):
        request = item
    else:
        raise ConfigError(f"expected a URL or a DownloadRequest, got {item!r}")
    for source in request.sources:
        config.remote(source.remote or request.remote)
        if source.scheme == "file":
            resolve_file_url(source.url, tuple(Path(r) for r in config.allowed_file_roots))
    return request
