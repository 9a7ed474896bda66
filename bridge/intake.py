"""From stored inbound messages to cases, one message at a time, in arrival order.

``accept`` is the channels' sink: it stores what arrived (deduplicated) and returns, so
the channel can answer 200; the webhooks that arrive together share one transaction
(group commit, see ``accept``). The worker then processes the stored rows in order; each
row is handled in one transaction with everything it causes, so a crash at any point
leaves it either untouched (and processed after the restart) or fully done. A row whose
processing keeps failing is set aside after ``MAX_ATTEMPTS`` (state 'failed', told to
the admin room once), so one bad message never stops the others.

What a citizen wrote or sent goes to the conversation (bridge/conversation.py): the
complaint format, questions, status, follow-ups to open cases, the rating.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from bridge import messages as msgs
from bridge.cases import Cases
from bridge.channels import base as K
from bridge.channels.base import InboundMessage, StatusUpdate
from bridge.clock import Clock
from bridge.conversation import Conversation
from bridge.outbox import Outbox
from bridge.channels import registry
from bridge.channels.registry import mask_address
from bridge.store import Row, Store, Tx
from bridge.worker import Worker

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_SECONDS = 1.0        # a failed message is tried again this soon (MAX_ATTEMPTS in all)
# Webhooks in crowds go first (Intake._after_crowd): a commit round of CROWD arrivals or more
# keeps the worker waiting for LULL seconds more, but at most CROWD_WAIT before each message.
CROWD = 4
LULL = 0.05
CROWD_WAIT = 5.0           # under a flood that does not ebb, a message every 5 s still
LOG_EVERY = 1.0            # seconds: what the webhooks stored is logged at most a line this often


class _StoredLog:
    """What the webhooks stored, in the log: at most a line a second, however many came.

    A line a message (its masking, and its write to stderr, during which the GIL goes to
    SQLite's thread) took a third of the event loop's time a webhook under load. The first
    commit after a quiet second is logged at once; the commits of the next ``LOG_EVERY``
    seconds are added up and logged together when it ends, and so on while they keep
    coming. A single message is named by channel, kind, the end of its id and the sender's
    masked address (as every message is at DEBUG); more by their number and kinds. A message
    seen before (a service's retry, rare) still has a line of its own.
    """

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._new: list[InboundMessage] = []            # the first new message of the period
        self._kinds: Counter[tuple[str, str]] = Counter()     # by channel and kind
        self._stored = self._commits = 0

    def add(self, items: Sequence[tuple[InboundMessage, datetime]], stored: set[tuple[str, str]]) -> None:
        debug = log.isEnabledFor(logging.DEBUG)
        for m, _ in items:
            if (m.channel, m.external_id) not in stored:
                log.info("intake: %s seen before, ignored", _one(m))
                continue
            self._stored += 1
            self._kinds[m.channel, m.kind] += 1
            if not self._new:
                self._new.append(m)
            if debug:
                log.debug("intake: stored %s", _one(m))
        self._commits += 1
        if self._timer is None:
            self._flush()

    def _flush(self, again: bool = True) -> None:
        self._timer = None
        if not self._commits:
            return                     # a quiet period: the next commit is logged at once
        if self._stored == 1:
            log.info("intake: stored %s", _one(self._new[0]))
        elif self._stored:
            kinds = ", ".join(f"{channel} {kind} {n:,}" for (channel, kind), n in self._kinds.items())
            took = f"in {self._commits:,} transactions" if self._commits > 1 else "in one transaction"
            log.info("intake: stored %s messages %s (%s)", f"{self._stored:,}", took, kinds)
        self._new.clear()
        self._kinds.clear()
        self._stored = self._commits = 0
        if again:
            self._timer = asyncio.get_running_loop().call_later(LOG_EVERY, self._flush)

    def close(self) -> None:
        """Log what is counted now (the bridge is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush(again=False)


def _one(m: InboundMessage) -> str:
    return f"{m.channel} {m.kind} {m.external_id[-12:]} from {mask_address(m.channel, m.address)}"


@dataclass
class _Arrival:
    """One ``accept`` call waiting for its transaction: ``stored`` is done once it committed."""
    messages: Sequence[InboundMessage]
    statuses: Sequence[StatusUpdate]
    cursor: tuple[str, str] | None
    at: datetime
    stored: asyncio.Future[None]


class Intake(Worker):
    name = "intake"

    def __init__(self, store: Store, cases: Cases, outbox: Outbox, clock: Clock,
                 conversation: Conversation) -> None:
        super().__init__()
        self.store = store
        self.cases = cases
        self.conversation = conversation
        self.outbox = outbox
        self.clock = clock
        self._retrying = False
        self._arrivals: list[_Arrival] = []           # accepted, waiting for the next commit
        self._committer: asyncio.Task[None] | None = None
        self._crowd_committing = 0                    # rounds of CROWD or more being committed now
        self._crowded_until = 0.0                     # loop time: until then the worker gives way
        self._stored_log = _StoredLog()

    async def idle_seconds(self) -> float:
        return RETRY_SECONDS if self._retrying else 30.0

    async def stop(self) -> None:
        await super().stop()
        if self._committer is not None:      # what was accepted is committed before the store closes
            await asyncio.wait([self._committer])
        self._stored_log.close()

    # -- the sink --------------------------------------------------------------------
    async def accept(self, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate],
                     cursor: tuple[str, str] | None = None) -> None:
        """Store what arrived; returns once it is committed (the channel then answers 200).

        Group commit: the accepts that arrive together share one transaction. Each call
        queues its arrival and waits for its own future; the first of them starts the
        committer (``_commit_arrivals``), which takes everything queued so far and stores it
        in one transaction; what arrives meanwhile goes in its next round, and so on until
        nothing is queued. A failure fails every caller of that transaction and stores
        nothing of theirs: each channel answers 5xx and its service retries, and the
        messages' UNIQUE (channel, external_id) drops what was stored before. So a crash
        after the 200 loses nothing, and one before it loses nothing either.

        The worker's own transactions are long (dozens of statements, see ``_after_crowd``):
        while webhooks come in crowds it waits, so that they never wait behind it.
        """
        arrival = _Arrival(messages, statuses, cursor, self.clock(), asyncio.get_running_loop().create_future())
        self._arrivals.append(arrival)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_arrivals(), name="intake-commit")
        await arrival.stored

    async def _commit_arrivals(self) -> None:
        """Commit the queued arrivals, a transaction a round, until none is left."""
        loop = asyncio.get_running_loop()
        try:
            while self._arrivals:
                batch, self._arrivals = self._arrivals, []
                crowd = len(batch) >= CROWD
                self._crowd_committing += crowd
                try:
                    items, stored = await self._store_arrivals(batch)
                except BaseException as e:
                    for a in batch:
                        if not a.stored.done():                  # its caller may have gone (cancelled)
                            a.stored.set_exception(e)
                    if not isinstance(e, Exception):             # cancelled: the bridge is stopping
                        raise
                    log.error("intake: storing %d arrivals failed: %s: %s", len(batch), e.__class__.__name__, e)
                    continue
                finally:
                    self._crowd_committing -= crowd
                    if crowd:
                        self._crowded_until = loop.time() + LULL
                for a in batch:
                    if not a.stored.done():
                        a.stored.set_result(None)
                if items:
                    self._stored_log.add(items, stored)
                    self.wake()
                if any(a.statuses for a in batch):
                    self.outbox.wake()
        finally:
            self._committer = None

    async def _store_arrivals(self, batch: Sequence[_Arrival]
                              ) -> tuple[list[tuple[InboundMessage, datetime]], set[tuple[str, str]]]:
        """One transaction for what ``accept`` was given by each arrival of ``batch``: the
        messages (a few statements for all of them, ``Tx.insert_inbound_many``), then each
        cursor and status in arrival order, as one accept after the other would have.
        Returns the messages and the keys of those stored now.
        """
        items = [(m, a.at) for a in batch for m in a.messages]
        async with self.store.transaction() as tx:
            stored = await tx.insert_inbound_many(items) if items else set()
            # The messages' locks in one order (apply_status takes each): two processes
            # given the same statuses never wait for each other crosswise.
            for key in sorted({f"delivery:{st.channel}:{st.external_id}" for a in batch for st in a.statuses}):
                await tx.wait_for(key)
            for a in batch:
                if a.cursor is not None:     # real time: a channel compares it with its service's own
                    await tx.save_cursor(*a.cursor, at=datetime.now(timezone.utc))
                for st in a.statuses:
                    if st.status == "failed":
                        log.warning("intake: delivery %s failed: %s %s", st.external_id[-12:], st.error_code,
                                    st.error_title)
                    # A status before its message's row is kept by the store and applied later.
                    moved = await tx.apply_status(st)
                    if moved:
                        await self.cases.delivery_moved(tx, moved, st)
        return items, stored

    async def cursor(self, channel: str) -> tuple[str, datetime] | None:
        async with self.store.reading() as tx:
            return await tx.get_cursor(channel)

    # -- the worker ----------------------------------------------------------------
    async def run_once(self) -> int:
        """Process the stored messages in order; returns how many were done.

        A message that fails is retried on a later round; the citizen's later messages
        wait behind it (their order matters), everyone else's go on.
        """
        async with self.store.reading() as tx:
            pending = await tx.pending_inbound()
        done = 0
        self._retrying = False
        blocked: set[tuple[str, str]] = set()
        for inbound_id, msg in pending:
            if (msg.channel, msg.address) in blocked:
                continue
            await self._after_crowd()
            try:
                async with self.store.transaction() as tx:
                    # Several processes on one database: a citizen's messages are processed by
                    # one at a time, in order, and each once.
                    if not await tx.claim(f"inbound:{msg.channel}:{msg.address}"):
                        blocked.add((msg.channel, msg.address))     # another process has one in hand
                        continue
                    if self.store.shared and await tx.inbound_state(inbound_id) != "new":
                        continue                                    # another process did it
                    await self._process(tx, inbound_id, msg)
                done += 1
            except Exception as e:
                log.exception("intake: inbound %d (%s from %s) failed", inbound_id, msg.kind,
                              mask_address(msg.channel, msg.address))
                blocked.add((msg.channel, msg.address))
                self._retrying = await self._failed(inbound_id, msg, e) or self._retrying
            self.outbox.wake()
        return done

    async def _after_crowd(self) -> None:
        """While webhooks come in crowds, let them have the database: wait for a lull.

        A message's transaction holds the write lock for dozens of statements, each a hop
        to the database's thread, and under load each hop waits for a turn of the event
        loop and for the GIL: every webhook arriving meanwhile would wait for all of it. So
        while the committer's rounds are crowds (``CROWD`` arrivals or more, as under a
        flood) and for ``LULL`` seconds after each, the worker waits; but never more than
        ``CROWD_WAIT`` a message, so it keeps going, slowly, under any flood. Webhooks
        that come one at a time are no crowd: their messages are processed at once.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + CROWD_WAIT
        while self._crowded() and (now := loop.time()) < give_up:
            await asyncio.sleep(min(max(self._crowded_until - now, 0.005), give_up - now))

    def _crowded(self) -> bool:
        return self._crowd_committing > 0 or asyncio.get_running_loop().time() < self._crowded_until

    async def _failed(self, inbound_id: int, msg: InboundMessage, error: Exception) -> bool:
        """Count the failure; returns whether the message will be tried again."""
        async with self.store.transaction() as tx:
            attempts = await tx.inbound_attempt_failed(inbound_id, f"{error.__class__.__name__}: {error}",
                                                       max_attempts=MAX_ATTEMPTS)
            if attempts < MAX_ATTEMPTS:
                return True
            # Set aside: the admin room hears of it once, with what staff can find it by.
            citizen = await tx.citizen_by_address(msg.channel, msg.address)
            case = await tx.open_case_of(citizen["id"]) if citizen else None
            await self.outbox.notice(tx, "admin", msgs.inbound_set_aside(
                case["ticket"] if case else None, mask_address(msg.channel, msg.address), msg.kind, attempts).notice())
        log.error("intake: inbound %d set aside after %d attempts", inbound_id, attempts)
        return False

    async def _process(self, tx: Tx, inbound_id: int, msg: InboundMessage) -> None:
        if msg.kind == K.SYSTEM:
            # A changed number or user id: the same person keeps their citizen and cases.
            if msg.new_address:
                await tx.relink_citizen(msg.channel, msg.address, address=msg.new_address, user_id=msg.user_id)
            if msg.previous_user_id:
                await tx.relink_citizen(msg.channel, msg.previous_user_id, user_id=msg.user_id)
            await tx.finish_inbound(inbound_id, case_id=None, state="ignored")
            return
        citizen_id = await tx.upsert_citizen(msg.channel, msg.address, name=msg.name, user_id=msg.user_id,
                                             username=msg.username, at=msg.at)
        citizen = await tx.get_citizen(citizen_id)
        assert citizen is not None
        case_id: int | None = None
        if msg.kind in K.CASE_KINDS:
            if (channel := registry.get(msg.channel)) is not None and channel.marks_read:
                await self.outbox.mark_read(tx, msg.channel, citizen["address"], msg.external_id)
            case_id = await self.conversation.handle(tx, citizen, msg)
        elif (case := await self._case_about(tx, citizen, msg)) is not None:
            # A reaction, an edit, a deleted or unsupported message: staff should see it,
            # but it answers no question (only what the citizen wrote or sent does).
            await self.cases.add_citizen_message(tx, case, citizen, msg, answers=False)
            case_id = case["id"]
        elif msg.kind == K.UNSUPPORTED:
            await self.outbox.citizen_text(tx, None, msg.channel, citizen["address"],
                                           self.cases.texts.render("unsupported"), purpose="notice")
        await tx.finish_inbound(inbound_id, case_id=case_id, state="done" if case_id else "ignored")

    async def _case_about(self, tx: Tx, citizen: Row, msg: InboundMessage) -> Row | None:
        """The open case a reaction, edit or deletion is about: its message's, else the newest."""
        if msg.target_id:
            case_id = await tx.case_of_message(msg.channel, msg.target_id)
            case = await tx.get_case(case_id) if case_id else None
            if case is not None and case["state"] != "closed":
                return case
        return await tx.open_case_of(citizen["id"])
