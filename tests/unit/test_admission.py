"""Admission: the per-host adaptive limit is capped by max_connections_per_host."""

from __future__ import annotations

import pulp_aio_download as pad
from pulp_aio_download.admission import Admission


def test_host_limit_is_capped_by_max_connections_per_host() -> None:
    admission = Admission(pad.EngineConfig(max_connections=64, max_connections_per_host=4))
    _, host, _ = admission.limiters(pad.RemoteConfig(), "mirror:443")
    assert host.cap == 4 and host.limit == 4


def test_without_a_per_host_cap_the_global_limit_caps_it() -> None:
    admission = Admission(pad.EngineConfig(max_connections=8))
    _, host, _ = admission.limiters(pad.RemoteConfig(), "mirror:443")
    assert host.cap == 8


def test_throttling_halves_the_host_limit_and_marks_health() -> None:
    admission = Admission(pad.EngineConfig(max_connections=8, max_connections_per_host=4))
    admission.observe("mirror:443", ok=False, status=429)
    assert admission.statistics().host_limits == {"mirror:443": 2}
    assert admission.health["mirror:443"].error_rate > 0
    assert [h.host for h in admission.changed_health()] == ["mirror:443"]


async def test_a_slot_holds_every_limit_and_gives_them_back() -> None:
    admission = Admission(pad.EngineConfig(max_connections=1))
    remote = pad.RemoteConfig(max_connections=1)
    async with admission.slot(remote, "mirror:443"):
        stats = admission.statistics()
        assert stats.transfers == 1 and stats.saturated
        assert stats.remotes["default"].in_flight == 1
    stats = admission.statistics()
    assert stats.transfers == 0 and not stats.saturated
    assert stats.remotes["default"].in_flight == 0
