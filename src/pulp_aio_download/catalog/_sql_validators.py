"""The ``metadata_validators`` table: HTTP validators of metadata fetched by URL.

Internal. One row per ``(remote, url)``: the ``ETag`` and ``Last-Modified`` the server sent
with the body last fetched, and the sha256 and size of that body (content-addressed
storage holds the bytes). :mod:`pulp_aio_download.metadata` reads it to send a conditional
GET and answers a 304 from the stored body. Statements use :mod:`._sql`'s ``$n``
placeholders and ``{type}`` substitutions; URLs are stored without userinfo.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from ..models import MetadataValidators
from ..urls import split_userinfo

__all__ = [
    "DESCRIPTION",
    "STATEMENTS",
    "Tx",
    "delete_validators",
    "get_validators",
    "save_validators",
]

DESCRIPTION = "HTTP validators (ETag, Last-Modified) of metadata, per remote and URL"

STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE metadata_validators (
        remote TEXT NOT NULL,
        url TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        sha256 TEXT NOT NULL,
        size {bigint} NOT NULL,
        updated_at {ts} NOT NULL,
        PRIMARY KEY (remote, url)
    )""",
)


class Tx(Protocol):
    """What these statements need of :class:`._sql.Tx` (kept apart: ``_sql`` imports this
    module for its migration, so this one cannot import ``_sql``)."""

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def fetchone(self, sql: str, *args: Any) -> Sequence[Any] | None: ...


_COLUMNS = "remote, url, etag, last_modified, sha256, size, updated_at"


def _clean(url: str) -> str:
    return split_userinfo(url)[0]


def _to_datetime(value: object) -> datetime:
    # TIMESTAMPTZ from PostgreSQL, fixed-width ISO text from SQLite.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a time stamp: {value!r}")
    return value.astimezone(timezone.utc)


async def get_validators(tx: Tx, remote: str, url: str) -> MetadataValidators | None:
    row = await tx.fetchone(
        f"SELECT {_COLUMNS} FROM metadata_validators WHERE remote = $1 AND url = $2",
        remote,
        _clean(url),
    )
    if row is None:
        return None
    return MetadataValidators(
        remote=row[0],
        url=row[1],
        etag=row[2],
        last_modified=row[3],
        sha256=row[4],
        size=int(row[5]),
        updated_at=_to_datetime(row[6]),
    )


async def save_validators(tx: Tx, validators: MetadataValidators) -> None:
    await tx.execute(
        f"INSERT INTO metadata_validators ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (remote, url) DO UPDATE SET etag = excluded.etag, "
        "last_modified = excluded.last_modified, sha256 = excluded.sha256, "
        "size = excluded.size, updated_at = excluded.updated_at",
        validators.remote,
        _clean(validators.url),
        validators.etag,
        validators.last_modified,
        validators.sha256,
        validators.size,
        datetime.now(timezone.utc),
    )


async def delete_validators(tx: Tx, remote: str, url: str) -> None:
    await tx.execute(
        "DELETE FROM metadata_validators WHERE remote = $1 AND url = $2", remote, _clean(url)
    )
