"""Delivery of every outbound effect: rows written with the state change, sent later.

A state change and the effects it causes (a card in Matrix, a reply to the citizen)
commit in one transaction; the ``Dispatcher`` then delivers the rows, in order per
target, retrying transient failures with backoff. A row is marked done only after its
delivery succeeded, so a crash means "sent again", never "lost"; Matrix sends reuse the
row id as transaction id so that the homeserver drops the repeat.
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
from bridge.clock import Clock, parse_ts
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
        return await self._put(tx, MATRIX_REACTIONS, matrix_target(case_id, room_key),
                               {"room": room_key, "actions": keys}, case_id)

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
    name = "outbox"

    def __init__(self, store: Store, outbox: Outbox, clock: Clock, *, batch: int = 32,
                 on_dead: Callable[[Row, str], Awaitable[None]] | None = None) -> None:
        super().__init__(outbox.wakeup)
        self.store = store
        self.clock = clock
        self.batch = batch
        self.on_dead = on_dead
        self.handlers: dict[str, Handler] = {}
        self.delivered = 0
        self.failures = 0
        self._paced_until: float | None = None    # a channel asked us to wait until then (monotonic)

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    async def idle_seconds(self) -> float:
        """Until the next retry is due (at most 30 s; a new row wakes us sooner)."""
        if self._paced_until is not None:
            # Rows are due but their channel's pace says wait: until then, not a busy loop.
            wait, self._paced_until = self._paced_until - time.monotonic(), None
            if wait > 0:
                return min(wait, 30.0)
        async with self.store.reading() as tx:
            next_due = await tx.next_outbox_due()
        if not next_due:
            return 30.0
        return min(30.0, max(0.05, (parse_ts(next_due) - self.clock()).total_seconds()))

    async def run_once(self) -> int:
        """Deliver the due head row of every target once; returns how many were done."""
        async with self.store.reading() as tx:
            rows = await tx.due_outbox(self.clock(), self.batch)
        results = await asyncio.gather(*(self._deliver(r) for r in rows))
        return sum(results)

    async def _deliver(self, row: Row) -> bool:
        handler = self.handlers.get(row["kind"])
        try:
            if handler is None:
                raise DeliveryError(f"no handler for {row['kind']}", transient=False)
            finish = await handler(Delivery(row, self.store))
        except NotYet as e:            # the channel's pace: the row stays due, no attempt counted
            self._paced_until = min(self._paced_until or math.inf, time.monotonic() + e.seconds)
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
