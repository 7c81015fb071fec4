"""Source selection: priority first, then a weighted-random order adjusted by host health."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

from .health import HostHealth
from .models import Source

__all__ = ["explain", "order_sources"]

log = logging.getLogger(__name__)
_RNG = random.Random()


def _weighted_order(
    sources: list[Source], weights: list[float], rng: random.Random
) -> list[Source]:
    # Efraimidis-Spirakis: sorting by u**(1/w) draws a weighted random permutation.
    keys = [rng.random() ** (1.0 / w) for w in weights]
    return [
        s for _, s in sorted(zip(keys, sources, strict=True), key=lambda kv: kv[0], reverse=True)
    ]


def order_sources(
    sources: Sequence[Source],
    health: Mapping[str, HostHealth],
    *,
    now: float,
    rng: random.Random | None = None,
) -> list[Source]:
    """The order in which ``sources`` are tried.

    Higher priority first; among equal priorities a weighted-random permutation by
    ``weight * health score``; hosts cooling down after repeated failures go last.
    The debug log says why.
    """
    if len(sources) == 1:  # the common case: nothing to order
        result = list(sources)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", explain(result, health, now=now))
        return result
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
    cooling.sort(key=lambda s: (-s.priority, health[s.host].cooldown_until))
    result = ordered + cooling
    if log.isEnabledFor(logging.DEBUG) and result:
        log.debug("%s", explain(result, health, now=now))
    return result


def explain(ordered: Sequence[Source], health: Mapping[str, HostHealth], *, now: float) -> str:
    """Why the first of ``ordered`` is tried first, and the whole order, in words."""

    def why(source: Source) -> str:
        record = health.get(source.host)
        parts = [
            f"priority {source.priority}",
            f"weight {source.weight:g} x health {_score(health, source):.2f}"
            f" = {source.weight * _score(health, source):.3g}",
        ]
        if record is not None:
            parts.append(f"error rate {record.error_rate:.2f}")
            if record.speed:
                parts.append(f"speed {record.speed / 1e6:.2f} MB/s")
            if record.cooling(now):
                parts.append(
                    f"cooling down {record.cooldown_until - now:.0f} s more after "
                    f"{record.failures} failures"
                )
        return f"{source.url} ({', '.join(parts)})"

    first = ordered[0]
    rivals = [s for s in ordered[1:] if s.priority == first.priority]
    reason = (
        "only source"
        if len(ordered) == 1
        else (
            f"weighted draw among {len(rivals) + 1} sources of priority {first.priority}"
            if rivals
            else f"highest priority {first.priority}"
        )
    )
    if len(ordered) > 1 and _cooling(health, first, now):
        reason = "every source is cooling down; this one's cooldown ends first"
    lines = "; then ".join(why(s) for s in ordered[1:])
    return f"picked {why(first)}: {reason}" + (f"; then {lines}" if lines else "")


def _score(health: Mapping[str, HostHealth], source: Source) -> float:
    record = health.get(source.host)
    return record.score() if record else 1.0


def _cooling(health: Mapping[str, HostHealth], source: Source, now: float) -> bool:
    record = health.get(source.host)
    return record is not None and record.cooling(now)
