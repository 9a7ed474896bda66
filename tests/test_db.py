"""bridge/db.py against a real SQLite file and a real PostgreSQL server (tests/postgres.py):
the same SQL, the same answers."""
from __future__ import annotations

import asyncio

import pytest

from bridge.db import BadDatabaseUrl, Database, numbered, parse_url


@pytest.fixture
def url(database_url: str) -> str:
    return database_url


@pytest.fixture
async def db(url: str):
    database = await Database.open(url)
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE cases (id BIGINT PRIMARY KEY, ticket TEXT NOT NULL UNIQUE,"
                           " state TEXT NOT NULL, note TEXT)")
    yield database
    await database.close()


def test_placeholders_are_numbered_outside_quotes_and_comments() -> None:
    assert numbered("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)"
    assert numbered("SELECT '?', 'it''s ?', \"odd?\" FROM t WHERE a = ? -- why?\n AND b = ? /* ? */") == (
        "SELECT '?', 'it''s ?', \"odd?\" FROM t WHERE a = $1 -- why?\n AND b = $2 /* ? */")


def test_database_urls() -> None:
    assert parse_url("sqlite:///data/pengaduan.db") == ("sqlite", "data/pengaduan.db")
    assert parse_url("sqlite:////var/lib/pengaduan/db") == ("sqlite", "/var/lib/pengaduan/db")
    assert parse_url("postgresql://bridge:pw@db.local:5432/pengaduan")[0] == "postgresql"
    for bad in ("sqlite://data.db", "sqlite:///", "mysql://x/y", "postgresql:///nohost", "data/pengaduan.db"):
        with pytest.raises(BadDatabaseUrl):
            parse_url(bad)
    with pytest.raises(BadDatabaseUrl) as e:
        parse_url("mysql://bridge:s3cret@db/x")
    assert "s3cret" not in str(e.value)                  # the password never reaches a log


async def test_the_same_sql_gives_the_same_answers(db: Database) -> None:
    async with db.transaction() as conn:
        assert await conn.execute("INSERT INTO cases (id, ticket, state) VALUES (?, ?, ?), (?, ?, ?)",
                                  1, "ADU-2026-000001", "open", 2, "ADU-2026-000002", "open") == 2
        await conn.executemany("INSERT INTO cases (id, ticket, state) VALUES (?, ?, ?)",
                               [(3, "ADU-2026-000003", "closed"), (4, "ADU-2026-000004", "open")])
        assert await conn.execute("UPDATE cases SET note = ? WHERE state = ?", "? stays a question mark", "open") == 3
        assert await conn.execute("INSERT INTO cases (id, ticket, state) VALUES (?, ?, ?)"
                                  " ON CONFLICT (ticket) DO NOTHING", 9, "ADU-2026-000001", "open") == 0
        moved = await conn.fetch("UPDATE cases SET state = 'closed' WHERE id IN (?, ?) RETURNING id, state", 1, 2)
        assert sorted(r["id"] for r in moved) == [1, 2] and {r["state"] for r in moved} == {"closed"}
    async with db.reading() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cases WHERE state = ?", "closed") == 3
        assert await conn.fetchrow("SELECT id, note FROM cases WHERE ticket = ?", "ADU-2026-000004") == {
            "id": 4, "note": "? stays a question mark"}
        assert await conn.fetchrow("SELECT id FROM cases WHERE ticket = ?", "none") is None
        assert await conn.execute("SELECT 1") == 0


async def test_a_failed_transaction_leaves_nothing_and_a_reader_sees_only_what_was_committed(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO cases (id, ticket, state) VALUES (?, ?, ?)", 1, "ADU-1", "open")
            raise RuntimeError("half way")
    seen_during: list[int] = []
    inserted, read = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO cases (id, ticket, state) VALUES (?, ?, ?)", 2, "ADU-2", "open")
            inserted.set()
            await read.wait()                  # not committed while the reader looks

    async def reader() -> None:
        await inserted.wait()
        async with db.reading() as conn:
            seen_during.append(await conn.fetchval("SELECT count(*) FROM cases"))
        read.set()
    await asyncio.gather(writer(), reader())
    assert seen_during == [0]
    async with db.reading() as conn:
        assert [r["id"] for r in await conn.fetch("SELECT id FROM cases ORDER BY id")] == [2]


async def test_schema_upgrades_run_once_whole_or_not_at_all_even_from_two_processes(db: Database, url: str) -> None:
    ran: list[str] = []

    def creating(table: str):
        async def upgrade(conn) -> None:
            ran.append(table)
            await conn.execute(f"CREATE TABLE {table} (x INTEGER)")
        return upgrade

    assert await db.schema_version() == 0
    assert await db.upgrade(1, creating("t1")) is True
    assert await db.schema_version() == 1
    assert await db.upgrade(1, creating("t1_again")) is False and ran == ["t1"]     # already there

    async def broken(conn) -> None:
        await conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("upgrade failed half way")
    with pytest.raises(RuntimeError):
        await db.upgrade(2, broken)
    assert await db.schema_version() == 1
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE half_done (y INTEGER)")    # the failed one left no table behind
        await conn.execute("DROP TABLE half_done")

    other = await Database.open(url)                                # a second process, starting at once
    try:
        done = await asyncio.gather(db.upgrade(2, creating("t2_here")), other.upgrade(2, creating("t2_there")))
    finally:
        await other.close()
    assert sorted(done) == [False, True] and len(ran) == 2            # one of them did it, once
    assert await db.schema_version() == 2
