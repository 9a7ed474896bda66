"""Delivery of every outbound effect: rows written with the state change, sent later.

A state change and the effects it causes (a card in Matrix, a reply to the citizen)
commit in one transaction; the ``Dispatcher`` then delivers the rows, in order per
target, retrying transient failures with backoff. A row is marked done only after its
delivery succeeded, so a crash means "sent again", never "lost"; Matrix sends reuse the
row id as transaction id so that the homeserver drops the repeat.

Up to ``batch`` deliveries are under way at once, one per target; when one ends the next
due row starts. The bot's offered reactions and read receipts are background work: they
start only when nothing else is due (unless a row of another kind waits behind one in its
target), so a burst of complaints puts every card in Matrix before any offer. A newer
offer for the same card replaces one not sent yet.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable, Sequence

from bridge.channels.base import Attachment, Choice
from bridge.clock import Clock
from bridge.errors import DeliveryError, NotYet
from bridge.store import Row, Store, Tx
from bridge.worker import Worker

log = logging.getLogger(__name__)

# The kinds of effect. Their handlers live in bridge/effects.py.
MATRIX_CARD = "matrix.card"              # a case card in a room
MATRIX_CARD_EDIT = "matrix.card_edit"    # the card brought up to date (m.replace)
MATRIX_THREAD = "matrix.thread"          # a message in a card's thread
MATRIX_ATTACHMENT = "matrix.attachment"  # a citizen's file, into a card's thread
MATRIX_NOTICE = "matrix.notice"          # a message in a room, outside any thread
MATRIX_REACTIONS = "matrix.reactions"    # the bot's reactions on a card: what staff can do now
MATRIX_TRANSCRIPT = "matrix.transcript"  # the printable transcript of a case, as a file
MATRIX_EVIDENCE = "matrix.evidence"      # the citizen's files and messages, again under a new card
MATRIX_POINTER = "matrix.pointer"        # in the old thread: where the case went, linked
MATRIX_CARDS = "matrix.cards"            # every earlier card brought up to date (where now, or how it ended)
CHANNEL_TEXT = "channel.text"            # a text to a citizen
CHANNEL_READ = "channel.read"            # mark a citizen's message read

CARD_TICKET = "id.pengaduan.ticket"       # the content key of a card that names its case

# Messages to the citizen that wait for their 24-hour window to open (a template tells them
# something waits; its quick reply carries HELD_PAYLOAD), instead of failing outside it.
HOLDABLE = ("answer", "question", "rejection")
HELD_PAYLOAD = "held"
WINDOW_CLOSED = 131047     # WhatsApp's error: more than 24 hours since the citizen's last message

MAX_ATTEMPTS = 12
MAX_BACKOFF = 600.0
# Nice to have, never worth holding anything up or alerting anyone: a few tries, then dropped.
BEST_EFFORT = {CHANNEL_READ: 3}
# Started only when no other row is due (and at most BACKGROUND_SLOTS of them at once): what
# staff and citizens wait for (cards, threads, notices, messages) never queues behind them,
# in the dispatcher nor in the homeserver (which writes one room's events one at a time). A
# background row with a row of another kind behind it in its target is not background.
BACKGROUND = (MATRIX_REACTIONS, CHANNEL_READ)
BACKGROUND_SLOTS = 8
READ_AHEAD_SECONDS = 0.5      # due rows read ahead are taken without reading again for this long
STOP_GRACE = 2.0              # seconds the deliveries under way get to end when the bridge stops
CLAIMED_ELSEWHERE = 0.5       # seconds a target another process delivers waits before we look again


def matrix_target(case_id: int | None, room_key: str) -> str:
    # A case's Matrix effects share one target so its thread reads in order.
    return f"matrix:case:{case_id}" if case_id is not None else f"matrix:room:{room_key}"


def channel_target(channel: str, address: str) -> str:
    return f"{channel}:{address}"


def receipt_target(channel: str, address: str) -> str:
    # Read receipts have their own queue: a failing one never holds up a reply.
    return f"{channel}:{address}:read"


class Outbox:
    """Writes effect rows inside the caller's transaction, and wakes the dispatcher."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.wakeup = asyncio.Event()

    def wake(self) -> None:
        self.wakeup.set()

    async def _put(self, tx: Tx, kind: str, target: str, payload: dict[str, Any],
                   case_id: int | None) -> int:
        # The caller calls wake() after its transaction commits.
        return await tx.enqueue(kind, target, payload, at=self.clock(), case_id=case_id)

    async def card(self, tx: Tx, case_id: int, room_key: str, content: dict[str, Any], ticket: str) -> int:
        # The ticket rides in the card's content, so that an event about a card the database
        # does not know (yet, or any more) still finds its case.
        return await self._put(tx, MATRIX_CARD, matrix_target(case_id, room_key),
                               {"room": room_key, "content": {**content, CARD_TICKET: ticket}}, case_id)

    async def card_edit(self, tx: Tx, case_id: int, room_key: str, content: dict[str, Any]) -> int:
        return await self._put(tx, MATRIX_CARD_EDIT, matrix_target(case_id, room_key),
                               {"room": room_key, "content": content}, case_id)

    async def thread(self, tx: Tx, case_id: int, room_key: str, content: dict[str, Any],
                     root: str | None = None) -> int:
        """Into the thread of the case's live card in that room, or of ``root`` (an earlier card)."""
        return await self._put(tx, MATRIX_THREAD, matrix_target(case_id, room_key),
                               {"room": room_key, "content": content, **({"root": root} if root else {})}, case_id)

    async def attachment(self, tx: Tx, case_id: int, room_key: str, channel: str,
                         attachment: Attachment, caption: str = "") -> int:
        return await self._put(tx, MATRIX_ATTACHMENT, matrix_target(case_id, room_key),
                               {"room": room_key, "channel": channel,
                                "attachment": attachment.to_dict(), "caption": caption}, case_id)

    async def reactions(self, tx: Tx, case_id: int, room_key: str, keys: list[str]) -> int:
        """The reactions the bot offers on the case's latest card in that room (``card``: its
        row). An earlier offer for the same card that is not sent yet is replaced by this
        one: each delivery brings the card to the wanted set, so only the last one counts."""
        card = await tx.last_card_row(case_id, room_key)
        target = matrix_target(case_id, room_key)
        row_id = await self._put(tx, MATRIX_REACTIONS, target, {"room": room_key, "actions": keys, "card": card},
                                 case_id)
        await tx.outbox_supersede(target, row_id, kind=MATRIX_REACTIONS, key="card", value=card, at=self.clock())
        return row_id

    async def transcript(self, tx: Tx, case_id: int, room_key: str) -> int:
        return await self._put(tx, MATRIX_TRANSCRIPT, matrix_target(case_id, room_key),
                               {"room": room_key}, case_id)

    async def evidence(self, tx: Tx, case_id: int, room_key: str) -> int:
        return await self._put(tx, MATRIX_EVIDENCE, matrix_target(case_id, room_key), {"room": room_key}, case_id)

    async def pointer(self, tx: Tx, case_id: int, room_key: str, to_room: str, step_name: str) -> int:
        return await self._put(tx, MATRIX_POINTER, matrix_target(case_id, room_key),
                               {"room": room_key, "to_room": to_room, "step": step_name}, case_id)

    async def cards_update(self, tx: Tx, case_id: int) -> int:
        return await self._put(tx, MATRIX_CARDS, matrix_target(case_id, ""), {}, case_id)

    async def notice(self, tx: Tx, room_key: str, content: dict[str, Any]) -> int:
        return await self._put(tx, MATRIX_NOTICE, matrix_target(None, room_key),
                               {"room": room_key, "content": content}, None)

    async def citizen_text(self, tx: Tx, case_id: int | None, channel: str, address: str,
                           text: str, *, reply_to: str | None = None, purpose: str | None = None,
                           choices: Sequence[Choice] = (), ticket: str | None = None,
                           window_closed: bool = False) -> int:
        """A message to the citizen; ``purpose`` says why (a failure names it to staff, and
        an answer, question or rejection outside the 24-hour window waits for the citizen)."""
        payload: dict[str, Any] = {"channel": channel, "address": address, "text": text,
                                   "reply_to": reply_to, "purpose": purpose}
        if choices:
            payload["choices"] = [c if isinstance(c, dict) else c.to_dict() for c in choices]
        if ticket:
            payload["ticket"] = ticket
        if window_closed:
            payload["window_closed"] = True
        return await self._put(tx, CHANNEL_TEXT, channel_target(channel, address), payload, case_id)

    async def mark_read(self, tx: Tx, channel: str, address: str, external_id: str) -> int:
        return await self._put(tx, CHANNEL_READ, receipt_target(channel, address),
                               {"channel": channel, "external_id": external_id}, None)


@dataclass
class Delivery:
    """What a handler gets: the row, and a way to save progress of a multi-step send."""

    row: Row
    store: Store

    @property
    def id(self) -> int:
        return self.row["id"]

    @property
    def payload(self) -> dict[str, Any]:
        return self.row["payload"]

    @property
    def progress(self) -> dict[str, Any]:
        return self.row["progress"]

    async def save_progress(self, **values: Any) -> None:
        self.row["progress"].update(values)
        async with self.store.transaction() as tx:
            await tx.outbox_progress(self.id, self.row["progress"])


# A handler delivers one row; it may return a result, and finish inside ``tx`` (the
# transaction that marks the row done) whatever bookkeeping the delivery implies.
Handler = Callable[[Delivery], Awaitable["Finish | None"]]
Finish = Callable[[Tx], Awaitable[dict[str, Any] | None]]


class Dispatcher(Worker):
    """Delivers due rows with up to ``batch`` deliveries under way, one per target at a time.

    Each delivery runs on its own: when one ends, the next due row starts at once (a slow
    row holds its own target, never the others). Rows are taken in the order they became
    due, background rows only when nothing else is due. ``run_once`` is one pass over what
    is due now (tests, and tools that drive the dispatcher themselves)."""

    name = "outbox"

    def __init__(self, store: Store, outbox: Outbox, clock: Clock, *, batch: int = 32,
                 background_slots: int = BACKGROUND_SLOTS,
                 on_dead: Callable[[Row, str], Awaitable[None]] | None = None) -> None:
        super().__init__(outbox.wakeup)
        self.store = store
        self.clock = clock
        self.batch = batch
        self.background_slots = max(1, min(background_slots, batch))
        self.on_dead = on_dead
        self.handlers: dict[str, Handler] = {}
        self.delivered = 0
        self.failures = 0
        self._running: dict[str, tuple[asyncio.Task[bool], str]] = {}   # target → (delivery, kind)
        self._held: dict[str, float] = {}         # target → until when (monotonic) it waits: its channel's pace
        self._ahead: list[Row] = []               # foreground rows read ahead, not started yet
        self._ahead_at = -math.inf
        self._stopping = False

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    async def run_once(self) -> int:
        """Deliver the due head row of every target once; returns how many were done."""
        async with self.store.reading() as tx:
            rows = await tx.due_outbox(self.clock(), self.batch, background=BACKGROUND, part="foreground")
            if len(rows) < self.batch:
                rows += await tx.due_outbox(self.clock(), self.batch - len(rows), background=BACKGROUND,
                                            part="background")
        results = await asyncio.gather(*(self._deliver(r) for r in rows))
        return sum(results)

    # -- the pool --------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            self.wakeup.clear()
            try:
                timeout = await self._fill()
            except Exception:
                log.exception("%s: reading the due rows failed; retrying shortly", self.name)
                timeout = 1.0
            if timeout is None:       # every slot busy: the next delivery to end wakes us
                await self.wakeup.wait()
                continue
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout)
            except TimeoutError:
                pass

    async def _fill(self) -> float | None:
        """Start the due rows the free slots allow; how long to sleep unless woken (None:
        no slot is free; a delivery's end or a new row wakes the loop)."""
        free = self.batch - len(self._running)
        if free <= 0:
            return None
        now_m = time.monotonic()
        self._held = {t: until for t, until in self._held.items() if until > now_m}
        now = self.clock()
        # Foreground rows: those read ahead last time while there are enough (each is the head
        # of its target and due, and only this dispatcher changes that), else a new read.
        if len(self._ahead) < free or now_m - self._ahead_at > READ_AHEAD_SECONDS:
            async with self.store.reading() as tx:
                self._ahead = await tx.due_outbox(now, free + self.batch, busy=[*self._running, *self._held],
                                                  background=BACKGROUND, part="foreground")
            self._ahead_at = now_m
        rows, self._ahead = self._ahead[:free], self._ahead[free:]
        # An offer read ahead may be replaced by a newer one meanwhile: read again when its turn comes.
        self._ahead = [r for r in self._ahead if r["kind"] != MATRIX_REACTIONS]
        started = sum(self._start(row) for row in rows)   # on their way before anything more is read
        if started >= free:
            return None               # more may be due: the next delivery to end wakes the loop
        # Nothing else is due: the background rows, as many as BACKGROUND_SLOTS allows.
        slots = min(free - started,
                    self.background_slots - sum(kind in BACKGROUND for _, kind in self._running.values()))
        async with self.store.reading() as tx:
            rows = await tx.due_outbox(now, slots, busy=[*self._running, *self._held], background=BACKGROUND,
                                       part="background") if slots > 0 else []
            next_due = await tx.next_outbox_due(after=now)
        for row in rows:
            self._start(row)
        wait = 30.0
        if next_due:
            wait = min(wait, (next_due - self.clock()).total_seconds())
        if self._held:
            wait = min(wait, min(self._held.values()) - time.monotonic())
        return max(0.005, wait)

    def _start(self, row: Row) -> bool:
        target = row["target"]
        if self._stopping or target in self._running:
            return False
        task = asyncio.create_task(self._deliver(row), name=f"outbox-{row['id']}")
        self._running[target] = (task, row["kind"])

        def ended(t: asyncio.Task[bool]) -> None:
            if self._running.get(target, (None,))[0] is t:
                del self._running[target]
            if not t.cancelled() and t.exception() is not None:
                # Its outcome could not be written (the database): the row stays pending, and
                # its target rests a second rather than trying again at once.
                log.error("outbox: row %d (%s) could not be recorded: %r", row["id"], row["kind"], t.exception())
                self._held[target] = time.monotonic() + 1.0
            self.wakeup.set()
        task.add_done_callback(ended)
        return True

    async def stop(self) -> None:
        """Take no more rows; what is under way gets STOP_GRACE seconds to end (cut short,
        a row stays pending: sent again, with the same transaction id, on the next start).
        The loop ends by itself, never in the middle of a read."""
        self._stopping = True
        self.wakeup.set()
        for tasks in ([self._task] if self._task else [], [t for t, _ in self._running.values()]):
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=STOP_GRACE)
                for t in late:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._running.clear()
        self._ahead = []
        self._stopping = False

    async def _deliver(self, row: Row) -> bool:
        if not self.store.shared:
            return await self._deliver_claimed(row)
        # Several processes on one database: one delivers a target at a time (its claim ends
        # with it, or with its process), and only the row that is still the target's head.
        key = f"outbox:{row['target']}"
        if not await self.store.try_lock(key):
            self._held[row["target"]] = time.monotonic() + CLAIMED_ELSEWHERE
            return False
        try:
            async with self.store.reading() as tx:        # as it is now: read before the claim, it may be old
                head = await tx.outbox_head(row["target"])
            if head is None or head["id"] != row["id"] or head["next_try_at"] > self.clock():
                return False
            return await self._deliver_claimed(head)
        finally:
            await self.store.unlock(key)

    async def _deliver_claimed(self, row: Row) -> bool:
        handler = self.handlers.get(row["kind"])
        try:
            if handler is None:
                raise DeliveryError(f"no handler for {row['kind']}", transient=False)
            finish = await handler(Delivery(row, self.store))
        except NotYet as e:            # the channel's pace: the row stays due, no attempt counted
            self._held[row["target"]] = time.monotonic() + e.seconds     # its target waits that long
            return False
        except DeliveryError as e:
            await self._failed(row, e)
            return False
        except Exception as e:  # a bug in a handler must not stop every other delivery
            log.exception("outbox: row %d (%s) raised", row["id"], row["kind"])
            await self._failed(row, DeliveryError(f"{e.__class__.__name__}: {e}", transient=True))
            return False
        async with self.store.transaction() as tx:
            result = await finish(tx) if finish else None
            await tx.outbox_done(row["id"], at=self.clock(), result=result)
        self.delivered += 1
        return True

    async def _failed(self, row: Row, e: DeliveryError) -> None:
        self.failures += 1
        attempts = row["attempts"] + 1
        best_effort = row["kind"] in BEST_EFFORT
        if e.transient and attempts < BEST_EFFORT.get(row["kind"], MAX_ATTEMPTS):
            delay = e.retry_after if e.retry_after is not None else min(MAX_BACKOFF, 2.0 ** attempts)
            log.warning("outbox: row %d (%s) attempt %d failed, retry in %.0fs: %s",
                        row["id"], row["kind"], attempts, delay, e)
            async with self.store.transaction() as tx:
                await tx.outbox_retry(row["id"], next_try=self.clock() + timedelta(seconds=delay),
                                      error=str(e))
            return
        (log.warning if best_effort else log.error)(
            "outbox: row %d (%s) given up after %d attempts: %s", row["id"], row["kind"], attempts, e)
        async with self.store.transaction() as tx:
            await tx.outbox_dead(row["id"], at=self.clock(), error=str(e))
        if self.on_dead and not best_effort:
            await self.on_dead(row, str(e))
