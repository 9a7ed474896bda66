"""The test session's own PostgreSQL (tests/postgres.py): a real server, reached with asyncpg."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.postgres import PostgresServer, _children, find_bin_dir

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"




def _wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """The pids still alive after waiting up to ``timeout`` for them to end."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


async def test_url_settings_and_a_round_trip(postgres_server: PostgresServer, postgres_db: str) -> None:
    pg = postgres_server
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert postgres_db.startswith(f"postgresql://postgres@127.0.0.1:{pg.port}/t")
    assert (pg.socket_dir / f".s.PGSQL.{pg.port}").is_socket()
    conn = await asyncpg.connect(postgres_db)
    try:
        settings = dict(await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            ["fsync", "synchronous_commit", "full_page_writes", "max_connections", "server_encoding",
             "lc_collate", "listen_addresses"]))
        assert settings == {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                            "max_connections": "200", "server_encoding": "UTF8", "lc_collate": "C",
                            "listen_addresses": "127.0.0.1"}
        await conn.execute("CREATE TABLE cases (id bigserial PRIMARY KEY, ticket text UNIQUE, body jsonb)")
        await conn.executemany("INSERT INTO cases (ticket, body) VALUES ($1, $2::jsonb)",
                               [(f"ADU-2026-{n:06d}", f'{{"nama": "Siti {n}"}}') for n in (1, 2, 3)])
        rows = await conn.fetch("SELECT id, ticket, body->>'nama' AS nama FROM cases ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, "ADU-2026-000001", "Siti 1"), (2, "ADU-2026-000002", "Siti 2"),
                                           (3, "ADU-2026-000003", "Siti 3")]
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO cases (ticket) VALUES ('ADU-2026-000002')")
        # The same server over its unix socket, as psql and the sync helpers reach it.
        assert pg.psql("SELECT count(*) FROM cases", database=postgres_db.rsplit("/", 1)[1]).strip() == "3"
    finally:
        await conn.close()


async def test_created_databases_are_separate(postgres_server: PostgresServer) -> None:
    pg = postgres_server
    names = [pg.unique_name("separate a"), pg.unique_name("separate b")]
    assert names[0] != names[1] and names[0].endswith("_separate_a")
    urls = [await pg.create_database(name) for name in names]
    conns = [await asyncpg.connect(url) for url in urls]
    try:
        await conns[0].execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('a')")
        with pytest.raises(asyncpg.UndefinedTableError):
            await conns[1].fetch("SELECT v FROM t")
        await conns[1].execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('b'), ('bb')")
        assert [r["v"] for r in await conns[0].fetch("SELECT v FROM t")] == ["a"]
        assert [r["v"] for r in await conns[1].fetch("SELECT v FROM t ORDER BY v")] == ["b", "bb"]
        assert [await c.fetchval("SELECT current_database()") for c in conns] == names
        with pytest.raises(asyncpg.DuplicateDatabaseError):
            await pg.create_database(names[0])
    finally:
        for c in conns:
            await c.close()
    await pg.drop_database(names[0])
    pg.drop_database_sync(names[1])  # and the sync variant
    left = pg.psql("SELECT datname FROM pg_database").split()
    assert not set(names) & set(left)


async def test_skip_locked_between_two_connections(postgres_db: str) -> None:
    a, b = await asyncpg.connect(postgres_db), await asyncpg.connect(postgres_db)
    claim = "SELECT id FROM outbox WHERE NOT sent ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    try:
        await a.execute("CREATE TABLE outbox (id int PRIMARY KEY, sent bool NOT NULL DEFAULT false);"
                        "INSERT INTO outbox (id) VALUES (1), (2)")
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        assert await a.fetchval(claim) == 1
        assert await b.fetchval(claim) == 2  # row 1 is locked by a: skipped, not waited for
        assert await b.fetchval(claim.replace("LIMIT 1", "OFFSET 1 LIMIT 1")) is None
        with pytest.raises(asyncpg.LockNotAvailableError):  # the lock is real
            await b.fetchval("SELECT id FROM outbox WHERE id = 1 FOR UPDATE NOWAIT")
        await tb.rollback()
        await a.execute("UPDATE outbox SET sent = true WHERE id = 1")
        await ta.commit()
        tb = b.transaction()
        await tb.start()
        assert await b.fetchval(claim) == 2  # row 1 is sent now
        ta = a.transaction()
        await ta.start()
        assert await a.fetchval(claim) is None  # 2 is b's: nothing left to claim
        # Without SKIP LOCKED a second claimer would wait for the first (here: 200 ms).
        await a.execute("SET LOCAL lock_timeout = '200ms'")
        with pytest.raises(asyncpg.LockNotAvailableError):
            await a.fetchval(claim.replace(" SKIP LOCKED", ""))
        await ta.rollback()
        await tb.rollback()
    finally:
        await a.close()
        await b.close()


def test_stop_leaves_no_process_and_no_folder(tmp_path: Path) -> None:
    if find_bin_dir() is None and os.environ.get("CI") != "true":
        pytest.skip("Debian's postgresql is not installed (.ci/run installs it)")
    with PostgresServer(tmp_path) as pg:
        pid, folder = pg.pid, pg.dir
        pids = [pid, *_children(pid)]
        assert len(pids) >= 4  # postmaster, checkpointer, walwriter, autovacuum...
        owner = Path(f"/proc/{pid}").stat().st_uid
        assert owner != 0  # never root, even when the tests are
        if os.geteuid() != 0:
            assert owner == os.geteuid()
    assert not pg.running and pg.dir is None
    assert _wait_gone(pids, timeout=0) == []  # stop() returned after they ended
    assert folder is not None and not folder.exists()
    assert "database system is shut down" in (tmp_path / "postgres.log").read_text()


def test_a_killed_owner_leaves_no_server(tmp_path: Path) -> None:
    """SIGKILL the process that started a server: its watchdog ends the server and its folder."""
    if find_bin_dir() is None and os.environ.get("CI") != "true":
        pytest.skip("Debian's postgresql is not installed (.ci/run installs it)")
    script = ("import sys, time\nfrom pathlib import Path\nfrom tests.postgres import PostgresServer\n"
              "pg = PostgresServer(Path(sys.argv[1])); pg.start()\n"
              "print(pg.pid, pg.dir, flush=True)\ntime.sleep(120)\n")
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        pid_text, folder_text = line.split()
        pid, folder = int(pid_text), Path(folder_text)
        pids = [pid, *_children(pid)]
        assert _alive(pid) and folder.is_dir()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    assert _wait_gone(pids) == []
    deadline = time.monotonic() + 10
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not folder.exists()
