"""Admission: the limits a transfer holds while its bytes flow.

* :mod:`.control` — :class:`Admission`, the one object the transfer stage asks;
* :mod:`.limits` — the per-host adaptive limit and the per-remote limits it is made of.
"""

from __future__ import annotations

from .control import Admission as Admission
from .control import AdmissionStatistics as AdmissionStatistics

__all__ = ["Admission", "AdmissionStatistics"]
