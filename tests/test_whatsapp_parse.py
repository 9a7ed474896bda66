"""The WhatsApp notification parser against Meta's documented shapes and real samples."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.channels import base
from bridge.channels.whatsapp import (BadPayload, normalize_msisdn, parse_notification,
                                      signature_ok)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "whatsapp"


def samples() -> list[tuple[str, dict]]:
    out = []
    for f in sorted(SAMPLES.glob("*.json")):
        for name, payload in json.loads(f.read_text()).items():
            out.append((f"{f.stem}:{name}", payload))
    return out


@pytest.mark.parametrize("name,payload", samples(), ids=[n for n, _ in samples()])
def test_every_sample_parses(name: str, payload: dict) -> None:
    messages, statuses = parse_notification(payload)
    raw_messages = [m for e in payload["entry"] for c in e["changes"] for m in c["value"].get("messages", [])]
    raw_statuses = [s for e in payload["entry"] for c in e["changes"] for s in c["value"].get("statuses", [])]
    assert len(messages) == len(raw_messages)
    assert len(statuses) == len(raw_statuses)
    for m, raw in zip(messages, raw_messages):
        assert m.external_id == raw["id"]
        assert m.address.isdigit() or m.address.startswith("US.") or not raw.get("from", "").isdigit()
        assert m.at.tzinfo is not None


def _one(sample: str) -> base.InboundMessage:
    f, name = sample.split(":")
    messages, _ = parse_notification(json.loads((SAMPLES / f"{f}.json").read_text())[name])
    assert len(messages) == 1
    return messages[0]


def test_text_keeps_body_name_and_user_id() -> None:
    m = _one("message:text")
    assert m.kind == base.TEXT and m.text
    assert m.name == "Test Name"


@pytest.mark.parametrize("sample,kind", [
    ("message:image", "image"), ("message:video", "video"), ("message:document", "document"),
    ("message:audio", "audio"), ("message:voice", "audio"), ("message:static_sticker", "sticker"),
])
def test_media_messages_carry_their_attachment(sample: str, kind: str) -> None:
    m = _one(sample)
    assert m.kind == base.MEDIA
    (att,) = m.attachments
    assert att.kind == kind and att.ref and att.mime_type


def test_voice_note_is_marked() -> None:
    assert _one("message:voice").attachments[0].voice is True


def test_document_keeps_filename() -> None:
    assert _one("message:document").attachments[0].filename


def test_location_contacts_and_replies() -> None:
    assert _one("message:current_location").kind == base.LOCATION
    assert "📍" in _one("message:chosen_location").text
    assert _one("message:contacts").kind == base.CONTACTS
    assert _one("message:reply").reply_to
    assert _one("message:forwarded").forwarded


def test_buttons_and_lists_are_choices() -> None:
    for sample in ("callback_button:button", "callback_button:quick_reply", "callback_selection:callback"):
        m = _one(sample)
        assert m.kind == base.CHOICE and m.text and m.choice_id, sample


def test_reactions_edits_revokes_and_unsupported() -> None:
    r = _one("message:reaction")
    assert r.kind == base.REACTION and r.text and r.target_id
    assert _one("message:unreaction_empty").text == ""
    assert _one("edited_message:image").kind == base.EDIT
    assert _one("deleted_message:revoke").kind == base.REVOKE
    assert _one("message:unsupported").kind == base.UNSUPPORTED
    assert _one("system:phone_number_change").kind == base.SYSTEM


def test_statuses_carry_errors() -> None:
    _, statuses = parse_notification(json.loads((SAMPLES / "message_status.json").read_text())["failed"])
    (st,) = statuses
    assert st.status == "failed" and st.error_code


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
