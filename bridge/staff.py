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
from typing import Any

import nio

from bridge import messages as msgs
from bridge.cases import Cases, view
from bridge.clock import Clock, parse_ts
from bridge.matrix import MatrixBot
from bridge.outbox import Outbox
from bridge.roles.base import REACTION_TEXT, Parsed, load_all, parse, reaction_action
from bridge.store import Row, Store, Tx
from bridge.workflow import READ_ACTIONS, ROLE_RANK, Profile, decide

log = logging.getLogger(__name__)
load_all()


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

    # -- events ----------------------------------------------------------------------
    async def on_reaction(self, room: nio.MatrixRoom, event: nio.ReactionEvent) -> None:
        action = reaction_action(event.key)
        if action is None:
            return
        async with self.store.transaction() as tx:
            card = await tx.card_by_event(event.reacts_to)
            if card is None or not await tx.mark_handled(event.event_id, self.clock()):
                return
            case = await tx.get_case(card["case_id"])
            assert case is not None
            ctx = StaffContext(self, tx, case, event.sender, card["room_key"], "")
            await ctx.act(action, REACTION_TEXT.get(action, ""))
        self.outbox.wake()

    async def on_message(self, room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        parsed = parse(event.body)
        if parsed is None:
            return
        room_key = self.matrix.room_key(room.room_id)
        if room_key is None:
            return
        relates = event.source.get("content", {}).get("m.relates_to", {})
        root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        async with self.store.transaction() as tx:
            if not await tx.mark_handled(event.event_id, self.clock()):
                return
            case = await self._case_of(tx, parsed, root)
            ctx = StaffContext(self, tx, case, event.sender, room_key, parsed.text)
            if parsed.command.needs_case and case is None:
                what = f"Tiket {parsed.ticket} tidak ditemukan." if parsed.ticket else (
                    f"Tulis perintah ini di utas kartu kasus, atau sebut nomor tiketnya: !{parsed.name} ADU-…")
                await ctx.reply(msgs.refusal(what))
            else:
                await parsed.command.handler(ctx)
        self.outbox.wake()

    async def _case_of(self, tx: Tx, parsed: Parsed, root: str | None) -> Row | None:
        if parsed.ticket:
            return await tx.get_case_by_ticket(parsed.ticket)
        if root:
            card = await tx.card_by_event(root)
            if card:
                return await tx.get_case(card["case_id"])
        return None


@dataclass
class StaffContext:
    """One staff event being handled, inside its transaction (see roles.base.Context)."""

    desk: Desk
    tx: Tx
    case: Row | None
    actor: str
    room_key: str | None
    text: str

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
        d = decide(self.desk.profile, view(self.case), role, action, text)
        if not d.ok:
            log.info("staff: %s refused for %s on %s: %s", action, self.actor, self.case["ticket"], d.reason)
            await self.reply(msgs.refusal(d.reason))
            return False
        if action in READ_ACTIONS:
            return True
        assert role is not None
        self.case = await self.desk.cases.act(self.tx, self.case, self.actor, role, d, text)
        log.info("staff: %s %s by %s -> %s", self.case["ticket"], action, self.actor, self.case["step"])
        return True

    async def reply(self, message: msgs.Rich) -> None:
        room = self.room_key or "admin"
        if self.case is not None:
            await self.desk.outbox.thread(self.tx, self.case["id"], room, message.notice())
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
            lines = [f"Riwayat {self.case['ticket']}:"] + [msgs.history_line(e) for e in events]
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
            due = parse_ts(case[due_key])
            paused = case["state"] == "waiting"
            return due, cal.between(parse_ts(case["waiting_since"]) if paused else now, due), paused

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

