"""Staff events from Matrix -> role commands -> the case service.

A reaction on a card or a command (in a card's thread, or anywhere with the ticket
number) is handled in one transaction: the event is claimed in ``handled_events`` (so a
replayed sync acts on nothing twice), the workflow engine decides, the case service
records and queues the effects, or a polite refusal goes to the thread.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable

import nio

from bridge import messages as msgs
from bridge.cases import Cases, view
from bridge.clock import Clock
from bridge.matrix import MatrixBot
from bridge.outbox import CARD_TICKET, Outbox
from bridge.messages import ACTION_REACTIONS
from bridge.roles.base import REACTION_TEXT, Parsed, command_for, load_all, parse, reaction_action
from bridge.store import Row, Store, Tx
from bridge.workflow import (CITIZEN, READ_ACTIONS, ROLE_RANK, ROLE_TITLES, Profile, allowed_actions, decide,
                             refuse)

log = logging.getLogger(__name__)
load_all()

# What a command that carries text is followed by, as a guide shows it.
ARGUMENTS = {"answer": " <teks>", "reject": " <alasan>", "return": " <catatan>", "close": " <alasan>"}


class Desk:
    """Where staff events arrive. ``roles_of`` maps a Matrix user to their roles."""

    def __init__(self, store: Store, cases: Cases, outbox: Outbox, matrix: MatrixBot,
                 staff: dict[str, tuple[str, ...]], clock: Clock) -> None:
        self.store = store
        self.cases = cases
        self.profile: Profile = cases.profile
        self.outbox = outbox
        self.matrix = matrix
        self.clock = clock
        self.roles: dict[str, set[str]] = {}
        for role, users in staff.items():
            for user in users:
                self.roles.setdefault(user, set()).add(role)
        matrix.on_event(nio.ReactionEvent, self.on_reaction)
        matrix.on_event(nio.RoomMessageText, self.on_message)

    def role_for(self, user: str, case: Row | None, action: str) -> str | None:
        """The role a user acts in: the step's holder role if they have it, else their highest."""
        held = self.roles.get(user, set())
        if not held:
            return None
        if case is not None:
            step = self.profile.step(case["step"])
            if step.role in held:
                return step.role
            if "pimpinan" in held:
                return "pimpinan"
            if action == "approve":
                approvers = [r for r in held if r in step.approvers]
                if approvers:
                    return max(approvers, key=ROLE_RANK.__getitem__)
        return max(held, key=ROLE_RANK.__getitem__)

    def guide(self, case: Row) -> str | None:
        """What can be done on the case now, and by whom: the second line of a refusal."""
        if case["state"] == "closed":
            return None
        step = self.profile.step(case["step"])
        holder = ROLE_TITLES.get(step.role, step.role)
        if case["state"] == "waiting":
            return (f"Kasus menunggu jawaban pemohon (!tanya); setelah pemohon membalas, {holder} "
                    f"melanjutkan langkah \"{step.name}\".")
        if step.role == CITIZEN:
            return "Jawaban sudah dikirim; kasus selesai ketika pemohon menerimanya."
        can = []
        for action in (*allowed_actions(self.profile, step.id), *(("close",) if self.profile.sends_answer(step.id) else ())):
            reaction = ACTION_REACTIONS.get(action)
            how = " / ".join(x for x in (reaction, f"{command_for(action)}{ARGUMENTS.get(action, '')}") if x)
            target = self.profile.target(step, action) if action in step.actions else step
            if target.id != step.id and target.role != CITIZEN:
                how += f" (lalu {ROLE_TITLES.get(target.role, target.role)}: {target.name})"
            can.append(how)
        return f"Di langkah \"{step.name}\", {holder} dapat: " + "; ".join(can) + "."

    # -- events ----------------------------------------------------------------------
    async def on_reaction(self, room: nio.MatrixRoom, event: nio.ReactionEvent) -> None:
        action = reaction_action(event.key)
        if action is None:
            return
        room_key = self.matrix.room_key(room.room_id)
        if room_key is None:
            return
        await self._guarded(room, event, room_key, event.reacts_to, self._reaction(room, event, room_key, action))

    async def on_message(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        parsed = parse(event.body)
        if parsed is None:
            return
        room_key = self.matrix.room_key(room.room_id)
        if room_key is None:
            return
        relates = event.source.get("content", {}).get("m.relates_to", {})
        root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        await self._guarded(room, event, room_key, root, self._command(room, event, parsed, room_key, root))

    async def _guarded(self, room: nio.MatrixRoom, event: Any, room_key: str, root: str | None,
                       handling: Awaitable[None]) -> None:
        """Handle a staff event; when that fails, the staff member hears so instead of silence.

        The failed transaction left nothing behind; the event is claimed with the reply,
        so a replayed sync does not fail on it again.
        """
        try:
            await handling
        except Exception:
            log.exception("staff: handling %s from %s in %s failed", event.event_id, event.sender, room.room_id)
            async with self.store.transaction() as tx:
                if not await tx.mark_handled(event.event_id, self.clock()):
                    return
                card = await tx.card_by_event(root) if root else None
                reply = msgs.refusal("Perintah ini gagal diproses karena kesalahan sistem; tidak ada yang "
                                     "berubah. Coba lagi, atau hubungi operator bila terulang.")
                if card is not None:
                    await self.outbox.thread(tx, card["case_id"], card["room_key"], reply.notice())
                else:
                    await self.outbox.notice(tx, room_key, reply.notice())
        self.outbox.wake()

    async def _reaction(self, room: nio.MatrixRoom, event: nio.ReactionEvent, room_key: str, action: str) -> None:
        ticket = await self._card_ticket(room.room_id, event.reacts_to)
        if ticket is None:
            return                       # a reaction on something that is not a case card
        async with self.store.transaction() as tx:
            case = await tx.get_case_by_ticket(ticket)
            if case is None or not await tx.mark_handled(event.event_id, self.clock()):
                return
            ctx = StaffContext(self, tx, case, event.sender, room_key, "", event.reacts_to)
            await ctx.act(action, REACTION_TEXT.get(action, ""))

    async def _card_ticket(self, room_id: str, event_id: str | None) -> str | None:
        """The ticket of the case whose card ``event_id`` is, if it is one.

        The database knows the cards it saved; a card it does not know (one a staff member
        acted on in the moment between its post and its record, or an earlier card of the
        case in that room) names its ticket in its own content.
        """
        if not event_id:
            return None
        async with self.store.reading() as tx:
            card = await tx.card_by_event(event_id)
            case = await tx.get_case(card["case_id"]) if card else None
        if case is not None:
            return case["ticket"]
        found = await self.matrix.event_content(room_id, event_id)
        if found is None or found[0] != self.matrix.user_id:
            return None
        ticket = found[1].get(CARD_TICKET)
        return ticket if isinstance(ticket, str) else None

    async def _command(self, room: nio.MatrixRoom, event: nio.RoomMessageText, parsed: Parsed, room_key: str,
                       root: str | None) -> None:
        root_ticket = await self._card_ticket(room.room_id, root)
        async with self.store.transaction() as tx:
            if not await tx.mark_handled(event.event_id, self.clock()):
                return
            thread_case = await tx.get_case_by_ticket(root_ticket) if root_ticket else None
            if thread_case is not None and parsed.ticket and parsed.ticket != thread_case["ticket"]:
                # Inside a case's thread, that case is the target: never act on another silently.
                ctx = StaffContext(self, tx, thread_case, event.sender, room_key, parsed.text, root)
                await ctx.reply(msgs.refusal(
                    f"Utas ini milik {thread_case['ticket']}; perintah untuk {parsed.ticket} tidak dijalankan. "
                    f"Tulis di utas kartu {parsed.ticket}, atau di luar utas dengan nomor tiketnya."))
                return
            case = thread_case if thread_case is not None else (
                await tx.get_case_by_ticket(parsed.ticket) if parsed.ticket else None)
            ctx = StaffContext(self, tx, case, event.sender, room_key, parsed.text, root)
            if parsed.command.needs_case and case is None:
                what = f"Tiket {parsed.ticket} tidak ditemukan." if parsed.ticket else (
                    f"Tulis perintah ini di utas kartu kasus, atau sebut nomor tiketnya: !{parsed.name} ADU-…")
                await ctx.reply(msgs.refusal(what))
            else:
                await parsed.command.handler(ctx)



@dataclass
class StaffContext:
    """One staff event being handled, inside its transaction (see roles.base.Context)."""

    desk: Desk
    tx: Tx
    case: Row | None
    actor: str
    room_key: str | None
    text: str
    root: str | None = None      # the card (thread root) it was said on; None: the room's timeline

    @property
    def role(self) -> str:
        return self.desk.role_for(self.actor, self.case, "") or ""

    async def act(self, action: str, text: str | None = None) -> bool:
        text = self.text or text or ""   # a command's own text, else a reaction's default
        role = self.desk.role_for(self.actor, self.case, action)
        if self.case is None:
            ok = role is not None
            if not ok:
                await self.reply(msgs.refusal("Anda tidak terdaftar sebagai petugas di [staff] konfigurasi."))
            return ok
        d = decide(self.desk.profile, view(self.case), role, action, text, actor=self.actor)
        if d.ok and (over := self.desk.cases.too_long(action, self.case, text)):
            d = refuse(over)
        if not d.ok:
            log.info("staff: %s refused for %s on %s: %s", action, self.actor, self.case["ticket"], d.reason)
            await self.reply(msgs.refusal(d.reason, self.desk.guide(self.case)))
            return False
        if action in READ_ACTIONS:
            return True
        assert role is not None
        old = self.case
        live = await self.tx.get_card(old["id"], self.room_key or "admin")
        self.case = await self.desk.cases.act(self.tx, old, self.actor, role, d, text)
        log.info("staff: %s %s by %s -> %s", self.case["ticket"], action, self.actor, self.case["step"])
        if self.root is None or live is None or live["event_id"] != self.root:
            # Said in the room's timeline or on an earlier card: answered there too (the
            # case's thread has the confirmation as well).
            step = self.desk.profile.step(self.case["step"])
            await self.reply(msgs.confirmation(action, self.actor, role, step, self.case, text,
                                               old["agenda_number"] if d.withdraws else None,
                                               ticket=self.case["ticket"]))
        return True

    async def reply(self, message: msgs.Rich) -> None:
        """The bot's answer where the staff member said it: in that card's thread, or in the
        room's timeline."""
        room = self.room_key or "admin"
        if self.root is not None and self.case is not None:
            await self.desk.outbox.thread(self.tx, self.case["id"], room, message.notice(), root=self.root)
        else:
            await self.desk.outbox.notice(self.tx, room, message.notice())

    async def read(self, what: str) -> Any:
        assert what in ("status", "history", "list", "print", "sla")
        if what == "sla":
            return await self._sla()
        if what == "print":
            assert self.case is not None
            await self.desk.outbox.transcript(self.tx, self.case["id"], self.room_key or "admin")
            return None
        if what == "history":
            assert self.case is not None
            events = await self.tx.case_events(self.case["id"])
            names = {s.id: s.name for s in self.desk.profile.steps}
            lines = [f"Riwayat {self.case['ticket']}:"] + [msgs.history_line(e, names) for e in events]
            return msgs.Rich("\n".join(lines), "<br>".join(msgs.esc(line) for line in lines))
        if what == "status":
            assert self.case is not None
            return msgs.case_status(self.case, self.desk.profile.step(self.case["step"]))
        return msgs.case_list(self.room_key or "admin", await self._room_cases(), self.desk.profile)

    async def _room_cases(self) -> list[Row]:
        role, _, unit = (self.room_key or "admin").partition(":")
        # The pimpinan room sees every open case; a role's room the ones it holds.
        return await self.tx.open_cases_held_by(None if role == "pimpinan" else role, unit or None)

    async def _sla(self) -> msgs.Rich:
        """The SLA clocks of this case, or of the room's open cases by time left."""
        cal = self.desk.cases.calendar
        now = self.desk.clock()

        def clock(case: Row, due_key: str) -> tuple[datetime | None, float | None, bool]:
            if not case[due_key]:
                return None, None, False
            due = case[due_key]
            paused = case["state"] == "waiting"
            return due, cal.between(case["waiting_since"] if paused else now, due), paused

        if self.case is not None:
            c = self.case
            lines = [f"SLA {c['ticket']} ({self.desk.profile.step(c['step']).name}):",
                     msgs.clock_line("Langkah ini", *clock(c, "step_due_at")),
                     msgs.clock_line("Total", *clock(c, "due_at"))]
        else:
            timed = [(clock(c, "step_due_at"), c) for c in await self._room_cases()]
            timed.sort(key=lambda pair: float("inf") if pair[0][1] is None else pair[0][1])
            lines = ["Kasus ruang ini menurut sisa waktu langkah:"] + [
                msgs.clock_line(f"{c['ticket']} · {self.desk.profile.step(c['step']).name}", *clk)
                for clk, c in timed]
            if not timed:
                lines = ["Tidak ada kasus terbuka di ruang ini."]
        return msgs.Rich("\n".join(lines), "<br>".join(msgs.esc(line) for line in lines))

