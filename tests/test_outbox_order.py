"""The dispatcher's order (issue 17): cards before the bot's offered reactions of other
cases, a case's offer after its card, an offer replaced by a newer one not sent, one slow
delivery holding only its own target. Against a real database, with handlers that record."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge import outbox as ob
from bridge.effects import Effects
from bridge.errors import DeliveryError, NotYet
from bridge.outbox import Delivery, Dispatcher, Outbox
from bridge.store import Store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


def clock() -> datetime:
    return T0


@pytest.fixture
async def store(database_url: str):
    s = await Store.open(database_url)          # on SQLite and on PostgreSQL
    yield s
    await s.close()


async def new_case(store: Store, n: int) -> int:
    async with store.transaction() as tx:
        citizen = await tx.upsert_citizen("whatsapp", f"62811000{n:04d}", name=None, user_id=None, at=T0)
        return await tx.create_case(ticket=f"ADU-{n}", citizen_id=citizen, channel="whatsapp", summary="x",
                                    step="verifikasi", holder_role="admin", opened_at=T0, due_at=None,
                                    step_due_at=None)


async def complaint(store: Store, outbox: Outbox, case_id: int, room: str = "admin",
                    keys: tuple[str, ...] = ("claim", "verify", "reject")) -> None:
    """What a new case puts in the outbox: its card, the bot's offer, the reply."""
    async with store.transaction() as tx:
        await outbox.card(tx, case_id, room, {"body": f"card {case_id}"}, f"ADU-{case_id}")
        await outbox.reactions(tx, case_id, room, list(keys))
        await outbox.citizen_text(tx, case_id, "whatsapp", f"62811000{case_id:04d}", "ticket", purpose="ticket")
    outbox.wake()


class Recorder:
    """Handlers that note when each row starts and ends; ``gates`` hold chosen rows."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.log: list[tuple[str, str, int, int | None]] = []   # (start|end, kind, row id, case id)
        self.gates: dict[tuple[str, int], asyncio.Event] = {}    # (kind, case id) → that row waits for this
        self.running: dict[str, int] = {}
        self.overlap = False
        for kind in (ob.MATRIX_CARD, ob.MATRIX_THREAD, ob.MATRIX_REACTIONS, ob.CHANNEL_TEXT, ob.CHANNEL_READ):
            dispatcher.register(kind, self.handle)

    async def handle(self, d: Delivery) -> None:
        kind, case_id, target = d.row["kind"], d.row["case_id"], d.row["target"]
        if target in self.running:
            self.overlap = True         # two rows of one target at once: order would not hold
        self.running[target] = d.id
        self.log.append(("start", kind, d.id, case_id))
        try:
            if (kind, case_id) in self.gates:
                await self.gates[kind, case_id].wait()
            await asyncio.sleep(0.002)  # a send takes a little time
        finally:
            self.running.pop(target, None)
        self.log.append(("end", kind, d.id, case_id))

    def order(self, what: str, kind: str) -> list[int | None]:
        return [case for ev, k, _, case in self.log if ev == what and k == kind]

    def index(self, what: str, kind: str, case_id: int) -> int:
        return next(i for i, (ev, k, _, c) in enumerate(self.log) if ev == what and k == kind and c == case_id)


async def settle(store: Store, timeout: float = 10) -> None:
    async def empty() -> None:
        while True:
            async with store.reading() as tx:
                if (await tx.outbox_backlog())["pending"] == 0:
                    return
            await asyncio.sleep(0.01)
    await asyncio.wait_for(empty(), timeout)


async def test_cards_go_before_the_pending_offers_of_other_cases(store: Store) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock, batch=4)
    rec = Recorder(dispatcher)
    cases = [await new_case(store, n) for n in range(12)]
    for case_id in cases:               # a burst: every case's effects are written before any goes
        await complaint(store, outbox, case_id)
    dispatcher.start()
    try:
        await settle(store)
    finally:
        await dispatcher.stop()
    assert sorted(rec.order("end", ob.MATRIX_CARD)) == cases
    assert sorted(rec.order("end", ob.MATRIX_REACTIONS)) == cases
    last_card = max(rec.index("start", ob.MATRIX_CARD, c) for c in cases)
    first_offer = min(rec.index("start", ob.MATRIX_REACTIONS, c) for c in cases)
    assert first_offer > last_card, rec.log
    assert not rec.overlap


async def test_a_new_card_goes_before_offers_already_waiting(store: Store) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock, batch=2, background_slots=1)
    rec = Recorder(dispatcher)
    first = [await new_case(store, n) for n in range(6)]
    gate = rec.gates[ob.MATRIX_REACTIONS, first[0]] = asyncio.Event()
    for case_id in first:
        await complaint(store, outbox, case_id)
    dispatcher.start()
    try:
        # The first cards are out; their offers go one at a time, the first one hangs.
        while len(rec.order("start", ob.MATRIX_REACTIONS)) < 1:
            await asyncio.sleep(0.001)
        late = await new_case(store, 99)
        await complaint(store, outbox, late)
        while not rec.order("start", ob.MATRIX_CARD).count(late):
            await asyncio.sleep(0.001)
        gate.set()
        await settle(store)
    finally:
        await dispatcher.stop()
    late_card = rec.index("start", ob.MATRIX_CARD, late)
    offers_after = [c for i, (ev, k, _, c) in enumerate(rec.log) if ev == "start" and k == ob.MATRIX_REACTIONS
                    and i > late_card]
    # Offers of the first cases were still waiting when the late card came: it went first.
    assert offers_after == [*first[1:], late], rec.log


async def test_a_cases_offer_never_precedes_its_card(store: Store) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock, batch=8)
    rec = Recorder(dispatcher)
    cases = [await new_case(store, n) for n in range(5)]
    slow = cases[2]
    rec.gates[ob.MATRIX_CARD, slow] = asyncio.Event()
    for case_id in cases:
        await complaint(store, outbox, case_id)
    dispatcher.start()
    try:
        # Every other case's card and offer are done while the slow card is still being sent.
        for _ in range(500):
            if len(rec.order("end", ob.MATRIX_REACTIONS)) == len(cases) - 1:
                break
            await asyncio.sleep(0.01)
        assert sorted(rec.order("end", ob.MATRIX_REACTIONS)) == sorted(set(cases) - {slow})
        assert slow not in rec.order("start", ob.MATRIX_REACTIONS)
        rec.gates[ob.MATRIX_CARD, slow].set()
        await settle(store)
    finally:
        await dispatcher.stop()
    for case_id in cases:
        assert rec.index("end", ob.MATRIX_CARD, case_id) < rec.index("start", ob.MATRIX_REACTIONS, case_id)


async def test_an_offer_with_the_cases_thread_behind_it_is_not_background(tmp_path: Path) -> None:
    """A case's rows go in order; an offer that a thread message waits behind goes as soon as
    its turn comes, not after every other case's offers.

    On SQLite only: what it checks is the dispatcher's choice among due rows at the moment a
    slot frees, which depends on how long each delivery's bookkeeping takes (on PostgreSQL a
    claim and a read more); the order per target, which the database keeps, is checked on
    both by the other tests here."""
    store = await Store.open(tmp_path / "db.sqlite")
    try:
        await _offer_behind_a_thread(store)
    finally:
        await store.close()


async def _offer_behind_a_thread(store: Store) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock, batch=2)
    rec = Recorder(dispatcher)
    others = [await new_case(store, n) for n in range(6)]
    for case_id in others:
        await complaint(store, outbox, case_id)
    busy = await new_case(store, 50)
    await complaint(store, outbox, busy)
    async with store.transaction() as tx:
        await outbox.thread(tx, busy, "admin", {"body": "the citizen writes again"})
    dispatcher.start()
    try:
        await settle(store)
    finally:
        await dispatcher.stop()
    offer, thread = rec.index("start", ob.MATRIX_REACTIONS, busy), rec.index("start", ob.MATRIX_THREAD, busy)
    assert rec.index("end", ob.MATRIX_CARD, busy) < offer < thread
    # Its offer went before every other case's (all due since their cards were out), and
    # its thread message before most of them (a free slot takes one meanwhile).
    assert all(rec.index("start", ob.MATRIX_REACTIONS, c) > offer for c in others), rec.log
    assert sum(rec.index("start", ob.MATRIX_REACTIONS, c) > thread for c in others) >= len(others) - 2, rec.log
    assert not rec.overlap


class FakeMatrix:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str]] = []   # (room, content, txn)
        self.redacted: list[str] = []

    async def send(self, room: str, content: dict[str, Any], txn: str, event_type: str = "m.room.message") -> str:
        self.sent.append((room, content, txn))
        return f"$e{len(self.sent)}"

    def room_id(self, room: str) -> str:
        return f"!{room}:localhost"

    async def redact(self, room: str, event_id: str, txn: str, reason: str | None = None) -> None:
        self.redacted.append(event_id)


def real_effects(store: Store, dispatcher: Dispatcher, matrix: FakeMatrix, tmp_path: Path) -> None:
    async def nothing(*args: Any) -> None:
        return None
    Effects(store, matrix, {}, clock, tmp_path / "media", on_status=nothing, on_answer_taken=nothing,
            earlier_card=nothing, profile=None, on_held=nothing).register(dispatcher)  # type: ignore[arg-type]


def reactions_sent(matrix: FakeMatrix) -> list[tuple[str, str]]:
    return [(c["m.relates_to"]["event_id"], c["m.relates_to"]["key"]) for _, c, _ in matrix.sent
            if c.get("m.relates_to", {}).get("rel_type") == "m.annotation"]


async def test_a_superseded_offer_is_not_delivered(store: Store, tmp_path: Path) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock)
    matrix = FakeMatrix()
    real_effects(store, dispatcher, matrix, tmp_path)
    case_id = await new_case(store, 1)
    async with store.transaction() as tx:
        await outbox.card(tx, case_id, "admin", {"body": "card"}, "ADU-1")
        older = await outbox.reactions(tx, case_id, "admin", ["claim", "verify", "reject"])
    async with store.transaction() as tx:          # staff acted before the offer went out
        newer = await outbox.reactions(tx, case_id, "admin", ["approve"])
    while await dispatcher.run_once():
        pass
    assert matrix.sent[0][1]["body"] == "card"
    card_event = "$e1"
    assert reactions_sent(matrix) == [(card_event, "✍️")]       # only the newer offer
    assert not matrix.redacted
    async with store.reading() as tx:
        assert await tx.outbox_outcome(older) == {"state": "done", "result": {"superseded_by": newer}}
        assert (await tx.outbox_outcome(newer))["state"] == "done"
        assert await tx.card_reactions(card_event) == {"✍️": "$e2"}


async def test_an_offer_for_an_earlier_card_is_not_replaced_by_one_for_a_new_card(store: Store,
                                                                                tmp_path: Path) -> None:
    """A case back in a room gets a new card there: the offer that clears the old card is
    not replaced by the new card's offer, and goes on the old card."""
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock)
    matrix = FakeMatrix()
    real_effects(store, dispatcher, matrix, tmp_path)
    case_id = await new_case(store, 1)
    async with store.transaction() as tx:
        await outbox.card(tx, case_id, "admin", {"body": "card 1"}, "ADU-1")
        await outbox.reactions(tx, case_id, "admin", ["claim"])
    while await dispatcher.run_once():
        pass
    async with store.transaction() as tx:          # escalated, then returned: cleared, new card, new offer
        await outbox.reactions(tx, case_id, "admin", [])
        await outbox.card(tx, case_id, "admin", {"body": "card 2"}, "ADU-1")
        await outbox.reactions(tx, case_id, "admin", ["verify"])
    while await dispatcher.run_once():
        pass
    assert reactions_sent(matrix) == [("$e1", "👀"), ("$e3", "✅")]
    assert matrix.redacted == ["$e2"]
    async with store.reading() as tx:
        assert await tx.card_reactions("$e1") == {}
        assert await tx.card_reactions("$e3") == {"✅": "$e4"}


async def test_an_offer_on_a_card_that_failed_for_good_is_dropped(store: Store, tmp_path: Path) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock)
    matrix = FakeMatrix()
    real_effects(store, dispatcher, matrix, tmp_path)

    async def refused(d: Delivery) -> None:
        raise DeliveryError("M_FORBIDDEN", transient=False)
    dispatcher.register(ob.MATRIX_CARD, refused)
    case_id = await new_case(store, 1)
    async with store.transaction() as tx:
        await outbox.card(tx, case_id, "admin", {"body": "card"}, "ADU-1")
        offer = await outbox.reactions(tx, case_id, "admin", ["claim"])
    assert await dispatcher.run_once() == 0        # the card: dead
    assert await dispatcher.run_once() == 1        # the offer: nothing to react on, done
    assert matrix.sent == []
    async with store.reading() as tx:
        assert (await tx.outbox_outcome(offer))["state"] == "done"


async def test_one_slow_row_does_not_delay_other_targets(store: Store) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock, batch=4)
    rec = Recorder(dispatcher)
    cases = [await new_case(store, n) for n in range(20)]
    slow = cases[0]
    rec.gates[ob.MATRIX_CARD, slow] = asyncio.Event()
    for case_id in cases:
        await complaint(store, outbox, case_id)
    dispatcher.start()
    try:
        # With 4 deliveries at a time, the 19 others (and their replies and offers) all go
        # while the first card hangs.
        for _ in range(1000):
            if len(rec.order("end", ob.MATRIX_CARD)) == 19 and len(rec.order("end", ob.MATRIX_REACTIONS)) == 19:
                break
            await asyncio.sleep(0.01)
        assert sorted(rec.order("end", ob.MATRIX_CARD)) == cases[1:]
        assert sorted(rec.order("end", ob.CHANNEL_TEXT)) == cases
        assert sorted(rec.order("end", ob.MATRIX_REACTIONS)) == cases[1:]
        rec.gates[ob.MATRIX_CARD, slow].set()
        await settle(store)
    finally:
        await dispatcher.stop()
    assert rec.index("end", ob.MATRIX_CARD, slow) < rec.index("start", ob.MATRIX_REACTIONS, slow)
    assert not rec.overlap


async def test_a_paced_target_waits_while_others_go(store: Store) -> None:
    outbox = Outbox(clock)
    dispatcher = Dispatcher(store, outbox, clock, batch=4)
    rec = Recorder(dispatcher)
    tries: list[float] = []
    loop = asyncio.get_running_loop()

    async def paced(d: Delivery) -> None:
        tries.append(loop.time())
        if len(tries) == 1:
            raise NotYet(0.2)           # the channel's pace: again in 0.2 s, no attempt counted
    dispatcher.register(ob.CHANNEL_TEXT, paced)
    cases = [await new_case(store, n) for n in range(3)]
    for case_id in cases:
        async with store.transaction() as tx:
            await outbox.card(tx, case_id, "admin", {"body": "card"}, f"ADU-{case_id}")
    async with store.transaction() as tx:
        text = await outbox.citizen_text(tx, None, "telegram", "42", "hi", purpose="ticket")
    dispatcher.start()
    try:
        await settle(store)
    finally:
        await dispatcher.stop()
    assert len(tries) == 2 and tries[1] - tries[0] >= 0.19
    assert sorted(rec.order("end", ob.MATRIX_CARD)) == cases
    async with store.reading() as tx:
        row = await tx._one("SELECT attempts, state FROM outbox WHERE id = ?", text)
    assert row == {"attempts": 1, "state": "done"}


async def test_a_failed_row_is_retried_after_its_backoff_while_others_go(store: Store) -> None:
    now = [T0]
    outbox = Outbox(lambda: now[0])
    dispatcher = Dispatcher(store, outbox, lambda: now[0], batch=4)
    rec = Recorder(dispatcher)
    calls: list[int] = []

    async def flaky(d: Delivery) -> None:
        calls.append(d.id)
        if len(calls) == 1:
            raise DeliveryError("503", transient=True, retry_after=0.3)
    dispatcher.register(ob.MATRIX_THREAD, flaky)
    a, b = await new_case(store, 1), await new_case(store, 2)
    async with store.transaction() as tx:
        first = await outbox.thread(tx, a, "admin", {"body": "1"})
        second = await outbox.thread(tx, a, "admin", {"body": "2"})
        await outbox.card(tx, b, "admin", {"body": "card"}, "ADU-2")
    dispatcher.start()
    try:
        while not (rec.order("end", ob.MATRIX_CARD) and calls):     # the card, and the first try
            await asyncio.sleep(0.005)
        assert calls == [first]                       # the second waits behind the first
        now[0] = T0 + timedelta(seconds=1)            # its backoff is over
        dispatcher.wake()
        await settle(store)
    finally:
        await dispatcher.stop()
    assert calls == [first, first, second]
