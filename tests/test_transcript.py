"""The printable transcript: masked in Matrix (``!cetak``), whole in the operator's shell."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from bridge import transcript
from bridge.workflow import PROFILES
from bridge.channels.base import InboundMessage
from bridge.store import Store

PHONE, NIK, TICKET = "6281234567890", "3402124501900003", "ADU-2026-000001"


async def _case(db: Path) -> int:
    """One WhatsApp complaint whose text and a staff note carry the citizen's NIK."""
    at = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)
    store = await Store.open(db)
    try:
        async with store.transaction() as tx:
            citizen = await tx.upsert_citizen("whatsapp", PHONE, name="Siti", user_id=None, at=at)
            case_id = await tx.create_case(ticket=TICKET, citizen_id=citizen, channel="whatsapp",
                                           summary="KTP-el", step="draf", holder_role="admin",
                                           opened_at=at, due_at=None, step_due_at=None)
            await tx.insert_inbound(InboundMessage("whatsapp", "wamid.1", PHONE, at, "text",
                                                   f"KTP-el belum jadi, NIK saya {NIK}", "Siti"), at)
            ((inbound_id, _),) = await tx.pending_inbound()
            await tx.finish_inbound(inbound_id, case_id=case_id)
            await tx.add_event(case_id, at=at + timedelta(minutes=5), actor="@admin:test", role="admin",
                               kind="note", note=f"cek NIK {NIK} di SIAK")
        return case_id
    finally:
        await store.close()


async def _render(db: Path, case_id: int, **kw) -> tuple[str, str]:
    store = await Store.open(db)
    try:
        async with store.reading() as tx:
            record = await transcript.build(tx, case_id, **kw)
            assert record == await transcript.build_by_ticket(tx, TICKET, **kw)
        return transcript.to_html(record), transcript.to_text(record)
    finally:
        await store.close()


async def test_the_transcript_for_matrix_masks_the_phone_number_and_the_nik(tmp_path) -> None:
    db = tmp_path / "db.sqlite"
    case_id = await _case(db)
    for out in await _render(db, case_id):          # the default: what !cetak posts
        assert PHONE not in out and "62812*****890" in out           # as on the case card
        assert NIK not in out and "KTP-el belum jadi, NIK saya 340212******0003" in out
        assert "cek NIK 340212******0003 di SIAK" in out
        assert TICKET in out and "Siti" in out


async def test_the_transcript_for_the_operator_shows_them_whole(tmp_path) -> None:
    db = tmp_path / "db.sqlite"
    case_id = await _case(db)
    for out in await _render(db, case_id, reveal_contact=True):
        assert PHONE in out and f"KTP-el belum jadi, NIK saya {NIK}" in out


def test_main_case_command_prints_the_whole_contact(tmp_path) -> None:
    import asyncio

    from main import print_case
    db = tmp_path / "db.sqlite"
    asyncio.run(_case(db))
    text = print_case(SimpleNamespace(database_url=f"sqlite:///{db}", sop=PROFILES["mojokerto"]), TICKET.lower())
    assert text.startswith(f"TRANSKRIP PENGADUAN {TICKET}")
    assert f"(WhatsApp {PHONE})" in text and f"NIK saya {NIK}" in text
