"""One catalog suite, run against both backends (SQLite file, real PostgreSQL server)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pulp_aio_download.catalog import Catalog, _sql
from pulp_aio_download.catalog.postgres import PostgresCatalog
from pulp_aio_download.catalog.sqlite import SQLiteCatalog
from pulp_aio_download.errors import ConfigError
from pulp_aio_download.health import HostHealth
from pulp_aio_download.models import Source, UnitFile, UnitSpec
from pulp_aio_download.secrets import SecretBox, create_key

CatalogFactory = Callable[[], Awaitable[Catalog]]

PASSWORD = "pa55-Very-Secret-8d1f"


def sha(i: int) -> str:
    return f"{i:064x}"


def unit_file(i: int, **kwargs: object) -> UnitFile:
    fields: dict[str, object] = {
        "sha256": sha(i),
        "size": i,
        "digests": {},
        "location": f"artifacts/{sha(i)}",
        "sources": (Source(f"https://mirror.example.org/{i}.rpm"),),
    }
    fields.update(kwargs)
    return UnitFile(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
async def catalog_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[CatalogFactory]:
    """Opens catalogs on one backing store (the same file / the same database)."""
    if request.param == "sqlite":
        path = tmp_path / "new-dir" / "catalog.sqlite3"

        def make() -> Catalog:
            return SQLiteCatalog(path)
    else:
        dsn: str = request.getfixturevalue("postgres_database")

        def make() -> Catalog:
            return PostgresCatalog(dsn, max_size=5)

    opened: list[Catalog] = []

    async def factory() -> Catalog:
        catalog = make()
        await catalog.open()
        opened.append(catalog)
        return catalog

    try:
        yield factory
    finally:
        for catalog in opened:
            await catalog.close()


@pytest.fixture
async def catalog(catalog_factory: CatalogFactory) -> Catalog:
    return await catalog_factory()


# -- unit files -------------------------------------------------------------------------------


async def test_unit_file_round_trip(catalog: Catalog) -> None:
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    verified = datetime(2024, 6, 1, 0, 0, 1, 654321, tzinfo=timezone.utc)
    record = UnitFile(
        sha256=sha(1),
        size=12345,
        digests={"md5": "a" * 32, "sha512": "b" * 128},
        location="artifacts/00/01",
        sources=(
            Source("https://primary.example.org/x.rpm", priority=5, weight=2.5, remote="fedora"),
            Source("http://backup.example.org/x.rpm", priority=-1, weight=0.5),
        ),
        created_at=created,
        verified_at=verified,
    )
    stored = await catalog.record_unit_file(record)
    loaded = await catalog.get_unit_file(sha(1))

    assert stored == loaded
    assert loaded is not None
    assert loaded.sha256 == sha(1)
    assert loaded.size == 12345
    assert loaded.digests == {"md5": "a" * 32, "sha512": "b" * 128, "sha256": sha(1)}
    assert loaded.location == "artifacts/00/01"
    assert loaded.sources == record.sources
    assert [(s.priority, s.weight, s.remote) for s in loaded.sources] == [
        (5, 2.5, "fedora"),
        (-1, 0.5, None),
    ]
    assert loaded.created_at == created
    assert loaded.created_at is not None
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.verified_at == verified
    assert loaded.verified_at is not None
    assert loaded.verified_at.tzinfo is not None
    assert await catalog.get_unit_file(sha(2)) is None


async def test_new_record_returned_as_stored(catalog: Catalog) -> None:
    # What record_unit_file returns for a new record is built without reading it back:
    # it must be what a read gives, to the order of digests and sources.
    record = UnitFile(
        sha256=sha(7).upper(),
        size=7,
        digests={"sha512": "B" * 128, "md5": "a" * 32},
        location="artifacts/00/07",
        sources=(
            Source("https://user:secret@a.example/x", priority=1, weight=2),
            Source("https://b.example/x", weight=0.5, remote="r"),
            Source("https://a.example/x", priority=3, weight=4.0, remote="late"),
        ),
    )
    stored = await catalog.record_unit_file(record)
    loaded = await catalog.get_unit_file(sha(7))
    assert loaded is not None and stored == loaded and stored.to_json() == loaded.to_json()
    assert [(s.url, s.priority, s.weight, s.remote) for s in stored.sources] == [
        ("https://a.example/x", 3, 4.0, "late"),
        ("https://b.example/x", 0, 0.5, "r"),
    ]
    assert all(s.userinfo is None for s in stored.sources)
    assert list(stored.digests) == list(loaded.digests)


async def test_created_at_defaults_to_now_utc(catalog: Catalog) -> None:
    before = datetime.now(timezone.utc)
    stored = await catalog.record_unit_file(unit_file(3))
    assert stored.created_at is not None
    assert stored.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stored.created_at <= datetime.now(timezone.utc)
    assert stored.verified_at is None


async def test_sources_merged_on_repeat(catalog: Catalog) -> None:
    first = await catalog.record_unit_file(
        unit_file(
            1,
            digests={"md5": "c" * 32},
            sources=(Source("https://a.example/f"), Source("https://b.example/f", priority=1)),
        )
    )
    second = await catalog.record_unit_file(
        unit_file(
            1,
            digests={"sha1": "d" * 40},
            created_at=datetime(2000, 1, 1, tzinfo=timezone.utc),
            sources=(
                Source("https://b.example/f", priority=7, weight=3.0, remote="mirror"),
                Source("https://c.example/f", remote="other"),
            ),
        )
    )
    assert [(s.url, s.priority, s.weight, s.remote) for s in second.sources] == [
        ("https://a.example/f", 0, 1.0, None),
        ("https://b.example/f", 7, 3.0, "mirror"),
        ("https://c.example/f", 0, 1.0, "other"),
    ]
    assert second.digests == {"md5": "c" * 32, "sha1": "d" * 40, "sha256": sha(1)}
    assert second.created_at == first.created_at  # the first record's time stays
    assert await catalog.get_unit_file(sha(1)) == second


async def test_lazy_record_then_located(catalog: Catalog) -> None:
    lazy = await catalog.record_unit_file(
        UnitFile(
            sha256=sha(5),
            size=None,
            digests={},
            location=None,
            sources=(Source("https://lazy.example/p", remote="fedora"),),
        )
    )
    assert lazy.location is None
    assert lazy.size is None

    located = await catalog.record_unit_file(unit_file(5, size=99, sources=()))
    assert located.location == f"artifacts/{sha(5)}"
    assert located.size == 99
    assert [s.url for s in located.sources] == ["https://lazy.example/p"]

    # A later lazy registration adds sources but never forgets where the file is.
    again = await catalog.record_unit_file(
        UnitFile(
            sha256=sha(5),
            size=None,
            digests={},
            location=None,
            sources=(Source("https://other.example/p"),),
        )
    )
    assert again.location == located.location
    assert again.size == 99
    assert len(again.sources) == 2

    await catalog.forget_location(sha(5))
    forgotten = await catalog.get_unit_file(sha(5))
    assert forgotten is not None
    assert forgotten.location is None
    assert forgotten.size == 99
    assert len(forgotten.sources) == 2

    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    await catalog.mark_verified(sha(5), when)
    verified = await catalog.get_unit_file(sha(5))
    assert verified is not None
    assert verified.verified_at == when


async def test_get_unit_files_reads_many_as_get_unit_file_reads_one(catalog: Catalog) -> None:
    # More than one statement's worth, with several sources each in their recorded order.
    count = _sql.LOOKUP_CHUNK + 7
    for i in range(1, count + 1):
        await catalog.record_unit_file(
            unit_file(
                i,
                digests={"md5": f"{i:032x}"},
                sources=(
                    Source(f"https://z.example/{i}", priority=i % 3, remote="fedora"),
                    Source(f"https://a.example/{i}", weight=0.5),
                ),
            )
        )
    await catalog.mark_verified(sha(2), datetime(2030, 1, 1, tzinfo=timezone.utc))
    wanted = [sha(i) for i in range(count + 1, 0, -1)]  # sha(count + 1) has no record
    wanted.append(sha(3).upper())  # a repeat, in capitals: one entry
    found = await catalog.get_unit_files(wanted)

    assert sorted(found) == sorted(sha(i) for i in range(1, count + 1))
    for i in (1, 2, count):
        assert found[sha(i)] == await catalog.get_unit_file(sha(i))
    assert [s.url for s in found[sha(1)].sources] == ["https://z.example/1", "https://a.example/1"]
    assert found[sha(2)].verified_at == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert found[sha(7)].digests == {"md5": f"{7:032x}", "sha256": sha(7)}
    assert await catalog.get_unit_files([]) == {}
    assert await catalog.get_unit_files([sha(count + 1)]) == {}


async def test_get_units_reads_many_as_get_unit_reads_one(catalog: Catalog) -> None:
    count = _sql.LOOKUP_CHUNK // 2 + 3  # more than one statement's worth
    for i in range(count):
        spec = UnitSpec("rpm", f"pkg-{i}", metadata={"n": i}, relative_path=f"p/{i}.rpm")
        await catalog.save_unit(spec, sha(i + 1), "repo-a" if i % 2 else None)
    await catalog.save_unit(UnitSpec("rpm", "pkg-1"), sha(99), "repo-b")  # a second file
    wanted = [("rpm", f"pkg-{i}") for i in range(count, -1, -1)]  # pkg-{count}: none
    wanted += [("srpm", "pkg-1"), ("rpm", "pkg-2")]  # another type, and a repeat
    found = await catalog.get_units(wanted)

    assert sorted(found) == sorted(("rpm", f"pkg-{i}") for i in range(count))
    for i in (0, 1, count - 1):
        assert found[("rpm", f"pkg-{i}")] == await catalog.get_unit("rpm", f"pkg-{i}")
    assert found[("rpm", "pkg-1")].files == {"p/1.rpm": sha(2), "pkg-1": sha(99)}
    assert found[("rpm", "pkg-1")].repositories == ("repo-a", "repo-b")
    assert found[("rpm", "pkg-0")].repositories == ()
    assert await catalog.get_units([]) == {}


async def test_invalid_records_are_refused(catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="sha256"):
        await catalog.record_unit_file(unit_file(1, sha256="not-hex"))
    with pytest.raises(ConfigError, match="does not match"):
        await catalog.record_unit_file(unit_file(1, digests={"sha256": sha(2)}))
    with pytest.raises(ConfigError, match="timezone-aware"):
        await catalog.record_unit_file(unit_file(1, created_at=datetime(2024, 1, 1)))
    with pytest.raises(ConfigError, match="timezone-aware"):
        await catalog.mark_verified(sha(1), datetime(2024, 1, 1))
    assert await catalog.get_unit_file(sha(1)) is None


async def test_500_concurrent_records_are_consistent(catalog: Catalog) -> None:
    stored = await asyncio.gather(*(catalog.record_unit_file(unit_file(i)) for i in range(500)))
    # The same file recorded by 40 concurrent callers, each with its own mirror.
    shared = sha(10_000)
    await asyncio.gather(
        *(
            catalog.record_unit_file(
                UnitFile(
                    sha256=shared,
                    size=7,
                    digests={},
                    location=None if i % 2 else "artifacts/shared",
                    sources=(Source(f"https://m{i}.example/shared"),),
                )
            )
            for i in range(40)
        )
    )

    assert [r.sha256 for r in stored] == [sha(i) for i in range(500)]
    records = [r async for r in catalog.unit_files()]
    assert [r.sha256 for r in records] == sorted([sha(i) for i in range(500)] + [shared])
    by_sha = {r.sha256: r for r in records}
    for i in range(500):
        record = by_sha[sha(i)]
        assert record.size == i
        assert record.location == f"artifacts/{sha(i)}"
        assert [s.url for s in record.sources] == [f"https://mirror.example.org/{i}.rpm"]
    merged = by_sha[shared]
    assert merged.location == "artifacts/shared"
    assert sorted(s.url for s in merged.sources) == sorted(
        f"https://m{i}.example/shared" for i in range(40)
    )


# -- content units and repositories --------------------------------------------------------------


async def test_units_idempotent_with_repository_association(catalog: Catalog) -> None:
    await catalog.record_unit_file(unit_file(1))
    spec = UnitSpec("rpm", "bash-5.2-1.x86_64", {"arch": "x86_64"}, "Packages/b/bash.rpm")
    first = await catalog.save_unit(spec, sha(1), "fedora-40")
    second = await catalog.save_unit(spec, sha(1), "fedora-40")
    assert first == second
    assert first.files == {"Packages/b/bash.rpm": sha(1)}
    assert first.repositories == ("fedora-40",)

    other = await catalog.save_unit(
        UnitSpec("rpm", "bash-5.2-1.x86_64", {"summary": "shell"}), None, "centos-9"
    )
    assert other.metadata == {"arch": "x86_64", "summary": "shell"}
    assert other.files == {"Packages/b/bash.rpm": sha(1)}
    assert other.repositories == ("centos-9", "fedora-40")
    assert await catalog.get_unit("rpm", "bash-5.2-1.x86_64") == other

    # Without a relative path the file is linked under the key.
    keyed = await catalog.save_unit(UnitSpec("file", "docs/readme.txt"), sha(1))
    assert keyed.files == {"docs/readme.txt": sha(1)}
    assert keyed.repositories == ()
    assert await catalog.get_unit("file", "missing") is None
    assert await catalog.get_unit("rpm", "docs/readme.txt") is None


async def test_repository_units_ordering(catalog: Catalog) -> None:
    for type_, key in [("rpm", "zsh"), ("advisory", "FEDORA-1"), ("rpm", "bash"), ("rpm", "ash")]:
        await catalog.save_unit(UnitSpec(type_, key), None, "repo")
    await catalog.save_unit(UnitSpec("rpm", "elsewhere"), None, "other-repo")

    units = await catalog.repository_units("repo")
    assert [(u.type, u.key) for u in units] == [
        ("advisory", "FEDORA-1"),
        ("rpm", "ash"),
        ("rpm", "bash"),
        ("rpm", "zsh"),
    ]
    assert all(u.repositories == ("repo",) for u in units)
    assert await catalog.repository_units("nothing-here") == []


async def test_failed_write_fails_alone(catalog: Catalog) -> None:
    results = await asyncio.gather(
        catalog.record_unit_file(unit_file(1)),
        catalog.save_unit(UnitSpec("rpm", "bad", {"x": object()}), sha(1), "repo"),
        catalog.record_unit_file(unit_file(2)),
        return_exceptions=True,
    )
    assert isinstance(results[1], ConfigError)
    assert await catalog.get_unit_file(sha(1)) == results[0]
    assert await catalog.get_unit_file(sha(2)) == results[2]
    assert await catalog.get_unit("rpm", "bad") is None


# -- host health ---------------------------------------------------------------------------------


async def test_health_round_trip(catalog: Catalog) -> None:
    assert dict(await catalog.load_health()) == {}
    a = HostHealth("a.example:443").observe(ok=False, now=100.0)
    b = HostHealth("b.example").observe(ok=True, now=101.0, nbytes=1000, seconds=0.5)
    await catalog.save_health([a, b])
    assert dict(await catalog.load_health()) == {a.host: a, b.host: b}

    worse = a.observe(ok=False, now=102.0).observe(ok=False, now=103.0)
    assert worse.cooldown_until > 0
    await catalog.save_health([worse])
    assert dict(await catalog.load_health()) == {a.host: worse, b.host: b}


# -- claims --------------------------------------------------------------------------------------


async def test_claims(catalog: Catalog, catalog_factory: CatalogFactory) -> None:
    other = await catalog_factory()  # another worker: its own connections
    assert await catalog.claim(sha(1), "worker-a", lease=60)
    assert not await other.claim(sha(1), "worker-b", lease=60)
    assert await catalog.claim(sha(1), "worker-a", lease=60)  # renewal by the holder
    assert await other.claim(sha(2), "worker-b", lease=60)  # other files are independent

    await other.release(sha(1), "worker-b")  # not the holder: no effect
    assert not await other.claim(sha(1), "worker-b", lease=60)
    await catalog.release(sha(1), "worker-a")
    assert await other.claim(sha(1), "worker-b", lease=60)
    assert not await catalog.claim(sha(1), "worker-a", lease=60)


async def test_claims_renewed_and_released_together(
    catalog: Catalog, catalog_factory: CatalogFactory
) -> None:
    other = await catalog_factory()
    for i in (1, 2, 3):
        assert await catalog.claim(sha(i), "worker-a", lease=60)
    await catalog.release(sha(2), "worker-a")
    assert await other.claim(sha(2), "worker-b", lease=60)
    await catalog.release(sha(3), "worker-a")
    # Held: renewed. Taken by another worker, or released: neither taken back nor re-created.
    assert await catalog.renew_claims([sha(1), sha(2), sha(3)], "worker-a", 60) == {sha(1)}
    assert await catalog.claim_holder(sha(2)) == "worker-b"
    assert await catalog.claim_holder(sha(3)) is None

    await catalog.release_claims([sha(1), sha(2)], "worker-a")  # sha(2) is not its own
    assert await catalog.claim_holder(sha(1)) is None
    assert await catalog.claim_holder(sha(2)) == "worker-b"


async def test_claims_for_a_window_in_one_write(
    catalog: Catalog, catalog_factory: CatalogFactory
) -> None:
    other = await catalog_factory()
    await catalog.record_unit_file(unit_file(2))  # stored: not claimed, nothing left held
    assert await other.claim(sha(3), "worker-b", lease=60)  # held by another worker
    assert await catalog.claim(sha(4), "worker-a", lease=60)  # its own: renewed
    names = [sha(i) for i in (5, 1, 2, 3, 4)] + [sha(1).upper()]
    assert await catalog.claim_many_unless_stored(names, "worker-a", 60) == {
        sha(5): "claimed",
        sha(1): "claimed",
        sha(2): "stored",
        sha(3): "held",
        sha(4): "claimed",
        sha(1).upper(): "claimed",
    }
    assert [await other.claim_holder(sha(i)) for i in range(1, 6)] == [
        "worker-a",
        None,
        "worker-b",
        "worker-a",
        "worker-a",
    ]
    # A window bigger than one statement's chunk is claimed whole.
    many = [hashlib.sha256(b"w%d" % i).hexdigest() for i in range(1_100)]
    outcomes = await catalog.claim_many_unless_stored(many, "worker-a", 60)
    assert set(outcomes.values()) == {"claimed"} and len(outcomes) == len(many)
    assert await other.claim_many_unless_stored(many[:3], "worker-b", 60) == dict.fromkeys(
        many[:3], "held"
    )
    await catalog.release_claims([*many, sha(3)], "worker-a")  # sha(3) is not its own
    assert await other.claim_holder(many[0]) is None
    assert await other.claim_holder(many[-1]) is None
    assert await other.claim_holder(sha(3)) == "worker-b"
    with pytest.raises(ConfigError, match="claim owner"):
        await catalog.claim_many_unless_stored([sha(6)], "", 60)
    assert await other.claim_holder(sha(6)) is None


async def test_expired_claim_can_be_taken(
    catalog: Catalog, catalog_factory: CatalogFactory
) -> None:
    other = await catalog_factory()
    assert await catalog.claim(sha(1), "dead-worker", lease=0.3)
    assert not await other.claim(sha(1), "worker-b", lease=60)
    await asyncio.sleep(0.5)  # the dead worker never renews: its lease runs out
    assert await other.claim(sha(1), "worker-b", lease=60)
    assert not await catalog.claim(sha(1), "dead-worker", lease=0.3)


async def test_concurrent_claims_have_one_winner(
    catalog: Catalog, catalog_factory: CatalogFactory
) -> None:
    workers = [catalog, await catalog_factory(), await catalog_factory()]
    outcomes = await asyncio.gather(
        *(
            worker.claim(sha(i), f"worker-{n}", lease=60)
            for i in range(30)
            for n, worker in enumerate(workers)
        )
    )
    for i in range(30):
        assert sum(outcomes[i * 3 : i * 3 + 3]) == 1


# -- remotes and secrets -------------------------------------------------------------------------


async def test_remote_settings_never_hold_plaintext_secrets(
    catalog: Catalog, tmp_path: Path
) -> None:
    assert isinstance(catalog, (SQLiteCatalog, PostgresCatalog))
    box = SecretBox.from_key_file(create_key(tmp_path / "secrets.key"))
    with pytest.raises(ConfigError, match="password") as excinfo:
        await catalog.save_remote("fedora", {"username": "me", "password": PASSWORD})
    assert PASSWORD not in str(excinfo.value)
    with pytest.raises(ConfigError, match="userinfo"):
        await catalog.save_remote("fedora", {"proxy": {"url": f"http://me:{PASSWORD}@proxy"}})
    assert await catalog.load_remote("fedora") is None

    sealed = box.seal({"password": PASSWORD})
    await catalog.save_remote("fedora", {"username": "me", "max_connections": 4}, sealed)
    loaded = await catalog.load_remote("fedora")
    assert loaded is not None
    settings, stored = loaded
    assert settings == {"username": "me", "max_connections": 4}
    assert stored is not None
    assert PASSWORD.encode() not in stored.token
    assert box.open(stored) == {"password": PASSWORD}

    await catalog.save_remote("anonymous", {"headers": {"X-Trace": "1"}})
    assert await catalog.load_remote("anonymous") == ({"headers": {"X-Trace": "1"}}, None)


# -- schema --------------------------------------------------------------------------------------


async def test_reopening_is_fine_and_version_is_recorded(
    catalog: Catalog, catalog_factory: CatalogFactory
) -> None:
    await catalog.record_unit_file(unit_file(1))
    again = await catalog_factory()
    await again.open()  # open() is idempotent too
    assert await again.get_unit_file(sha(1)) == await catalog.get_unit_file(sha(1))
    assert _sql.LATEST_VERSION == 3
    if isinstance(catalog, SQLiteCatalog):
        with sqlite3.connect(catalog.path) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
        conn.close()
        assert versions == [1, 2, 3]


# -- SQLite only ---------------------------------------------------------------------------------


def _db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


async def test_sqlite_file_never_contains_a_password(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    box = SecretBox.from_key_file(create_key(tmp_path / "secrets.key"))
    async with SQLiteCatalog(path) as catalog:
        stored = await catalog.record_unit_file(
            unit_file(1, sources=(Source(f"https://alice:{PASSWORD}@private.example/x.rpm"),))
        )
        assert stored.sources[0].url == "https://private.example/x.rpm"
        await catalog.save_remote(
            "private", {"username": "alice"}, box.seal({"password": PASSWORD})
        )
        with pytest.raises(ConfigError):
            await catalog.save_remote("private", {"password": PASSWORD})
        data = _db_bytes(path)  # database, WAL and shared-memory files while open
        assert b"private.example/x.rpm" in data  # the check can see what was written
        assert PASSWORD.encode() not in data
        assert b"alice:" not in data
    data = _db_bytes(path)
    assert b"private.example/x.rpm" in data
    assert PASSWORD.encode() not in data


async def test_sqlite_creates_parent_dir_and_migrates_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "catalog.sqlite3"
    async with SQLiteCatalog(path) as catalog:
        await catalog.record_unit_file(unit_file(1))
    # Make it a version-1 catalog, as an older release left it.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE remotes")
        conn.execute("DROP TABLE metadata_validators")
        conn.execute("DELETE FROM schema_version WHERE version >= 2")
    conn.close()
    async with SQLiteCatalog(path) as catalog:
        assert await catalog.get_unit_file(sha(1)) is not None
        await catalog.save_remote("r", {"username": "u"})
    with sqlite3.connect(path) as conn:
        assert [v for (v,) in conn.execute("SELECT version FROM schema_version")] == [1, 2, 3]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()

    # A catalog written by a newer release is refused, not damaged.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_version VALUES (99, 'from the future', '2099-01-01T00:00:00+00:00')"
        )
    conn.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        await SQLiteCatalog(path).open()


async def test_sqlite_close_flushes_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    catalog = SQLiteCatalog(path, batch_size=8)
    await catalog.open()
    tasks = [asyncio.create_task(catalog.record_unit_file(unit_file(i))) for i in range(50)]
    await asyncio.sleep(0)  # every task has queued its write
    await catalog.close()
    assert all(t.done() and t.exception() is None for t in tasks)
    with pytest.raises(RuntimeError, match="not open"):
        await catalog.record_unit_file(unit_file(99))
    async with SQLiteCatalog(path) as reopened:
        assert len([r async for r in reopened.unit_files()]) == 50


async def test_sqlite_group_commit_batches_concurrent_writes(tmp_path: Path) -> None:
    async with SQLiteCatalog(tmp_path / "catalog.sqlite3", batch_size=64) as catalog:
        await asyncio.gather(
            *(catalog.record_unit_file(unit_file(i)) for i in range(300)),
            *(catalog.save_unit(UnitSpec("rpm", f"p{i}"), sha(i), "r") for i in range(100)),
        )
        assert catalog.writes == 400
        # Bounded groups, far fewer transactions than writes.
        assert 400 / 64 <= catalog.transactions <= 40
        assert len(await catalog.repository_units("r")) == 100
        assert len([r async for r in catalog.unit_files()]) == 300


async def test_sqlite_group_commit_fails_only_the_failing_write(tmp_path: Path) -> None:
    async with SQLiteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        bad = UnitFile(sha256=sha(5), size=1, digests={"sha256": sha(6)}, location=None)
        outcomes = await asyncio.gather(
            *(catalog.record_unit_file(unit_file(i)) for i in range(5)),
            catalog.record_unit_file(bad),  # fails after the others ran in the same group
            *(catalog.record_unit_file(unit_file(i)) for i in range(6, 10)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[5], ConfigError), outcomes[5]
        assert all(isinstance(o, UnitFile) for o in outcomes[:5] + outcomes[6:])
        assert catalog.transactions < 10  # they were grouped
        assert sorted([r.sha256 async for r in catalog.unit_files()]) == [
            sha(i) for i in range(10) if i != 5
        ]


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pulp_aio_download.catalog.sqlite import SQLiteCatalog
    from pulp_aio_download.models import Source, UnitFile, UnitSpec

    async def write(catalog, i):
        sha = f"{i:064x}"
        await catalog.record_unit_file(UnitFile(
            sha256=sha, size=i, digests={}, location=f"artifacts/{sha}",
            sources=(Source(f"https://a.example/{i}"), Source(f"https://b.example/{i}")),
        ))
        await catalog.save_unit(UnitSpec("rpm", f"pkg-{i}"), sha, "repo")

    async def main():
        async with SQLiteCatalog(sys.argv[1]) as catalog:
            i = 0
            while True:
                await asyncio.gather(*(write(catalog, j) for j in range(i, i + 25)))
                i += 25
                print(i, flush=True)

    asyncio.run(main())
    """
)


async def test_sqlite_survives_kill_9_mid_writes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        done = 0
        while done < 300:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, proc.stderr.read() if proc.stderr else "writer exited"
            done = int(line)
        os.kill(proc.pid, signal.SIGKILL)  # mid-batch: it never stops writing
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()

    async with SQLiteCatalog(path) as catalog:
        records = [r async for r in catalog.unit_files()]
        assert len(records) >= done  # every acknowledged write survived
        for record in records:
            i = int(record.sha256, 16)
            assert record.size == i
            assert record.location == f"artifacts/{record.sha256}"
            assert [s.url for s in record.sources] == [
                f"https://a.example/{i}",
                f"https://b.example/{i}",
            ]
        known = {r.sha256 for r in records}
        units = await catalog.repository_units("repo")
        assert len(units) >= done
        for unit in units:
            assert set(unit.files.values()) <= known
        # Still writable.
        await catalog.record_unit_file(unit_file(10**6))
