"""The one integer check of every setting and record: an int (never a bool) in range."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["check_int"]


def check_int(what: str, value: object, *, minimum: int | None = None) -> None:
    """Raise :class:`ConfigError` naming ``what`` unless ``value`` is an ``int`` (a ``bool``
    is not) of at least ``minimum``. Callers skip the check for an optional ``None``."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (minimum is None or value >= minimum)
    ):
        return
    if minimum is None:
        kind = "an int"
    elif minimum == 0:
        kind = "a non-negative int"
    elif minimum == 1:
        kind = "a positive int"
    else:
        kind = f"an int of at least {minimum}"
    raise ConfigError(f"{what} must be {kind}, got {value!r}")
