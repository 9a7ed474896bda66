"""The store's guarantees: deduplication, forward-only statuses, gapless sequences."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.channels.base import InboundMessage, StatusUpdate
from bridge.store import DUE_FOR_ALERT, Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "sub" / "db.sqlite")
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
        assert await tx.inbound_count() == 0


async def test_delivery_status_only_moves_forward_and_failed_wins(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.record_delivery("whatsapp", "wamid.out", outbox_id=None, case_id=None, at=T0)

    def st(status: str, code: int | None = None) -> StatusUpdate:
        return StatusUpdate("whatsapp", "wamid.out", status, T0, error_code=code)
    async with store.transaction() as tx:
        assert await tx.apply_status(st("delivered"))
        assert await tx.apply_status(st("sent")) is None         # late, out of order
        assert (await tx.get_delivery("whatsapp", "wamid.out"))["status"] == "delivered"
        assert await tx.apply_status(st("read"))
        assert await tx.apply_status(st("failed", 131047))
        assert await tx.apply_status(st("read")) is None
        row = await tx.get_delivery("whatsapp", "wamid.out")
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
            await tx.db.execute("UPDATE case_events SET note = 'x'")


async def test_one_open_case_per_citizen(store: Store) -> None:
    async with store.transaction() as tx:
        cid = await tx.upsert_citizen("whatsapp", "62811", name="A", user_id=None, at=T0)
        await tx.create_case(ticket="ADU-2026-000001", citizen_id=cid, channel="whatsapp", summary="",
                             step="s", holder_role="admin", opened_at=T0, due_at=None, step_due_at=None)
    with pytest.raises(Exception, match="UNIQUE"):
        async with store.transaction() as tx:
            await tx.create_case(ticket="ADU-2026-000002", citizen_id=cid, channel="whatsapp", summary="",
                                 step="s", holder_role="admin", opened_at=T0, due_at=None, step_due_at=None)


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
        plan = await tx._all("EXPLAIN QUERY PLAN " + DUE_FOR_ALERT, "2026", 500)
    assert any("USING INDEX cases_next_alert" in r["detail"] for r in plan), plan
