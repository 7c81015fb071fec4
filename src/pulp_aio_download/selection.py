"""Source selection: priority first, then a weighted-random order adjusted by host health."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

from .health import HostHealth
from .models import Source

__all__ = ["order_sources"]

log = logging.getLogger(__name__)
_RNG = random.Random()


def _weighted_order(sources: list[Source], weights: list[float], rng: random.Random) -> list[Source]:
    # Efraimidis-Spirakis: sorting by u**(1/w) draws a weighted random permutation.
    keys = [rng.random() ** (1.0 / w) for w in weights]
    return [s for _, s in sorted(zip(keys, sources), key=lambda kv: kv[0], reverse=True)]


def order_sources(
    sources: Sequence[Source],
    health: Mapping[str, HostHealth],
    *,
    now: float,
    rng: random.Random | None = None,
) -> list[Source]:
    """The order in which ``sources`` are tried.

    Higher priority first; among equal priorities a weighted-random permutation by
    ``weight × health score``; hosts cooling down after repeated failures go last.
    The debug log says why.
    """
    rng = rng or _RNG
    by_priority: dict[int, list[Source]] = {}
    for source in sources:
        by_priority.setdefault(source.priority, []).append(source)
    ordered: list[Source] = []
    cooling: list[Source] = []
    for priority in sorted(by_priority, reverse=True):
        group = by_priority[priority]
        ready = [s for s in group if not _cooling(health, s, now)]
        cooling.extend(s for s in group if _cooling(health, s, now))
        weights = [s.weight * _score(health, s) for s in ready]
        picked = _weighted_order(ready, weights, rng) if len(ready) > 1 else ready
        ordered.extend(picked)
    result = ordered + cooling
    if log.isEnabledFor(logging.DEBUG) and len(result) > 1:
        log.debug(
            "source order: %s",
            "; ".join(
                f"{s.url} (priority {s.priority}, weight {s.weight}, health "
                f"{_score(health, s):.2f}{', cooling down' if s in cooling else ''})"
                for s in result
            ),
        )
    return result


def _score(health: Mapping[str, HostHealth], source: Source) -> float:
    record = health.get(source.host)
    return record.score() if record else 1.0


def _cooling(health: Mapping[str, HostHealth], source: Source, now: float) -> bool:
    record = health.get(source.host)
    return record is not None and record.cooling(now)
