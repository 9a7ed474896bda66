"""Group commit in ``Intake.accept``: the webhooks that arrive together share a transaction.

Each caller must return only once its own rows are committed (checked from a separate
sqlite3 connection, as another process would see them), every message is stored once,
a failed transaction fails every caller in it and stores nothing of theirs, and a
polling channel's cursor commits with its messages.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge import intake as intake_mod
from bridge import store as store_mod
from bridge.channels.base import InboundMessage, StatusUpdate
from bridge.intake import Intake
from bridge.outbox import Outbox
from bridge.privacy import mask_phone
from bridge.store import Store, Tx
from tests.harness import FakeClock, LoopTicks

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "db.sqlite")
    yield s
    await s.close()


@pytest.fixture
def intake(store: Store) -> Intake:
    clock = FakeClock(T0)
    # accept touches neither cases nor the conversation unless a status moves a delivery.
    return Intake(store, None, Outbox(clock), clock, None)  # type: ignore[arg-type]


def msg(ext: str, channel: str = "whatsapp") -> InboundMessage:
    return InboundMessage(channel=channel, external_id=ext, address=f"62812{abs(hash(ext)) % 10**7:07d}",
                          at=T0, kind="text", text=f"pesan {ext}")


def committed(store: Store, sql: str, *args) -> list[tuple]:
    """What another connection sees: only committed rows."""
    con = sqlite3.connect(store.path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def stored_ids(store: Store) -> list[str]:
    return sorted(r[0] for r in committed(store, "SELECT external_id FROM inbound"))


class WriteLockHeld:
    """Holds the store's write lock in a task of its own (as a long transaction of the
    worker would), so that the accepts started meanwhile queue up for one commit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.release = asyncio.Event()
        self.taken = asyncio.Event()

    async def _hold(self) -> None:
        async with self.store.transaction():
            self.taken.set()
            await self.release.wait()

    async def __aenter__(self) -> "WriteLockHeld":
        self.task = asyncio.create_task(self._hold())
        await self.taken.wait()
        return self

    async def __aexit__(self, *exc) -> None:
        self.release.set()
        await self.task


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def count_transactions(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each transaction opened from now on."""
    opened: list[str] = []
    transaction = store.transaction

    def counting_transaction():
        opened.append("transaction")
        return transaction()

    monkeypatch.setattr(store, "transaction", counting_transaction)
    return opened


async def test_concurrent_accepts_are_stored_once_each_caller_after_its_commit(
        store: Store, intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    async with store.transaction() as tx:
        assert await tx.insert_inbound(msg("wamid.before"), T0)      # a retry of something stored earlier
    transactions = count_transactions(store, monkeypatch)
    seen_after_return: dict[int, list[str]] = {}

    async def webhook(i: int) -> None:
        await asyncio.sleep(0.001 * (i % 7))                        # arrive in waves, not all at once
        ids = [f"wamid.{i}.a", f"wamid.{i}.b"] + (["wamid.before", f"wamid.{i - 1}.a"] if i % 10 == 0 and i else [])
        await intake.accept([msg(e) for e in ids], [])
        # Still in the caller: its rows must be committed already (another connection sees them).
        seen_after_return[i] = [r[0] for r in committed(
            store, f"SELECT external_id FROM inbound WHERE external_id IN ({','.join('?' * len(ids))})", *ids)]
        assert sorted(seen_after_return[i]) == sorted(set(ids)), i

    await asyncio.gather(*(webhook(i) for i in range(200)))
    expected = sorted({f"wamid.{i}.{x}" for i in range(200) for x in "ab"} | {"wamid.before"})
    assert stored_ids(store) == expected                            # each once (UNIQUE would refuse a twin anyway)
    assert committed(store, "SELECT count(*) FROM inbound")[0][0] == len(expected)
    assert 1 <= len(transactions) < 200 / 4, len(transactions)     # they shared transactions
    assert intake._arrivals == [] and intake._committer is None


async def test_arrivals_queued_behind_the_lock_share_one_transaction(
        store: Store, intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    transactions = count_transactions(store, monkeypatch)
    async with WriteLockHeld(store):
        callers = [asyncio.create_task(intake.accept([msg(f"wamid.q{i}")], [])) for i in range(20)]
        await settle()
        assert not any(c.done() for c in callers)                   # nobody answered before the commit
        assert stored_ids(store) == []
    await asyncio.gather(*callers)
    assert len(stored_ids(store)) == 20
    assert transactions == ["transaction", "transaction"]           # the holder's, and one for all 20
    assert intake._crowded_until > 0                                # a crowd: the worker gives way a moment


async def test_a_failing_transaction_fails_all_its_callers_and_stores_nothing_of_theirs(
        store: Store, intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save_cursor = Tx.save_cursor

    async def save_cursor(self: Tx, channel: str, position: str, at: datetime) -> None:
        if position == "boom":
            raise sqlite3.OperationalError("disk I/O error")
        await real_save_cursor(self, channel, position, at)

    monkeypatch.setattr(Tx, "save_cursor", save_cursor)
    async with WriteLockHeld(store):
        doomed = [asyncio.create_task(intake.accept([msg(f"wamid.f{i}")], [])) for i in range(5)]
        doomed.append(asyncio.create_task(intake.accept([msg("wamid.tg1", "telegram")], [], cursor=("telegram", "boom"))))
        await settle()
    results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
    assert stored_ids(store) == []
    assert committed(store, "SELECT * FROM channel_cursors") == []

    # The services retry (each webhook was answered 5xx): now they go in, once each.
    await asyncio.gather(*(intake.accept([msg(f"wamid.f{i}")], []) for i in range(5)),
                         intake.accept([msg("wamid.tg1", "telegram")], [], cursor=("telegram", "2")))
    assert stored_ids(store) == sorted([f"wamid.f{i}" for i in range(5)] + ["wamid.tg1"])
    assert intake._committer is None


async def test_a_failure_fails_only_its_own_transaction(store: Store, intake: Intake,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-hop transaction of messages alone rolls back whole when it fails; those
    queued meanwhile go in the next round, and are stored."""
    real = store_mod._insert_inbound

    def insert_inbound(conn: sqlite3.Connection, items):
        stored = real(conn, items)                                  # inserted, then the failure: rolled back
        if any(m.external_id == "wamid.bad" for m, _ in items):
            raise sqlite3.OperationalError("database or disk is full")
        return stored

    monkeypatch.setattr(store_mod, "_insert_inbound", insert_inbound)
    async with WriteLockHeld(store):
        first = [asyncio.create_task(intake.accept([msg(e)], [])) for e in ("wamid.ok1", "wamid.bad", "wamid.ok2")]
        await settle()                                              # the committer took them, waits for the lock
        second = [asyncio.create_task(intake.accept([msg(f"wamid.late{i}")], [])) for i in range(3)]
        await settle()
    results = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
    await asyncio.gather(*second)
    assert stored_ids(store) == ["wamid.late0", "wamid.late1", "wamid.late2"]
    # The connection is usable after the rollback (no transaction left open on it).
    async with store.transaction() as tx:
        assert await tx.insert_inbound(msg("wamid.ok1"), T0)


async def test_the_cursor_commits_with_its_messages(store: Store, intake: Intake) -> None:
    async with WriteLockHeld(store):
        poll = asyncio.create_task(intake.accept([msg("tg.100", "telegram"), msg("tg.101", "telegram")], [],
                                                 cursor=("telegram", "102")))
        webhook = asyncio.create_task(intake.accept([msg("wamid.x")], []))
        await settle()
        assert committed(store, "SELECT * FROM channel_cursors") == []
    await poll
    # Once the poll's accept returned, its messages and its cursor are committed, together.
    assert committed(store, "SELECT position FROM channel_cursors WHERE channel = 'telegram'") == [("102",)]
    assert committed(store, "SELECT count(*) FROM inbound WHERE channel = 'telegram'") == [(2,)]
    await webhook
    assert (await intake.cursor("telegram"))[0] == "102"

    # Two polls in one transaction: the later position is the one kept, as one after the other.
    async with WriteLockHeld(store):
        first = asyncio.create_task(intake.accept([msg("tg.102", "telegram")], [], cursor=("telegram", "103")))
        await settle()
        second = asyncio.create_task(intake.accept([msg("tg.103", "telegram")], [], cursor=("telegram", "104")))
        await settle()
    await asyncio.gather(first, second)
    assert committed(store, "SELECT position FROM channel_cursors WHERE channel = 'telegram'") == [("104",)]


async def test_statuses_go_in_the_same_transaction(store: Store, intake: Intake) -> None:
    """A status before its delivery's row is kept for later, in the batch's transaction."""
    async with WriteLockHeld(store):
        a = asyncio.create_task(intake.accept([], [StatusUpdate("whatsapp", "wamid.out1", "delivered", T0)]))
        b = asyncio.create_task(intake.accept([msg("wamid.in1")], [StatusUpdate("whatsapp", "wamid.out2", "read", T0)]))
        await settle()
        assert committed(store, "SELECT count(*) FROM early_statuses") == [(0,)]
    await asyncio.gather(a, b)
    assert sorted(committed(store, "SELECT external_id, status FROM early_statuses")) == [
        ("wamid.out1", "delivered"), ("wamid.out2", "read")]
    assert stored_ids(store) == ["wamid.in1"]


async def test_one_webhook_at_a_time_is_no_crowd(store: Store, intake: Intake) -> None:
    for i in range(10):
        await intake.accept([msg(f"wamid.one{i}")], [])
    assert intake._crowded_until == 0.0
    loop = asyncio.get_running_loop()
    t = loop.time()
    await intake._after_crowd()
    assert loop.time() - t < 0.005


async def test_the_worker_waits_for_a_lull_but_not_for_ever(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_mod, "CROWD_WAIT", 0.05)
    loop = asyncio.get_running_loop()
    intake._crowded_until = loop.time() + 0.02                      # a crowd just now: wait for the lull
    t = loop.time()
    await intake._after_crowd()
    assert 0.015 <= loop.time() - t < 0.06
    intake._crowded_until = loop.time() + 10                        # a flood: one message per CROWD_WAIT still
    t = loop.time()
    await intake._after_crowd()
    assert 0.045 <= loop.time() - t < 0.2


async def test_stop_waits_for_the_commit_in_flight(store: Store, intake: Intake) -> None:
    async with WriteLockHeld(store):
        caller = asyncio.create_task(intake.accept([msg("wamid.last")], []))
        await settle()
        stopping = asyncio.create_task(intake.stop())
        await settle()
        assert not stopping.done()
    await stopping
    await caller
    assert stored_ids(store) == ["wamid.last"]


async def test_many_messages_at_once_and_repeats_within_them(store: Store, intake: Intake) -> None:
    """More rows than one statement takes; a message twice in one transaction is stored once."""
    many = [msg(f"wamid.m{i}") for i in range(1200)]
    await asyncio.gather(intake.accept(many[:700], []), intake.accept(many[600:] + [msg("wamid.m5")], []))
    assert stored_ids(store) == sorted(m.external_id for m in many)


async def test_a_round_of_webhooks_is_no_hop_and_waits_for_another_process_off_the_loop(
        store: Store, intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages alone: BEGIN, the inserts and COMMIT run at once on the event loop's thread,
    no hop to the writer's. When another process (a shell command) holds the database's
    write lock, the round goes to the writer's thread and waits there (busy_timeout), and
    the event loop goes on meanwhile."""
    hops: list[str] = []
    execute = store.db._writer._execute

    async def counting_execute(fn, *args, **kwargs):
        hops.append(getattr(fn, "__name__", repr(fn)))
        return await execute(fn, *args, **kwargs)

    monkeypatch.setattr(store.db._writer, "_execute", counting_execute)
    async with WriteLockHeld(store):
        callers = [asyncio.create_task(intake.accept([msg(f"wamid.h{i}")], [])) for i in range(10)]
        await settle()
    await asyncio.gather(*callers)
    assert hops == []               # the holder's transaction, then all 10 in one, on the loop's thread
    assert len(stored_ids(store)) == 10

    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO channel_cursors (channel, position, updated_at) VALUES ('x', '1', '')")
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, other.execute, "COMMIT")
        t = loop.time()
        async with LoopTicks() as ticks:
            await intake.accept([msg("wamid.busy")], [])
        waited = loop.time() - t
    finally:
        other.close()
    assert 0.25 <= waited < 3 and ticks.count >= 15                # waited on the thread, not on the loop
    assert hops[-3:] == ["execute", "_insert_inbound", "commit"]     # BEGIN, the round, COMMIT: on the writer
    assert "wamid.busy" in stored_ids(store) and committed(store, "SELECT count(*) FROM channel_cursors") == [(1,)]


async def test_what_the_webhooks_stored_is_logged_in_a_line_not_a_line_a_message(store: Store, intake: Intake,
                                                                                    caplog) -> None:
    """A message alone is named (its sender masked); a crowd of webhooks is counted in one
    line, whether its commits were logged at once or added up until the period ended."""
    flood = [msg(f"wamid.flood{i}") for i in range(30)]
    with caplog.at_level(logging.INFO, logger="bridge.intake"):
        await intake.accept([msg("wamid.one")], [])
        async with WriteLockHeld(store):
            tasks = [asyncio.create_task(intake.accept([m], [])) for m in flood]
            await settle()
        await asyncio.gather(*tasks)
        await intake.accept([msg("wamid.one")], [])                 # Meta's retry: seen before
        intake._stored_log.close()                                  # the bridge stops: what is counted is logged
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.intake"]
    one = msg("wamid.one")
    assert len(lines) == 3, lines
    assert lines[0] == f"intake: stored whatsapp text wamid.one from {mask_phone(one.address)}"
    assert f"intake: whatsapp text wamid.one from {mask_phone(one.address)} seen before, ignored" in lines
    assert any(re.fullmatch(r"intake: stored 30 messages in (one transaction|\d+ transactions) \(whatsapp text 30\)",
                            line) for line in lines), lines
    assert not any(m.address in line for m in (one, *flood) for line in lines)
