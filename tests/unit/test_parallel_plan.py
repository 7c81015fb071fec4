"""How a batch is planned over worker processes: the default count, the shares of the
limits, and the configuration that must cross a process boundary."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import pulp_aio_download as pad
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.parallel import FILES_PER_WORKER, available_cores, default_workers
from pulp_aio_download.parallel.plan import (
    encode_config,
    prepare_request,
    shares,
    worker_configs,
)
from pulp_aio_download.storage.local import LocalStorage


async def module_hook(ctx: object) -> None:
    """A hook defined at module level: it pickles by reference."""


def test_shares_add_up_and_give_everyone_one() -> None:
    assert shares(64, 2) == [32, 32]
    assert shares(10, 4) == [3, 3, 2, 2]
    assert shares(2, 4) == [1, 1, 1, 1]  # at least one connection each


def test_default_workers_is_capped_by_the_work_and_the_limit() -> None:
    cores = available_cores()
    assert default_workers(10, 64) == 1
    assert default_workers(FILES_PER_WORKER * 2 - 1, 64) == min(cores, 1)
    assert default_workers(FILES_PER_WORKER * 1000, 64) == min(cores, 64)
    assert default_workers(FILES_PER_WORKER * 1000, 1) == 1


def test_worker_configs_split_every_limit() -> None:
    config = pad.EngineConfig(
        max_connections=10,
        max_connections_per_host=5,
        remotes=[pad.RemoteConfig(name="mirror", max_connections=3, rate_limit=8.0)],
        progress=print,
    )
    parts = worker_configs(config, 2)
    assert [c.max_connections for c in parts] == [5, 5]
    assert [c.max_connections_per_host for c in parts] == [3, 2]
    assert [c.remotes["mirror"].max_connections for c in parts] == [2, 1]
    assert [c.remotes["mirror"].rate_limit for c in parts] == [4.0, 4.0]
    assert all(c.progress is None for c in parts)  # the parent reports the merged progress
    assert all(c.remotes["default"].max_connections is None for c in parts)


def test_the_configuration_crosses_a_process_boundary(tmp_path: Path) -> None:
    config = pad.EngineConfig(
        storage=LocalStorage(tmp_path / "a"),
        catalog=SQLiteCatalog(tmp_path / "c.sqlite3"),
        hooks=[module_hook, *pad.DEFAULT_HOOKS],
        remotes=[pad.RemoteConfig(name="registry", auth=pad.BearerTokenAuth("u", "p"))],
    )
    copy, flag = pickle.loads(encode_config(config, (True,)))
    assert flag is True
    assert copy.hooks == config.hooks
    assert repr(copy.remotes["registry"].auth) == "BearerTokenAuth(username='u', password='***')"


def test_a_closure_hook_is_a_config_error_naming_it() -> None:
    def make() -> object:
        async def closure_hook(ctx: object) -> None:
            pass

        return closure_hook

    config = pad.EngineConfig(hooks=[*pad.DEFAULT_HOOKS, make()])
    index = len(pad.DEFAULT_HOOKS)
    with pytest.raises(pad.ConfigError, match=rf"EngineConfig.hooks\[{index}\] \(.*closure_hook\)"):
        encode_config(config)
    with pytest.raises(pad.ConfigError, match="must be picklable"):
        pad.run_batch(["http://127.0.0.1:9/x"], config, workers=2)


def test_requests_are_checked_before_any_worker_starts(tmp_path: Path) -> None:
    config = pad.EngineConfig()
    assert prepare_request("http://h/x", config).url == "http://h/x"
    with pytest.raises(pad.ConfigError, match="unknown remote 'nope'"):
        prepare_request(pad.DownloadRequest("http://h/x", remote="nope"), config)
    with pytest.raises(pad.ConfigError):
        prepare_request((tmp_path / "f").as_uri(), config)
    with pytest.raises(pad.ConfigError, match="workers must be at least 1"):
        pad.run_batch(["http://h/x"], config, workers=0)


def test_the_metalink_piece_check_crosses_a_process_boundary() -> None:
    from pulp_aio_download.metalink import piece_check

    hook = pickle.loads(pickle.dumps(piece_check([])))
    assert hook.__qualname__ == "verify_pieces"
