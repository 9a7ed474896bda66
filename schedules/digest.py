"""The daily digest for the pimpinan room: what came in, what closed, what is late.

``build`` computes the figures from the database for a period (pure reading, testable
on a known set of cases); ``DailyDigest.run`` posts them, on working days only, when
APScheduler's cron fires, for the time since the previous digest: Monday's covers Friday
afternoon and the weekend, the day after a holiday covers the holiday.
"""
from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge import messages as msgs
from bridge.clock import Clock
from bridge.outbox import Outbox
from bridge.store import Row, Store, Tx
from bridge.workflow import Profile
from bridge.worktime import WorkCalendar

log = logging.getLogger(__name__)


@dataclass
class StepFigures:
    step: str
    name: str
    sop_minutes: int
    durations: list[float] = field(default_factory=list)     # working minutes, waiting excluded

    @property
    def within(self) -> int:
        return sum(1 for d in self.durations if d <= self.sop_minutes)

    @property
    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


@dataclass
class Digest:
    start: datetime
    end: datetime
    received: int
    closed: dict[str, int]                       # outcome -> count
    closed_late: int                             # closed after the total deadline
    open_by_step: list[tuple[str, str, int]]     # (step name, role, count)
    waiting: int
    breached_open: int
    steps: list[StepFigures]
    oldest: list[Row]
    ratings: "RatingFigures" = field(default_factory=lambda: RatingFigures([]))


@dataclass
class RatingFigures:
    """The citizens' ratings (1-5) of a period: what offices report as their satisfaction
    index (IKM/SKM): how many, the average, and the spread over the five scores."""

    scores: list[int]

    @property
    def count(self) -> int:
        return len(self.scores)

    @property
    def average(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def spread(self) -> dict[int, int]:
        return {n: self.scores.count(n) for n in range(1, 6)}

    def line(self) -> str:
        if not self.scores:
            return "Penilaian pemohon: belum ada"
        spread = ", ".join(f"{n}: {c}" for n, c in self.spread.items())
        return f"Penilaian pemohon: {self.count}, rata-rata {self.average:.2f} dari 5 (sebaran {spread})"


async def build(tx: Tx, profile: Profile, calendar: WorkCalendar, now: datetime,
                since: datetime | None = None) -> Digest:
    """The figures of [since, now); without ``since``, the last 24 hours."""
    end = now
    start = since or now - timedelta(days=1)
    closed = await tx.closed_between(start, end)
    outcomes: dict[str, int] = defaultdict(int)
    for c in closed:
        outcomes[c["outcome"] or "-"] += 1
    late = sum(1 for c in closed if c["due_at"] and c["closed_at"] > c["due_at"])
    open_by_step: dict[tuple[str, str], int] = defaultdict(int)
    waiting = breached = 0
    for r in await tx.open_counts():
        open_by_step[(r["step"], r["holder_role"])] += r["n"]
        waiting += r["n"] if r["state"] == "waiting" else 0
        breached += r["breached"] or 0
    names = {s.id: s for s in profile.steps}
    figures = {s.id: StepFigures(s.id, s.name, s.minutes) for s in profile.steps if s.minutes}
    for step_id, minutes in step_durations(await tx.events_of_cases_active_between(start, end),
                                           calendar, start, end):
        if step_id in figures:
            figures[step_id].durations.append(minutes)
    return Digest(
        start=start, end=end, received=await tx.count_opened(start, end), closed=dict(outcomes),
        closed_late=late,
        open_by_step=[(names[s].name if s in names else s, role, n) for (s, role), n in sorted(open_by_step.items())],
        waiting=waiting, breached_open=breached,
        steps=[f for f in figures.values() if f.durations], oldest=await tx.oldest_open(5),
        ratings=RatingFigures([r["score"] for r in await tx.ratings_between(start, end)]))


def step_durations(events: list[Row], calendar: WorkCalendar, start: datetime,
                   end: datetime) -> list[tuple[str, float]]:
    """(step, working minutes) of each step that ended in [start, end), waiting excluded."""
    out: list[tuple[str, float]] = []
    by_case: dict[int, list[Row]] = defaultdict(list)
    for e in events:
        by_case[e["case_id"]].append(e)
    for evs in by_case.values():
        step, entered, waited, wait_from = None, None, 0.0, None
        for e in evs:
            at = e["at"]
            if e["kind"] == "ask":
                wait_from = at
            elif e["kind"] == "citizen_answered" and wait_from is not None:
                waited += calendar.between(wait_from, at)
                wait_from = None
            ends = e["kind"] == "answer_delivered" or (e["to_step"] and e["to_step"] != step)
            if ends:
                if wait_from is not None:          # left the step while waiting (rejected): not the office's time
                    waited += calendar.between(wait_from, at)
                    wait_from = None
                if step is not None and entered is not None and start <= at < end:
                    out.append((step, max(0.0, calendar.between(entered, at) - waited)))
                step, entered, waited = (e["to_step"] if e["to_step"] != step else None), at, 0.0
    return out


def render(d: Digest, profile: Profile) -> msgs.Rich:
    closed = sum(d.closed.values())
    outcome = ", ".join(f"{k} {v}" for k, v in sorted(d.closed.items())) or "-"
    lines = [f"📊 Ringkasan pengaduan {msgs.local_time(d.start)} – {msgs.local_time(d.end)}",
             f"Masuk: {d.received} · Selesai: {closed} ({outcome}); lewat waktu total: {d.closed_late}",
             f"Masih terbuka: {sum(n for _, _, n in d.open_by_step)} "
             f"(menunggu pemohon {d.waiting}, lewat SLA {d.breached_open})", d.ratings.line()]
    for name, role, n in d.open_by_step:
        lines.append(f"  · {name} ({msgs.ROLE_NAMES.get(role, role)}): {n}")
    if d.steps:
        lines.append("Kepatuhan waktu SOP per langkah (tepat waktu / jumlah, median vs SOP):")
        for f in d.steps:
            lines.append(f"  · {f.name}: {f.within}/{len(f.durations)}, median {f.median:.0f} menit "
                         f"vs {f.sop_minutes} menit")
    if d.oldest:
        lines.append("Kasus terbuka tertua:")
        for c in d.oldest:
            lines.append(f"  · {c['ticket']} sejak {msgs.local_time(c['opened_at'])} "
                         f"({profile.step(c['step']).name})")
    return msgs.Rich("\n".join(lines), "<br>".join(msgs.esc(line).replace("  ", "&nbsp;&nbsp;") for line in lines))


class DailyDigest:
    def __init__(self, store: Store, profile: Profile, calendar: WorkCalendar, outbox: Outbox,
                 clock: Clock) -> None:
        self.store = store
        self.profile = profile
        self.calendar = calendar
        self.outbox = outbox
        self.clock = clock

    async def run(self) -> bool:
        """Post the digest, unless today is not a working day. Returns whether it posted."""
        now = self.clock()
        if self.calendar.day_off(now.astimezone(self.calendar.tz).date()):
            return False
        async with self.store.transaction() as tx:
            # Once per day, whatever fires it (and in whichever process): the day's key is
            # claimed in the database, by one transaction at a time.
            day = now.astimezone(self.calendar.tz).date().isoformat()
            if not await tx.claim(f"digest:{day}") or await tx.get_state(f"digest:{day}"):
                return False
            await tx.set_state(f"digest:{day}", now.isoformat())
            previous = await tx.get_state("digest:last")
            await tx.set_state("digest:last", now.isoformat())
            digest = await build(tx, self.profile, self.calendar, now,
                                 since=datetime.fromisoformat(previous) if previous else None)
            await self.outbox.notice(tx, "pimpinan", render(digest, self.profile).notice())
        self.outbox.wake()
        log.info("digest: posted for %s", day)
        return True
