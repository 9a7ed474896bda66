"""Retention (UU 27/2022): a closed case's personal data goes after the period, its figures stay.

The cases are made by the bridge's own code (intake, the citizen's conversation, the case
service, the outbox delivered by the real effects, files kept on disk by them) on an
injected clock; only Matrix and the WhatsApp service are small stand-ins here. The last
tests run a real bridge (Synapse, the fake Graph API) and its scheduled job.
"""
from __future__ import annotations

import asyncio
import csv
import json
import os
import stat
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nio
import pytest

from bridge import transcript
from bridge.cases import Cases, view
from bridge.channels import base
from bridge.channels.base import Attachment, InboundMessage, Media, StatusUpdate
from bridge.clock import system_clock
from bridge.config import from_dict
from bridge.conversation import Conversation
from bridge.effects import Effects
from bridge.export import export_month, month_rows
from bridge.intake import Intake
from bridge.outbox import Dispatcher, Outbox
from bridge.retention import media_path, purge
from bridge.store import Store
from bridge.workflow import decide
from schedules import Schedules
from schedules.digest import build as build_digest
from schedules.retention import RetentionJob
from main import print_case
from tests.harness import FakeClock, in_thread_of, until
from tests.story import case_reaches, command, complaint
from tests.test_main import config_with_database, main_py

WIB = ZoneInfo("Asia/Jakarta")
ROOT = Path(__file__).resolve().parents[1]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=WIB)


class FakeMatrix:
    """What the effects need of Matrix: events and uploads get ids, nothing more."""

    def __init__(self) -> None:
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    async def send(self, room: str, content: dict[str, Any], txn: str, event_type: str = "m.room.message") -> str:
        return self._id("$event")

    def room_id(self, room: str) -> str:
        return f"!{room.replace(':', '-')}:localhost"

    async def upload(self, data: bytes, mime_type: str, filename: str) -> str:
        return self._id("mxc://localhost/file")

    async def redact(self, room: str, event_id: str, txn: str, reason: str | None = None) -> None:
        return None


class FakeWhatsApp:
    """What the effects need of the WhatsApp service: sends get message ids, files their bytes."""

    name = "whatsapp"
    window_hours = None
    echoes_ref = False
    templates: dict[str, Any] = {}

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.sent: list[tuple[str, str, str]] = []      # (message id, address, text)

    async def send_text(self, address: str, text: str, reply_to: str | None = None, choices: Any = ()) -> str:
        external_id = f"wamid.out{len(self.sent) + 1}"
        self.sent.append((external_id, address, text))
        return external_id

    async def fetch_media(self, att: Attachment) -> Media:
        return Media(self.files[att.ref], att.mime_type)

    async def mark_read(self, external_id: str) -> None:
        return None


class Office:
    """The bridge's case side on one database: intake, conversation, cases, the outbox and its
    effects (files written to ``media/`` as the bridge writes them)."""

    def __init__(self, store: Store, clock: FakeClock, data_dir: Path, database_url: str | None = None) -> None:
        self.settings = from_dict({
            "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:localhost"},
            "rooms": {r: f"#{r}:localhost" for r in ("admin", "kasi", "kabid", "pimpinan")},
            "staff": {"admin": ["@admin:localhost"], "kasi": ["@kasi:localhost"]},
            "whatsapp": {"enabled": False}, "sop": {"profile": "mojokerto", "agenda_format": "470/{seq}/416/{year}"},
            "database": ({"url": database_url, "data_dir": str(data_dir)} if store.path is None
                         else {"path": str(store.path)}),
        }, {"MATRIX_PASSWORD": "x"}, base_dir=data_dir)
        self.store, self.clock, self.data_dir = store, clock, data_dir
        self.media_dir = data_dir / "media"
        self.outbox = Outbox(clock)
        s = self.settings
        self.cases = Cases(s.sop, self.outbox, clock, s.sla.policy)
        self.conversation = Conversation(self.cases, self.outbox, clock, self.cases.texts, s.citizen, "Senin–Jumat")
        self.cases.on_answered = self.conversation.ask_rating
        self.intake = Intake(store, self.cases, self.outbox, clock, self.conversation)
        self.whatsapp = FakeWhatsApp()
        self.dispatcher = Dispatcher(store, self.outbox, clock)
        Effects(store, FakeMatrix(), {"whatsapp": self.whatsapp}, clock, self.media_dir,
                on_status=self.cases.delivery_moved, on_answer_taken=self.cases.answer_taken,
                earlier_card=self.cases.earlier_card, profile=s.sop,
                on_held=self.cases.message_held).register(self.dispatcher)
        self.n = 0

    async def deliver(self) -> None:
        while await self.dispatcher.run_once():
            pass

    async def says(self, wa_id: str, text: str, *, name: str | None = None, photo: bytes | None = None,
                   filename: str | None = None) -> None:
        """A citizen's message through the intake (stored, then taken in), and what follows delivered."""
        self.n += 1
        attachments: tuple[Attachment, ...] = ()
        if photo is not None:
            ref = f"media-{self.n}"
            self.whatsapp.files[ref] = photo
            attachments = (Attachment("document" if filename else "image", ref, "image/jpeg", filename=filename),)
        msg = InboundMessage("whatsapp", f"wamid.in{self.n}", wa_id, self.clock(), base.MEDIA if photo else "text",
                             text, name=name, attachments=attachments)
        await self.intake.accept([msg], [])
        await self.intake.run_once()
        await self.deliver()

    async def complaint(self, wa_id: str, name: str, nik: str, text: str, service: str = "KTP-el") -> dict:
        await self.says(wa_id, f"Nama: {name}\nNIK: {nik}\nLayanan: {service}\nAduan: {text}", name=name)
        async with self.store.reading() as tx:
            citizen = await tx.citizen_by_address("whatsapp", wa_id)
            return await tx.open_case_of(citizen["id"])

    async def act(self, case: dict, role: str, action: str, text: str = "") -> dict:
        async with self.store.transaction() as tx:
            case = await tx.get_case(case["id"])
            d = decide(self.cases.profile, view(case), role, action, text)
            assert d.ok, d.reason
            case = await self.cases.act(tx, case, f"@{role}:localhost", role, d, text)
        await self.deliver()
        return case

    async def delivered(self, text_part: str) -> None:
        """The citizen's phone reports the message containing ``text_part`` delivered."""
        external_id = next(i for i, _, t in self.whatsapp.sent if text_part in t)
        await self.intake.accept([], [StatusUpdate("whatsapp", external_id, "delivered", self.clock())])
        await self.deliver()

    async def case(self, ticket: str) -> dict:
        async with self.store.reading() as tx:
            return await tx.get_case_by_ticket(ticket)


# The citizens, and every personal thing they or staff wrote.
SITI = dict(wa_id="6281100000011", name="Siti Aminah", nik="3402124501900003")
BUDI = dict(wa_id="6281100000012", name="Budi Santoso", nik="3402120101850007")
WATI = dict(wa_id="6281100000013", name="Wati Lestari", nik="3402126502920004")
DEWI = dict(wa_id="6281100000014", name="Dewi Kusuma", nik="3402125203880002")
EKO = dict(wa_id="6281100000015", name="Eko Prasetyo")
PHOTO = b"\xff\xd8\xff\xe0 foto KTP lama Siti " + bytes(300)
PURGED_TEXTS = [
    "KTP-el saya hilang di pasar Beringharjo",           # Siti's complaint
    "Ini foto KTP lama saya",                            # her photo's caption
    "ktp_lama_siti.jpg",                                  # its file name
    "Kapan terakhir KTP terlihat?",                       # staff's question
    "Terakhir saya lihat di rumah Jalan Mawar 12",       # her answer
    "Sudah dicek, pemohon tinggal di Jalan Mawar",       # a staff note that quotes her
    "Silakan ambil KTP-el pengganti di loket 3",         # the answer
    "Pelayanan cepat, terima kasih loket 3",             # her rating's comment
    "Pajak motor saya terlalu mahal",                    # Budi's complaint
    "Pak Budi, pajak kendaraan bukan kewenangan kami",   # the rejection's reason
    "Akta kelahiran anak saya salah tulis",              # Dewi's first complaint
    "Halo, ini kantor Dukcapil?",                        # Eko's chat, no case
]
KEPT_TEXTS = ["Wati Lestari", "NIK saya tidak ditemukan di sistem",   # Wati's case is open
              "Dewi Kusuma", "Kartu Keluarga belum diperbarui"]         # Dewi writes again later


def personal(*citizens: dict) -> list[str]:
    """Their names, numbers and NIKs."""
    return [c[k] for c in citizens for k in ("name", "wa_id", "nik") if k in c]


@pytest.fixture
async def office(tmp_path: Path, database_url: str):
    """November 2026: Siti's complaint (a photo, a question, a note, an answer with an agenda
    number, delivered, rated with a comment), Budi's (rejected), Dewi's (rejected), Wati's
    (still open), Eko only says hello. Then, two years later, Dewi writes again."""
    data = tmp_path / "data"
    # On SQLite and on PostgreSQL (database_url); the files beside it are in data either way.
    store = await Store.open(database_url if database_url.startswith("postgresql") else data / "pengaduan.db")
    clock = FakeClock(at("2026-11-02 08:00"))
    o = Office(store, clock, data, database_url)

    siti = await o.complaint(SITI["wa_id"], SITI["name"], SITI["nik"], PURGED_TEXTS[0])
    clock.set(at("2026-11-02 08:03"))
    await o.says(SITI["wa_id"], PURGED_TEXTS[1], photo=PHOTO, filename=PURGED_TEXTS[2])
    clock.set(at("2026-11-02 08:05"))
    await o.act(siti, "admin", "ask", PURGED_TEXTS[3])
    clock.set(at("2026-11-02 09:00"))
    await o.says(SITI["wa_id"], PURGED_TEXTS[4])
    for when, role, action, text in (("09:05", "admin", "note", PURGED_TEXTS[5]), ("09:10", "admin", "verify", ""),
                                     ("09:30", "admin", "answer", PURGED_TEXTS[6]), ("09:45", "kasi", "verify", ""),
                                     ("10:00", "kabid", "approve", ""), ("10:10", "admin", "verify", ""),
                                     ("10:15", "admin", "send", "")):
        clock.set(at(f"2026-11-02 {when}"))
        siti = await o.act(siti, role, action, text)
    clock.set(at("2026-11-02 10:20"))
    await o.delivered(PURGED_TEXTS[6])
    assert (await o.case(siti["ticket"]))["state"] == "closed"
    clock.set(at("2026-11-02 10:25"))
    await o.says(SITI["wa_id"], "5")
    await o.says(SITI["wa_id"], PURGED_TEXTS[7])

    clock.set(at("2026-11-03 08:00"))
    budi = await o.complaint(BUDI["wa_id"], BUDI["name"], BUDI["nik"], PURGED_TEXTS[8], "Lainnya")
    clock.set(at("2026-11-03 08:30"))
    await o.act(budi, "admin", "reject", PURGED_TEXTS[9])

    clock.set(at("2026-11-04 08:00"))
    dewi = await o.complaint(DEWI["wa_id"], DEWI["name"], DEWI["nik"], PURGED_TEXTS[10], "Akta Kelahiran")
    clock.set(at("2026-11-04 08:20"))
    await o.act(dewi, "admin", "reject", "Silakan datang ke loket akta")

    clock.set(at("2026-11-05 08:00"))
    wati = await o.complaint(WATI["wa_id"], WATI["name"], WATI["nik"], KEPT_TEXTS[1], "Lainnya")
    clock.set(at("2026-11-05 08:10"))
    await o.act(wati, "admin", "verify")

    clock.set(at("2026-11-06 08:00"))
    await o.says(EKO["wa_id"], PURGED_TEXTS[11], name=EKO["name"])

    clock.set(at("2028-12-20 09:00"))                # two years on, Dewi complains again
    await o.complaint(DEWI["wa_id"], DEWI["name"], DEWI["nik"], KEPT_TEXTS[3], "Kartu Keluarga")
    clock.set(at("2029-01-02 02:00"))                # the purge's night: 730 days reach back to 3 January 2027
    o.tickets = {"siti": siti["ticket"], "budi": budi["ticket"], "dewi": dewi["ticket"], "wati": wati["ticket"]}
    try:
        yield o
    finally:
        await store.close()


async def raw_database(store: Store) -> bytes:
    """Every byte SQLite keeps of the database: the file, and the -wal beside it if any. On
    PostgreSQL (whose files keep a dead row until VACUUM reuses its space) every value of
    every row, as text."""
    if store.path is None:
        return repr(await dump(store)).encode()
    wal = Path(f"{store.path}-wal")
    return store.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def rows(o: Office, month: str = "2026-11") -> list[dict[str, Any]]:
    async with o.store.reading() as tx:
        return await month_rows(tx, o.cases.profile, o.cases.calendar, month)


async def export_csv(o: Office, folder: Path, month: str = "2026-11") -> list[dict[str, str]]:
    """``main.py export --month``'s CSV, read back."""
    done = await export_month(o.store, o.cases.profile, o.cases.calendar, month, folder)
    with open(done.csv, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


async def dump(store: Store) -> dict[str, list[dict]]:
    """Every row of every table."""
    async with store.reading() as tx:
        tables = [r["name"] for r in await tx._all(
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'" if tx.pg
            else "SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: await tx._all(f"SELECT * FROM {t} ORDER BY 1") for t in tables}


async def test_the_purge_removes_the_personal_data_and_keeps_the_figures(office: Office) -> None:
    o = office
    photo = media_path(o.media_dir, "whatsapp", "media-2")
    assert photo.read_bytes() == PHOTO                    # kept on disk by the effects, where retention looks
    before = await rows(o)
    exported_before = await export_csv(o, o.data_dir / "before")
    async with o.store.reading() as tx:
        digest_before = await build_digest(tx, o.cases.profile, o.cases.calendar, at("2026-12-01 00:00"),
                                           since=at("2026-11-01 00:00"))
    raw = await raw_database(o.store)
    assert [t for t in PURGED_TEXTS + personal(SITI, BUDI, DEWI, EKO) if t.encode() not in raw] == []   # the check can see

    done = await purge(o.store, o.media_dir, days=730, now=o.clock())

    t = o.tickets
    assert sorted(done.tickets) == sorted([t["siti"], t["budi"], t["dewi"]])
    assert (done.anonymised, done.deleted, done.files, done.bytes) == (2, 1, 1, len(PHOTO))   # Siti, Budi; Eko
    assert done.checkpointed is True
    assert not photo.exists()

    # The month's report: the same rows, but the citizen's comment; the files the same but for it.
    after = await rows(o)
    siti_row = next(r for r in before if r["Nomor tiket"] == t["siti"])
    assert siti_row["Komentar pemohon"] == PURGED_TEXTS[7] and siti_row["Nomor agenda"]
    assert len(before) == 4 and after == [{**r, "Komentar pemohon": None} for r in before]
    exported_after = await export_csv(o, o.data_dir / "after")
    assert exported_after == [{**r, "Komentar pemohon": ""} for r in exported_before]
    async with o.store.reading() as tx:
        digest_after = await build_digest(tx, o.cases.profile, o.cases.calendar, at("2026-12-01 00:00"),
                                          since=at("2026-11-01 00:00"))
    assert digest_after == digest_before

    # No name, number, NIK or text of theirs anywhere in the file (nor in a -wal).
    raw = await raw_database(o.store)
    # (Dewi's name, number and NIK stay with her new case.)
    assert [s for s in PURGED_TEXTS + personal(SITI, BUDI, EKO) if s.encode() in raw] == []
    assert all(s.encode() in raw for s in KEPT_TEXTS + personal(WATI))       # the open case, and Dewi now


async def test_what_a_purged_case_keeps(office: Office) -> None:
    o = office
    await purge(o.store, o.media_dir, days=730, now=o.clock())
    tables = await dump(o.store)
    siti = next(c for c in tables["cases"] if c["ticket"] == o.tickets["siti"])
    assert siti["purged_at"] and siti["summary"] == "" and siti["answer_draft"] is None
    assert (siti["citizen_name"], siti["nik"]) == (None, None)
    assert (siti["category"], siti["channel"], siti["outcome"], siti["agenda_number"], siti["approved_by"]) == (
        "KTP-el", "whatsapp", "dijawab", "470/1/416/2026", "@kabid:localhost")
    (rating,) = tables["ratings"]
    assert (rating["case_id"], rating["score"], rating["comment"]) == (siti["id"], 5, None)

    # The audit trail: who did what and when, from which step to which; no note but the bot's own.
    events = [e for e in tables["case_events"] if e["case_id"] == siti["id"]]
    admin, kasi, kabid = "@admin:localhost", "@kasi:localhost", "@kabid:localhost"
    assert [(e["kind"], e["actor"], e["from_step"], e["to_step"]) for e in events] == [
        ("opened", "bot", None, "verifikasi"), ("citizen_message", "citizen", None, None),
        ("ask", admin, "verifikasi", "verifikasi"), ("citizen_message", "citizen", None, None),
        ("citizen_answered", "citizen", "verifikasi", "verifikasi"), ("note", admin, "verifikasi", "verifikasi"),
        ("verify", admin, "verifikasi", "draf"), ("answer", admin, "draf", "final"),
        ("verify", kasi, "final", "paraf"), ("approve", kabid, "paraf", "cek"), ("verify", admin, "cek", "kirim"),
        ("send", admin, "kirim", "selesai"), ("answer_delivered", "citizen", "selesai", "selesai")]
    kept_notes = {e["kind"]: e["note"] for e in events if e["note"]}
    assert kept_notes == {"opened": "Pengaduan diterima lewat WhatsApp", "answer_delivered": "delivered"}
    approve = next(e for e in events if e["kind"] == "approve")
    assert (approve["actor"], approve["role"], json.loads(approve["data"])) == (
        "@kabid:localhost", "kabid", {"agenda_number": "470/1/416/2026"})
    assert all(not e["data"] or "inbound" not in json.loads(e["data"]) for e in events)

    # Messages both ways: times and kinds stay; addresses, ids and texts go.
    for m in (r for r in tables["inbound"] if r["case_id"] == siti["id"]):
        assert m["address"] == "" and m["external_id"].startswith("purged:")
        assert json.loads(m["message"])["attachments"] == [] and m["received_at"]
    for r in (r for r in tables["outbox"] if r["case_id"] == siti["id"]):
        assert r["progress"] is None and r["result"] is None and json.loads(r["payload"])["purged"]
        assert SITI["wa_id"] not in r["target"]
    assert all(d["external_id"].startswith("purged:") for d in tables["deliveries"] if d["case_id"] == siti["id"])

    # Siti and Budi are anonymised (their cases refer to them); Eko, who never had a case, is gone.
    citizens = {c["id"]: c for c in tables["citizens"]}
    anon = citizens[siti["citizen_id"]]
    assert (anon["name"], anon["user_id"], anon["username"], anon["address"]) == (
        None, None, None, f"purged:{anon['id']}") and anon["purged_at"]
    assert {c["name"] for c in citizens.values()} == {None, WATI["name"], DEWI["name"]}
    assert tables["conversations"] == [] and tables["held_messages"] == []

    # Staff's !cetak still prints it (from what stayed), with nothing of theirs in it.
    async with o.store.reading() as tx:
        html = transcript.to_html(await transcript.build(tx, siti["id"], profile=o.cases.profile))
    assert o.tickets["siti"] in html and "Diparaf oleh @kabid:localhost" in html
    assert not any(s in html for s in PURGED_TEXTS + personal(SITI))


async def test_an_open_case_and_a_recent_one_are_never_purged(office: Office) -> None:
    o = office
    done = await purge(o.store, o.media_dir, days=1, now=o.clock())        # everything closed before yesterday
    assert o.tickets["wati"] not in done.tickets
    wati = await o.case(o.tickets["wati"])
    assert wati["state"] == "open" and wati["purged_at"] is None and wati["summary"]
    async with o.store.reading() as tx:
        assert (await tx.citizen_by_address("whatsapp", WATI["wa_id"]))["name"] == WATI["name"]
        dewi = await tx.citizen_by_address("whatsapp", DEWI["wa_id"])    # wrote two weeks ago: not anonymised
        assert dewi["name"] == DEWI["name"] and dewi["purged_at"] is None
        assert (await tx.get_case_by_ticket(o.tickets["dewi"]))["purged_at"] is not None


async def test_a_longer_period_keeps_the_cases(office: Office) -> None:
    o = office
    done = await purge(o.store, o.media_dir, days=800, now=o.clock())     # back to 24 October 2026
    assert done.tickets == [] and done.files == 0
    assert (await o.case(o.tickets["siti"]))["summary"] == PURGED_TEXTS[0]
    assert media_path(o.media_dir, "whatsapp", "media-2").exists()


async def test_a_dry_run_says_what_would_go_and_changes_nothing(office: Office) -> None:
    o = office
    before = await dump(o.store)
    photo = media_path(o.media_dir, "whatsapp", "media-2")
    would = await purge(o.store, o.media_dir, days=730, now=o.clock(), dry_run=True)
    assert would.dry_run and sorted(would.tickets) == sorted([o.tickets["siti"], o.tickets["budi"], o.tickets["dewi"]])
    assert (would.anonymised, would.deleted, would.files, would.bytes) == (2, 1, 1, len(PHOTO))
    assert await dump(o.store) == before and photo.read_bytes() == PHOTO
    lines = would.lines(WIB)
    assert lines[0].startswith("Uji coba (--dry-run): tidak ada yang diubah.") and "03-01-2027 02:00" in lines[0]
    assert "akan dihapus" in lines[1] and o.tickets["siti"] in lines[1]

    done = await purge(o.store, o.media_dir, days=730, now=o.clock())
    assert (done.tickets, done.anonymised, done.deleted, done.files, done.loose) == (
        would.tickets, would.anonymised, would.deleted, would.files, would.loose)
    assert sum(done.loose.values()) > 0                  # Eko's hello, and what was said to him


async def test_a_second_purge_does_nothing(office: Office) -> None:
    o = office
    await purge(o.store, o.media_dir, days=730, now=o.clock())
    first = await dump(o.store)
    o.clock.advance(days=1)
    again = await purge(o.store, o.media_dir, days=730, now=o.clock())
    assert (again.tickets, again.anonymised, again.deleted, again.files, sum(again.loose.values())) == ([], 0, 0, 0, 0)
    assert await dump(o.store) == first


async def test_a_case_with_an_effect_on_its_way_waits(office: Office) -> None:
    o = office
    siti = await o.case(o.tickets["siti"])
    async with o.store.transaction() as tx:
        await o.outbox.cards_update(tx, siti["id"])          # not delivered yet
    done = await purge(o.store, o.media_dir, days=730, now=o.clock())
    assert done.waiting == [o.tickets["siti"]] and o.tickets["siti"] not in done.tickets
    assert (await o.case(o.tickets["siti"]))["summary"] == PURGED_TEXTS[0]
    await o.deliver()
    assert (await purge(o.store, o.media_dir, days=730, now=o.clock())).tickets == [o.tickets["siti"]]


async def test_the_audit_trail_stays_append_only(office: Office) -> None:
    """Migration 8's triggers: only a purged case's events lose personal data, nothing else changes."""
    o = office
    wati = await o.case(o.tickets["wati"])
    siti = await o.case(o.tickets["siti"])

    async def refused(sql: str, *args: Any, match: str = "append-only") -> None:
        with pytest.raises(Exception, match=match):
            async with o.store.transaction() as tx:
                await tx.conn.execute(sql, *args)

    await refused("UPDATE case_events SET note = NULL WHERE case_id = ?", wati["id"])        # not purged
    await refused("UPDATE case_events SET note = NULL WHERE case_id = ?", siti["id"])        # not purged yet
    await refused("UPDATE cases SET purged_at = '2029' WHERE id = ?", wati["id"], match="closed")   # open
    await purge(o.store, o.media_dir, days=730, now=o.clock())
    await refused("UPDATE case_events SET actor = 'x' WHERE case_id = ?", siti["id"])
    await refused("UPDATE case_events SET at = '2020' WHERE case_id = ?", siti["id"])
    await refused("UPDATE case_events SET kind = 'x' WHERE case_id = ?", siti["id"])
    await refused("UPDATE case_events SET note = 'x' WHERE case_id = ? AND kind = 'ask'", siti["id"])
    await refused("UPDATE case_events SET data = '{\"agenda_number\": \"1/2/3\"}' WHERE case_id = ?"
                  " AND kind = 'approve'", siti["id"])
    await refused("DELETE FROM case_events WHERE case_id = ?", siti["id"])
    await refused("UPDATE cases SET purged_at = NULL WHERE id = ?", siti["id"], match="once")
    await refused("UPDATE cases SET state = 'open' WHERE id = ?", siti["id"], match="stays closed")
    async with o.store.transaction() as tx:             # what is allowed: losing a kept note, or data keys
        await tx.conn.execute("UPDATE case_events SET note = NULL, data = NULL WHERE case_id = ?", siti["id"])


async def test_the_database_and_media_are_owner_only(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "data" / "pengaduan.db")
    try:
        async with store.transaction() as tx:
            await tx.set_state("k", "v")
        mode = lambda p: stat.S_IMODE(p.stat().st_mode)    # noqa: E731
        assert mode(store.path) == 0o600 and mode(Path(f"{store.path}-wal")) == 0o600
        assert mode(Path(f"{store.path}-shm")) == 0o600
        assert mode(tmp_path / "data" / "media") == 0o700
    finally:
        await store.close()
    # A database from before (made wider): narrowed when the bridge opens it.
    os.chmod(store.path, 0o644)
    os.chmod(tmp_path / "data" / "media", 0o755)
    await (await Store.open(store.path)).close()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data" / "media").stat().st_mode) == 0o700


async def test_main_case_says_the_case_was_purged(office: Office) -> None:
    o = office
    await purge(o.store, o.media_dir, days=730, now=o.clock())
    text = await asyncio.to_thread(print_case, o.settings, o.tickets["siti"])
    assert text.startswith(f"TRANSKRIP PENGADUAN {o.tickets['siti']}\n\nData pribadi pengaduan ini telah dihapus "
                           "(retensi) pada 02-01-2029 02:00 WIB")
    assert "Layanan: KTP-el" in text and "Nomor agenda: 470/1/416/2026" in text and "Penilaian: 5 dari 5" in text
    assert "Paraf: @kabid:localhost" in text and "Status: selesai (dijawab)" in text
    assert "\n02-11-2026 08:05 WIB ❓ Pertanyaan ke pemohon oleh @admin:localhost (Admin WA)\n" in text
    assert "\n02-11-2026 09:05 WIB 🗒️ Catatan oleh @admin:localhost (Admin WA)\n" in text     # its text gone
    assert not any(s in text for s in PURGED_TEXTS + personal(SITI))
    wati = await asyncio.to_thread(print_case, o.settings, o.tickets["wati"])
    assert WATI["name"] in wati and "dihapus (retensi)" not in wati


# -- the scheduled job ----------------------------------------------------------------------

async def test_the_job_runs_at_its_time_by_the_injected_clock(office: Office) -> None:
    o = office
    job = RetentionJob(o.store, o.media_dir, 730, o.clock)
    schedules = Schedules("Asia/Jakarta", 30, _nothing, 7, 30, _nothing, retention=(time(2, 0), job.run))
    trigger = schedules.scheduler.get_job("retention").trigger
    # From the evening before, the next run is 02:00 office time.
    assert trigger.get_next_fire_time(None, at("2029-01-01 21:00")) == at("2029-01-02 02:00")
    o.clock.set(at("2029-01-02 02:00"))
    done = await job.run()
    assert sorted(done.tickets) == sorted([o.tickets["siti"], o.tickets["budi"], o.tickets["dewi"]])
    assert (await job.run()).tickets == []                         # the same night again: nothing left


async def test_the_period_counts_from_the_close(office: Office) -> None:
    o = office
    closed = (await o.case(o.tickets["siti"]))["closed_at"]
    job = RetentionJob(o.store, o.media_dir, 730, o.clock)
    o.clock.set(closed + timedelta(days=730, minutes=-1))
    assert (await job.run()).tickets == []
    o.clock.set(closed + timedelta(days=730, minutes=1))
    assert (await job.run()).tickets == [o.tickets["siti"]]          # Budi's closed a day later


async def _nothing() -> None:
    return None


# -- a real bridge: its job fires, and the shell's commands ------------------------------------

async def test_the_bridge_purges_a_closed_case_at_its_time(make_env) -> None:
    clock = FakeClock(at("2026-11-23 08:00"))                 # Monday morning
    env = await make_env({"retention": {"enabled": True, "days": 730, "time": "02:00"}}, clock=clock)
    wa_id = "6281234500777"
    card = await complaint(env, wa_id, "KTP-el saya rusak terkena banjir", name="Rina Marlina")
    media_id = env.graph.add_media(PHOTO, "image/jpeg")
    await env.send(env.graph.image(wa_id, media_id, caption="Foto KTP yang rusak"))
    await env.admin.wait_for(lambda s: isinstance(s.event, nio.RoomMessageImage)
                             and in_thread_of(card.event_id)(s.event), what="the photo in the thread")
    photo = media_path(env.settings.data_dir / "media", "whatsapp", media_id)
    assert photo.read_bytes() == PHOTO
    clock.set(at("2026-11-23 08:10"))
    await command(env, "admin", card, "!tolak Silakan datang ke loket dengan KTP yang rusak")
    closed = await case_reaches(env, card.ticket, state="closed")

    async def nothing_pending() -> bool:
        async with env.bridge.store.reading() as tx:
            return (await tx.outbox_backlog())["pending"] == 0
    await until(nothing_pending, what="every effect delivered")

    job = env.bridge.schedules.scheduler.get_job("retention")
    assert job.trigger.get_next_fire_time(None, clock()) == at("2026-11-24 02:00")   # 02:00 office time
    clock.set(closed["closed_at"] + timedelta(days=730, hours=12))
    job.modify(next_run_time=datetime.now(timezone.utc))     # its time has come: APScheduler fires it

    async def purged() -> bool:
        async with env.bridge.store.reading() as tx:
            return bool((await tx.get_case_by_ticket(card.ticket))["purged_at"])
    await until(purged, what="the scheduled purge")
    assert not photo.exists()
    text = await asyncio.to_thread(print_case, env.settings, card.ticket)
    assert "telah dihapus (retensi)" in text and "Rina Marlina" not in text and "banjir" not in text
    assert f"❌ Ditolak oleh {env.admin.user_id} (Admin WA) [Verifikasi pengaduan → selesai, ditolak]" in text


def test_main_purge_dry_run_then_purge(tmp_path: Path) -> None:
    """``main.py purge`` on the system clock: the case is made that many days ago, whatever today is."""
    db = tmp_path / "data" / "pengaduan.db"

    async def make() -> str:
        store = await Store.open(db)
        try:
            clock = FakeClock(system_clock() - timedelta(days=100))
            o = Office(store, clock, db.parent)
            case = await o.complaint(BUDI["wa_id"], BUDI["name"], BUDI["nik"], PURGED_TEXTS[8], "Lainnya")
            clock.advance(minutes=30)
            await o.act(case, "admin", "reject", PURGED_TEXTS[9])
            return case["ticket"]
        finally:
            await store.close()
    ticket = asyncio.run(make())
    config = config_with_database(tmp_path, db)
    before = db.read_bytes()

    kept = main_py("--config", str(config), "purge", "--older-than", "101", "--dry-run")
    assert kept.returncode == 0, kept.stderr
    assert "  0 pengaduan akan dihapus data pribadinya" in kept.stdout.splitlines()
    would = main_py("--config", str(config), "purge", "--older-than", "30", "--dry-run")
    assert would.returncode == 0 and would.stdout.startswith("Uji coba (--dry-run): tidak ada yang diubah.")
    assert f"  1 pengaduan akan dihapus data pribadinya: {ticket}" in would.stdout.splitlines()
    assert db.read_bytes() == before
    assert BUDI["name"] in main_py("--config", str(config), "case", ticket).stdout

    done = main_py("--config", str(config), "purge", "--older-than", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Retensi: pengaduan yang ditutup sebelum ")
    assert f"  1 pengaduan dihapus data pribadinya: {ticket}" in done.stdout.splitlines()
    assert "  warga dianonimkan: 1, dihapus: 0" in done.stdout.splitlines()
    shown = main_py("--config", str(config), "case", ticket)
    assert shown.returncode == 0 and "telah dihapus (retensi)" in shown.stdout and BUDI["name"] not in shown.stdout
    again = main_py("--config", str(config), "purge", "--older-than", "30", "--vacuum")
    assert again.returncode == 0 and "  0 pengaduan dihapus data pribadinya" in again.stdout.splitlines()
    assert not any(s.encode() in db.read_bytes() for s in personal(BUDI) + PURGED_TEXTS[8:10])

    bad = main_py("--config", str(config), "purge", "--older-than", "0")
    assert bad.returncode == 2 and "at least 1 day" in bad.stderr
    (tmp_path / "elsewhere").mkdir()
    missing = config_with_database(tmp_path / "elsewhere", tmp_path / "elsewhere" / "none.db")
    out = main_py("--config", str(missing), "purge", "--dry-run")
    assert out.returncode == 2 and out.stderr.startswith("error: no database at ")
    assert not (tmp_path / "elsewhere" / "none.db").exists()


def test_the_retention_settings(tmp_path: Path) -> None:
    from bridge.config import ConfigError, load
    env = {"MATRIX_PASSWORD": "pw", "WHATSAPP_TOKEN": "t", "WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "v"}
    shipped = load(ROOT / "config.toml", env).retention
    assert (shipped.enabled, shipped.days, shipped.run_at) == (False, 730, time(2, 0))    # off unless asked

    def with_retention(text: str):
        config = tmp_path / "config.toml"
        config.write_text((ROOT / "config.toml").read_text() + f"\n[retention]\n{text}\n")
        return load(config, env).retention
    r = with_retention('enabled = true\ndays = 365\ntime = "01:30"')
    assert (r.enabled, r.days, r.run_at) == (True, 365, time(1, 30))
    for bad, named in (("days = 0", "[retention] days: must be at least 1"), ('days = "730"', "[retention] days"),
                       ('time = "2 pagi"', "[retention] time"), ('enabled = "ya"', "[retention] enabled")):
        with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
            with_retention(bad)
