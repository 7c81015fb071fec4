"""What the catalog backends share: the schema, its migrations and every operation.

Internal. Both backends run the operations below against a small :class:`Tx` adapter (one
open transaction); statements are written once, with PostgreSQL's ``$1`` placeholders that
the SQLite adapter rewrites to ``?1``. Where the dialects differ (column types, the current
time, row locks) the difference is a named substitution, never a second copy of the logic.

Time stamps are timezone-aware UTC :class:`~datetime.datetime` values: ``TIMESTAMPTZ`` in
PostgreSQL, fixed-width ISO 8601 text in SQLite (so that text order is time order).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from .._checks import check_int
from ..errors import CatalogError, ConfigError
from ..health import HostHealth
from ..models import ContentUnit, Source, UnitFile, UnitSpec, normalize_digests
from ..secrets import SealedSecrets
from ..urls import split_userinfo
from . import _sql_validators

__all__ = [
    "LATEST_VERSION",
    "LOOKUP_CHUNK",
    "MIGRATIONS",
    "Dialect",
    "Migration",
    "Row",
    "Tx",
    "Undo",
    "UnitFileUndo",
    "UnitUndo",
    "check_schema",
    "claim",
    "ddl",
    "forget_location",
    "get_unit",
    "get_unit_file",
    "get_unit_files",
    "get_units",
    "iterate_unit_files",
    "load_health",
    "load_remote",
    "mark_verified",
    "migrate",
    "record_unit_file",
    "record_unit_file_undoable",
    "release",
    "repository_units",
    "save_health",
    "save_remote",
    "save_unit",
    "save_unit_undoable",
    "sqlite_placeholders",
    "to_datetime",
    "undo",
    "unit_file_page",
    "utcnow",
]

Dialect = Literal["sqlite", "postgres"]
Row = Sequence[Any]

# -- dialect differences -----------------------------------------------------------------

_TYPES: Mapping[Dialect, Mapping[str, str]] = {
    "sqlite": {
        "id": "INTEGER PRIMARY KEY",
        "ref": "INTEGER",
        "bigint": "INTEGER",
        "float": "REAL",
        "json": "TEXT",
        "ts": "TEXT",
        "bytes": "BLOB",
    },
    "postgres": {
        "id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "ref": "BIGINT",
        "bigint": "BIGINT",
        "float": "DOUBLE PRECISION",
        "json": "JSONB",
        "ts": "TIMESTAMPTZ",
        "bytes": "BYTEA",
    },
}

#: The database's clock in epoch seconds. Claims use it (not the worker's clock) so that
#: workers on hosts with skewed clocks agree on when a lease expires.
_NOW_EPOCH: Mapping[Dialect, str] = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgres": "extract(epoch from clock_timestamp())::double precision",
}


def ddl(statement: str, dialect: Dialect) -> str:
    """``statement`` with its ``{type}`` placeholders replaced for ``dialect``."""
    return statement.format(**_TYPES[dialect])


_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=512)
def sqlite_placeholders(sql: str) -> tuple[str, tuple[int, ...]]:
    """Rewrite PostgreSQL placeholders (``$1``) as SQLite's ``?``: the SQL, and which
    argument each ``?`` takes (``$1`` may appear more than once). Computed once per
    statement; SQLite's statement cache then keeps it prepared.

    (Plain ``?`` bound from a sequence: Python 3.12 deprecates only the numbered ``?1``.)
    """
    order = tuple(int(number) - 1 for number in _PLACEHOLDER.findall(sql))
    return _PLACEHOLDER.sub("?", sql), order


def sqlite_params(order: tuple[int, ...], args: Sequence[Any]) -> tuple[Any, ...]:
    """The arguments of :func:`sqlite_placeholders`' SQL, in the order of its ``?``."""
    return tuple(args[i] for i in order)


# -- schema --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: applied once, in order, inside the opening transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {ts} NOT NULL
)"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "unit files, sources, units, repositories, host health, claims",
        (
            """CREATE TABLE unit_files (
                sha256 TEXT PRIMARY KEY,
                size {bigint},
                digests {json} NOT NULL,
                location TEXT,
                created_at {ts} NOT NULL,
                verified_at {ts}
            )""",
            """CREATE TABLE unit_file_sources (
                sha256 TEXT NOT NULL REFERENCES unit_files (sha256) ON DELETE CASCADE,
                url TEXT NOT NULL,
                priority INTEGER NOT NULL,
                weight {float} NOT NULL,
                remote TEXT,
                position INTEGER NOT NULL,
                PRIMARY KEY (sha256, url)
            )""",
            """CREATE TABLE units (
                id {id},
                type TEXT NOT NULL,
                key TEXT NOT NULL,
                metadata {json} NOT NULL,
                created_at {ts} NOT NULL,
                UNIQUE (type, key)
            )""",
            """CREATE TABLE unit_links (
                unit_id {ref} NOT NULL REFERENCES units (id) ON DELETE CASCADE,
                relative_path TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                PRIMARY KEY (unit_id, relative_path)
            )""",
            "CREATE INDEX unit_links_sha256 ON unit_links (sha256)",
            """CREATE TABLE repository_units (
                repository TEXT NOT NULL,
                unit_id {ref} NOT NULL REFERENCES units (id) ON DELETE CASCADE,
                added_at {ts} NOT NULL,
                PRIMARY KEY (repository, unit_id)
            )""",
            "CREATE INDEX repository_units_unit ON repository_units (unit_id)",
            """CREATE TABLE host_health (
                host TEXT PRIMARY KEY,
                error_rate {float} NOT NULL,
                speed {float} NOT NULL,
                failures INTEGER NOT NULL,
                cooldown_until {float} NOT NULL,
                updated_at {float} NOT NULL
            )""",
            """CREATE TABLE claims (
                sha256 TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                expires_at {float} NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "remote settings without secrets, secrets sealed with a key kept outside the catalog",
        (
            """CREATE TABLE remotes (
                name TEXT PRIMARY KEY,
                settings {json} NOT NULL,
                sealed_secrets {bytes},
                updated_at {ts} NOT NULL
            )""",
        ),
    ),
    Migration(3, _sql_validators.DESCRIPTION, _sql_validators.STATEMENTS),
)

LATEST_VERSION = MIGRATIONS[-1].version


# -- the transaction adapter -----------------------------------------------------------------


class Tx(Protocol):
    """One open transaction of a backend. Statements use ``$n`` placeholders."""

    dialect: Dialect

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def fetchone(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...


def _for_update(tx: Tx) -> str:
    # SQLite has no row locks: its write transactions are serialised as a whole.
    return " FOR UPDATE" if tx.dialect == "postgres" else ""


async def migrate(tx: Tx, *, where: str) -> int:
    """Bring the schema to :data:`LATEST_VERSION`; returns the version found before.

    Raises:
        ConfigError: the catalog was written by a newer version of this library.
    """
    await tx.execute(ddl(SCHEMA_VERSION_TABLE, tx.dialect))
    row = await tx.fetchone("SELECT MAX(version) FROM schema_version")
    current = int(row[0]) if row is not None and row[0] is not None else 0
    if current > LATEST_VERSION:
        raise ConfigError(
            f"catalog {where} has schema version {current}, newer than this version of "
            f"pulp_aio_download understands ({LATEST_VERSION}); upgrade pulp_aio_download"
        )
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        for statement in migration.statements:
            await tx.execute(ddl(statement, tx.dialect))
        await tx.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, $3)",
            migration.version,
            migration.description,
            utcnow(),
        )
    return current


async def check_schema(tx: Tx, *, where: str) -> None:
    """For a catalog opened read-only, where nothing may be migrated: the schema must be
    :data:`LATEST_VERSION`.

    Raises:
        ConfigError: the catalog was written by a newer version of this library.
        CatalogError: the schema is older (open the catalog once for writing to migrate).
    """
    row = await tx.fetchone("SELECT MAX(version) FROM schema_version")
    current = int(row[0]) if row is not None and row[0] is not None else 0
    if current > LATEST_VERSION:
        raise ConfigError(
            f"catalog {where} has schema version {current}, newer than this version of "
            f"pulp_aio_download understands ({LATEST_VERSION}); upgrade pulp_aio_download"
        )
    if current < LATEST_VERSION:
        raise CatalogError(
            f"cannot read catalog {where} read-only: its schema version {current} is older "
            f"than {LATEST_VERSION}; open it once for writing to migrate it",
            catalog=where,
        )


# -- values ----------------------------------------------------------------------------------


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def to_datetime(value: object) -> datetime | None:
    """A stored time stamp (ISO text or datetime) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    if isinstance(value, str):
        return datetime.fromisoformat(value).astimezone(timezone.utc)
    raise TypeError(f"not a time stamp: {value!r}")


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(timezone.utc)


def _sha256(value: str) -> str:
    return normalize_digests({"sha256": value}, where="sha256")["sha256"]


def _dumps(value: Mapping[str, Any], what: str) -> str:
    try:
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-serialisable: {exc}") from None


def _loads(value: object) -> dict[str, Any]:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    loaded = json.loads(value) if isinstance(value, str) else value
    if not isinstance(loaded, dict):
        raise TypeError(f"stored JSON is not an object: {loaded!r}")
    return loaded


def _clean_url(url: str) -> str:
    # Source() already splits userinfo off; this keeps the guarantee for any caller.
    return split_userinfo(url)[0]


# -- unit files ------------------------------------------------------------------------------

_UNIT_FILE_COLUMNS = "sha256, size, digests, location, created_at, verified_at"
_SOURCE_COLUMNS = "url, priority, weight, remote"


@dataclass(frozen=True, slots=True)
class UnitFileUndo:
    """What one :func:`record_unit_file` changed, for :func:`undo`.

    ``columns`` holds the old values of the columns it changed (empty when the row is
    new: then ``created`` is True and undoing deletes the record); ``sources`` the old
    ``(url, priority, weight, remote)`` of the sources it updated, ``added`` the URLs of
    those it added.
    """

    sha256: str
    created: bool
    columns: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sources: tuple[Row, ...] = ()
    added: tuple[str, ...] = ()


async def record_unit_file(tx: Tx, unit_file: UnitFile) -> UnitFile:
    """Insert or merge ``unit_file`` (see :meth:`Catalog.record_unit_file`)."""
    return (await _record_unit_file(tx, unit_file, want_undo=False))[0]


async def record_unit_file_undoable(tx: Tx, unit_file: UnitFile) -> tuple[UnitFile, Undo]:
    """:func:`record_unit_file`, and what it takes to put the record back as it was."""
    record, item = await _record_unit_file(tx, unit_file, want_undo=True)
    assert item is not None
    return record, item


async def _record_unit_file(
    tx: Tx, unit_file: UnitFile, *, want_undo: bool
) -> tuple[UnitFile, UnitFileUndo | None]:
    sha256 = _sha256(unit_file.sha256)
    digests = normalize_digests(unit_file.digests, where="UnitFile.digests")
    if digests.setdefault("sha256", sha256) != sha256:
        raise ConfigError(f"UnitFile.digests['sha256'] does not match sha256 {sha256}")
    size = unit_file.size
    if size is not None:
        check_int("UnitFile.size", size, minimum=0)
    created_at = _aware(unit_file.created_at, "UnitFile.created_at") or utcnow()
    verified_at = _aware(unit_file.verified_at, "UnitFile.verified_at")
    inserted = await tx.fetchone(
        f"INSERT INTO unit_files ({_UNIT_FILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (sha256) DO NOTHING RETURNING sha256",
        sha256,
        size,
        _dumps(digests, "UnitFile.digests"),
        unit_file.location,
        created_at,
        verified_at,
    )
    changed: dict[str, Any] = {}
    if inserted is None:
        old = await tx.fetchone(
            "SELECT size, digests, location, verified_at FROM unit_files WHERE sha256 = $1"
            + _for_update(tx),
            sha256,
        )
        assert old is not None  # the row exists: the insert conflicted with it
        old_verified = to_datetime(old[3])
        merged = {**_loads(old[1]), **digests}
        new = {
            "size": size if size is not None else old[0],
            "digests": _dumps(merged, "UnitFile.digests"),
            "location": unit_file.location if unit_file.location is not None else old[2],
            "verified_at": verified_at if verified_at is not None else old_verified,
        }
        before = {
            "size": old[0],
            "digests": _dumps(_loads(old[1]), "UnitFile.digests"),
            "location": old[2],
            "verified_at": old_verified,
        }
        changed = {name: before[name] for name in new if new[name] != before[name]}
        if changed:
            await tx.execute(
                "UPDATE unit_files SET size = $2, digests = $3, location = $4, verified_at = $5 "
                "WHERE sha256 = $1",
                sha256,
                new["size"],
                new["digests"],
                new["location"],
                new["verified_at"],
            )
    old_sources: list[Row] = []
    if inserted is None and unit_file.sources and want_undo:
        old_sources = await tx.fetchall(
            f"SELECT {_SOURCE_COLUMNS} FROM unit_file_sources WHERE sha256 = $1", sha256
        )
    for source in unit_file.sources:
        await tx.execute(
            f"INSERT INTO unit_file_sources (sha256, {_SOURCE_COLUMNS}, position) "
            "VALUES ($1, $2, $3, $4, $5, "
            "(SELECT COALESCE(MAX(position), -1) + 1 FROM unit_file_sources WHERE sha256 = $1)) "
            "ON CONFLICT (sha256, url) DO UPDATE SET priority = excluded.priority, "
            "weight = excluded.weight, remote = excluded.remote",
            sha256,
            _clean_url(source.url),
            source.priority,
            float(source.weight),
            source.remote,
        )
    if inserted is not None:
        # A new row holds exactly what this wrote: no need to read it back.
        stored: UnitFile | None = UnitFile(
            sha256=sha256,
            size=size,
            digests=dict(sorted(digests.items())),  # as stored (sorted JSON keys)
            location=unit_file.location,
            sources=_as_recorded(unit_file.sources),
            created_at=created_at,
            verified_at=verified_at,
        )
    else:
        stored = await get_unit_file(tx, sha256)
    assert stored is not None
    if not want_undo:
        return stored, None
    if inserted is not None:
        return stored, UnitFileUndo(sha256, created=True)
    known = {row[0]: row for row in old_sources}
    urls = dict.fromkeys(_clean_url(s.url) for s in unit_file.sources)
    return stored, UnitFileUndo(
        sha256,
        created=False,
        columns=changed,
        sources=tuple(known[url] for url in urls if url in known),
        added=tuple(url for url in urls if url not in known),
    )


def _as_recorded(sources: Sequence[Source]) -> tuple[Source, ...]:
    """``sources`` as a new record holds them: one per URL (without userinfo), in the
    order of their first appearance, with the values of their last."""
    recorded: dict[str, Source] = {}
    for source in sources:
        url = _clean_url(source.url)
        if url != source.url or type(source.weight) is not float or source.userinfo:
            weight = float(source.weight)
            source = Source(url, priority=source.priority, weight=weight, remote=source.remote)
        recorded[url] = source
    return tuple(recorded.values())


def _unit_file(row: Row, sources: Sequence[Row]) -> UnitFile:
    return UnitFile(
        sha256=row[0],
        size=row[1],
        digests=_loads(row[2]),
        location=row[3],
        sources=tuple(Source(s[0], priority=s[1], weight=s[2], remote=s[3]) for s in sources),
        created_at=to_datetime(row[4]),
        verified_at=to_datetime(row[5]),
    )


async def get_unit_file(tx: Tx, sha256: str) -> UnitFile | None:
    row = await tx.fetchone(
        f"SELECT {_UNIT_FILE_COLUMNS} FROM unit_files WHERE sha256 = $1", sha256.lower()
    )
    if row is None:
        return None
    sources = await tx.fetchall(
        f"SELECT {_SOURCE_COLUMNS} FROM unit_file_sources WHERE sha256 = $1 ORDER BY position",
        row[0],
    )
    return _unit_file(row, sources)


#: The most sha256s one lookup statement names (SQLite before 3.32 binds at most 999).
LOOKUP_CHUNK = 500


def _among(tx: Tx, column: str, values: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    """``column`` is one of ``values``: the condition and its arguments (from ``$1``)."""
    if tx.dialect == "postgres":
        return f"{column} = ANY($1::text[])", (list(values),)
    marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return f"{column} IN ({marks})", tuple(values)


async def get_unit_files(tx: Tx, sha256s: Sequence[str]) -> dict[str, UnitFile]:
    """The unit files of ``sha256s`` (lower-case hex) that exist, by sha256: one statement
    (records joined with their sources) per :data:`LOOKUP_CHUNK` of them."""
    found: dict[str, UnitFile] = {}
    for start in range(0, len(sha256s), LOOKUP_CHUNK):
        where, args = _among(tx, "f.sha256", sha256s[start : start + LOOKUP_CHUNK])
        rows = await tx.fetchall(
            "SELECT f.sha256, f.size, f.digests, f.location, f.created_at, f.verified_at, "
            f"s.{', s.'.join(_SOURCE_COLUMNS.split(', '))} FROM unit_files f "
            "LEFT JOIN unit_file_sources s ON s.sha256 = f.sha256 "
            f"WHERE {where} ORDER BY f.sha256, s.position",
            *args,
        )
        record: Row = ()
        sources: list[Row] = []
        for row in rows:
            if row[0] != (record[0] if record else None):
                if record:
                    found[record[0]] = _unit_file(record, sources)
                record, sources = row[:6], []
            if row[6] is not None:
                sources.append(row[6:])
        if record:
            found[record[0]] = _unit_file(record, sources)
    return found


async def unit_file_page(tx: Tx, after: str, limit: int) -> list[UnitFile]:
    """Up to ``limit`` unit files with sha256 > ``after``, in sha256 order."""
    rows = await tx.fetchall(
        f"SELECT {_UNIT_FILE_COLUMNS} FROM unit_files WHERE sha256 > $1 ORDER BY sha256 LIMIT $2",
        after,
        limit,
    )
    if not rows:
        return []
    sources = await tx.fetchall(
        f"SELECT sha256, {_SOURCE_COLUMNS} FROM unit_file_sources "
        "WHERE sha256 >= $1 AND sha256 <= $2 ORDER BY sha256, position",
        rows[0][0],
        rows[-1][0],
    )
    by_sha: dict[str, list[Row]] = {}
    for source in sources:
        by_sha.setdefault(source[0], []).append(source[1:])
    return [_unit_file(row, by_sha.get(row[0], [])) for row in rows]


async def iterate_unit_files(
    read_page: Callable[[str, int], Awaitable[list[UnitFile]]], page_size: int = 500
) -> AsyncIterator[UnitFile]:
    """Every unit file, page by page (keyset pagination on sha256)."""
    after = ""
    while True:
        page = await read_page(after, page_size)
        for unit_file in page:
            yield unit_file
        if len(page) < page_size:
            return
        after = page[-1].sha256


async def mark_verified(tx: Tx, sha256: str, when: datetime) -> None:
    await tx.execute(
        "UPDATE unit_files SET verified_at = $2 WHERE sha256 = $1",
        sha256.lower(),
        _aware(when, "verified_at"),
    )


async def forget_location(tx: Tx, sha256: str) -> None:
    await tx.execute("UPDATE unit_files SET location = NULL WHERE sha256 = $1", sha256.lower())


# -- content units and repositories ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnitUndo:
    """What one :func:`save_unit` changed, for :func:`undo`.

    ``created``: the unit is new (undoing deletes it, its links and associations).
    Otherwise ``metadata`` is its old metadata JSON when the save changed it, ``path`` the
    relative path the save linked (``old_link`` the sha256 linked there before, None when
    there was none) and ``repository`` the association the save added.
    """

    unit_id: int
    created: bool
    metadata: str | None = None
    path: str | None = None
    old_link: str | None = None
    repository: str | None = None


async def save_unit(
    tx: Tx, spec: UnitSpec, sha256: str | None, repository: str | None
) -> ContentUnit:
    """Create or merge a content unit (see :meth:`Catalog.save_unit`)."""
    return (await _save_unit(tx, spec, sha256, repository, want_undo=False))[0]


async def save_unit_undoable(
    tx: Tx, spec: UnitSpec, sha256: str | None, repository: str | None
) -> tuple[ContentUnit, Undo]:
    """:func:`save_unit`, and what it takes to put the unit back as it was."""
    unit, item = await _save_unit(tx, spec, sha256, repository, want_undo=True)
    assert item is not None
    return unit, item


async def _save_unit(
    tx: Tx, spec: UnitSpec, sha256: str | None, repository: str | None, *, want_undo: bool
) -> tuple[ContentUnit, UnitUndo | None]:
    if sha256 is not None:
        sha256 = _sha256(sha256)
    if repository is not None and (not isinstance(repository, str) or not repository):
        raise ConfigError(f"repository must be a non-empty string, got {repository!r}")
    metadata = _dumps(spec.metadata, "UnitSpec.metadata")
    now = utcnow()
    inserted = await tx.fetchone(
        "INSERT INTO units (type, key, metadata, created_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (type, key) DO NOTHING RETURNING id",
        spec.type,
        spec.key,
        metadata,
        now,
    )
    old_metadata: str | None = None
    if inserted is not None:
        unit_id = int(inserted[0])
    else:
        row = await tx.fetchone(
            "SELECT id, metadata FROM units WHERE type = $1 AND key = $2" + _for_update(tx),
            spec.type,
            spec.key,
        )
        assert row is not None  # the row exists: the insert conflicted with it
        unit_id = int(row[0])
        old = _loads(row[1])
        merged = {**old, **spec.metadata}
        if merged != old:
            old_metadata = _dumps(old, "UnitSpec.metadata")
            await tx.execute(
                "UPDATE units SET metadata = $2 WHERE id = $1",
                unit_id,
                _dumps(merged, "UnitSpec.metadata"),
            )
    path = spec.relative_path or spec.key
    old_link: Row | None = None
    if sha256 is not None:
        if inserted is None and want_undo:
            old_link = await tx.fetchone(
                "SELECT sha256 FROM unit_links WHERE unit_id = $1 AND relative_path = $2",
                unit_id,
                path,
            )
        await tx.execute(
            "INSERT INTO unit_links (unit_id, relative_path, sha256) VALUES ($1, $2, $3) "
            "ON CONFLICT (unit_id, relative_path) DO UPDATE SET sha256 = excluded.sha256",
            unit_id,
            path,
            sha256,
        )
    added = None
    if repository is not None:
        added = await tx.fetchone(
            "INSERT INTO repository_units (repository, unit_id, added_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (repository, unit_id) DO NOTHING RETURNING unit_id",
            repository,
            unit_id,
            now,
        )
    unit = (await _units(tx, "u.id = $1", unit_id))[0]
    if not want_undo:
        return unit, None
    if inserted is not None:
        return unit, UnitUndo(unit_id, created=True)
    linked = old_link[0] if old_link is not None else None
    return unit, UnitUndo(
        unit_id,
        created=False,
        metadata=old_metadata,
        path=path if sha256 is not None and linked != sha256 else None,
        old_link=linked,
        repository=repository if added is not None else None,
    )


Undo = UnitFileUndo | UnitUndo
"""One write's undo record (made by the write, read only by :func:`undo`)."""


async def undo(tx: Tx, undos: Sequence[Undo]) -> None:
    """Put back what the writes behind ``undos`` changed, latest first."""
    for item in reversed(undos):
        if isinstance(item, UnitUndo):
            await _undo_unit(tx, item)
        else:
            await _undo_unit_file(tx, item)


async def _undo_unit_file(tx: Tx, item: UnitFileUndo) -> None:
    if item.created:
        # Its sources go with it (ON DELETE CASCADE).
        await tx.execute("DELETE FROM unit_files WHERE sha256 = $1", item.sha256)
        return
    for name, value in item.columns.items():
        # The names come from record_unit_file's own column list, never from input.
        await tx.execute(f"UPDATE unit_files SET {name} = $2 WHERE sha256 = $1", item.sha256, value)
    for url in item.added:
        await tx.execute(
            "DELETE FROM unit_file_sources WHERE sha256 = $1 AND url = $2", item.sha256, url
        )
    for url, priority, weight, remote in item.sources:
        await tx.execute(
            "UPDATE unit_file_sources SET priority = $3, weight = $4, remote = $5 "
            "WHERE sha256 = $1 AND url = $2",
            item.sha256,
            url,
            priority,
            weight,
            remote,
        )


async def _undo_unit(tx: Tx, item: UnitUndo) -> None:
    if item.created:
        # Its links and repository associations go with it (ON DELETE CASCADE).
        await tx.execute("DELETE FROM units WHERE id = $1", item.unit_id)
        return
    if item.metadata is not None:
        await tx.execute(
            "UPDATE units SET metadata = $2 WHERE id = $1", item.unit_id, item.metadata
        )
    if item.path is not None and item.old_link is None:
        await tx.execute(
            "DELETE FROM unit_links WHERE unit_id = $1 AND relative_path = $2",
            item.unit_id,
            item.path,
        )
    elif item.path is not None:
        await tx.execute(
            "UPDATE unit_links SET sha256 = $3 WHERE unit_id = $1 AND relative_path = $2",
            item.unit_id,
            item.path,
            item.old_link,
        )
    if item.repository is not None:
        await tx.execute(
            "DELETE FROM repository_units WHERE repository = $1 AND unit_id = $2",
            item.repository,
            item.unit_id,
        )


async def _units(tx: Tx, where: str, *args: Any) -> list[ContentUnit]:
    """Units selected by ``where`` (over ``units u``), ordered by (type, key)."""
    rows = await tx.fetchall(
        f"SELECT u.id, u.type, u.key, u.metadata FROM units u WHERE {where} ORDER BY u.type, u.key",
        *args,
    )
    if not rows:
        return []
    selected = f"SELECT u.id FROM units u WHERE {where}"
    links = await tx.fetchall(
        "SELECT unit_id, relative_path, sha256 FROM unit_links "
        f"WHERE unit_id IN ({selected}) ORDER BY unit_id, relative_path",
        *args,
    )
    repos = await tx.fetchall(
        "SELECT unit_id, repository FROM repository_units "
        f"WHERE unit_id IN ({selected}) ORDER BY unit_id, repository",
        *args,
    )
    files: dict[int, dict[str, str]] = {}
    for unit_id, path, sha256 in links:
        files.setdefault(int(unit_id), {})[path] = sha256
    repositories: dict[int, list[str]] = {}
    for unit_id, name in repos:
        repositories.setdefault(int(unit_id), []).append(name)
    return [
        ContentUnit(
            type=row[1],
            key=row[2],
            metadata=_loads(row[3]),
            files=files.get(int(row[0]), {}),
            repositories=tuple(repositories.get(int(row[0]), ())),
        )
        for row in rows
    ]


async def get_unit(tx: Tx, type: str, key: str) -> ContentUnit | None:
    units = await _units(tx, "u.type = $1 AND u.key = $2", type, key)
    return units[0] if units else None


async def get_units(tx: Tx, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ContentUnit]:
    """The units of ``keys`` (``(type, key)``) that exist, by pair, with their links and
    repositories: three statements per :data:`LOOKUP_CHUNK` / 2 of them."""
    found: dict[tuple[str, str], ContentUnit] = {}
    step = LOOKUP_CHUNK // 2  # two values a pair
    for start in range(0, len(keys), step):
        chunk = keys[start : start + step]
        if tx.dialect == "postgres":
            where = "(u.type, u.key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
            args: tuple[Any, ...] = ([t for t, _ in chunk], [k for _, k in chunk])
        else:
            pairs = ", ".join(f"(${2 * i + 1}, ${2 * i + 2})" for i in range(len(chunk)))
            where = f"(u.type, u.key) IN (VALUES {pairs})"
            args = tuple(value for pair in chunk for value in pair)
        for unit in await _units(tx, where, *args):
            found[(unit.type, unit.key)] = unit
    return found


async def repository_units(tx: Tx, name: str) -> list[ContentUnit]:
    return await _units(
        tx,
        "u.id IN (SELECT unit_id FROM repository_units WHERE repository = $1)",
        name,
    )


# -- host health -------------------------------------------------------------------------------


async def load_health(tx: Tx) -> dict[str, HostHealth]:
    rows = await tx.fetchall(
        "SELECT host, error_rate, speed, failures, cooldown_until, updated_at FROM host_health"
    )
    return {
        row[0]: HostHealth(
            host=row[0],
            error_rate=float(row[1]),
            speed=float(row[2]),
            failures=int(row[3]),
            cooldown_until=float(row[4]),
            updated_at=float(row[5]),
        )
        for row in rows
    }


async def save_health(tx: Tx, records: Sequence[HostHealth]) -> None:
    for record in records:
        await tx.execute(
            "INSERT INTO host_health "
            "(host, error_rate, speed, failures, cooldown_until, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (host) DO UPDATE SET "
            "error_rate = excluded.error_rate, speed = excluded.speed, "
            "failures = excluded.failures, cooldown_until = excluded.cooldown_until, "
            "updated_at = excluded.updated_at",
            record.host,
            float(record.error_rate),
            float(record.speed),
            int(record.failures),
            float(record.cooldown_until),
            float(record.updated_at),
        )


# -- claims ------------------------------------------------------------------------------------


async def claim(tx: Tx, sha256: str, owner: str, lease: float) -> bool:
    """Take or renew the claim on ``sha256`` if it is free, expired or ``owner``'s."""
    if not isinstance(owner, str) or not owner:
        raise ConfigError(f"claim owner must be a non-empty string, got {owner!r}")
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease < 0:
        raise ConfigError(f"claim lease must be a non-negative number, got {lease!r}")
    now = _NOW_EPOCH[tx.dialect]
    row = await tx.fetchone(
        "INSERT INTO claims (sha256, owner, expires_at) "
        f"VALUES ($1, $2, {now} + CAST($3 AS DOUBLE PRECISION)) "
        "ON CONFLICT (sha256) DO UPDATE SET owner = excluded.owner, "
        "expires_at = excluded.expires_at "
        f"WHERE claims.expires_at <= {now} OR claims.owner = excluded.owner "
        "RETURNING owner",
        sha256.lower(),
        owner,
        float(lease),
    )
    return row is not None


async def release(tx: Tx, sha256: str, owner: str) -> None:
    await tx.execute("DELETE FROM claims WHERE sha256 = $1 AND owner = $2", sha256.lower(), owner)


async def renew_claims(tx: Tx, sha256s: Sequence[str], owner: str, lease: float) -> set[str]:
    """Extend ``owner``'s claims on ``sha256s``; the ones it still holds.

    An update, never an insert: a claim released (or taken over) meanwhile stays so, whatever
    order a renewal and a release commit in.
    """
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease < 0:
        raise ConfigError(f"claim lease must be a non-negative number, got {lease!r}")
    now = _NOW_EPOCH[tx.dialect]
    held = set()
    for sha256 in sha256s:
        row = await tx.fetchone(
            f"UPDATE claims SET expires_at = {now} + CAST($3 AS DOUBLE PRECISION) "
            "WHERE sha256 = $1 AND owner = $2 RETURNING sha256",
            sha256.lower(),
            owner,
            float(lease),
        )
        if row is not None:
            held.add(sha256)
    return held


async def release_claims(tx: Tx, sha256s: Sequence[str], owner: str) -> None:
    names = list(dict.fromkeys(s.lower() for s in sha256s))
    for start in range(0, len(names), LOOKUP_CHUNK):
        where, args = _among(tx, "sha256", names[start : start + LOOKUP_CHUNK])
        await tx.execute(
            f"DELETE FROM claims WHERE {where} AND owner = ${len(args) + 1}", *args, owner
        )


async def claim_unless_stored(tx: Tx, sha256: str, owner: str, lease: float) -> str:
    """``"stored"`` when ``sha256`` has a recorded location, else :func:`claim`'s outcome
    as ``"claimed"`` or ``"held"`` (by another owner), in one transaction.

    The claim is taken *before* the location is read: under READ COMMITTED a worker that
    recorded the file and then released its claim has committed the record before the
    claim could be taken, so the read that follows sees it (reading first would race).
    """
    claimed = await claim(tx, sha256, owner, lease)
    row = await tx.fetchone(
        "SELECT location FROM unit_files WHERE sha256 = $1 AND location IS NOT NULL",
        sha256.lower(),
    )
    if row is not None:
        if claimed:
            await release(tx, sha256, owner)
        return "stored"
    return "claimed" if claimed else "held"


async def claim_many_unless_stored(
    tx: Tx, sha256s: Sequence[str], owner: str, lease: float
) -> dict[str, str]:
    """:func:`claim_unless_stored` of each of ``sha256s`` (by sha256 as given), in the one
    transaction ``tx``: three statements per :data:`LOOKUP_CHUNK` of them, the claims
    taken before the locations are read (see :func:`claim_unless_stored`)."""
    if not isinstance(owner, str) or not owner:
        raise ConfigError(f"claim owner must be a non-empty string, got {owner!r}")
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease < 0:
        raise ConfigError(f"claim lease must be a non-negative number, got {lease!r}")
    now = _NOW_EPOCH[tx.dialect]
    # Sorted: two workers' windows lock their rows in the same order (no deadlock).
    names = sorted({s.lower() for s in sha256s})
    claimed: set[str] = set()
    stored: set[str] = set()
    for start in range(0, len(names), LOOKUP_CHUNK):
        chunk = names[start : start + LOOKUP_CHUNK]
        values = ", ".join(
            f"(${i}, $1, {now} + CAST($2 AS DOUBLE PRECISION))" for i in range(3, len(chunk) + 3)
        )
        rows = await tx.fetchall(
            f"INSERT INTO claims (sha256, owner, expires_at) VALUES {values} "
            "ON CONFLICT (sha256) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at "
            f"WHERE claims.expires_at <= {now} OR claims.owner = excluded.owner "
            "RETURNING sha256",
            owner,
            float(lease),
            *chunk,
        )
        taken = {str(row[0]) for row in rows}
        where, args = _among(tx, "sha256", chunk)
        rows = await tx.fetchall(
            f"SELECT sha256 FROM unit_files WHERE {where} AND location IS NOT NULL", *args
        )
        found = {str(row[0]) for row in rows}
        release = taken & found
        if release:
            where, args = _among(tx, "sha256", sorted(release))
            await tx.execute(
                f"DELETE FROM claims WHERE {where} AND owner = ${len(args) + 1}", *args, owner
            )
        claimed |= taken
        stored |= found
    return {
        s: "stored" if (low := s.lower()) in stored else "claimed" if low in claimed else "held"
        for s in sha256s
    }


async def claim_holder(tx: Tx, sha256: str) -> str | None:
    """The owner of the unexpired claim on ``sha256``, or None."""
    now = _NOW_EPOCH[tx.dialect]
    row = await tx.fetchone(
        f"SELECT owner FROM claims WHERE sha256 = $1 AND expires_at > {now}", sha256.lower()
    )
    return str(row[0]) if row is not None else None


# -- remotes -----------------------------------------------------------------------------------

_SECRET_WORDS = ("password", "passwd", "secret", "token", "private_key", "client_key")


def _check_no_secrets(value: object, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key).lower()
            if any(word in name for word in _SECRET_WORDS) and item is not None:
                raise ConfigError(
                    f"remote settings must not contain secrets ({path}{key}); "
                    "seal them with SecretBox and pass them as sealed_secrets"
                )
            _check_no_secrets(item, f"{path}{key}.")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_no_secrets(item, path)
    elif isinstance(value, str) and "@" in value:
        try:
            has_password = split_userinfo(value)[2] is not None
        except ValueError:
            has_password = False
        if has_password:
            raise ConfigError(f"remote settings must not contain URL userinfo ({path.rstrip('.')})")


async def save_remote(
    tx: Tx, name: str, settings: Mapping[str, Any], sealed: SealedSecrets | None
) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"remote name must be a non-empty string, got {name!r}")
    if sealed is not None and not isinstance(sealed, SealedSecrets):
        raise ConfigError("sealed_secrets must come from SecretBox.seal()")
    _check_no_secrets(settings, "")
    await tx.execute(
        "INSERT INTO remotes (name, settings, sealed_secrets, updated_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET "
        "settings = excluded.settings, sealed_secrets = excluded.sealed_secrets, "
        "updated_at = excluded.updated_at",
        name,
        _dumps(settings, "remote settings"),
        sealed.token if sealed is not None else None,
        utcnow(),
    )


async def load_remote(tx: Tx, name: str) -> tuple[dict[str, Any], SealedSecrets | None] | None:
    row = await tx.fetchone("SELECT settings, sealed_secrets FROM remotes WHERE name = $1", name)
    if row is None:
        return None
    sealed = SealedSecrets(bytes(row[1])) if row[1] is not None else None
    return _loads(row[0]), sealed
