"""Working time: the office's hours and non-working days, and the SLA deadlines they give.

All arithmetic is in the office's timezone over its working periods (a day may have
several: a midday break, Friday prayers). Public holidays come from the maintained
``holidays`` package (Indonesia, including the government's cuti bersama when asked);
an office adds its own days in config. Pure code: no clock is read here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo

import holidays as holidays_lib

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS: dict[str, list[str]] = {
    "mon": ["07:30-16:00"], "tue": ["07:30-16:00"], "wed": ["07:30-16:00"], "thu": ["07:30-16:00"],
    "fri": ["07:30-16:30"], "sat": [], "sun": [],
}
_MAX_DAYS = 400          # no office closes for longer than this; guards against a calendar with no hours


def parse_period(text: str) -> tuple[time, time]:
    start, _, end = text.partition("-")
    a, b = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    if not a < b:
        raise ValueError(f"{text!r}: the end must be after the start")
    return a, b


@dataclass
class WorkCalendar:
    tz: ZoneInfo
    hours: dict[int, list[tuple[time, time]]]            # weekday (0 = Monday) -> periods
    extra_days_off: frozenset[date] = frozenset()
    national: bool = True                                 # Indonesian public holidays
    cuti_bersama_nasional: bool = True                    # the government's collective leave days
    _holidays: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not any(self.hours.values()):
            raise ValueError("no working hours on any day")
        categories = ("public",) + (("government",) if self.cuti_bersama_nasional else ())
        self._holidays = holidays_lib.country_holidays("ID", categories=categories, language="id")

    @classmethod
    def from_config(cls, tz: str, hours: dict[str, list[str]], days_off: Iterable[date],
                    national: bool = True, cuti_bersama_nasional: bool = True) -> "WorkCalendar":
        periods = {}
        for i, day in enumerate(WEEKDAYS):
            spans = sorted(parse_period(p) for p in hours.get(day, []))
            for (_, end), (start, _) in zip(spans, spans[1:]):
                if start < end:
                    raise ValueError(f"{day}: periods overlap")
            periods[i] = spans
        return cls(ZoneInfo(tz), periods, frozenset(days_off), national, cuti_bersama_nasional)

    # -- days ------------------------------------------------------------------------
    def day_off(self, d: date) -> str | None:
        """Why ``d`` is not a working day (a holiday's name), or None when it is one."""
        if d in self.extra_days_off:
            return "hari libur kantor"
        if self.national and d in self._holidays:
            return str(self._holidays.get(d))
        if not self.hours[d.weekday()]:
            return "akhir pekan"
        return None

    def periods(self, d: date) -> list[tuple[datetime, datetime]]:
        if self.day_off(d):
            return []
        return [(datetime.combine(d, a, self.tz), datetime.combine(d, b, self.tz)) for a, b in self.hours[d.weekday()]]

    def _periods_from(self, t: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working periods (clipped to start at ``t``) from ``t`` on."""
        local = t.astimezone(self.tz)
        for i in range(_MAX_DAYS):
            for a, b in self.periods(local.date() + timedelta(days=i)):
                if b > local:
                    yield max(a, local), b
        raise ValueError("no working time within a year")

    # -- time ------------------------------------------------------------------------
    def is_open(self, t: datetime) -> bool:
        local = t.astimezone(self.tz)
        return any(a <= local < b for a, b in self.periods(local.date()))

    def next_open(self, t: datetime) -> datetime:
        """``t`` if the office is working then, else when it next starts."""
        return next(self._periods_from(t))[0]

    def add(self, start: datetime, minutes: float) -> datetime:
        """The moment ``minutes`` of working time after ``start``."""
        left = timedelta(minutes=minutes)
        if left <= timedelta(0):
            return self.next_open(start) if minutes == 0 and not self.is_open(start) else start
        for a, b in self._periods_from(start):
            if b - a >= left:
                return a + left
            left -= b - a
        raise AssertionError("unreachable")

    def between(self, a: datetime, b: datetime) -> float:
        """Working minutes from ``a`` to ``b`` (negative when ``b`` is earlier)."""
        if b < a:
            return -self.between(b, a)
        total = timedelta(0)
        for p, q in self._periods_from(a):
            if p >= b:
                break
            total += min(q, b) - p
        return total.total_seconds() / 60


@dataclass(frozen=True)
class SlaPolicy:
    """When warnings, breaches and reminders are due, on a working calendar."""

    calendar: WorkCalendar
    warn_ratio: float = 0.8
    remind_minutes: int = 30

    def deadlines(self, start: datetime, minutes: float) -> tuple[datetime, datetime]:
        """(warn at, due at) for ``minutes`` of working time from ``start``."""
        return self.calendar.add(start, minutes * self.warn_ratio), self.calendar.add(start, minutes)

    def level(self, now: datetime, warn_at: datetime, due_at: datetime) -> int:
        """0 nothing due, 1 warning, 2 breach, 3... reminders while breached."""
        if now < warn_at:
            return 0
        if now < due_at:
            return 1
        return 2 + math.floor(self.calendar.between(due_at, now) / self.remind_minutes)

    def next_alert(self, level: int, warn_at: datetime, due_at: datetime) -> datetime:
        """When the alert after ``level`` becomes due."""
        if level == 0:
            return warn_at
        if level == 1:
            return due_at
        return self.calendar.add(due_at, (level - 1) * self.remind_minutes)
