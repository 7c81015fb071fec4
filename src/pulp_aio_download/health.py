"""Source health: per-host error rate and speed, used to rank equal-priority sources."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HostHealth"]

#: Weight of the newest observation in the moving averages.
ALPHA = 0.2
#: Consecutive failures after which a host cools down.
COOLDOWN_AFTER = 3
#: Seconds of the first cooldown; doubles with every further failure, capped.
COOLDOWN_BASE = 30.0
COOLDOWN_MAX = 600.0


@dataclass(frozen=True, slots=True)
class HostHealth:
    """Health of one host (``host[:port]``): exponentially weighted error rate (0..1) and
    speed (bytes/s), consecutive failures and the time (epoch seconds) until which the host
    is cooling down."""

    host: str
    error_rate: float = 0.0
    speed: float = 0.0
    failures: int = 0
    cooldown_until: float = 0.0
    updated_at: float = 0.0

    def observe(
        self,
        *,
        ok: bool,
        now: float,
        nbytes: int = 0,
        seconds: float = 0.0,
        status: int | None = None,
    ) -> HostHealth:
        """A new value after one attempt against this host.

        A failure raises the error rate. It counts towards the cooldown unless the host
        answered with a client error about that one file (a 4xx other than 408 and 429,
        e.g. a mirror without the file): the host itself is up and serving.
        """
        error_rate = (1 - ALPHA) * self.error_rate + ALPHA * (0.0 if ok else 1.0)
        if not ok and status is not None and 400 <= status < 500 and status not in (408, 429):
            return type(self)(
                self.host, error_rate, self.speed, self.failures, self.cooldown_until, now
            )
        speed = self.speed
        if ok and seconds > 0 and nbytes > 0:
            sample = nbytes / seconds
            speed = sample if self.speed == 0 else (1 - ALPHA) * self.speed + ALPHA * sample
        failures = 0 if ok else self.failures + 1
        cooldown_until = self.cooldown_until
        if ok:
            cooldown_until = 0.0
        elif failures >= COOLDOWN_AFTER:
            delay = min(COOLDOWN_MAX, COOLDOWN_BASE * 2.0 ** min(failures - COOLDOWN_AFTER, 16))
            cooldown_until = now + delay
        # The constructor, not dataclasses.replace: this runs once per attempt.
        return type(self)(self.host, error_rate, speed, failures, cooldown_until, now)

    def cooling(self, now: float) -> bool:
        """True while the host is cooling down after repeated failures."""
        return self.cooldown_until > now

    def score(self) -> float:
        """A multiplier (0..1] for a source's weight: 1 for a healthy host."""
        return max(0.05, 1.0 - self.error_rate)
