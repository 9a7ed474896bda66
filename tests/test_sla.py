"""SLA clocks and alerts with an injected clock: whole working days in milliseconds."""
from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.cases import Cases
from bridge.conversation import Conversation
from tests import queries as q
from tests.story import in_format
from bridge.channels.base import InboundMessage
from bridge.config import from_dict
from bridge.intake import Intake
from bridge.outbox import Outbox
from bridge.staff import StaffContext
from bridge.store import Store
from bridge.workflow import decide
from bridge.cases import view
from schedules.sla import SlaCheck
from tests.harness import FakeClock

WIB = ZoneInfo("Asia/Jakarta")
WARGA = "6281234500009"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=WIB)


class Office:
    """The bridge's case side without Matrix: intake, cases, the SLA check, on one database."""

    def __init__(self, store: Store, clock: FakeClock, profile: str = "mojokerto") -> None:
        settings = from_dict({
            "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:localhost"},
            "rooms": {r: f"#{r}:localhost" for r in ("admin", "kasi", "kabid", "pimpinan")},
            "staff": {"admin": ["@admin:localhost"], "kasi": ["@kasi:localhost"]},
            "whatsapp": {"enabled": False}, "sop": {"profile": profile},
            "sla": {"cuti_bersama": [datetime(2026, 11, 26).date()]},
        }, {"MATRIX_PASSWORD": "x"}, base_dir=Path("."))
        self.store, self.clock = store, clock
        self.outbox = Outbox(clock)
        self.cases = Cases(settings.sop, self.outbox, clock, settings.sla.policy)
        self.conversation = Conversation(self.cases, self.outbox, clock, self.cases.texts, settings.citizen,
                                         "Senin–Jumat")
        self.intake = Intake(store, self.cases, self.outbox, clock, self.conversation)
        self.sla = SlaCheck(store, self.cases, self.outbox, settings.staff, clock)
        self.n = 0

    async def complaint(self, text: str = "KTP-el belum jadi", wa_id: str = WARGA) -> dict:
        self.n += 1
        async with self.store.reading() as tx:
            known = await tx.citizen_by_address("whatsapp", wa_id)
            follow_up = known is not None and await tx.open_case_of(known["id"]) is not None
        # A first message comes in the complaint format; one to an open case is a follow-up.
        msg = InboundMessage("whatsapp", f"wamid.{self.n}", wa_id, self.clock(), "text",
                             text if follow_up else in_format(text), name="Siti")
        await self.intake.accept([msg], [])
        await self.intake.run_once()
        async with self.store.reading() as tx:
            return await tx.open_case_of((await tx._one("SELECT id FROM citizens WHERE address = ?", wa_id))["id"])

    async def act(self, case: dict, role: str, action: str, text: str = "") -> dict:
        async with self.store.transaction() as tx:
            case = await tx.get_case(case["id"])
            d = decide(self.cases.profile, view(case), role, action, text)
            assert d.ok, d.reason
            return await self.cases.act(tx, case, f"@{role}:localhost", role, d, text)

    async def case(self, case: dict) -> dict:
        async with self.store.reading() as tx:
            return await tx.get_case(case["id"])

    async def alerts(self) -> list[str]:
        async with self.store.reading() as tx:
            rows = await q.outbox_rows(tx)
        return [r["payload"]["content"]["body"].split("\n")[0] for r in rows
                if r["kind"] in ("matrix.thread", "matrix.notice") and "SLA" in r["payload"]["content"]["body"]]

    async def citizen_texts(self) -> list[str]:
        async with self.store.reading() as tx:
            return [r["payload"]["text"] for r in await q.outbox_rows(tx, kind="channel.text")]


@pytest.fixture
async def store(database_url: str):
    s = await Store.open(database_url)          # on SQLite and on PostgreSQL
    yield s
    await s.close()


async def test_a_friday_evening_complaint_starts_on_monday(store: Store) -> None:
    clock = FakeClock(at("2026-11-20 21:00"))           # Friday night
    office = Office(store, clock)
    case = await office.complaint()
    assert case["step_due_at"] == at("2026-11-23 07:45")
    assert case["due_at"] == at("2026-11-23 09:30")
    (reply,) = await office.citizen_texts()
    assert "di luar jam kerja" in reply and "Senin, 23-11-2026 pukul 07:30 WIB" in reply
    assert "paling lambat Senin, 23-11-2026 pukul 09:30 WIB" in reply


async def test_warning_breach_and_reminder_each_once(tmp_path: Path) -> None:
    clock = FakeClock(at("2026-11-23 08:00"))           # Monday
    store = await Store.open(tmp_path / "db.sqlite")
    office = Office(store, clock)
    await office.complaint()                             # verifikasi: 15 min, warn at 80 %
    assert await office.sla.run_once() == 0
    clock.set(at("2026-11-23 08:12"))
    assert await office.sla.run_once() == 1
    assert await office.sla.run_once() == 0              # the same warning is not sent again
    clock.set(at("2026-11-23 08:15"))
    # Two checks at once (overlapping scheduler runs): one breach between them.
    assert sum(await asyncio.gather(office.sla.run_once(), office.sla.run_once())) == 1
    clock.set(at("2026-11-23 08:45"))
    assert await office.sla.run_once() == 1              # the first reminder (30 min)
    alerts = await office.alerts()
    assert [a.split(" ")[0] for a in alerts] == ["⏳", "🚨", "🚨", "🔁", "🔁"]   # breaches also to pimpinan
    # A restart: a new process on the same database sends nothing again.
    await store.close()
    reopened = await Store.open(store.path)
    try:
        again = Office(reopened, clock)
        assert await again.sla.run_once() == 0
        clock.set(at("2026-11-23 09:15"))
        assert await again.sla.run_once() == 1            # the next reminder, once
        assert await again.sla.run_once() == 0
    finally:
        await reopened.close()


async def test_reminders_do_not_pile_up_overnight(store: Store) -> None:
    clock = FakeClock(at("2026-11-23 15:40"))
    office = Office(store, clock)
    await office.complaint()                             # due 15:55
    clock.set(at("2026-11-23 16:00"))
    assert await office.sla.run_once() == 1              # breach (the warning is folded into it)
    clock.set(at("2026-11-24 07:30"))                    # Tuesday morning: still 5 working minutes late
    assert await office.sla.run_once() == 0


async def test_the_total_deadline_is_watched_too(store: Store) -> None:
    clock = FakeClock(at("2026-11-23 08:00"))
    office = Office(store, clock)
    case = await office.complaint()
    await office.act(case, "admin", "verify")             # each step on time...
    clock.set(at("2026-11-23 10:00"))                    # ...but two hours pass in 'draf' (30 min)
    await office.sla.run_once()
    alerts = await office.alerts()
    assert any("waktu penyelesaian total" in a and a.startswith("🚨") for a in alerts)


async def test_waiting_for_the_citizen_stops_the_clock(store: Store) -> None:
    clock = FakeClock(at("2026-11-23 08:00"))
    office = Office(store, clock)
    case = await office.complaint()                      # step due 08:15, total due 10:00
    clock.set(at("2026-11-23 08:05"))
    case = await office.act(case, "admin", "ask", "Mohon kirim foto KTP")
    assert case["state"] == "waiting" and case["next_alert_at"] is None
    clock.set(at("2026-11-24 10:00"))                    # a day later the citizen answers
    assert await office.sla.run_once() == 0              # nothing was late while waiting
    await office.complaint("Ini fotonya")                # same citizen: the answer
    case = await office.case(case)
    assert case["state"] == "open"
    assert case["step_due_at"] == at("2026-11-24 10:10")   # 10 minutes were left
    assert case["due_at"] == at("2026-11-24 11:55")        # 115 minutes were left


async def test_a_cuti_bersama_day_does_not_count(store: Store) -> None:
    clock = FakeClock(at("2026-11-25 15:50"))            # Wednesday; Thursday is cuti bersama here
    office = Office(store, clock)
    case = await office.complaint()
    assert case["step_due_at"] == at("2026-11-27 07:35")


async def test_the_digest_figures_on_a_known_day(store: Store) -> None:
    from schedules.digest import DailyDigest, build, render
    clock = FakeClock(at("2026-11-23 08:00"))
    office = Office(store, clock)
    a = await office.complaint("KTP-el belum jadi", "6281100000001")
    for when, role, action, text in [("08:10", "admin", "verify", ""), ("08:50", "admin", "answer", "Sudah jadi"),
                                     ("09:00", "kasi", "verify", ""), ("09:05", "kabid", "approve", ""),
                                     ("09:10", "admin", "verify", ""), ("09:15", "admin", "send", "")]:
        clock.set(at(f"2026-11-23 {when}"))
        a = await office.act(a, role, action, text)
    clock.set(at("2026-11-23 09:20"))
    async with store.transaction() as tx:
        await office.cases.answer_delivered(tx, await tx.get_case(a["id"]), "delivered")
    clock.set(at("2026-11-23 09:00"))
    b = await office.complaint("Protes pajak", "6281100000002")
    clock.set(at("2026-11-23 09:30"))
    await office.act(b, "admin", "reject", "Bukan kewenangan Dukcapil")
    clock.set(at("2026-11-23 10:00"))
    c = await office.complaint("NIK tidak ditemukan", "6281100000003")
    clock.set(at("2026-11-23 10:30"))
    await office.sla.run_once()                          # C is now past its 15 minutes

    clock.set(at("2026-11-24 07:30"))
    async with store.reading() as tx:
        d = await build(tx, office.cases.profile, office.cases.calendar, clock())
    assert d.received == 3
    assert d.closed == {"dijawab": 1, "ditolak": 1} and d.closed_late == 0
    assert d.open_by_step == [("Verifikasi pengaduan", "admin", 1)] and d.breached_open == 1
    figures = {f.step: (f.within, len(f.durations), f.median) for f in d.steps}
    assert figures == {"verifikasi": (1, 2, 20.0), "draf": (0, 1, 40.0), "final": (1, 1, 10.0),
                       "paraf": (1, 1, 5.0), "cek": (1, 1, 5.0), "kirim": (1, 1, 5.0)}
    assert [o["ticket"] for o in d.oldest] == [c["ticket"]]
    text = render(d, office.cases.profile).body
    assert "Masuk: 3 · Selesai: 2" in text and "Verifikasi pengaduan: 1/2, median 20 menit vs 15 menit" in text

    digest = DailyDigest(store, office.cases.profile, office.cases.calendar, office.outbox, clock)
    assert await digest.run() is True
    assert await digest.run() is False                   # once a day
    clock.set(at("2026-11-28 07:30"))                    # Saturday
    assert await digest.run() is False
    async with store.reading() as tx:
        posted = [r for r in await q.outbox_rows(tx, kind="matrix.notice") if "Ringkasan" in r["payload"]["content"]["body"]]
    assert len(posted) == 1 and posted[0]["payload"]["room"] == "pimpinan"


async def test_a_case_rejected_while_waiting_does_not_count_the_wait(store: Store) -> None:
    from schedules.digest import step_durations
    clock = FakeClock(at("2026-11-23 08:00"))
    office = Office(store, clock)
    case = await office.complaint()
    clock.set(at("2026-11-23 08:05"))
    case = await office.act(case, "admin", "ask", "Mohon kirim foto KTP")
    clock.set(at("2026-11-24 09:00"))                     # no answer by the next morning
    case = await office.act(case, "admin", "reject", "Tidak ada jawaban dari pemohon")
    async with store.reading() as tx:
        events = await tx.case_events(case["id"])
    assert step_durations(events, office.cases.calendar, at("2026-11-01 00:00"), at("2026-12-01 00:00")) \
        == [("verifikasi", 5.0)]


async def test_mondays_digest_covers_friday_afternoon(store: Store) -> None:
    """The digest covers the time since the previous one, not the last 24 hours."""
    from schedules.digest import DailyDigest
    clock = FakeClock(at("2026-11-27 07:30"))            # Friday
    office = Office(store, clock)
    digest = DailyDigest(store, office.cases.profile, office.cases.calendar, office.outbox, clock)
    assert await digest.run() is True
    clock.set(at("2026-11-27 13:00"))
    case = await office.complaint("Protes pajak kendaraan")
    clock.set(at("2026-11-27 14:00"))                    # Friday afternoon, after the digest
    await office.act(case, "admin", "reject", "Bukan kewenangan Dukcapil")
    clock.set(at("2026-11-30 07:30"))                    # Monday: 24 hours back is Sunday
    assert await digest.run() is True
    async with store.reading() as tx:
        posted = [r["payload"]["content"]["body"] for r in await q.outbox_rows(tx, kind="matrix.notice")
                  if "Ringkasan" in r["payload"]["content"]["body"]]
    assert len(posted) == 2
    assert "27-11-2026 07:30" in posted[1].splitlines()[0] and "30-11-2026 07:30" in posted[1].splitlines()[0]
    assert "Masuk: 1 · Selesai: 1 (ditolak 1)" in posted[1]
