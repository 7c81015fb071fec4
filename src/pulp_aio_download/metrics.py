"""Optional OpenTelemetry metrics: what the engine already counts, as instruments.

Off unless ``EngineConfig(meter_provider=...)`` names an OpenTelemetry ``MeterProvider``
(the SDK's, or ``opentelemetry.metrics.get_meter_provider()`` for the global one). Then
each engine reports to the meter ``pulp_aio_download`` of that provider:

* per file, once it is done or has failed (never per chunk): ``pad.download.files`` and
  ``pad.download.bytes``;
* per attempt at a host, from the admission layer that already records the host's health:
  ``http.client.request.duration`` and ``pad.download.retries``;
* when the reader collects, read from :meth:`DownloadEngine.statistics` and the host health
  records (nothing is kept up to date for them): in-flight downloads, waiting downloads,
  transfers holding a slot, per-host connection limits and health scores.

Every instrument is listed with its unit and attributes in ``docs/metrics.md``. Attributes
carry a remote's name and a host (``server.address``, ``server.port``), never a URL,
credentials or a path.

Nothing here imports ``opentelemetry`` at module level: the package imports this module
whether metrics are on or not, and only an engine with a meter provider (whose caller has
OpenTelemetry installed) reaches the code that does.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._version import __version__
from .errors import (
    ConnectionFailed,
    DigestMismatch,
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    SizeMismatch,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

    from .health import HostHealth
    from .models import DownloadRequest, DownloadResult

__all__ = ["METER_NAME", "EngineMetrics", "retry_reason"]

#: The name of the meter (the instrumentation scope) every engine reports to.
METER_NAME = "pulp_aio_download"

#: The buckets of ``http.client.request.duration``: those the semantic conventions advise,
#: and more beyond 10 s (an attempt here includes the whole body, not just the headers).
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
    300.0,
)


class StatisticsLike(Protocol):
    """What the gauges read of :class:`~pulp_aio_download.EngineStatistics`."""

    @property
    def in_flight(self) -> int: ...
    @property
    def transfers(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def host_limits(self) -> Mapping[str, int]: ...


def retry_reason(error: DownloadError) -> str:
    """The ``pad.retry.reason`` of a failed attempt that is retried: the HTTP status
    (``"503"``), ``"timeout"``, ``"connection"``, ``"digest"``, ``"size"`` or ``"other"``."""
    if isinstance(error, HTTPStatusError):
        return str(error.status)
    if isinstance(error, DownloadTimeout):
        return "timeout"
    if isinstance(error, DigestMismatch):
        return "digest"
    if isinstance(error, SizeMismatch):
        return "size"
    if isinstance(error, ConnectionFailed):
        return "connection"
    return "other"


@functools.lru_cache(maxsize=1024)
def _server(host: str) -> tuple[tuple[str, str | int], ...]:
    """``server.address`` and ``server.port`` of ``host[:port]`` (``[v6]:port`` too)."""
    address, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        address, port = host[1:end], host[end + 2 :]
    elif host.count(":") == 1:
        address, _, port = host.partition(":")
    address = address.lower()
    if port.isdigit():
        return (("server.address", address), ("server.port", int(port)))
    return (("server.address", address),)


def _url_host(url: str) -> str:
    """The ``host[:port]`` of an ``http(s)`` URL without userinfo ('' for ``file://``)."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https"):
        return ""
    return rest.split("/", 1)[0].rpartition("@")[2]


def _error_type(error: DownloadError | None) -> str:
    """``error.type`` as the semantic conventions have it: the status of an HTTP error,
    else the fully-qualified class name."""
    if isinstance(error, HTTPStatusError):
        return str(error.status)
    if error is None:
        return "_OTHER"
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


class EngineMetrics:
    """The metrics of one engine: it reports file outcomes and attempts here, and the
    gauges read its statistics through the callables it gives.

    Args:
        meter_provider: an OpenTelemetry ``MeterProvider``.
        statistics: returns the engine's :class:`EngineStatistics` (read on collection;
            None: nothing to report, as for the parent of ``--workers`` processes, which
            counts the files of its workers).
        health: returns the engine's host health records (read on collection).
    """

    __slots__ = ("__weakref__", "_closed", "_health", "_instruments", "_statistics")

    def __init__(
        self,
        meter_provider: MeterProvider,
        statistics: Callable[[], StatisticsLike | None],
        health: Callable[[], Mapping[str, HostHealth]],
    ) -> None:
        self._statistics = statistics
        self._health = health
        self._closed = False
        self._instruments = _instruments_for(meter_provider.get_meter(METER_NAME, __version__))
        self._instruments.engines.add(self)

    def close(self) -> None:
        """Stop reporting this engine's gauges (its counters keep what they counted)."""
        self._closed = True
        self._instruments.engines.discard(self)

    # -- per file -------------------------------------------------------------------------
    def downloaded(self, request: DownloadRequest, result: DownloadResult) -> None:
        """Count a file done: transferred, or served from storage (``cached``)."""
        remote = ("pad.remote", _remote(request, result.url))
        count = self._instruments.count
        if result.cached:
            count(_FILES, (remote, ("pad.outcome", "cached")), 1)
            count(_BYTES, (remote, ("pad.cached", True)), result.size)
            return
        count(_FILES, (remote, ("pad.outcome", "done")), 1)
        host = _url_host(result.url)
        server = _server(host) if host else ()
        count(_BYTES, (remote, ("pad.cached", False), *server), result.transferred)

    def failed(self, request: DownloadRequest, error: DownloadError) -> None:
        """Count a file that failed."""
        key = (
            ("pad.remote", _remote(request, None)),
            ("pad.outcome", "failed"),
            ("error.type", _error_type(error)),
        )
        self._instruments.count(_FILES, key, 1)

    # -- per attempt (the admission layer's observer) ---------------------------------------
    def attempt(
        self,
        host: str,
        *,
        ok: bool,
        seconds: float,
        status: int | None = None,
        error: DownloadError | None = None,
        retry: bool = False,
    ) -> None:
        """Record one attempt at ``host`` (``host[:port]``): its duration, and a retry when
        ``retry`` (the attempt failed with ``error`` and is tried again)."""
        server = _server(host)
        attributes: dict[str, Any] = {"http.request.method": "GET", **dict(server)}
        if not ok:
            attributes["error.type"] = str(status) if status else _error_type(error)
            if status:
                attributes["http.response.status_code"] = status
        self._instruments.duration.record(seconds, attributes)
        if retry and error is not None:
            reason = ("pad.retry.reason", retry_reason(error))
            self._instruments.count(_RETRIES, (*server, reason), 1)

    # -- read on collection ----------------------------------------------------------------
    def statistics(self) -> StatisticsLike | None:
        """The engine's statistics, or None once it is closed (or it has none)."""
        return None if self._closed else _read(self._statistics)

    def health(self) -> Mapping[str, HostHealth]:
        """A copy of the engine's host health records (none once it is closed)."""
        return {} if self._closed else _read(lambda: dict(self._health()))


_T = TypeVar("_T")


def _read(read: Callable[[], _T]) -> _T:
    """``read()``, again if the engine's loop changed a dict it iterated: a periodic reader
    collects from a thread of its own."""
    for _ in range(3):
        try:
            return read()
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return read()


def _remote(request: DownloadRequest, url: str | None) -> str:
    """The name of the remote whose source served ``url`` (the request's first source's,
    when no source has that URL: after a redirect, or for a failure)."""
    sources = request.sources
    chosen = sources[0] if sources else None
    if url is not None and len(sources) > 1:
        chosen = next((s for s in sources if s.url == url), chosen)
    remote = chosen.remote if chosen is not None else None
    return remote or request.remote or "default"


#: The instruments of each meter: a meter hands out an instrument once per name (asked
#: again, it returns the first one and drops the new callbacks), so the engines that
#: report to one meter share its instruments, and its gauges read every live engine.
_BY_METER: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()


#: Attributes as a hashable key: (name, value) pairs.
_Key = tuple[tuple[str, Any], ...]
#: The counters whose totals :class:`_Instruments` keeps.
_FILES, _BYTES, _RETRIES = range(3)


def _instruments_for(meter: Meter) -> _Instruments:
    instruments = _BY_METER.get(meter)
    if instruments is None:
        instruments = _BY_METER[meter] = _Instruments(meter)
    return instruments


class _Instruments:
    """Every instrument of one meter, and the engines its gauges read."""

    def __init__(self, meter: Meter) -> None:
        from opentelemetry.metrics import Observation

        self._observation = Observation
        self.engines: weakref.WeakSet[EngineMetrics] = weakref.WeakSet()
        # The counters' totals by attributes, kept here and read on collection: a dict
        # update per file instead of an SDK measurement (about 9 us each) per file. They
        # outlive the engines, as a counter's total must.
        self._totals: tuple[dict[_Key, int], ...] = ({}, {}, {})
        self._lock = threading.Lock()  # engines on several threads' loops share them
        for table, name, unit, description in (
            (
                _FILES,
                "pad.download.files",
                "{file}",
                "Files finished, by outcome: done, cached (served from storage), failed.",
            ),
            (
                _BYTES,
                "pad.download.bytes",
                "By",
                "Bytes of the files finished: transferred by this process (cached=false), "
                "or served from storage (cached=true).",
            ),
            (_RETRIES, "pad.download.retries", "{retry}", "Failed attempts tried again."),
        ):
            meter.create_observable_counter(
                name,
                [functools.partial(self._report, table)],
                unit=unit,
                description=description,
            )
        self.duration = _histogram(meter)
        meter.create_observable_up_down_counter(
            "pad.download.in_flight",
            [self._in_flight],
            unit="{download}",
            description="Downloads started and not finished (waiting or transferring).",
        )
        meter.create_observable_up_down_counter(
            "pad.download.waiting",
            [self._waiting],
            unit="{download}",
            description="Downloads in flight that hold no connection slot (queued or "
            "backing off before a retry).",
        )
        meter.create_observable_up_down_counter(
            "pad.transfer.active",
            [self._transfers],
            unit="{transfer}",
            description="Transfers holding a connection slot (a segmented download "
            "holds one per segment).",
        )
        meter.create_observable_gauge(
            "pad.host.connection.limit",
            [self._host_limits],
            unit="{connection}",
            description="The adaptive connection limit of each host (lowered by 429/503).",
        )
        meter.create_observable_gauge(
            "pad.host.health",
            [self._host_health],
            unit="1",
            description="The health score of each host (1 healthy, down to 0.05), which "
            "weights the choice between its sources and those of other hosts.",
        )

    def count(self, table: int, key: _Key, amount: int) -> None:
        """Add ``amount`` to the total of counter ``table`` for the attributes ``key``."""
        totals = self._totals[table]
        with self._lock:
            totals[key] = totals.get(key, 0) + amount

    def _report(self, table: int, options: CallbackOptions) -> list[Observation]:
        with self._lock:
            totals = list(self._totals[table].items())
        return [self._observation(total, dict(key)) for key, total in totals]

    def _statistics(self) -> Iterable[StatisticsLike]:
        for engine in list(self.engines):
            stats = engine.statistics()
            if stats is not None:
                yield stats

    def _total(self, value: Callable[[StatisticsLike], int]) -> list[Observation]:
        return [self._observation(sum(value(s) for s in self._statistics()))]

    def _in_flight(self, options: CallbackOptions) -> list[Observation]:
        return self._total(lambda s: s.in_flight)

    def _waiting(self, options: CallbackOptions) -> list[Observation]:
        return self._total(lambda s: s.waiting)

    def _transfers(self, options: CallbackOptions) -> list[Observation]:
        return self._total(lambda s: s.transfers)

    def _host_limits(self, options: CallbackOptions) -> list[Observation]:
        limits: dict[str, int] = {}
        for stats in self._statistics():
            for host, limit in stats.host_limits.items():
                if host:
                    limits[host] = limits.get(host, 0) + limit
        return [self._observation(n, dict(_server(h))) for h, n in sorted(limits.items())]

    def _host_health(self, options: CallbackOptions) -> list[Observation]:
        latest: dict[str, HostHealth] = {}
        for engine in list(self.engines):
            for host, record in engine.health().items():
                seen = latest.get(host)
                if seen is None or record.updated_at > seen.updated_at:
                    latest[host] = record
        return [self._observation(r.score(), dict(_server(h))) for h, r in sorted(latest.items())]


def _histogram(meter: Meter) -> Any:
    name, unit = "http.client.request.duration", "s"
    description = (
        "Duration of one attempt at a host: from holding its connection slot to the end of "
        "the body (or the failure)."
    )
    try:
        return meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # an opentelemetry-api without advisory bucket boundaries
        return meter.create_histogram(name, unit=unit, description=description)
