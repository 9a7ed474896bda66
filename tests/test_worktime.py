"""Working-time arithmetic: nights, weekends, breaks, public holidays, cuti bersama."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from bridge.worktime import DEFAULT_HOURS, SlaPolicy, WorkCalendar

WIB = ZoneInfo("Asia/Jakarta")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=WIB)


@pytest.fixture
def cal() -> WorkCalendar:
    hours = {**DEFAULT_HOURS, "fri": ["07:30-11:30", "13:00-16:30"]}
    # 2026-11-26 (Thursday) is this office's own day off (cuti bersama of the regency).
    return WorkCalendar.from_config("Asia/Jakarta", hours, [date(2026, 11, 26)])


def test_within_a_day(cal) -> None:
    assert cal.add(at("2026-11-23 08:00"), 15) == at("2026-11-23 08:15")      # Monday
    assert cal.between(at("2026-11-23 08:00"), at("2026-11-23 10:00")) == 120


def test_across_the_night(cal) -> None:
    assert cal.add(at("2026-11-23 15:50"), 30) == at("2026-11-24 07:50")
    assert cal.between(at("2026-11-23 15:50"), at("2026-11-24 07:50")) == 30


def test_friday_evening_complaint_starts_on_monday(cal) -> None:
    friday_night = at("2026-11-20 21:00")
    assert not cal.is_open(friday_night)
    assert cal.next_open(friday_night) == at("2026-11-23 07:30")
    assert cal.add(friday_night, 120) == at("2026-11-23 09:30")


def test_friday_prayer_break(cal) -> None:
    assert cal.add(at("2026-11-20 11:00"), 60) == at("2026-11-20 13:30")
    assert not cal.is_open(at("2026-11-20 12:00"))


def test_a_configured_cuti_bersama_day_is_skipped(cal) -> None:
    assert cal.day_off(date(2026, 11, 26)) == "hari libur kantor"
    assert cal.add(at("2026-11-25 15:30"), 60) == at("2026-11-27 08:00")       # Wed -> Fri


def test_public_holidays_and_national_cuti_bersama(cal) -> None:
    assert "Natal" in cal.day_off(date(2026, 12, 25))
    assert "Cuti Bersama" in cal.day_off(date(2026, 12, 24))
    # Wednesday 23 Dec 15:00 + 2 hours: Thu 24 (cuti bersama), Fri 25 (Christmas), weekend -> Monday.
    assert cal.add(at("2026-12-23 15:00"), 120) == at("2026-12-28 08:30")
    assert "Kemerdekaan" in cal.day_off(date(2026, 8, 17))
    plain = WorkCalendar.from_config("Asia/Jakarta", DEFAULT_HOURS, [], national=False)
    assert plain.day_off(date(2026, 8, 17)) is None


def test_between_is_the_inverse_of_add(cal) -> None:
    start = at("2026-11-19 14:10")
    for minutes in (1, 59, 110, 400, 1000, 3000):
        assert cal.between(start, cal.add(start, minutes)) == pytest.approx(minutes)


def test_bad_hours_are_refused() -> None:
    with pytest.raises(ValueError, match="end must be after"):
        WorkCalendar.from_config("Asia/Jakarta", {"mon": ["16:00-07:30"]}, [])
    with pytest.raises(ValueError, match="no working hours"):
        WorkCalendar.from_config("Asia/Jakarta", {}, [])


def test_alert_levels(cal) -> None:
    policy = SlaPolicy(cal, warn_ratio=0.8, remind_minutes=30)
    warn, due = policy.deadlines(at("2026-11-23 08:00"), 15)
    assert (warn, due) == (at("2026-11-23 08:12"), at("2026-11-23 08:15"))
    assert [policy.level(at(t), warn, due) for t in
            ("2026-11-23 08:11", "2026-11-23 08:12", "2026-11-23 08:15", "2026-11-23 08:44", "2026-11-23 08:45")] \
        == [0, 1, 2, 2, 3]
    assert policy.next_alert(2, warn, due) == at("2026-11-23 08:45")
    # Reminders count working time: nothing piles up overnight.
    assert policy.level(at("2026-11-24 07:30"), warn, due) == policy.level(at("2026-11-23 16:00"), warn, due)
