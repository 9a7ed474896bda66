"""From stored inbound messages to cases, one message at a time, in arrival order.

``accept`` is the channels' sink: it stores what arrived (deduplicated) and returns, so
the channel can answer 200. The worker then processes the stored rows in order; each
row is handled in one transaction with everything it causes, so a crash at any point
leaves it either untouched (and processed after the restart) or fully done.

This is the simple intake: the first message opens a case. The complaint format and the
guided questions come with the citizen conversation.
"""
from __future__ import annotations

import logging
import re
from typing import Sequence

from bridge import messages as msgs
from bridge.cases import Cases
from bridge.channels import base as K
from bridge.channels.base import InboundMessage, StatusUpdate
from bridge.clock import Clock
from bridge.outbox import Outbox
from bridge.privacy import mask_phone
from bridge.store import Row, Store, Tx
from bridge.worker import Worker

log = logging.getLogger(__name__)


class Intake(Worker):
    name = "intake"

    def __init__(self, store: Store, cases: Cases, outbox: Outbox, clock: Clock) -> None:
        super().__init__()
        self.store = store
        self.cases = cases
        self.outbox = outbox
        self.clock = clock

    # -- the sink --------------------------------------------------------------------
    async def accept(self, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate]) -> None:
        now = self.clock()
        async with self.store.transaction() as tx:
            for m in messages:
                if not await tx.insert_inbound(m, now):
                    log.info("intake: %s %s seen before, ignored", m.channel, m.external_id[-12:])
            for st in statuses:
                moved = await tx.apply_status(st)
                if moved:
                    await self._status_moved(tx, moved, st)
        if messages:
            self.wake()
        if statuses:
            self.outbox.wake()

    async def _status_moved(self, tx: Tx, delivery: Row, st: StatusUpdate) -> None:
        if st.status == "failed":
            log.warning("intake: delivery %s failed: %s %s", st.external_id[-12:], st.error_code, st.error_title)
        if delivery["purpose"] != "answer" or not delivery["case_id"]:
            return
        case = await tx.get_case(delivery["case_id"])
        assert case is not None
        if st.status in ("delivered", "read") and case["state"] != "closed":
            await self.cases.answer_delivered(tx, case, st.status)
        elif st.status == "failed":
            await self.cases.answer_failed(tx, case, f"{st.error_code} {st.error_title or ''}".strip())
        else:
            await self.outbox.thread(tx, case["id"], self.cases.holder_room(case),
                                     msgs.delivery_status(case["ticket"], st.status).notice())

    # -- the worker ----------------------------------------------------------------
    async def run_once(self) -> int:
        async with self.store.reading() as tx:
            pending = await tx.pending_inbound()
        for inbound_id, msg in pending:
            async with self.store.transaction() as tx:
                await self._process(tx, inbound_id, msg)
            self.outbox.wake()
        return len(pending)

    async def _process(self, tx: Tx, inbound_id: int, msg: InboundMessage) -> None:
        if msg.kind == K.SYSTEM:
            await tx.finish_inbound(inbound_id, case_id=None, state="ignored")
            return
        citizen_id = await tx.upsert_citizen(msg.channel, msg.address, name=msg.name,
                                             user_id=msg.user_id, at=msg.at)
        citizen = await tx.get_citizen(citizen_id)
        assert citizen is not None
        case = await tx.open_case_of(citizen_id)
        if msg.kind in K.CASE_KINDS:
            await self.outbox.mark_read(tx, msg.channel, msg.address, msg.external_id)
            if case is None:
                case = await self.cases.open(tx, citizen, msg, category=category_of(msg.text))
                log.info("intake: %s opened for %s", case["ticket"], mask_phone(msg.address))
            else:
                await self.cases.add_citizen_message(tx, case, citizen, msg)
        elif case is not None:
            # A reaction, an edit, a deleted or unsupported message: staff should see it.
            await self.cases.add_citizen_message(tx, case, citizen, msg)
        elif msg.kind == K.UNSUPPORTED:
            await self.outbox.citizen_text(tx, None, msg.channel, msg.address, msgs.UNSUPPORTED_REPLY)
        await tx.finish_inbound(inbound_id, case_id=case["id"] if case else None,
                                state="done" if case else "ignored")


CATEGORY_LINE = re.compile(r"^\s*layanan\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def category_of(text: str) -> str | None:
    """The service a complaint is about, from a "Layanan: ..." line of the complaint format."""
    m = CATEGORY_LINE.search(text)
    return m.group(1)[:60] if m else None
