"""The case service: open a case, add to it, record what happened.

Each public method runs inside the caller's transaction and writes the case change,
its audit row and its outbox effects together, so they all happen or none does.
"""
from __future__ import annotations

from datetime import timedelta

from bridge import messages as msgs
from bridge.channels.base import InboundMessage
from bridge.clock import Clock
from bridge.messages import DISPLAY_TZ
from bridge.outbox import Outbox
from bridge.store import Row, Tx
from bridge.workflow import Profile

BOT = "bot"
CITIZEN = "citizen"


def ticket_number(year: int, seq: int) -> str:
    return f"ADU-{year}-{seq:06d}"


class Cases:
    def __init__(self, profile: Profile, outbox: Outbox, clock: Clock) -> None:
        self.profile = profile
        self.outbox = outbox
        self.clock = clock

    async def open(self, tx: Tx, citizen: Row, msg: InboundMessage) -> Row:
        """A new case from a citizen's first message: ticket, card, and the reply."""
        now = self.clock()
        year = now.astimezone(DISPLAY_TZ).year
        ticket = ticket_number(year, await tx.next_in_sequence(f"ticket/{year}"))
        step = self.profile.first_staff_step
        due_at = now + timedelta(minutes=self.profile.total_minutes)
        case_id = await tx.create_case(
            ticket=ticket, citizen_id=citizen["id"], channel=msg.channel, summary=msg.text[:500],
            step=step.id, holder_role=step.role, opened_at=now, due_at=due_at,
            step_due_at=now + timedelta(minutes=step.minutes))
        await tx.add_event(case_id, at=now, actor=BOT, kind="opened", to_step=step.id,
                           note=f"Pengaduan diterima lewat {msgs.CHANNEL_NAMES.get(msg.channel, msg.channel)}",
                           data={"inbound": msg.external_id})
        card = msgs.case_card(ticket=ticket, citizen_name=citizen["name"], channel=msg.channel,
                              address=citizen["address"], step_name=step.name, role=step.role,
                              opened_at=now, due_at=due_at, message=msg)
        await self.outbox.card(tx, case_id, step.role, card.content())
        await self._attachments(tx, case_id, step.role, msg)
        await self.outbox.citizen_text(
            tx, case_id, msg.channel, citizen["address"],
            msgs.ticket_reply(ticket, self.profile.total_minutes, citizen["name"]),
            reply_to=msg.external_id)
        case = await tx.get_case(case_id)
        assert case is not None
        return case

    async def add_citizen_message(self, tx: Tx, case: Row, citizen: Row, msg: InboundMessage) -> None:
        """A later message of the citizen: into the card's thread, and the audit trail."""
        room = case["holder_role"]
        await tx.add_event(case["id"], at=self.clock(), actor=CITIZEN, kind="citizen_message",
                           note=msg.text[:1000] or None,
                           data={"inbound": msg.external_id, "kind": msg.kind})
        if msg.attachments:
            # An image or document carries its caption, as the citizen sent it.
            await self._attachments(tx, case["id"], room, msg, caption=msg.text)
        else:
            await self.outbox.thread(tx, case["id"], room,
                                     msgs.citizen_followup(msg, citizen["name"]).content())

    async def _attachments(self, tx: Tx, case_id: int, room: str, msg: InboundMessage,
                           caption: str = "") -> None:
        for i, att in enumerate(msg.attachments):
            await self.outbox.attachment(tx, case_id, room, msg.channel, att,
                                         caption=caption if i == 0 else "")
