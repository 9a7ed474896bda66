"""From stored inbound messages to cases, one message at a time, in arrival order.

``accept`` is the channels' sink: it stores what arrived (deduplicated) and returns, so
the channel can answer 200. The worker then processes the stored rows in order; each
row is handled in one transaction with everything it causes, so a crash at any point
leaves it either untouched (and processed after the restart) or fully done. A row whose
processing keeps failing is set aside after ``MAX_ATTEMPTS`` (state 'failed', told to
the admin room once), so one bad message never stops the others.

What a citizen wrote or sent goes to the conversation (bridge/conversation.py): the
complaint format, questions, status, follow-ups to open cases, the rating.
"""
from __future__ import annotations

import logging
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

    async def idle_seconds(self) -> float:
        return RETRY_SECONDS if self._retrying else 30.0

    # -- the sink --------------------------------------------------------------------
    async def accept(self, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate],
                     cursor: tuple[str, str] | None = None) -> None:
        now = self.clock()
        async with self.store.transaction() as tx:
            if cursor is not None:       # real time: a channel compares it with its service's own
                await tx.save_cursor(*cursor, at=datetime.now(timezone.utc))
            for m in messages:
                if not await tx.insert_inbound(m, now):
                    log.info("intake: %s %s seen before, ignored", m.channel, m.external_id[-12:])
            for st in statuses:
                if st.status == "failed":
                    log.warning("intake: delivery %s failed: %s %s", st.external_id[-12:], st.error_code,
                                st.error_title)
                # A status before its message's row is kept by the store and applied later.
                moved = await tx.apply_status(st)
                if moved:
                    await self.cases.delivery_moved(tx, moved, st)
        if messages:
            self.wake()
        if statuses:
            self.outbox.wake()

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
            try:
                async with self.store.transaction() as tx:
                    await self._process(tx, inbound_id, msg)
                done += 1
            except Exception as e:
                log.exception("intake: inbound %d (%s from %s) failed", inbound_id, msg.kind,
                              mask_address(msg.channel, msg.address))
                blocked.add((msg.channel, msg.address))
                self._retrying = await self._failed(inbound_id, msg, e) or self._retrying
            self.outbox.wake()
        return done

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
