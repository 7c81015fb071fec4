"""Remote secrets at rest: sealed with a key that lives outside the catalog.

A catalog may persist a remote's settings so that another process can fetch lazily
registered files later. Settings go in as plain JSON *without* secrets; passwords and
tokens go in only as :class:`SealedSecrets`, encrypted with Fernet (AES-128-CBC plus
HMAC-SHA256, from the ``crypto`` extra: ``pip install 'pulp-aio-download[crypto]'``)
under a key file the catalog never sees. Without a key, secrets are simply not persisted:
a later fetch that needs them fails with a :class:`~pulp_aio_download.errors.ConfigError`
naming the remote.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._extras import require
from .errors import ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = ["SealedSecrets", "SecretBox", "create_key"]


def _fernet_class() -> type[Fernet]:
    fernet = require("cryptography.fernet", extra="crypto", needed_by="encrypting remote secrets")
    cls: type[Fernet] = fernet.Fernet
    return cls


@dataclass(frozen=True, slots=True)
class SealedSecrets:
    """Secrets encrypted by :meth:`SecretBox.seal`: safe to store, useless without the key."""

    token: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"SealedSecrets(<{len(self.token)} encrypted bytes>)"


def create_key(path: str | os.PathLike[str]) -> Path:
    """Write a new random key to ``path`` (mode 0600) and return the path.

    Keep the key file outside the catalog's directory and back it up: sealed secrets
    cannot be recovered without it.

    Raises:
        ConfigError: ``path`` already exists (a key is never overwritten).
    """
    target = Path(path)
    key = _fernet_class().generate_key()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"key file {target} already exists; not overwriting it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return target


class SecretBox:
    """Seals and opens remote secrets with one Fernet key.

    Args:
        key: a urlsafe-base64 Fernet key (as written by :func:`create_key`).

    Raises:
        ConfigError: the key is malformed, or the ``crypto`` extra is not installed.

    Example::

        create_key("/etc/pulp-aio-download/secrets.key")
        box = SecretBox.from_key_file("/etc/pulp-aio-download/secrets.key")
        sealed = box.seal({"password": os.environ["FEDORA_PASSWORD"]})
        await catalog.save_remote("fedora", {"username": "me"}, sealed)
        settings, sealed = await catalog.load_remote("fedora")
        password = box.open(sealed)["password"]

    The key never appears in ``repr()``, and a wrong key or a tampered token raises
    :class:`ConfigError` without showing either.
    """

    __slots__ = ("_fernet",)

    def __init__(self, key: bytes | str) -> None:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        try:
            self._fernet = _fernet_class()(raw.strip())
        except (ValueError, TypeError):
            raise ConfigError("invalid secret key: expected a 32-byte urlsafe-base64 key") from None

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> SecretBox:
        """Load the key written by :func:`create_key`.

        Raises:
            ConfigError: the file is missing, or readable by its group or others.
        """
        target = Path(path)
        try:
            mode = target.stat().st_mode
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"key file {target} must be accessible by its owner only (chmod 600)"
                )
            return cls(target.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read key file {target}: {exc.strerror}") from None

    def seal(self, secrets: Mapping[str, str]) -> SealedSecrets:
        """Encrypt ``{name: secret}`` (e.g. ``{"password": ..., "proxy_password": ...}``)."""
        payload = json.dumps(dict(secrets), sort_keys=True).encode()
        return SealedSecrets(self._fernet.encrypt(payload))

    def open(self, sealed: SealedSecrets) -> dict[str, str]:
        """Decrypt what :meth:`seal` produced.

        Raises:
            ConfigError: wrong key, or the token was tampered with.
        """
        from cryptography.fernet import InvalidToken

        try:
            payload = self._fernet.decrypt(sealed.token)
        except InvalidToken:
            raise ConfigError(
                "cannot decrypt remote secrets: wrong key or corrupted token"
            ) from None
        value = json.loads(payload)
        if not isinstance(value, dict):
            raise ConfigError("sealed remote secrets are not a mapping")
        return {str(k): str(v) for k, v in value.items()}

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"
