"""Texts that staff and citizens read: commands parsed whole, messages within their limits."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from bridge import messages as msgs
from bridge.roles.base import load_all, parse
from bridge.workflow import PROFILES

load_all()
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
CASE = {"ticket": "ADU-2026-000007", "channel": "whatsapp", "opened_at": T0, "due_at": None,
        "step_due_at": None, "category": None, "answer_draft": None, "agenda_number": None, "step": "draf",
        "state": "open", "outcome": None, "closed_at": None}
CITIZEN = {"name": "Siti Aminah", "address": "6281234567890"}


def test_a_command_keeps_its_lines_and_finds_its_ticket() -> None:
    p = parse("!jawab\nYth. Ibu,\n\nKTP-el sudah jadi.")
    assert (p.name, p.ticket, p.text) == ("jawab", None, "Yth. Ibu,\n\nKTP-el sudah jadi.")
    p = parse("!answer ADU-2026-000007\nBaris satu\nBaris dua")
    assert (p.name, p.ticket, p.text) == ("answer", "ADU-2026-000007", "Baris satu\nBaris dua")
    assert parse("!tutup\tNomor tidak aktif").text == "Nomor tidak aktif"
    assert parse("! bukan perintah") is None and parse("biasa saja") is None


def test_an_answer_that_would_not_fit_one_message_says_how_much_to_cut() -> None:
    from bridge.cases import Cases
    from bridge.outbox import Outbox
    from bridge.worktime import DEFAULT_HOURS, SlaPolicy, WorkCalendar
    cases = Cases(PROFILES["mojokerto"], Outbox(lambda: T0), lambda: T0,
                  SlaPolicy(WorkCalendar.from_config("Asia/Jakarta", DEFAULT_HOURS, []), 0.8, 30))
    assert cases.too_long("answer", CASE, "a" * 3900) is None
    over = cases.too_long("answer", CASE, "a" * 4090)
    # The room left is what the ticket line, the longest agenda number and the closing leave.
    room = msgs.CITIZEN_TEXT_MAX - len(cases.to_citizen(
        "send", {**CASE, "answer_draft": "x", "agenda_number": "470/999999/416-314/9999"}, "")) + 1
    assert over is not None and f"paling banyak {room}" in over and f"Persingkat {4090 - room}" in over
    assert cases.too_long("ask", CASE, "b" * 4090) is not None
    assert cases.too_long("note", CASE, "c" * 9000) is None              # never sent to the citizen


def _event(i: int) -> dict:
    return {"at": T0 + timedelta(minutes=i), "kind": "note", "actor": "@admin:dinas",
            "role": "admin", "from_step": "draf", "to_step": "draf", "note": f"catatan {i} " + "x" * 400,
            "data": None}


def test_a_card_with_a_long_history_shows_its_latest_part_within_the_event_limit() -> None:
    step = PROFILES["mojokerto"].step("final")
    history = [_event(i) for i in range(400)]
    card = msgs.case_card(case=CASE, citizen=CITIZEN, step=step, text="KTP-el belum jadi", attachments=[],
                          history=history, escalated=True, room_role="kasi")
    content = card.content()
    assert len(json.dumps(content, ensure_ascii=False).encode()) <= msgs.MAX_EVENT_BYTES < 65_536
    assert "catatan 399" in content["body"] and "catatan 0 " not in content["body"]
    assert "!riwayat atau !cetak" in content["body"] and "!riwayat atau !cetak" in content["formatted_body"]


def test_any_message_is_cut_to_the_event_limit_with_a_pointer() -> None:
    huge = msgs.Rich("<b>" * 30_000, msgs.esc("<b>" * 30_000))          # escaping makes it grow
    content = huge.notice()
    assert len(json.dumps(content, ensure_ascii=False).encode()) <= msgs.MAX_EVENT_BYTES
    assert content["body"].endswith("(terpotong; teks lengkap: !riwayat atau !cetak)")
    assert "<b>" not in content["formatted_body"]                        # still escaped


def test_no_text_for_matrix_shows_a_whole_nik() -> None:
    step = PROFILES["mojokerto"].step("verifikasi")
    card = msgs.case_card(case=CASE, citizen=CITIZEN, step=step, attachments=[], room_role="kasi",
                          text="Nama: Siti\nNIK : 3402124501900003\nAduan: KTP-el belum jadi")
    assert "3402124501900003" not in json.dumps(card.content())
    assert "NIK: 340212******0003" in card.body
