"""The WhatsApp notification parser against Meta's documented shapes.

The notifications are our own, in tests/fixtures/whatsapp/, written from the documented
shapes (API notes, "WhatsApp Cloud API"). Point WHATSAPP_SAMPLES_DIR at a folder of
real sample notifications (JSON files of name -> notification) to check those too.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.channels import base
from bridge.channels.whatsapp import (BadPayload, normalize_msisdn, parse_notification,
                                      signature_ok)

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
SAMPLES_DIR = os.environ.get("WHATSAPP_SAMPLES_DIR")
BSUID = re.compile(r"[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}")
OURS = "wamid.SEJnNjI4MTEwMDAwMDAwMC1vdXQtMDA0Mg=="    # a message the bridge sent earlier


def load(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every notification of every JSON file in ``folder``, named ``file:name``."""
    out = []
    for f in sorted(folder.glob("*.json")):
        for name, payload in json.loads(f.read_text(encoding="utf-8")).items():
            out.append((f"{f.stem}:{name}", payload))
    return out


FIXTURE_LIST = load(FIXTURES)


def samples() -> list[tuple[str, dict[str, Any]]]:
    """Our fixtures, and the real samples when WHATSAPP_SAMPLES_DIR points at them
    (test_whatsapp_e2e posts them all to the bridge)."""
    return FIXTURE_LIST + (load(Path(SAMPLES_DIR)) if SAMPLES_DIR else [])


def check_parses(payload: dict[str, Any]) -> None:
    """One parsed message or status for each raw one, in order, with its id and an aware time."""
    messages, statuses = parse_notification(payload)
    values = [c["value"] for e in payload["entry"] for c in e["changes"]]
    raw_messages = [m for v in values for m in v.get("messages", [])]
    raw_statuses = [s for v in values for s in v.get("statuses", [])]
    assert len(messages) == len(raw_messages)
    assert len(statuses) == len(raw_statuses)
    for m, raw in zip(messages, raw_messages):
        assert m.external_id == raw["id"]
        assert m.address.isdigit() or BSUID.fullmatch(m.address) or not raw.get("from", "").isdigit()
        assert m.at.tzinfo is not None
    for st, raw in zip(statuses, raw_statuses):
        assert st.external_id == raw["id"] and st.status == raw["status"]
        assert st.at.tzinfo is not None


def test_the_fixtures_cover_every_kind_of_notification() -> None:
    files = {name.split(":")[0] for name, _ in FIXTURE_LIST}
    assert files == {"messages", "choices", "system", "changes", "statuses"}
    assert len(FIXTURE_LIST) >= 30


@pytest.mark.parametrize("name,payload", FIXTURE_LIST, ids=[n for n, _ in FIXTURE_LIST])
def test_every_fixture_parses(name: str, payload: dict[str, Any]) -> None:
    check_parses(payload)


@pytest.mark.skipif(not SAMPLES_DIR, reason="WHATSAPP_SAMPLES_DIR is not set")
def test_every_real_sample_parses() -> None:
    real = load(Path(SAMPLES_DIR or "."))
    assert real, f"no *.json notifications in {SAMPLES_DIR}"
    for name, payload in real:
        try:
            check_parses(payload)
        except (AssertionError, BadPayload) as e:
            raise AssertionError(f"{name}: {e!r}") from e


def _one(fixture: str) -> base.InboundMessage:
    messages, _ = parse_notification(dict(FIXTURE_LIST)[fixture])
    assert len(messages) == 1
    return messages[0]


def test_text_keeps_body_name_and_user_id() -> None:
    m = _one("messages:text")
    assert m.kind == base.TEXT
    assert m.text == "Selamat siang, KTP-el saya belum jadi padahal sudah rekam tiga bulan lalu."
    assert m.address == "6281234567890"
    assert m.name == "Siti Aminah"
    assert m.user_id == "ID.27450981163320458817"


def test_a_username_without_phone_number_is_keyed_on_the_user_id() -> None:
    m = _one("messages:username_only")
    assert m.kind == base.TEXT and m.name == "Dewi Lestari"
    assert m.user_id == "ID.71190364528840017265"
    assert m.address == "ID.71190364528840017265"


def test_one_post_can_carry_several_entries_and_messages() -> None:
    messages, _ = parse_notification(dict(FIXTURE_LIST)["messages:batch"])
    assert [(m.address, m.name, m.text) for m in messages] == [
        ("6281234567890", "Siti Aminah", "Permisi"),
        ("6281234567890", "Siti Aminah", "Mau tanya soal akta kematian"),
        ("6287811112222", "Agus Pratama", "KIA anak saya sudah bisa diambil?"),
    ]


@pytest.mark.parametrize("fixture,kind", [
    ("messages:image", "image"), ("messages:video", "video"), ("messages:document", "document"),
    ("messages:audio", "audio"), ("messages:voice", "audio"), ("messages:sticker", "sticker"),
])
def test_media_messages_carry_their_attachment(fixture: str, kind: str) -> None:
    m = _one(fixture)
    assert m.kind == base.MEDIA
    (att,) = m.attachments
    assert att.kind == kind and att.ref and att.mime_type
    assert att.ref == m.raw[m.raw["type"]]["id"]


def test_a_caption_is_the_media_message_text() -> None:
    assert _one("messages:image").text == "Foto KK, nama ayah saya salah tulis"
    assert _one("messages:audio").text == ""


def test_voice_note_is_marked() -> None:
    assert _one("messages:voice").attachments[0].voice is True
    assert _one("messages:audio").attachments[0].voice is False


def test_document_keeps_filename() -> None:
    assert _one("messages:document").attachments[0].filename == "surat_pengantar_rt.pdf"


def test_location_contacts_and_replies() -> None:
    here = _one("messages:current_location")
    assert here.kind == base.LOCATION and "-7.8881" in here.text
    chosen = _one("messages:chosen_location").text
    assert "📍" in chosen and "Dinas Dukcapil Kabupaten Bantul" in chosen
    card = _one("messages:contacts")
    assert card.kind == base.CONTACTS and "Rina Wulandari" in card.text
    assert _one("messages:reply").reply_to == OURS
    assert _one("messages:forwarded").forwarded
    assert _one("messages:frequently_forwarded").forwarded
    assert not _one("messages:text").forwarded and _one("messages:text").reply_to is None


def test_buttons_and_lists_are_choices() -> None:
    for fixture, choice_id, text in [("choices:button_reply", "selesai", "Sudah selesai"),
                                     ("choices:list_reply", "ktp-el", "KTP-el"),
                                     ("choices:quick_reply", "CEK_STATUS", "Cek status")]:
        m = _one(fixture)
        assert (m.kind, m.text, m.choice_id) == (base.CHOICE, text, choice_id), fixture


def test_reactions_edits_revokes_and_unsupported() -> None:
    r = _one("messages:reaction")
    assert r.kind == base.REACTION and r.text == "🙏" and r.target_id == OURS
    for removed in ("messages:reaction_removed", "messages:reaction_removed_no_emoji"):
        assert (_one(removed).kind, _one(removed).text) == (base.REACTION, ""), removed
    edit = _one("changes:edit_image")
    assert edit.kind == base.EDIT and edit.text == "Foto KK, nama ibu yang salah tulis"
    assert edit.target_id == edit.raw["edit"]["original_message_id"] and edit.attachments
    assert _one("changes:edit_text").text == "KTP-el saya belum jadi, sudah rekam empat bulan lalu."
    revoke = _one("changes:revoke")
    assert revoke.kind == base.REVOKE and revoke.target_id == revoke.raw["revoke"]["original_message_id"]
    unsupported = _one("messages:unsupported")
    assert unsupported.kind == base.UNSUPPORTED and unsupported.text == "Message type unknown"
    assert _one("messages:order").kind == base.UNSUPPORTED
    for change in ("system:user_changed_number", "system:user_changed_user_id"):
        assert _one(change).kind == base.SYSTEM and _one(change).text, change


def test_statuses_carry_errors() -> None:
    _, statuses = parse_notification(dict(FIXTURE_LIST)["statuses:failed"])
    (st,) = statuses
    assert (st.status, st.error_code, st.error_title) == ("failed", 131047, "Re-engagement message")
    assert st.recipient == "6285712345678"
    _, statuses = parse_notification(dict(FIXTURE_LIST)["statuses:delivered"])
    assert [(s.status, s.error_code) for s in statuses] == [("delivered", None)]


def test_statuses_keep_their_order_in_one_post() -> None:
    _, statuses = parse_notification(dict(FIXTURE_LIST)["statuses:out_of_order"])
    assert [s.status for s in statuses] == ["delivered", "sent"]
    assert statuses[0].external_id == statuses[1].external_id


@pytest.mark.parametrize("payload", [
    [], {"entry": "x"}, {"entry": [{"changes": [{"field": "messages", "value": {"messages": [{}]}}]}]},
    {"entry": [{"changes": [{"field": "messages", "value": {"messages": [
        {"id": "w1", "type": "text", "from": "62811", "timestamp": "soon"}]}}]}]},
])
def test_malformed_payloads_raise(payload: object) -> None:
    with pytest.raises(BadPayload):
        parse_notification(payload)


def test_phone_numbers_normalise_to_one_form() -> None:
    assert normalize_msisdn("0812-3456-7890") == "6281234567890"
    assert normalize_msisdn("+62 812 3456 7890") == "6281234567890"
    assert normalize_msisdn("6281234567890") == "6281234567890"


def test_signature_check() -> None:
    import hashlib
    import hmac
    body = b'{"a": 1}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature_ok("s3cret", body, good)
    assert not signature_ok("s3cret", body + b" ", good)
    assert not signature_ok("other", body, good)
    assert not signature_ok("s3cret", body, None)
    assert not signature_ok("s3cret", body, good.replace("sha256=", "sha1="))
