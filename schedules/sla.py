"""The SLA check: warnings, breaches and reminders for every open case, each sent once.

APScheduler only triggers ``SlaCheck.run_once``; the state is in the database. The check
reads the cases whose ``next_alert_at`` has come (an index range, however many cases are
open), and for each moves its alert level with a conditional UPDATE: two overlapping
checks, or two bridge processes, cannot both send the same alert, and a restart sends
nothing again.
"""
from __future__ import annotations

import logging

from bridge import messages as msgs
from bridge.cases import Cases, next_alert_at
from bridge.clock import Clock
from bridge.outbox import Outbox
from bridge.store import Row, Store, Tx

log = logging.getLogger(__name__)

SCOPES = (("step", "step_alerts", "step_warn_at", "step_due_at"),
          ("total", "total_alerts", "warn_at", "due_at"))


class SlaCheck:
    def __init__(self, store: Store, cases: Cases, outbox: Outbox, staff: dict[str, tuple[str, ...]],
                 clock: Clock, rooms: dict[str, str] | None = None) -> None:
        self.store = store
        self.cases = cases
        self.policy = cases.policy
        self.outbox = outbox
        self.staff = staff
        self.clock = clock
        self.rooms = rooms if rooms is not None else {}     # room key -> room id, for card links

    async def run_once(self) -> int:
        """Check every case whose next alert has come; returns how many alerts were sent."""
        now = self.clock()
        async with self.store.reading() as tx:
            due = await tx.cases_due_for_alert(now)
        sent = 0
        for row in due:
            async with self.store.transaction() as tx:
                sent += await self._check(tx, row["id"], now)
        if sent:
            self.outbox.wake()
        return sent

    async def _check(self, tx: Tx, case_id: int, now) -> int:
        case = await tx.get_case(case_id)
        if case is None or case["state"] != "open":
            return 0
        sent = 0
        for scope, level_key, warn_key, due_key in SCOPES:
            if not case[due_key]:
                continue
            due_at = case[due_key]
            level = self.policy.level(now, case[warn_key], due_at)
            if level > case[level_key] and await tx.raise_alert_level(case_id, scope, case[level_key], level):
                await self._alert(tx, case, scope, level, due_at, now)
                sent += 1
        fresh = await tx.get_case(case_id)
        assert fresh is not None
        await tx.update_case(case_id, next_alert_at=next_alert_at(self.policy, fresh))
        return sent

    async def _alert(self, tx: Tx, case: Row, scope: str, level: int, due_at, now) -> None:
        step = self.cases.profile.step(case["step"])
        room = self.cases.holder_room(case)
        holders = [case["assignee"]] if case["assignee"] else list(self.staff.get(step.role, ()))
        late = self.policy.calendar.between(due_at, now)
        card = await tx.get_card(case["id"], room)
        link = (f"https://matrix.to/#/{card['room_id']}/{card['event_id']}" if card else None)
        alert = msgs.sla_alert(case=case, step=step, scope=scope, level=level, late_minutes=late,
                               holders=holders, link=link, total_minutes=self.cases.profile.total_minutes)
        await self.outbox.thread(tx, case["id"], room, alert.content(mentions=holders))
        kind = "warning" if level == 1 else "breach" if level == 2 else "reminder"
        await tx.add_event(case["id"], at=now, actor="bot", kind=f"sla_{scope}_{kind}",
                           from_step=case["step"], to_step=case["step"],
                           note=f"{late:.0f} menit" if level >= 2 else None)
        if level >= 2:
            await self.outbox.notice(tx, "pimpinan", alert.content(mentions=()))
        log.info("sla: %s %s %s (level %d)", case["ticket"], scope, kind, level)
