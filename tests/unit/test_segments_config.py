"""RemoteConfig.segments and segment_threshold: validated on construction, naming the field."""

from __future__ import annotations

import pytest

import pulp_aio_download as pad
from pulp_aio_download.config import DEFAULT_SEGMENT_THRESHOLD


def test_segments_are_off_by_default_with_a_64_mib_threshold() -> None:
    remote = pad.RemoteConfig()
    assert remote.segments == 1
    assert remote.segment_threshold == DEFAULT_SEGMENT_THRESHOLD == 64 * 1024 * 1024
    assert "segments" not in repr(remote)
    assert "segments=4" in repr(pad.RemoteConfig(segments=4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segments": 0}, "RemoteConfig.segments must be a positive int, got 0"),
        ({"segments": True}, "RemoteConfig.segments must be a positive int, got True"),
        ({"segments": 2.0}, "RemoteConfig.segments must be a positive int, got 2.0"),
        (
            {"segment_threshold": -1},
            "RemoteConfig.segment_threshold must be a non-negative int, got -1",
        ),
        (
            {"segment_threshold": "64M"},
            "RemoteConfig.segment_threshold must be a non-negative int, got '64M'",
        ),
    ],
)
def test_bad_values_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(pad.ConfigError) as caught:
        pad.RemoteConfig(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message
