"""The store's guarantees: deduplication, forward-only statuses, gapless sequences."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.channels.base import InboundMessage, StatusUpdate
from tests import queries as q
from bridge.store import DUE_FOR_ALERT, NoDatabase, Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
async def store(database_url: str):
    """A store on each backend: the tests that take it run on SQLite and on PostgreSQL."""
    s = await Store.open(database_url)
    yield s
    await s.close()


def msg(ext: str = "wamid.1") -> InboundMessage:
    return InboundMessage(channel="whatsapp", external_id=ext, address="6281234567890", at=T0,
                          kind="text", text="KTP-el saya belum jadi")


async def test_open_creates_folder_and_schema_and_reopens(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "a" / "b" / "db.sqlite")
    await s.close()
    s = await Store.open(tmp_path / "a" / "b" / "db.sqlite")   # migrations are not rerun
    async with s.reading() as tx:
        assert (await tx._one("PRAGMA user_version"))["user_version"] >= 1
        assert (await tx._one("PRAGMA journal_mode"))["journal_mode"] == "wal"
        assert (await tx._one("PRAGMA foreign_keys"))["foreign_keys"] == 1
    await s.close()


async def test_inbound_is_deduplicated_on_channel_and_id(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.insert_inbound(msg(), T0)
        assert not await tx.insert_inbound(msg(), T0)
        assert await tx.insert_inbound(msg("wamid.2"), T0)
    async with store.reading() as tx:
        pending = await tx.pending_inbound()
    assert [m.external_id for _, m in pending] == ["wamid.1", "wamid.2"]
    assert pending[0][1] == msg()     # the normalized message round-trips


async def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.insert_inbound(msg(), T0)
            raise RuntimeError("crash")
    async with store.reading() as tx:
        assert await q.inbound_count(tx) == 0


async def test_delivery_status_only_moves_forward_and_failed_wins(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.record_delivery("whatsapp", "wamid.out", outbox_id=None, case_id=None, at=T0)

    def st(status: str, code: int | None = None) -> StatusUpdate:
        return StatusUpdate("whatsapp", "wamid.out", status, T0, error_code=code)
    async with store.transaction() as tx:
        assert await tx.apply_status(st("delivered"))
        assert await tx.apply_status(st("sent")) is None         # late, out of order
        assert (await q.get_delivery(tx, "whatsapp", "wamid.out"))["status"] == "delivered"
        assert await tx.apply_status(st("read"))
        assert await tx.apply_status(st("failed", 131047))
        assert await tx.apply_status(st("read")) is None
        row = await q.get_delivery(tx, "whatsapp", "wamid.out")
    assert row["status"] == "failed" and row["error_code"] == 131047


async def test_sequences_have_no_gaps_under_concurrency(store: Store) -> None:
    async def take() -> int:
        async with store.transaction() as tx:
            n = await tx.next_in_sequence("ticket/2026")
            await asyncio.sleep(0)
            return n
    got = await asyncio.gather(*(take() for _ in range(50)))
    assert sorted(got) == list(range(1, 51))


async def test_case_events_are_append_only(store: Store) -> None:
    async with store.transaction() as tx:
        cid = await tx.upsert_citizen("whatsapp", "62811", name="A", user_id=None, at=T0)
        case_id = await tx.create_case(ticket="ADU-2026-000001", citizen_id=cid, channel="whatsapp",
                                       summary="x", step="verifikasi", holder_role="admin", opened_at=T0,
                                       due_at=None, step_due_at=None)
        await tx.add_event(case_id, at=T0, actor="bot", kind="opened")
    with pytest.raises(Exception, match="append-only"):
        async with store.transaction() as tx:
            await tx.conn.db.execute("UPDATE case_events SET note = 'x'")


async def test_a_citizen_may_have_more_than_one_open_case(store: Store) -> None:
    """Nothing is merged silently: the conversation asks, and a second complaint is a second case."""
    async with store.transaction() as tx:
        cid = await tx.upsert_citizen("whatsapp", "62811", name="A", user_id=None, at=T0)
        for n in (1, 2):
            await tx.create_case(ticket=f"ADU-2026-00000{n}", citizen_id=cid, channel="whatsapp", summary="",
                                 step="s", holder_role="admin", opened_at=T0, due_at=None, step_due_at=None)
        assert [c["ticket"] for c in await tx.open_cases_of(cid)] == ["ADU-2026-000002", "ADU-2026-000001"]


async def test_one_person_is_one_citizen_across_user_id_and_number(store: Store) -> None:
    bsuid = "ID.13491208655302741918"
    async with store.transaction() as tx:
        first = await tx.upsert_citizen("whatsapp", bsuid, name="Dewi", user_id=bsuid, at=T0, username="dewi")
        # Later the same person comes with their number as well: the same citizen, keyed on it.
        again = await tx.upsert_citizen("whatsapp", "6281234567890", name="Dewi", user_id=bsuid, at=T0)
        assert again == first
        row = await tx.get_citizen(first)
        assert (row["address"], row["user_id"], row["username"]) == ("6281234567890", bsuid, "dewi")
        # A changed number, then a changed user id: still the same citizen.
        assert await tx.relink_citizen("whatsapp", "6281234567890", address="6282233445566",
                                       user_id="ID.88012345670011223344")
        assert await tx.relink_citizen("whatsapp", "ID.88012345670011223344", user_id="ID.66554433221100998877")
        row = await tx.get_citizen(first)
        assert (row["address"], row["user_id"]) == ("6282233445566", "ID.66554433221100998877")
        assert await tx.upsert_citizen("whatsapp", "6282233445566", name=None, user_id=None, at=T0) == first


async def test_outbox_delivers_heads_of_targets_in_order(store: Store) -> None:
    async with store.transaction() as tx:
        a1 = await tx.enqueue("k", "a", {"n": 1}, at=T0)
        a2 = await tx.enqueue("k", "a", {"n": 2}, at=T0)
        b1 = await tx.enqueue("k", "b", {"n": 1}, at=T0 + timedelta(seconds=5))
    async with store.reading() as tx:
        assert [r["id"] for r in await tx.due_outbox(T0, 10)] == [a1]
        assert [r["id"] for r in await tx.due_outbox(T0 + timedelta(seconds=5), 10)] == [a1, b1]
    async with store.transaction() as tx:
        await tx.outbox_retry(a1, next_try=T0 + timedelta(seconds=60), error="503")
    async with store.reading() as tx:
        # a2 waits behind a1 even though a1 is not due: order per target holds.
        assert [r["id"] for r in await tx.due_outbox(T0 + timedelta(seconds=5), 10)] == [b1]
    async with store.transaction() as tx:
        await tx.outbox_done(a1, at=T0, result=None)
    async with store.reading() as tx:
        assert [r["id"] for r in await tx.due_outbox(T0 + timedelta(seconds=5), 10)] == [a2, b1]


async def test_the_sla_check_reads_an_index_not_every_case(store: Store) -> None:
    async with store.reading() as tx:
        if tx.pg:     # a plan for a table of many rows, whatever this one holds
            await tx.conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r["QUERY PLAN"] for r in await tx._all("EXPLAIN " + DUE_FOR_ALERT, "2026", 500))
            assert "cases_next_alert" in plan and "Seq Scan" not in plan, plan
        else:
            plan = await tx._all("EXPLAIN QUERY PLAN " + DUE_FOR_ALERT, "2026", 500)
            assert any("USING INDEX cases_next_alert" in r["detail"] for r in plan), plan


async def test_a_failing_schema_upgrade_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    """Each upgrade runs in one transaction with its version: a failure leaves the old schema."""
    from bridge.migrations import UPGRADES, run_script
    s = await Store.open(tmp_path / "db.sqlite")
    async with s.reading() as tx:
        before = (await tx._one("PRAGMA user_version"))["user_version"]
    await s.close()

    async def broken(db) -> None:
        await run_script(db, """
        ALTER TABLE cases ADD COLUMN half_done TEXT;
        CREATE TABLE half_done (x INTEGER);
        """)
        raise RuntimeError("upgrade failed half way")
    monkeypatch.setitem(UPGRADES, before + 1, broken)
    with pytest.raises(RuntimeError, match="half way"):
        await Store.open(tmp_path / "db.sqlite")
    monkeypatch.delitem(UPGRADES, before + 1)
    s = await Store.open(tmp_path / "db.sqlite")        # the next start finds the old schema whole
    async with s.reading() as tx:
        assert (await tx._one("PRAGMA user_version"))["user_version"] == before
        columns = [r["name"] for r in await tx._all("PRAGMA table_info(cases)")]
        tables = [r["name"] for r in await tx._all("SELECT name FROM sqlite_master WHERE type = 'table'")]
    await s.close()
    assert "half_done" not in columns and "half_done" not in tables


async def test_run_script_keeps_a_trigger_body_whole() -> None:
    import aiosqlite
    from bridge.db import SQLiteConn
    from bridge.migrations import run_script
    async with aiosqlite.connect(":memory:", isolation_level=None) as db:
        await db.execute("BEGIN")
        await run_script(SQLiteConn(db), """
        CREATE TABLE t (x INTEGER);
        CREATE TRIGGER t_no_delete BEFORE DELETE ON t
            BEGIN SELECT RAISE(ABORT, 'no; not ever'); END;
        INSERT INTO t VALUES (1);
        """)
        await db.rollback()                              # nothing was committed on the way
        async with db.execute("SELECT name FROM sqlite_master") as cur:
            assert await cur.fetchall() == []


async def test_a_status_before_its_row_is_kept_until_the_row_comes(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.apply_status(StatusUpdate("whatsapp", "wamid.fast", "read", T0)) is None
        assert await tx.apply_status(StatusUpdate("whatsapp", "wamid.fast", "delivered", T0)) is None
        early = await tx.record_delivery("whatsapp", "wamid.fast", outbox_id=None, case_id=None, at=T0)
        assert [st.status for st in early] == ["delivered", "read"]       # in their order
        for st in early:
            await tx.apply_status(st)
        assert (await q.get_delivery(tx, "whatsapp", "wamid.fast"))["status"] == "read"
        # Taken once: a second record of the same message finds none.
        assert await tx.record_delivery("whatsapp", "wamid.fast", outbox_id=None, case_id=None, at=T0) == []


async def test_a_nested_reading_or_transaction_fails_at_once_instead_of_waiting_for_itself(tmp_path) -> None:
    store = await Store.open(tmp_path / "nested.db")
    try:
        async with store.reading():
            with pytest.raises(RuntimeError, match="wait for itself"):
                async with store.reading():
                    pass
        async with store.transaction():
            with pytest.raises(RuntimeError, match="wait for itself"):
                async with store.transaction():
                    pass
            async with store.reading() as tx:        # reading while writing is fine
                assert await tx._one("SELECT 1 AS one") == {"one": 1}
    finally:
        await store.close()


async def test_a_lease_is_held_by_one_process_renewed_and_taken_over_once_it_expires(tmp_path: Path) -> None:
    """Two stores on one database file play two bridge processes; the times are given."""
    a = await Store.open(tmp_path / "db.sqlite")
    b = await Store.open(tmp_path / "db.sqlite")

    async def take(store: Store, who: str, at: float) -> bool:
        async with store.transaction() as tx:
            return await tx.take_lease("matrix.sync", who, now=T0 + timedelta(seconds=at), seconds=30)
    try:
        assert await take(a, "A", 0) and not await take(b, "B", 10)
        assert await take(a, "A", 20)                       # renewed: now until 50
        assert not await take(b, "B", 45)
        assert await take(b, "B", 50)                       # A stopped renewing: B takes over
        assert not await take(a, "A", 55)                   # and A knows it lost it
        async with b.reading() as tx:
            held = await tx.lease("matrix.sync")
        assert (held["holder"], held["taken_at"], held["expires_at"]) == (
            "B", T0 + timedelta(seconds=50), T0 + timedelta(seconds=80))
        async with a.transaction() as tx:
            assert not await tx.release_lease("matrix.sync", "A")   # not A's to release
        async with b.transaction() as tx:
            assert await tx.release_lease("matrix.sync", "B")       # a clean stop lets go at once
        # Both at the same moment: exactly one gets it.
        won = await asyncio.gather(take(a, "A", 60), take(b, "B", 60))
        assert sorted(won) == [False, True]
    finally:
        await a.close()
        await b.close()


async def test_a_batch_of_webhooks_stores_each_message_once_and_says_which_are_new(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.insert_inbound(msg("wamid.before"), T0)
    batch = [(msg(e), T0 + timedelta(seconds=1)) for e in ("wamid.1", "wamid.before", "wamid.2", "wamid.1")]
    async with store.transaction() as tx:
        assert await tx.insert_inbound_many(batch) == {("whatsapp", "wamid.1"), ("whatsapp", "wamid.2")}
    async with store.transaction() as tx:
        assert await tx.insert_inbound_many(batch[:2]) == set()
    async with store.reading() as tx:
        stored = await tx.pending_inbound()
        assert [m.external_id for _, m in stored] == ["wamid.before", "wamid.1", "wamid.2"]
        assert stored[1][1] == msg("wamid.1")                         # the message whole, its time typed
        assert (await tx._one("SELECT received_at FROM inbound WHERE external_id = 'wamid.2'"))["received_at"] \
            == T0 + timedelta(seconds=1)


async def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]         # closed again: nothing listens there
    for create in (True, False):
        with pytest.raises(NoDatabase) as e:
            await Store.open(f"postgresql://pengaduan:s3cret@127.0.0.1:{port}/pengaduan", create=create)
        assert f"cannot open postgresql://pengaduan:***@127.0.0.1:{port}/pengaduan" in str(e.value)
        assert "s3cret" not in str(e.value)
