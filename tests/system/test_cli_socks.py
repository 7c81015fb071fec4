"""The command line through a SOCKS5 proxy named in the ``--remotes`` file (a real
``pulp-aio-download`` process, a real microsocks), and a proxy URL it cannot use."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import helpers
from plugins.socks import OUTGOING, SocksProcess
from pulp_aio_download.testing import FaultServer


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PULP_AIO_DOWNLOAD", "T_"))}
    return helpers.run_cli(*args, env=env, base_env=base)


def test_cli_get_through_socks5h(
    threaded_server: FaultServer, socks_proxy: SocksProcess, tmp_path: Path
) -> None:
    data = b"through the socks proxy\n" * 2000
    url = threaded_server.add("/via-socks.bin", data).replace("//127.0.0.1:", "//localhost:")
    remotes = tmp_path / "remotes.toml"
    remotes.write_text(
        "[remotes.vendor.proxy]\n"
        f"url = '{socks_proxy.url('socks5h')}'\n"
        f"username = '{socks_proxy.username}'\n"
        "password_env = 'T_SOCKS_PASSWORD'\n"
    )
    assert socks_proxy.password is not None
    proc = run_cli(
        "get",
        url,
        "--sha256",
        hashlib.sha256(data).hexdigest(),
        "--remote",
        "vendor",
        "--remotes",
        str(remotes),
        "--data-dir",
        str(tmp_path / "d"),
        env={"T_SOCKS_PASSWORD": socks_proxy.password},
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).read_bytes() == data
    (request,) = threaded_server.requests_for("/via-socks.bin")
    assert request.peer is not None and request.peer[0] == OUTGOING
    assert socks_proxy.password not in proc.stdout + proc.stderr


def test_cli_unknown_proxy_scheme_exits_2(tmp_path: Path) -> None:
    remotes = tmp_path / "remotes.toml"
    remotes.write_text("[remotes.vendor]\nproxy = 'socks4://svc:T0p-secret@proxy:1080'\n")
    proc = run_cli(
        "get",
        "http://127.0.0.1:9/x",
        "--remote",
        "vendor",
        "--remotes",
        str(remotes),
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{remotes}: [remotes.vendor.proxy]: ProxyConfig.url must be" in proc.stderr
    assert "SOCKS4 has no password authentication" in proc.stderr
    assert "T0p-secret" not in proc.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created
