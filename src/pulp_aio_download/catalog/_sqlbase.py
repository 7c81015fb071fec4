"""The catalog operations shared by the SQL backends, over their ``_read``/``_write``.

Every operation is written once in :mod:`._sql`; a backend only says how a read and a
write transaction run (:meth:`SQLCatalog._read_tx`, :meth:`SQLCatalog._write_tx`) and what
its driver's errors mean (:meth:`SQLCatalog._describe_error`).

This is also the catalog's one error boundary: every read and write goes through
:meth:`SQLCatalog._read` / :meth:`SQLCatalog._write` (and the backends' ``open`` and
``close`` through :meth:`SQLCatalog._catalog_error`), where a driver or OS error becomes a
:class:`CatalogError` naming the catalog and what happened. The engine adds the URL of the
file concerned.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ..errors import CatalogError
from ..health import HostHealth
from ..models import ContentUnit, MetadataValidators, UnitFile, UnitSpec
from ..secrets import SealedSecrets
from . import _sql, _sql_validators
from .base import Catalog

__all__ = ["SQLCatalog"]

T = TypeVar("T")


class SQLCatalog(Catalog):
    """A :class:`Catalog` whose operations are the shared SQL of :mod:`._sql`."""

    #: The driver's (and the OS's) exceptions that mean the catalog itself failed; they
    #: become :class:`CatalogError`. Set by the backend, once its driver is imported.
    _db_errors: tuple[type[BaseException], ...] = ()

    @property
    @abc.abstractmethod
    def display_name(self) -> str:
        """The catalog in messages, without credentials (e.g. ``SQLite catalog PATH``)."""

    @abc.abstractmethod
    def _describe_error(self, exc: BaseException) -> str:
        """What ``exc`` (one of :attr:`_db_errors`) means, in words, without secrets."""

    def _catalog_error(self, exc: BaseException, action: str) -> CatalogError:
        """The :class:`CatalogError` for driver error ``exc`` raised while doing ``action``
        (``"open"``, ``"read"``, ``"write to"``, ``"close"``)."""
        name = self.display_name
        return CatalogError(f"cannot {action} {name}: {self._describe_error(exc)}", catalog=name)

    @abc.abstractmethod
    async def _read_tx(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        """Run ``op`` in one read-only transaction (driver errors escape raw)."""

    @abc.abstractmethod
    async def _write_tx(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        """Run ``op`` in a write transaction; return once it is committed (driver errors
        escape raw)."""

    async def _read(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        """Run ``op`` in one read-only transaction.

        Raises:
            CatalogError: the catalog could not be read.
        """
        try:
            return await self._read_tx(op)
        except self._db_errors as exc:
            raise self._catalog_error(exc, "read") from exc

    async def _write(self, op: Callable[[_sql.Tx], Awaitable[T]]) -> T:
        """Run ``op`` in a write transaction; return once it is committed.

        Raises:
            CatalogError: the catalog could not be written.
        """
        if self.read_only:
            raise CatalogError(
                f"cannot write to {self.display_name}: it is opened read-only",
                catalog=self.display_name,
            )
        try:
            return await self._write_tx(op)
        except self._db_errors as exc:
            raise self._catalog_error(exc, "write to") from exc

    async def _write_undoable(
        self, op: Callable[[_sql.Tx], Awaitable[tuple[T, Any]]], undo_log: list[Any]
    ) -> T:
        """Run ``op`` (which returns its result and how to undo it) as :meth:`_write` does,
        and log the undo entry once the write is committed.

        A caller cancelled while the write is already in the writer's transaction cannot
        stop it from committing: the cancellation waits for the outcome, so that the
        rollback which follows it finds the entry and undoes the write.
        """
        write = asyncio.ensure_future(self._write(op))
        try:
            result, entry = await asyncio.shield(write)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                undo_log.append((await write)[1])
            raise
        undo_log.append(entry)
        return result

    # -- unit files -----------------------------------------------------------------------------
    async def record_unit_file(
        self, unit_file: UnitFile, *, undo_log: list[Any] | None = None
    ) -> UnitFile:
        if undo_log is None:
            return await self._write(lambda tx: _sql.record_unit_file(tx, unit_file))
        return await self._write_undoable(
            lambda tx: _sql.record_unit_file_undoable(tx, unit_file), undo_log
        )

    async def get_unit_file(self, sha256: str) -> UnitFile | None:
        return await self._read(lambda tx: _sql.get_unit_file(tx, sha256))

    async def get_unit_files(self, sha256s: Iterable[str]) -> dict[str, UnitFile]:
        wanted = list(dict.fromkeys(s.lower() for s in sha256s))
        if not wanted:
            return {}
        return await self._read(lambda tx: _sql.get_unit_files(tx, wanted))

    def unit_files(self) -> AsyncIterator[UnitFile]:
        return _sql.iterate_unit_files(
            lambda after, limit: self._read(lambda tx: _sql.unit_file_page(tx, after, limit))
        )

    async def mark_verified(self, sha256: str, when: datetime) -> None:
        await self._write(lambda tx: _sql.mark_verified(tx, sha256, when))

    async def forget_location(self, sha256: str) -> None:
        await self._write(lambda tx: _sql.forget_location(tx, sha256))

    # -- content units and repositories ---------------------------------------------------------
    async def save_unit(
        self,
        spec: UnitSpec,
        sha256: str | None,
        repository: str | None = None,
        *,
        undo_log: list[Any] | None = None,
    ) -> ContentUnit:
        if undo_log is None:
            return await self._write(lambda tx: _sql.save_unit(tx, spec, sha256, repository))
        return await self._write_undoable(
            lambda tx: _sql.save_unit_undoable(tx, spec, sha256, repository), undo_log
        )

    async def undo(self, undo_log: Sequence[Any]) -> None:
        entries = list(undo_log)
        if entries:
            await self._write(lambda tx: _sql.undo(tx, entries))

    async def get_unit(self, type: str, key: str) -> ContentUnit | None:
        return await self._read(lambda tx: _sql.get_unit(tx, type, key))

    async def get_units(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], ContentUnit]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        return await self._read(lambda tx: _sql.get_units(tx, wanted))

    async def repository_units(self, name: str) -> list[ContentUnit]:
        return await self._read(lambda tx: _sql.repository_units(tx, name))

    # -- host health ----------------------------------------------------------------------------
    async def load_health(self) -> Mapping[str, HostHealth]:
        return await self._read(_sql.load_health)

    async def save_health(self, records: Sequence[HostHealth]) -> None:
        records = list(records)
        await self._write(lambda tx: _sql.save_health(tx, records))

    # -- claims ---------------------------------------------------------------------------------
    async def claim(self, sha256: str, owner: str, lease: float) -> bool:
        return await self._write(lambda tx: _sql.claim(tx, sha256, owner, lease))

    async def release(self, sha256: str, owner: str) -> None:
        await self._write(lambda tx: _sql.release(tx, sha256, owner))

    async def renew_claims(self, sha256s: Sequence[str], owner: str, lease: float) -> set[str]:
        wanted = list(sha256s)
        return await self._write(lambda tx: _sql.renew_claims(tx, wanted, owner, lease))

    async def release_claims(self, sha256s: Sequence[str], owner: str) -> None:
        wanted = list(sha256s)
        await self._write(lambda tx: _sql.release_claims(tx, wanted, owner))

    async def claim_unless_stored(self, sha256: str, owner: str, lease: float) -> str:
        return await self._write(lambda tx: _sql.claim_unless_stored(tx, sha256, owner, lease))

    async def claim_many_unless_stored(
        self, sha256s: Sequence[str], owner: str, lease: float
    ) -> dict[str, str]:
        wanted = list(sha256s)
        return await self._write(lambda tx: _sql.claim_many_unless_stored(tx, wanted, owner, lease))

    async def claim_holder(self, sha256: str) -> str | None:
        return await self._read(lambda tx: _sql.claim_holder(tx, sha256))

    # -- remotes --------------------------------------------------------------------------------
    async def save_remote(
        self, name: str, settings: Mapping[str, Any], sealed_secrets: SealedSecrets | None = None
    ) -> None:
        """Persist a remote's settings for other processes (e.g. lazy fetches).

        ``settings`` is JSON without secrets (a key naming a password, token or secret, or
        a URL with userinfo, raises :class:`ConfigError`); secrets are stored only as
        ``sealed_secrets`` from :meth:`SecretBox.seal`.
        """
        await self._write(lambda tx: _sql.save_remote(tx, name, settings, sealed_secrets))

    async def load_remote(self, name: str) -> tuple[dict[str, Any], SealedSecrets | None] | None:
        """``(settings, sealed_secrets)`` saved for remote ``name``, or None."""
        return await self._read(lambda tx: _sql.load_remote(tx, name))

    # -- HTTP validators of metadata ------------------------------------------------------------
    async def get_validators(self, remote: str, url: str) -> MetadataValidators | None:
        return await self._read(lambda tx: _sql_validators.get_validators(tx, remote, url))

    async def save_validators(self, validators: MetadataValidators) -> None:
        await self._write(lambda tx: _sql_validators.save_validators(tx, validators))

    async def delete_validators(self, remote: str, url: str) -> None:
        await self._write(lambda tx: _sql_validators.delete_validators(tx, remote, url))
