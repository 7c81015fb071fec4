"""The catalog interface: unit files, content units, repositories, host health, claims."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..health import HostHealth
from ..models import ContentUnit, MetadataValidators, Source, UnitFile, UnitSpec

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..secrets import SealedSecrets

__all__ = ["Catalog"]


class Catalog(abc.ABC):
    """Where the engine records what it stored and where it came from.

    Implementations: :class:`SQLiteCatalog` (embedded default) and :class:`PostgresCatalog`
    (many processes and hosts). Every write is one transaction; a killed process leaves the
    catalog readable and consistent. Sources are stored with their remote *name* and their
    URL without userinfo; no secret is ever written in plaintext.
    """

    #: True when the catalog was opened only for reading: every write raises
    #: :class:`CatalogError` and callers skip bookkeeping writes (``verify``).
    read_only: bool = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and disconnect."""

    # -- unit files ---------------------------------------------------------------------
    @abc.abstractmethod
    async def record_unit_file(
        self, unit_file: UnitFile, *, undo_log: list[Any] | None = None
    ) -> UnitFile:
        """Insert or update the unit file of ``unit_file.sha256``.

        Size, digests and location are set (a non-None location replaces a None one);
        sources are *merged* with the recorded ones (same URL: the new priority, weight and
        remote win). Returns the record as stored.

        With ``undo_log``, once the write is committed an entry is appended to it from
        which :meth:`undo` puts the record back exactly as it was before.
        """

    @abc.abstractmethod
    async def get_unit_file(self, sha256: str) -> UnitFile | None:
        """The unit file of ``sha256``, or None."""

    async def get_unit_files(self, sha256s: Iterable[str]) -> dict[str, UnitFile]:
        """The unit files of ``sha256s``, by sha256 (one without a record is left out).

        The SQL backends read them in one transaction, a few hundred per query, so that a
        batch of stored files costs a few reads, not one per file. This default asks
        :meth:`get_unit_file` for each.
        """
        found = {}
        for sha256 in dict.fromkeys(s.lower() for s in sha256s):
            record = await self.get_unit_file(sha256)
            if record is not None:
                found[sha256] = record
        return found

    @abc.abstractmethod
    def unit_files(self) -> AsyncIterator[UnitFile]:
        """Every unit file, in sha256 order (for verify)."""

    @abc.abstractmethod
    async def mark_verified(self, sha256: str, when: datetime) -> None:
        """Set ``verified_at`` of a unit file."""

    @abc.abstractmethod
    async def forget_location(self, sha256: str) -> None:
        """Set the location of a unit file to None (its artifact is gone)."""

    # -- content units and repositories --------------------------------------------------
    @abc.abstractmethod
    async def save_unit(
        self,
        spec: UnitSpec,
        sha256: str | None,
        repository: str | None = None,
        *,
        undo_log: list[Any] | None = None,
    ) -> ContentUnit:
        """Create or find the unit ``(spec.type, spec.key)``, merge ``spec.metadata``, link
        ``sha256`` under ``spec.relative_path`` (or the key when None) and associate it with
        ``repository``. Idempotent.

        With ``undo_log``, once the write is committed an entry is appended to it from
        which :meth:`undo` puts the unit, its link and its associations back as they were.
        """

    @abc.abstractmethod
    async def undo(self, undo_log: Sequence[Any]) -> None:
        """Undo the writes whose entries ``undo_log`` holds (latest first, in one
        transaction): a record or unit they created is deleted with its sources, links and
        associations; one that existed gets back the values, sources, link and
        associations it had. What other writers changed meanwhile is left alone, except
        where they changed the very same values.

        The engine calls it when a hook fails after the built-in hooks recorded the
        download, so that a failed download leaves nothing behind.
        """

    @abc.abstractmethod
    async def get_unit(self, type: str, key: str) -> ContentUnit | None:
        """The unit ``(type, key)``, or None."""

    async def get_units(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], ContentUnit]:
        """The units of ``keys`` (``(type, key)`` pairs), by pair (one not recorded is left
        out). The SQL backends read them in one transaction, a few queries per few hundred;
        this default asks :meth:`get_unit` for each."""
        found = {}
        for type_, key in dict.fromkeys(keys):
            unit = await self.get_unit(type_, key)
            if unit is not None:
                found[(type_, key)] = unit
        return found

    @abc.abstractmethod
    async def repository_units(self, name: str) -> list[ContentUnit]:
        """The units of repository ``name`` ordered by (type, key); [] if none."""

    # -- host health ----------------------------------------------------------------------
    @abc.abstractmethod
    async def load_health(self) -> Mapping[str, HostHealth]:
        """Every recorded host health, by host."""

    @abc.abstractmethod
    async def save_health(self, records: Sequence[HostHealth]) -> None:
        """Upsert host health records."""

    # -- cooperation between workers -------------------------------------------------------
    @abc.abstractmethod
    async def claim(self, sha256: str, owner: str, lease: float) -> bool:
        """Claim the transfer of ``sha256`` for ``lease`` seconds.

        True if ``owner`` now holds the claim (it was free, expired, or already ``owner``'s).
        """

    @abc.abstractmethod
    async def release(self, sha256: str, owner: str) -> None:
        """Give up ``owner``'s claim on ``sha256`` (no error if not held)."""

    async def renew_claims(self, sha256s: Sequence[str], owner: str, lease: float) -> set[str]:
        """Extend ``owner``'s claims on ``sha256s`` by ``lease`` seconds from now; return
        those ``owner`` still holds (a claim another worker took is not taken back).

        Backends do it in one transaction and never re-create a released claim; this
        default renews each with :meth:`claim`.
        """
        return {s for s in sha256s if await self.claim(s, owner, lease)}

    async def release_claims(self, sha256s: Sequence[str], owner: str) -> None:
        """Give up ``owner``'s claims on ``sha256s`` (backends: in one transaction)."""
        for sha256 in sha256s:
            await self.release(sha256, owner)

    async def claim_unless_stored(self, sha256: str, owner: str, lease: float) -> str:
        """``"stored"`` when ``sha256`` already has a recorded location; otherwise claim it
        like :meth:`claim` and return ``"claimed"`` or ``"held"`` (by another owner).

        Backends answer in one transaction, so a worker that gets ``"claimed"`` knows
        nobody stored the file in between.
        """
        claimed = await self.claim(sha256, owner, lease)
        record = await self.get_unit_file(sha256)  # after the claim: see _sql for why
        if record is not None and record.location is not None:
            if claimed:
                await self.release(sha256, owner)
            return "stored"
        return "claimed" if claimed else "held"

    async def claim_many_unless_stored(
        self, sha256s: Sequence[str], owner: str, lease: float
    ) -> dict[str, str]:
        """:meth:`claim_unless_stored` for each of ``sha256s``, by sha256 (backends: in one
        transaction, so that claims for a window of a batch cost one write)."""
        return {s: await self.claim_unless_stored(s, owner, lease) for s in sha256s}

    async def claim_holder(self, sha256: str) -> str | None:
        """The owner of the unexpired claim on ``sha256``, or None (default: unknown)."""
        return None

    # -- remote settings for lazy fetches in other processes -------------------------------
    async def save_remote(
        self,
        name: str,
        settings: Mapping[str, Any],
        sealed_secrets: SealedSecrets | None = None,
    ) -> None:
        """Persist a remote's settings (never secrets) and its sealed (encrypted) secrets."""
        raise NotImplementedError

    async def load_remote(self, name: str) -> tuple[dict[str, Any], SealedSecrets | None] | None:
        """The settings and sealed secrets saved for remote ``name``, or None."""
        raise NotImplementedError

    # -- HTTP validators of metadata (conditional GET) ---------------------------------------
    async def get_validators(self, remote: str, url: str) -> MetadataValidators | None:
        """The validators kept for ``url`` of ``remote``, or None (default: none kept)."""
        return None

    async def save_validators(self, validators: MetadataValidators) -> None:
        """Keep (replace) the validators of ``validators.remote`` and ``.url``."""
        raise NotImplementedError

    async def delete_validators(self, remote: str, url: str) -> None:
        """Forget the validators of ``url`` of ``remote`` (no error if there are none)."""
        raise NotImplementedError

    # -- helpers shared by backends -------------------------------------------------------
    @staticmethod
    def merge_sources(old: Sequence[Source], new: Sequence[Source]) -> tuple[Source, ...]:
        """Merge by URL, keeping order of first appearance; the newer record of a URL wins."""
        merged: dict[str, Source] = {s.url: s for s in old}
        for source in new:
            merged[source.url] = Source(
                source.url, priority=source.priority, weight=source.weight, remote=source.remote
            )
        return tuple(merged.values())
