"""The ``--remotes`` TOML file: every RemoteConfig field, secrets from the environment,
and exit 2 naming file, table and key for every mistake (library and real CLI process)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import helpers
import pulp_aio_download as pad
from pulp_aio_download.auth import BasicAuth, BearerTokenAuth
from pulp_aio_download.cli.remotes_file import load_remotes, parse_remotes
from pulp_aio_download.testing import FaultServer

FULL = """
[remotes.vendor]
username = "alice"
password_env = "T_VENDOR_PASSWORD"
headers = { "X-Client" = "mirror-1" }
user_agent = "my-mirror/1.0"
max_connections = 4
rate_limit = 10.5
max_redirects = 3
allow_insecure_redirects = true
trust_env = true
segments = 4
segment_threshold = 1048576
max_speed = "512K"
mirrors = ["https://a.example/repo/", "https://b.example/repo/"]
mirrorlist = "https://mirrors.example/metalink?repo=x"
mirrorlist_kind = "metalink"

[remotes.vendor.tls]
verify = true
ca_file = "ca.pem"
client_cert = "/abs/client.pem"
client_key = "client.key"
min_version = "TLSv1.2"
ciphers = "ECDHE+AESGCM"

[remotes.vendor.proxy]
url = "http://proxy.internal:3128"
username = "svc"
password_env = "T_PROXY_PASSWORD"

[remotes.vendor.timeouts]
total = 600
connect = 5
sock_connect = 4
sock_read = 30
min_speed = 2048
stall_window = 15

[remotes.vendor.retry]
attempts = 5
backoff = 0.25
max_backoff = 10
jitter = false
statuses = [429, 503]
respect_retry_after = false

[remotes.registry]
proxy = "http://proxy.internal:3128"
proxy_username = "svc"
proxy_password_env = "T_PROXY_PASSWORD"

[remotes.registry.auth]
type = "bearer"
username = "robot"
password_env = "T_REGISTRY_TOKEN"

[remotes.basic]
[remotes.basic.auth]
type = "basic"
username = "bob"
password = "inline"
"""

ENV = {
    "T_VENDOR_PASSWORD": "vendor-s3cret",
    "T_PROXY_PASSWORD": "proxy-s3cret",
    "T_REGISTRY_TOKEN": "registry-s3cret",
}


def test_every_field_is_read(tmp_path: Path) -> None:
    remotes = parse_remotes(FULL, tmp_path / "remotes.toml", env=ENV)
    assert sorted(remotes) == ["basic", "registry", "vendor"]
    vendor = remotes["vendor"]
    assert vendor == pad.RemoteConfig(
        name="vendor",
        username="alice",
        password="vendor-s3cret",
        headers={"X-Client": "mirror-1"},
        user_agent="my-mirror/1.0",
        max_connections=4,
        rate_limit=10.5,
        max_redirects=3,
        allow_insecure_redirects=True,
        trust_env=True,
        segments=4,
        segment_threshold=1048576,
        max_speed=512 * 1024,
        mirrors=("https://a.example/repo/", "https://b.example/repo/"),
        mirrorlist="https://mirrors.example/metalink?repo=x",
        mirrorlist_kind="metalink",
        tls=pad.TLSConfig(
            verify=True,
            ca_file=tmp_path / "ca.pem",
            client_cert=Path("/abs/client.pem"),
            client_key=tmp_path / "client.key",
            min_version="TLSv1.2",
            ciphers="ECDHE+AESGCM",
        ),
        proxy=pad.ProxyConfig(
            url="http://proxy.internal:3128", username="svc", password="proxy-s3cret"
        ),
        timeouts=pad.Timeouts(
            total=600, connect=5, sock_connect=4, sock_read=30, min_speed=2048, stall_window=15
        ),
        retry=pad.RetryPolicy(
            attempts=5,
            backoff=0.25,
            max_backoff=10,
            jitter=False,
            statuses=(429, 503),
            respect_retry_after=False,
        ),
    )
    registry = remotes["registry"]
    assert registry.proxy == pad.ProxyConfig(
        url="http://proxy.internal:3128", username="svc", password="proxy-s3cret"
    )
    assert isinstance(registry.auth, BearerTokenAuth) and registry.auth.username == "robot"
    assert isinstance(remotes["basic"].auth, BasicAuth)
    # Secrets read from the environment never show in a repr.
    shown = repr(remotes)
    for secret in (*ENV.values(), "inline"):
        assert secret not in shown


def test_load_remotes_reads_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "remotes.toml"
    path.write_text(FULL)
    loaded = load_remotes(path)
    assert loaded["vendor"] == parse_remotes(FULL, path, env=ENV)["vendor"]
    assert loaded["vendor"].password == "vendor-s3cret"  # auth objects compare by identity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[remotes.a]\nusername = 'x'\npasword = 'typo'\n",
            "[remotes.a] key 'pasword': unknown key",
        ),
        ("[remotes.a.tls]\nverfy = false\n", "[remotes.a.tls] key 'verfy': unknown key"),
        ("[remotes.a.retry]\nattempts = 'many'\n", "[remotes.a.retry] key 'attempts': must be int"),
        ("[remotes.a.timeouts]\nconnect = true\n", "[remotes.a.timeouts] key 'connect': must be"),
        (
            "[remotes.a]\nusername = 'u'\npassword_env = 'T_UNSET_VAR'\n",
            "[remotes.a] key 'password_env': environment variable 'T_UNSET_VAR' is not set",
        ),
        (
            "[remotes.a.proxy]\nurl = 'http://p:1'\npassword_env = 'T_UNSET_VAR'\n",
            "[remotes.a.proxy] key 'password_env': environment variable 'T_UNSET_VAR' is not set",
        ),
        (
            "[remotes.a]\nproxy = 'http://p:1'\nproxy_password_env = 'T_UNSET_VAR'\n",
            "[remotes.a] key 'proxy_password_env': environment variable 'T_UNSET_VAR'",
        ),
        ("[remotes.a]\nmax_connections = -1\n", "[remotes.a]: RemoteConfig.max_connections"),
        ("[remotes.a]\nsegments = 0\n", "[remotes.a]: RemoteConfig.segments must be a positive"),
        ("[remotes.a]\nsegments = 2.5\n", "[remotes.a] key 'segments': must be int"),
        (
            "[remotes.a]\nsegment_threshold = -1\n",
            "[remotes.a]: RemoteConfig.segment_threshold must be a non-negative int",
        ),
        ("[remotes.a]\nmax_speed = 'fast'\n", "[remotes.a] key 'max_speed': 'fast' is not"),
        ("[remotes.a]\nmax_speed = 0\n", "[remotes.a]: RemoteConfig.max_speed must be a positive"),
        (
            "[remotes.a]\nmirrors = ['rsync://m/x/']\n",
            "[remotes.a]: remote 'a': RemoteConfig.mirrors must be http or https",
        ),
        ("[remotes.a]\nmirrorlist = 3\n", "[remotes.a] key 'mirrorlist': must be str"),
        ("[remotes.a.proxy]\nusername = 'u'\n", "[remotes.a.proxy]: missing required key 'url'"),
        ("[remotes.a.auth]\ntype = 'digest'\n", "[remotes.a.auth] key 'type': must be 'basic'"),
        ("[remote.a]\n", "unknown top-level key 'remote'"),
        ("[remotes.a\n", "invalid TOML"),
    ],
)
def test_mistakes_name_file_table_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "remotes.toml"
    with pytest.raises(pad.ConfigError) as info:
        parse_remotes(text, path, env={})
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(pad.ConfigError, match="cannot read the remotes file"):
        load_remotes(tmp_path / "absent.toml")


# -- the real command line ----------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PULP_AIO_DOWNLOAD", "T_"))}
    return helpers.run_cli(*args, env=env, base_env=base)


def test_cli_unknown_key_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "remotes.toml"
    path.write_text("[remotes.vendor.tls]\nverfy = false\n")
    proc = run_cli(
        "get", "http://127.0.0.1:9/x", "--remotes", str(path), "--data-dir", str(tmp_path)
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and "[remotes.vendor.tls]" in proc.stderr
    assert "'verfy'" in proc.stderr


def test_cli_missing_env_var_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "remotes.toml"
    path.write_text("[remotes.vendor]\nusername = 'u'\npassword_env = 'T_VENDOR_PASSWORD'\n")
    proc = run_cli(
        "get", "http://127.0.0.1:9/x", "--remotes", str(path), "--data-dir", str(tmp_path)
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and "[remotes.vendor]" in proc.stderr
    assert "'T_VENDOR_PASSWORD' is not set" in proc.stderr


def test_cli_get_with_remote_uses_its_credentials(
    threaded_server: FaultServer, tmp_path: Path
) -> None:
    data = b"behind basic auth" * 100
    url = threaded_server.add("/private.bin", data, auth=("alice", "env-s3cret"))
    path = tmp_path / "remotes.toml"
    path.write_text("[remotes.vendor]\nusername = 'alice'\npassword_env = 'T_VENDOR_PASSWORD'\n")
    sha = hashlib.sha256(data).hexdigest()
    common = (
        "get",
        url,
        "--sha256",
        sha,
        "--remotes",
        str(path),
        "--data-dir",
        str(tmp_path / "d"),
    )
    # Without --remote the default remote has no credentials: 401, exit 1.
    proc = run_cli(*common, env={"T_VENDOR_PASSWORD": "env-s3cret"})
    assert proc.returncode == 1 and "401" in proc.stderr
    proc = run_cli(*common, "--remote", "vendor", env={"T_VENDOR_PASSWORD": "env-s3cret"})
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).read_bytes() == data
    assert "env-s3cret" not in proc.stdout + proc.stderr
