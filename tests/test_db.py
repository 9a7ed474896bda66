"""bridge/db.py against a real SQLite file and a real PostgreSQL server (tests/postgres.py):
the same SQL, the same answers."""
from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bridge.db import BadDatabaseUrl, Database, SQLiteConn, SQLiteDatabase, SQLiteHereConn, numbered, parse_url
from tests.harness import LoopTicks


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


async def _checkpointed(db: SQLiteDatabase) -> None:
    """Until the checkpoint task has nothing left to do."""
    for _ in range(250):
        if db._checkpoints is None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the checkpoint task never finished")


async def _write(db: SQLiteDatabase, rows: int) -> None:
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, data TEXT)")
        await conn.executemany("INSERT INTO t (data) VALUES (?)", [("x" * 1000,) for _ in range(rows)])


def _log_pages(path: Path) -> int:
    """The pages in the log now (since it last started over); copies them too, as any checkpoint."""
    with closing(sqlite3.connect(path)) as other:
        return other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


async def test_sqlite_commits_leave_the_checkpoint_to_a_connection_beside_the_writer(tmp_path: Path) -> None:
    """A commit never copies the log into the file (the webhooks waiting for it would wait
    for that too); a connection beside the writer does, once the commit is done, and
    empties the log once the writes pause."""
    path, wal = tmp_path / "x.db", tmp_path / "x.db-wal"
    db = await SQLiteDatabase.open(path)
    try:
        db.checkpoint_every = 0.05
        before = path.stat().st_size
        await _write(db, 6000)             # more than SQLite's own checkpoints wait for (1,000 pages)
        assert path.stat().st_size == before                  # all of it in the log: the commit copied nothing
        assert wal.stat().st_size > 6_000_000
        await _checkpointed(db)
        assert path.stat().st_size > 6_000_000                # copied into the file beside the writer
        assert wal.stat().st_size == 0                        # and emptied once the writes paused
        await _write(db, 1)
        assert _log_pages(path) < 10
        async with db.reading() as conn:
            assert await conn.fetchval("SELECT count(*) FROM t") == 6001
    finally:
        await db.close()


async def test_sqlite_under_writes_that_never_pause_the_log_starts_over_past_its_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A round of the checkpoint task while writes go on (driven here by hand, not by its
    clock): the copy leaves the newest write uncopied (a reader of an older snapshot holds
    it back, as a write landing during the copy would), so the log cannot start over by
    itself; past its limit it is started over all the same, under its limit it goes on."""
    path = tmp_path / "x.db"
    db = await SQLiteDatabase.open(path)
    copy = SQLiteConn.fetchrow
    reader = sqlite3.connect(path, isolation_level=None)

    async def copy_while_writing(conn: SQLiteConn, sql: str, *args: object) -> object:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()
        async with db.transaction() as writing:
            await writing.execute("INSERT INTO t (data) VALUES ('during')")
        try:
            return await copy(conn, sql, *args)
        finally:
            reader.execute("COMMIT")

    monkeypatch.setattr(SQLiteConn, "fetchrow", copy_while_writing)
    try:
        db.checkpoint_every = 3600         # the task's own rounds never come in this test
        db.wal_pages = 1000
        await _write(db, 1000)            # about 250 pages
        await db._checkpoint_beside(lull=False)
        await _write(db, 1)
        monkeypatch.undo()
        assert _log_pages(path) > 250     # under its limit: goes on
        monkeypatch.setattr(SQLiteConn, "fetchrow", copy_while_writing)
        db.wal_pages = 100
        await _write(db, 1000)
        await db._checkpoint_beside(lull=False)
        await _write(db, 1)
        monkeypatch.undo()
        assert _log_pages(path) < 10      # past its limit: started over
        async with db.reading() as conn:
            assert await conn.fetchval("SELECT count(*) FROM t") == 2004
    finally:
        reader.close()
        await db.close()
    assert db._checkpoints is None and db._beside is None


async def test_sqlite_transactions_run_on_the_loops_own_connection_unless_another_process_writes(
        tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = await SQLiteDatabase.open(path)
    try:
        await _write(db, 1)
        async with db.transaction() as conn:
            assert isinstance(conn, SQLiteHereConn)          # each statement at once, no hop
            await conn.execute("INSERT INTO t (data) VALUES ('here')")
        with pytest.raises(ValueError):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO t (data) VALUES ('gone')")
                raise ValueError("no")
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
            async with LoopTicks() as ticks:
                async with db.transaction() as conn:
                    assert isinstance(conn, SQLiteConn)      # on the writer's thread, which waited
                    await conn.execute("INSERT INTO t (data) VALUES ('after')")
        assert ticks.count >= 15                             # the loop went on meanwhile
        async with db.reading() as conn:
            assert [r["data"] for r in await conn.fetch("SELECT data FROM t WHERE length(data) < 10 ORDER BY id")] == [
                "here", "after"]
    finally:
        await db.close()
