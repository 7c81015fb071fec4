"""SecretBox: remote secrets sealed with a key kept outside the catalog."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pulp_aio_download.errors import ConfigError
from pulp_aio_download.secrets import SealedSecrets, SecretBox, create_key

SECRET = "hunter2-Zq81-proxy"


def test_create_key_writes_an_owner_only_file(tmp_path: Path) -> None:
    path = create_key(tmp_path / "secrets.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes().strip()) == 44  # urlsafe base64 of 32 bytes


def test_create_key_never_overwrites(tmp_path: Path) -> None:
    path = create_key(tmp_path / "secrets.key")
    key = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        create_key(path)
    assert path.read_bytes() == key


def test_seal_and_open_round_trip(tmp_path: Path) -> None:
    box = SecretBox.from_key_file(create_key(tmp_path / "k"))
    sealed = box.seal({"password": SECRET, "proxy_password": "p2"})
    assert SECRET.encode() not in sealed.token
    assert box.open(sealed) == {"password": SECRET, "proxy_password": "p2"}
    # Fernet tokens are randomised: the same secret never seals to the same bytes.
    assert box.seal({"password": SECRET}).token != box.seal({"password": SECRET}).token


def test_wrong_key_or_tampering_is_a_clear_error(tmp_path: Path) -> None:
    box = SecretBox.from_key_file(create_key(tmp_path / "a"))
    other = SecretBox.from_key_file(create_key(tmp_path / "b"))
    sealed = box.seal({"password": SECRET})
    with pytest.raises(ConfigError, match="wrong key") as excinfo:
        other.open(sealed)
    assert SECRET not in str(excinfo.value)
    tampered = SealedSecrets(sealed.token[:-4] + b"AAAA")
    with pytest.raises(ConfigError, match="corrupted"):
        box.open(tampered)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = create_key(tmp_path / "k")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SecretBox.from_key_file(path)


def test_missing_or_malformed_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read key file"):
        SecretBox.from_key_file(tmp_path / "nope")
    with pytest.raises(ConfigError, match="invalid secret key"):
        SecretBox(b"too-short")


def test_nothing_secret_in_reprs(tmp_path: Path) -> None:
    path = create_key(tmp_path / "k")
    key = path.read_bytes().strip().decode()
    box = SecretBox.from_key_file(path)
    sealed = box.seal({"password": SECRET})
    assert key not in repr(box)
    assert sealed.token.decode() not in repr(sealed)
    assert "encrypted bytes" in repr(sealed)
