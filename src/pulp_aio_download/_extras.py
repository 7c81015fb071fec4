"""Optional extras: a backend's dependency imported on first use, or a clear ConfigError."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

__all__ = ["require"]


def require(module: str, *, extra: str, needed_by: str) -> ModuleType:
    """Import ``module``, which the ``extra`` of the package installs.

    Raises:
        ConfigError: it is not installed; the message says which extra brings it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            f"{needed_by} needs the {extra!r} extra: pip install 'pulp-aio-download[{extra}]'"
        ) from None
