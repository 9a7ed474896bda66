"""Several bridge processes on one PostgreSQL database: each piece of work claimed once.

Two ``Store`` objects on one database stand for two processes (each has its own pool, and
its own connection for session locks). On SQLite there is one process, and every claim is
granted at once; the last test says so.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from bridge.lease import Lease
from bridge.store import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
async def two(postgres_db: str):
    a, b = await Store.open(postgres_db), await Store.open(postgres_db)
    yield a, b
    await a.close()
    await b.close()


async def test_a_transaction_claim_keeps_the_other_process_out_until_it_ends(two) -> None:
    a, b = two
    assert a.shared and b.shared
    held, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with a.transaction() as tx:
            assert await tx.claim("inbound:whatsapp:6281234567890")
            held.set()
            await release.wait()

    task = asyncio.create_task(first())
    await held.wait()
    async with b.transaction() as tx:
        assert not await tx.claim("inbound:whatsapp:6281234567890")      # in hand elsewhere
        assert await tx.claim("inbound:whatsapp:6289999999999")          # another citizen: free
    release.set()
    await task
    async with b.transaction() as tx:
        assert await tx.claim("inbound:whatsapp:6281234567890")          # its transaction ended


async def test_a_session_lock_is_let_go_by_unlock_or_by_the_end_of_its_process(two, postgres_db: str) -> None:
    a, b = two
    assert await a.try_lock("outbox:whatsapp:6281234567890")
    assert await a.try_lock("outbox:whatsapp:6281234567890") is True     # its holder may take it again
    await a.unlock("outbox:whatsapp:6281234567890")
    await a.unlock("outbox:whatsapp:6281234567890")
    assert await b.try_lock("outbox:whatsapp:6281234567890")
    assert not await a.try_lock("outbox:whatsapp:6281234567890")
    await b.close()                          # its process ends: the server lets go of its locks
    assert await a.try_lock("outbox:whatsapp:6281234567890")
    two_b = await Store.open(postgres_db)
    try:
        assert not await two_b.try_lock("outbox:whatsapp:6281234567890")
    finally:
        await two_b.close()


async def test_the_outbox_head_is_read_again_after_the_claim(two) -> None:
    a, b = two
    async with a.transaction() as tx:
        first = await tx.enqueue("channel.text", "whatsapp:628", {"text": "1"}, at=T0)
        await tx.enqueue("channel.text", "whatsapp:628", {"text": "2"}, at=T0)
        await tx.outbox_progress(first, {"text_began": "2026-11-23T01:00:00Z"})
    async with b.reading() as tx:
        head = await tx.outbox_head("whatsapp:628")
    assert (head["id"], head["payload"]) == (first, {"text": "1"})
    assert head["progress"] == {"text_began": "2026-11-23T01:00:00Z"}       # as it is now, parsed
    async with a.transaction() as tx:
        await tx.outbox_done(first, at=T0, result=None)
    async with b.reading() as tx:
        assert (await tx.outbox_head("whatsapp:628"))["payload"] == {"text": "2"}


async def test_a_lease_goes_to_one_process_and_to_the_other_when_it_stops_or_dies(two) -> None:
    a, b = two
    now = [T0]
    la = Lease(a, "matrix-sync", seconds=0.6, holder="a", clock=lambda: now[0])
    lb = Lease(b, "matrix-sync", seconds=0.6, holder="b", clock=lambda: now[0])
    await la.start()
    await lb.start()
    assert la.held.is_set() and not lb.held.is_set()
    # A clean stop lets go at once: the other takes it at its next try.
    await la.stop()
    await asyncio.wait_for(lb.wait(), 5)
    async with a.reading() as tx:
        row = await tx.lease("matrix-sync")
    assert row["holder"] == "b" and row["expires_at"] > T0
    # Its holder dies (no renewal, no letting go): once it expires, the other takes it.
    lb._task.cancel()
    la2 = Lease(a, "matrix-sync", seconds=0.6, holder="a2", clock=lambda: now[0])
    await la2.start()
    assert not la2.held.is_set()                         # not expired yet, by the lease's clock
    now[0] = T0 + timedelta(seconds=1)
    await asyncio.wait_for(la2.wait(), 5)
    await la2.stop()


async def test_on_sqlite_one_process_holds_every_claim(tmp_path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    try:
        assert not store.shared
        assert await store.try_lock("outbox:x") and await store.try_lock("outbox:x")
        lease = Lease(store, "matrix-sync")
        await lease.start()
        assert lease.held.is_set()
        async with store.transaction() as tx:
            assert await tx.claim("inbound:x") and await tx.claim("inbound:x")
            assert await tx.lease("matrix-sync") is None          # nothing written
        await lease.stop()
    finally:
        await store.close()
