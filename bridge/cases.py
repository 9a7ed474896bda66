"""The case service: open a case, add to it, move it through the SOP, record everything.

Each public method runs inside the caller's transaction and writes the case change, its
audit row (case_events) and its outbox effects together, so they all happen or none does.
Whether an action is allowed is the workflow engine's call (``workflow.decide``); this
module carries out what it decided.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

from bridge import messages as msgs
from bridge.channels import registry
from bridge.channels.base import InboundMessage, StatusUpdate
from bridge.clock import Clock
from bridge.outbox import HOLDABLE, WINDOW_CLOSED, Outbox
from bridge.privacy import mask_nik
from bridge.store import Row, Tx
from bridge.texts import Texts
from bridge.workflow import (OUTCOME_ANSWERED, CaseView, Decision, Profile, Step, agenda_number,
                             allowed_actions)
from bridge.worktime import SlaPolicy

BOT = "bot"
CITIZEN = "citizen"
LINK_DAYS = 3          # a new complaint this soon after an answer is shown as related


def ticket_number(year: int, seq: int) -> str:
    return f"ADU-{year}-{seq:06d}"


@dataclass(frozen=True)
class Unit:
    """A unit of the office ("kasi/kabid yang membidangi") with its own rooms."""

    name: str
    categories: tuple[str, ...]


# Why the bot writes to the citizen (deliveries.purpose): a failure names it to staff.
PURPOSES = {"ticket": "balasan nomor tiket", "question": "pertanyaan (!tanya)",
            "rejection": "pemberitahuan penolakan", "answer": "jawaban", "notice": "pesan"}


@dataclass(frozen=True)
class Complaint:
    """A complaint as the conversation collected it (the format's fields and the evidence)."""

    text: str
    name: str | None = None
    nik: str | None = None
    nik_problem: str | None = None      # why there is no checked NIK: flagged on the card
    service: str | None = None
    confidential: bool = False
    evidence: tuple[InboundMessage, ...] = ()


def view(case: Row) -> CaseView:
    return CaseView(step=case["step"], state=case["state"], has_draft=bool(case["answer_draft"]),
                    approved=bool(case["approved_at"]), drafted_by=case["drafted_by"])


class Cases:
    def __init__(self, profile: Profile, outbox: Outbox, clock: Clock, policy: SlaPolicy,
                 units: tuple[Unit, ...] = (), texts: Texts | None = None) -> None:
        self.texts = texts or Texts.load()
        # Called when the citizen has the answer (the conversation asks for a rating).
        self.on_answered: Callable[[Tx, Row], Awaitable[None]] | None = None
        self.profile = profile
        self.outbox = outbox
        self.clock = clock
        self.policy = policy
        self.calendar = policy.calendar
        self.units = units

    # -- where a case lives ----------------------------------------------------------
    def room_for(self, role: str, unit: str | None) -> str:
        """The room key of a role for a case: a unit's own kasi/kabid room, or the role's."""
        return f"{role}:{unit}" if unit and role in ("kasi", "kabid") else role

    def unit_for(self, category: str | None) -> str | None:
        if not category:
            return None
        wanted = category.strip().casefold()
        for unit in self.units:
            if any(c.casefold() == wanted for c in unit.categories):
                return unit.name
        return None

    def holder_room(self, case: Row) -> str:
        return self.room_for(case["holder_role"], case["unit"])

    def _year(self, now: datetime) -> int:
        return now.astimezone(self.calendar.tz).year

    # -- citizen side ----------------------------------------------------------------
    async def open(self, tx: Tx, citizen: Row, msg: InboundMessage, *, category: str | None = None,
                   complaint: Complaint | None = None) -> Row:
        """A new case from a complaint (``msg`` is the message that completed it): ticket,
        card, the evidence in its thread, and the reply."""
        complaint = complaint or Complaint(text=msg.text, evidence=(msg,) if msg.attachments else ())
        now = self.clock()
        ticket = ticket_number(self._year(now), await tx.next_in_sequence(f"ticket/{self._year(now)}"))
        step = self.profile.first_staff_step
        warn_at, due_at = self.policy.deadlines(now, self.profile.total_minutes)
        linked = await tx.last_answered_case_of(citizen["id"], now - timedelta(days=LINK_DAYS))
        case_id = await tx.create_case(
            ticket=ticket, citizen_id=citizen["id"], channel=msg.channel, summary=complaint.text[:4000],
            step=step.id, holder_role=step.role, opened_at=now, due_at=due_at, step_due_at=None,
            category=category, linked_case_id=linked["id"] if linked else None)
        await tx.update_case(case_id, warn_at=warn_at, unit=self.unit_for(category), citizen_name=complaint.name,
                             nik=complaint.nik, nik_problem=complaint.nik_problem,
                             confidential=int(complaint.confidential), **self._enter(step, now))
        await tx.link_inbound(msg.channel, [m.external_id for m in (*complaint.evidence, msg)], case_id)
        await self._schedule(tx, case_id)
        await tx.add_event(case_id, at=now, actor=BOT, kind="opened", to_step=step.id,
                           note=f"Pengaduan diterima lewat {registry.title(msg.channel)}",
                           data={"inbound": msg.external_id, **({"linked": linked["ticket"]} if linked else {})})
        case = await tx.get_case(case_id)
        assert case is not None
        room = self.holder_room(case)
        await self.outbox.card(tx, case_id, room, (await self._card(tx, case, citizen, room)).content(), ticket)
        for evidence in complaint.evidence:
            await self._attachments(tx, case_id, room, evidence, caption=evidence.text)
        await self._reactions(tx, case, room)
        opens = None if self.calendar.is_open(now) else self.calendar.next_open(now)
        text = self.texts.render("ticket_reply", ticket=ticket, name=msgs.greeting_name(complaint.name or citizen["name"]),
                                 time=msgs.duration(self.profile.total_minutes), due=msgs.local_day_time(due_at))
        if opens is not None:
            text += "\n" + self.texts.render("ticket_reply_after_hours", opens=msgs.local_day_time(opens))
        await self.outbox.citizen_text(tx, case_id, msg.channel, citizen["address"], text,
                                       reply_to=msg.external_id, purpose="ticket", ticket=ticket)
        return case

    async def add_citizen_message(self, tx: Tx, case: Row, citizen: Row, msg: InboundMessage,
                                  *, answers: bool = True, note: str | None = None) -> None:
        """A later message of the citizen: into the card's thread and the audit trail.

        While the case waits for the citizen (``!tanya``), a message that ``answers`` (one
        the citizen wrote or sent, not a reaction, an edit or a deletion) is the answer:
        the case returns to the step it was in.
        """
        room = self.holder_room(case)
        now = self.clock()
        await tx.add_event(case["id"], at=now, actor=CITIZEN, kind="citizen_message",
                           note=msg.text[:2000] or None,
                           data={"inbound": msg.external_id, "kind": msg.kind})
        if msg.attachments:
            # An image or document carries its caption, as the citizen sent it.
            await self._attachments(tx, case["id"], room, msg, caption=msg.text)
        else:
            who = "Pemohon" if case["confidential"] and not room.startswith("admin") else citizen["name"]
            await self.outbox.thread(tx, case["id"], room, msgs.citizen_followup(msg, who, note).content())
        if case["state"] == "waiting" and answers:
            await self._resume(tx, case, CITIZEN, "citizen_answered", None,
                               msgs.back_from_waiting(self.profile.step(case["step"])))

    async def _resume(self, tx: Tx, case: Row, actor: str, kind: str, note: str | None,
                      notice: msgs.Rich) -> None:
        """The wait for the citizen ends: the clocks run again with the working time they had left."""
        now = self.clock()
        await tx.update_case(case["id"], state="open", waiting_since=None,
                             **self._resumed(case, case["waiting_since"], now))
        await self._schedule(tx, case["id"])
        await tx.add_event(case["id"], at=now, actor=actor, kind=kind, from_step=case["step"],
                           to_step=case["step"], note=note)
        room = self.holder_room(case)
        await self.outbox.thread(tx, case["id"], room, notice.notice())
        await self._reactions(tx, await self._reload(tx, case), room)

    async def _attachments(self, tx: Tx, case_id: int, room: str, msg: InboundMessage,
                           caption: str = "") -> None:
        limit = too_big_limit(msg.channel)
        for i, att in enumerate(msg.attachments):
            if limit and att.size and att.size > limit:
                # Its service will not hand it over: staff hear why (the citizen was told at once).
                await self.outbox.thread(tx, case_id, room, msgs.attachment_too_big(
                    msgs.describe_attachments((att,))[0], att.size, limit, registry.title(msg.channel)).notice())
                continue
            await self.outbox.attachment(tx, case_id, room, msg.channel, att,
                                         caption=mask_nik(caption) if i == 0 else "")

    # -- staff side ------------------------------------------------------------------
    async def act(self, tx: Tx, case: Row, actor: str, role: str, d: Decision, text: str = "") -> Row:
        """Carry out an allowed decision: the case change, its audit row, its effects."""
        assert d.ok
        now = self.clock()
        old_room = self.holder_room(case)
        fields: dict[str, Any] = {}
        note = text or None
        data: dict[str, Any] = {}
        if d.action == "claim":
            fields["assignee"] = actor
        elif d.action == "answer":
            fields.update(answer_draft=text, drafted_by=actor)
        elif d.action == "ask":
            fields.update(state="waiting", waiting_since=now)
        if d.withdraws:
            # The paraf is taken back; its agenda number is void and never given again.
            fields.update(approved_by=None, approved_at=None, approved_role=None, agenda_number=None)
            if case["agenda_number"]:
                data["void_agenda_number"] = case["agenda_number"]
        if d.approves:
            fields.update(approved_by=actor, approved_at=now, approved_role=role)
            if self.profile.agenda_format:
                year = self._year(now)
                seq = await tx.next_in_sequence(f"agenda/{year}")
                fields["agenda_number"] = data["agenda_number"] = agenda_number(self.profile, seq, year)
        to_step = self.profile.step(d.to_step)
        if d.moves:
            fields.update(self._enter(to_step, now))
            fields["assignee"] = actor if d.action == "claim" else None
        if d.closes:
            fields.update(state="closed", closed_at=now, outcome=d.closes)
        if fields:
            await tx.update_case(case["id"], **fields)
            await self._schedule(tx, case["id"])
        await tx.add_event(case["id"], at=now, actor=actor, role=role, kind=d.action,
                           from_step=d.from_step, to_step=d.to_step, note=note, data=data or None)
        new = await self._reload(tx, case)
        await self._effects(tx, case, new, old_room, actor, role, d, text)
        return new

    def _enter(self, step: Step, now: datetime) -> dict[str, Any]:
        """The fields of a case entering ``step`` now: its holder and its fresh step clock."""
        warn_at, due_at = self.policy.deadlines(now, step.minutes) if step.minutes else (None, None)
        return {"step": step.id, "holder_role": step.role if step.role != CITIZEN else "admin",
                "step_entered_at": now, "step_warn_at": warn_at, "step_due_at": due_at, "step_alerts": 0}

    def _resumed(self, case: Row, since: datetime, now: datetime) -> dict[str, Any]:
        """The clocks after waiting for the citizen: the working time left is kept, not spent."""
        out: dict[str, Any] = {}
        for key in ("step_warn_at", "step_due_at", "warn_at", "due_at"):
            if case[key]:
                left = self.calendar.between(since, case[key])
                if left > 0:
                    out[key] = self.calendar.add(now, left)
        return out

    async def _schedule(self, tx: Tx, case_id: int) -> None:
        """Keep next_alert_at (what the SLA check's index reads) true to the case."""
        case = await tx.get_case(case_id)
        assert case is not None
        await tx.update_case(case_id, next_alert_at=next_alert_at(self.policy, case))

    async def _effects(self, tx: Tx, old: Row, new: Row, old_room: str, actor: str, role: str,
                       d: Decision, text: str) -> None:
        citizen = await tx.get_citizen(new["citizen_id"])
        assert citizen is not None
        step = self.profile.step(new["step"])
        await self.outbox.thread(tx, new["id"], old_room,
                                 msgs.confirmation(d.action, actor, role, step, new, text,
                                                   old["agenda_number"] if d.withdraws else None).notice())
        said = self.to_citizen(d.action, new, text)
        if said is not None:
            purpose = {"reject": "rejection", "ask": "question", "send": "answer"}[d.action]
            await self.outbox.citizen_text(tx, new["id"], new["channel"], citizen["address"], said,
                                           purpose=purpose, ticket=new["ticket"])
        new_room = self.holder_room(new)
        if new_room != old_room and new["state"] != "closed":
            # Escalation (or a return): a new card where the case now lives, the citizen's
            # files and messages in its thread (staff there are not in the old room), and a
            # pointer here.
            card = await self._card(tx, new, citizen, new_room, new_card=True)
            await self.outbox.card(tx, new["id"], new_room, card.content(), new["ticket"])
            await self.outbox.evidence(tx, new["id"], new_room)
            await self.outbox.pointer(tx, new["id"], old_room, new_room, step.name)
            await self._reactions(tx, new, old_room, keys=())
            await self.outbox.cards_update(tx, new["id"])     # every earlier card: where it is now
        elif new["state"] == "closed":
            await self.outbox.cards_update(tx, new["id"])     # every card: how it ended
        elif d.moves or d.action == "answer" or new["state"] != old["state"]:
            # Same room: the card itself shows the new step, deadline and draft.
            live = await tx.get_card(new["id"], new_room)
            card = await self._card(tx, new, citizen, new_room, event_id=live["event_id"] if live else None)
            await self.outbox.card_edit(tx, new["id"], new_room, card.content())
        await self._reactions(tx, new, new_room)

    async def _reactions(self, tx: Tx, case: Row, room: str, keys: tuple[str, ...] | None = None) -> None:
        """Make the bot's reactions on the card show what staff can do now."""
        if keys is None:
            keys = allowed_actions(self.profile, case["step"]) if case["state"] == "open" else ()
        await self.outbox.reactions(tx, case["id"], room, [k for k in keys if k in msgs.ACTION_REACTIONS])

    async def _reload(self, tx: Tx, case: Row) -> Row:
        row = await tx.get_case(case["id"])
        assert row is not None
        return row

    async def _card(self, tx: Tx, case: Row, citizen: Row, room: str,
                    *, new_card: bool = False, event_id: str | None = None,
                    elsewhere: tuple[str, str | None] | None = None) -> msgs.Rich:
        """A card of the case in ``room``: a new one, or (``event_id``) one posted before."""
        step = self.profile.step(case["step"])
        linked = await tx.get_case(case["linked_case_id"]) if case["linked_case_id"] else None
        linked_posts = await tx.card_posts(linked["id"]) if linked else []
        posts = await tx.card_posts(case["id"])
        files = [a for _, m in await tx.case_messages(case["id"]) for a in m.attachments]
        return msgs.case_card(
            case=case, citizen=citizen, step=step, text=case["summary"],
            attachments=msgs.describe_attachments(files),
            room_role=room.partition(":")[0],
            linked=(linked["ticket"], _link(linked_posts[-1]) if linked_posts else None) if linked else None,
            history=await tx.case_events(case["id"]), elsewhere=elsewhere,
            escalated=bool(posts) and (new_card or (event_id is not None and posts[0]["event_id"] != event_id)),
            step_names={s.id: s.name for s in self.profile.steps})

    async def earlier_card(self, tx: Tx, case_id: int, post: Row) -> dict[str, Any] | None:
        """What an earlier card of a case says now (``post``: its card_posts row): where the
        case is, with a link to its live card, or how it ended. None: it is the live card."""
        case = await tx.get_case(case_id)
        assert case is not None
        live = await tx.get_card(case_id, self.holder_room(case)) if case["state"] != "closed" else None
        if live is not None and live["event_id"] == post["event_id"]:
            return None
        citizen = await tx.get_citizen(case["citizen_id"])
        assert citizen is not None
        elsewhere = None
        if live is not None:
            step = self.profile.step(case["step"])
            role = msgs.ROLE_NAMES.get(case["holder_role"], case["holder_role"])
            elsewhere = (f"di ruang {role}, langkah {step.name}", _link(live))
        card = await self._card(tx, case, citizen, post["room_key"], event_id=post["event_id"],
                                elsewhere=elsewhere)
        return card.content()

    # -- what became of our messages to the citizen ----------------------------------
    async def delivery_moved(self, tx: Tx, delivery: Row, st: StatusUpdate) -> None:
        """A delivery status moved one of our messages forward: what it means for its case."""
        if not delivery["case_id"]:
            return
        case = await tx.get_case(delivery["case_id"])
        assert case is not None
        purpose = delivery["purpose"] or "notice"
        error = f"{st.error_code or ''} {st.error_title or ''}".strip()
        if st.status == "failed" and st.error_code == WINDOW_CLOSED and purpose in HOLDABLE and delivery["outbox_id"]:
            # Outside the 24-hour window after all: it waits for the citizen, as held messages do.
            payload = await tx.outbox_payload(delivery["outbox_id"])
            if payload is not None:
                await self.outbox.citizen_text(tx, case["id"], **{**payload, "window_closed": True})
                return
        if purpose == "answer":
            if st.status in ("delivered", "read"):
                await self.answer_delivered(tx, case, st.status)
            elif st.status == "failed":
                await self.answer_failed(tx, case, error)
            elif case["state"] != "closed":
                await self.outbox.thread(tx, case["id"], self.holder_room(case),
                                         msgs.delivery_status(case["ticket"], st.status).notice())
        elif st.status == "failed":
            await self.message_failed(tx, case, purpose, error)

    async def message_held(self, tx: Tx, case_id: int, purpose: str, template: str) -> None:
        """A message to the citizen waits for their window: the thread says so; a waiting
        answer stops the office's clocks (its part is done once the template went out)."""
        case = await tx.get_case(case_id)
        assert case is not None
        if purpose == "answer":
            await self.answer_taken(tx, case_id)
        await tx.add_event(case_id, at=self.clock(), actor=BOT, kind="held", from_step=case["step"],
                           to_step=case["step"], note=PURPOSES.get(purpose, purpose), data={"template": template})
        await self.outbox.thread(tx, case_id, self.holder_room(case),
                                 msgs.held(case["ticket"], PURPOSES.get(purpose, purpose), template).notice())

    async def answer_taken(self, tx: Tx, case_id: int) -> None:
        """The channel took the answer: the office's part is done, so the SLA clocks stop.

        The case closes when the citizen's phone confirms delivery, or when the citizen
        writes again (``answer_unconfirmed``): an unconfirmed delivery never blocks them.
        """
        await tx.update_case(case_id, answer_sent_at=self.clock(), next_alert_at=None)
        case = await tx.get_case(case_id)
        assert case is not None
        channel = registry.get(case["channel"])
        if channel is not None and not channel.reports_delivery:
            # No receipts exist on this channel: what it accepted is as delivered as it gets.
            await self.answer_delivered(tx, case, "accepted")

    async def answer_delivered(self, tx: Tx, case: Row, status: str) -> None:
        """The citizen has the answer: the case is done."""
        if case["state"] == "closed":
            return
        final = registry.title(case["channel"]) if status == "accepted" else None
        await self._close_answered(tx, case, "answer_delivered", status,
                                   msgs.delivery_status(case["ticket"], status, final=final))
        if self.on_answered is not None:
            await self.on_answered(tx, case)

    async def answer_unconfirmed(self, tx: Tx, case: Row) -> None:
        """The citizen writes again after the channel took the answer, with no receipt yet:
        the answer counts as received, and what they write now is a new complaint."""
        await self._close_answered(tx, case, "answer_unconfirmed", None, msgs.answer_unconfirmed(case["ticket"]))

    async def _close_answered(self, tx: Tx, case: Row, kind: str, note: str | None, notice: msgs.Rich) -> None:
        now = self.clock()
        await tx.update_case(case["id"], state="closed", closed_at=now, answered_at=now,
                             outcome=OUTCOME_ANSWERED, next_alert_at=None)
        await tx.add_event(case["id"], at=now, actor=CITIZEN, kind=kind,
                           from_step=case["step"], to_step=case["step"], note=note)
        room = self.holder_room(case)
        await self.outbox.thread(tx, case["id"], room, notice.notice())
        await self._reactions(tx, case, room, keys=())
        await self.outbox.cards_update(tx, case["id"])

    async def answer_awaits_receipt(self, tx: Tx, case: Row) -> bool:
        """The channel took the answer itself (not only a template saying it waits), and
        only the citizen's receipt is missing."""
        if case["state"] != "open" or case["step"] != self.profile.final_step.id:
            return False
        taken = await tx.answer_delivery(case["id"])
        return (taken is not None and taken["status"] != "failed"
                and not await tx.answer_on_its_way(case["id"]))

    def to_citizen(self, action: str, case: Row, text: str) -> str | None:
        """What a staff action says to the citizen (None: nothing), in the office's texts."""
        if action == "reject":
            return self.texts.render("rejected", ticket=case["ticket"], reason=text)
        if action == "ask":
            return self.texts.render("question", ticket=case["ticket"], question=text)
        if action == "send":
            answer = case["answer_draft"] or ""
            agenda = self.texts.render("answer_agenda", agenda=case["agenda_number"]) if case["agenda_number"] else ""
            return self.texts.render("answer", ticket=case["ticket"], answer=answer, agenda=agenda)
        return None

    def too_long(self, action: str, case: Row, text: str) -> str | None:
        """Why staff text would not fit one message to the citizen with what the bot adds
        (for an answer: the longest agenda number), or None when it fits."""
        if action == "answer":
            agenda = self.profile.agenda_format.format(seq=999999, year=9999) if self.profile.agenda_format else None
            said = self.to_citizen("send", {**case, "answer_draft": text, "agenda_number": agenda}, text)
        else:
            said = self.to_citizen(action, case, text)
        if said is None or len(said) <= msgs.CITIZEN_TEXT_MAX:
            return None
        room = msgs.CITIZEN_TEXT_MAX - (len(said) - len(text))
        return msgs.too_long(len(text), room)

    async def message_failed(self, tx: Tx, case: Row, purpose: str, error: str) -> None:
        """A message to the citizen other than the answer failed: staff see it in the thread.

        A question that never reached the citizen cannot be answered: the wait ends and
        the clocks run again.
        """
        what = PURPOSES.get(purpose, purpose)
        notice = msgs.delivery_failed(case["ticket"], what, error)
        if purpose == "question" and case["state"] == "waiting":
            await self._resume(tx, case, BOT, "question_failed", error, notice)
        else:
            await self.outbox.thread(tx, case["id"], self.holder_room(case), notice.notice())

    async def answer_failed(self, tx: Tx, case: Row, error: str) -> None:
        """The answer did not reach the citizen: back to the step that sent it."""
        if case["state"] == "closed":
            return
        events = await tx.case_events(case["id"])
        sent = next((e for e in reversed(events) if e["kind"] == "send"), None)
        back = self.profile.step(sent["from_step"]) if sent else self.profile.step(case["step"])
        now = self.clock()
        await tx.update_case(case["id"], answer_sent_at=None, **self._enter(back, now))
        await self._schedule(tx, case["id"])
        await tx.add_event(case["id"], at=now, actor=BOT, kind="answer_failed",
                           from_step=case["step"], to_step=back.id, note=error)
        new = await self._reload(tx, case)
        room = self.holder_room(new)
        await self.outbox.thread(tx, case["id"], room,
                                 msgs.delivery_status(case["ticket"], "failed", error).notice())
        await self._reactions(tx, new, room)


def too_big_limit(channel: str) -> int | None:
    """The largest file the channel's service hands over (None: no limit of its own)."""
    cls = registry.get(channel)
    return cls.max_download_bytes if cls else None


def _link(card: Row) -> str:
    return msgs.matrix_to(card["room_id"], card["event_id"])


def next_alert_at(policy: SlaPolicy, case: Row) -> datetime | None:
    """When the next warning, breach or reminder of an open case is due (None: none)."""
    if case["state"] != "open" or case["answer_sent_at"]:
        return None
    times = [policy.next_alert(case[level], case[warn], case[due])
             for level, warn, due in (("step_alerts", "step_warn_at", "step_due_at"),
                                      ("total_alerts", "warn_at", "due_at"))
             if case[due]]
    return min(times, default=None)
