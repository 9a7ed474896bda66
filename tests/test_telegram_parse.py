"""Telegram updates as normalized messages, and the [telegram] settings."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.channels import base
from bridge.channels.telegram import BadUpdate, TelegramChannel, parse_update
from bridge.config import ConfigError, from_dict

USER = {"id": 5550001, "is_bot": False, "first_name": "Siti", "last_name": "Aminah", "username": "siti_a",
        "language_code": "id"}
CHAT = {"id": 5550001, "type": "private", "first_name": "Siti", "last_name": "Aminah", "username": "siti_a"}


def message(**content) -> dict:
    return {"message_id": 7, "from": USER, "chat": CHAT, "date": 1790000000, **content}


def test_a_text_is_keyed_by_chat_and_message() -> None:
    m = parse_update({"update_id": 1, "message": message(text="KTP saya hilang")}).message
    assert m is not None
    assert (m.channel, m.external_id, m.address, m.kind, m.text) == ("telegram", "5550001:7", "5550001",
                                                                       base.TEXT, "KTP saya hilang")
    assert (m.name, m.username, m.user_id) == ("Siti Aminah", "siti_a", "5550001")
    assert m.at.timestamp() == 1790000000


def test_the_same_message_id_in_two_chats_are_two_messages() -> None:
    other = {**CHAT, "id": 5550002}
    a = parse_update({"update_id": 1, "message": message(text="a")}).message
    b = parse_update({"update_id": 2, "message": {**message(text="b"), "chat": other}}).message
    assert a.external_id != b.external_id


def test_a_photo_takes_the_largest_size_and_keeps_the_album() -> None:
    sizes = [{"file_id": f"f{i}", "file_unique_id": f"u{i}", "width": w, "height": w, "file_size": w * 10}
             for i, w in enumerate((90, 320, 1280))]
    m = parse_update({"update_id": 1, "message": message(photo=sizes, caption="KK saya", media_group_id="alb1")}).message
    assert m.kind == base.MEDIA and m.text == "KK saya" and m.group == "alb1"
    (att,) = m.attachments
    assert (att.kind, att.ref, att.size, att.mime_type) == ("image", "f2", 12800, "image/jpeg")


@pytest.mark.parametrize("key, obj, kind, mime, voice", [
    ("document", {"file_id": "d", "file_unique_id": "ud", "file_name": "kk.pdf", "mime_type": "application/pdf"},
     "document", "application/pdf", False),
    ("voice", {"file_id": "v", "file_unique_id": "uv", "duration": 3, "mime_type": "audio/ogg"}, "audio", "audio/ogg", True),
    ("video", {"file_id": "w", "file_unique_id": "uw", "width": 1, "height": 1, "duration": 2}, "video", "video/mp4", False),
])
def test_files(key, obj, kind, mime, voice) -> None:
    m = parse_update({"update_id": 1, "message": message(**{key: obj})}).message
    (att,) = m.attachments
    assert (m.kind, att.kind, att.mime_type, att.voice) == (base.MEDIA, kind, mime, voice)


def test_location_and_contact_are_readable() -> None:
    loc = parse_update({"update_id": 1, "message": message(location={"latitude": -7.88, "longitude": 110.33})}).message
    assert (loc.kind, loc.text) == (base.LOCATION, "📍 -7.88, 110.33")
    contact = parse_update({"update_id": 2, "message": message(
        contact={"phone_number": "+6281234567890", "first_name": "Budi"})}).message
    assert (contact.kind, contact.text) == (base.CONTACTS, "👤 Budi +6281234567890")


def test_an_edit_points_at_its_message() -> None:
    m = parse_update({"update_id": 3, "edited_message": {**message(text="KTP saya hilang di pasar"),
                                                          "edit_date": 1790000100}}).message
    assert (m.kind, m.target_id, m.text) == (base.EDIT, "5550001:7", "KTP saya hilang di pasar")
    assert m.external_id != "5550001:7"


def test_a_callback_query_is_a_choice_with_its_buttons_title() -> None:
    bot_message = {"message_id": 8, "from": {"id": 1, "is_bot": True, "first_name": "Bot"}, "chat": CHAT,
                   "date": 1790000000, "text": "Benar?",
                   "reply_markup": {"inline_keyboard": [[{"text": "YA", "callback_data": "ya"}],
                                                        [{"text": "TIDAK", "callback_data": "tidak"}]]}}
    parsed = parse_update({"update_id": 4, "callback_query": {"id": "q1", "from": USER, "message": bot_message,
                                                              "chat_instance": "x", "data": "ya"}})
    assert parsed.callback_id == "q1"
    m = parsed.message
    assert (m.kind, m.choice_id, m.text, m.reply_to, m.external_id) == (base.CHOICE, "ya", "YA", "5550001:8", "cb:q1")


def test_group_chats_and_bots_are_not_ours() -> None:
    group = {**message(text="halo"), "chat": {"id": -100, "type": "group", "title": "Warga"}}
    assert parse_update({"update_id": 1, "message": group}).message is None
    bot = {**message(text="halo"), "from": {**USER, "is_bot": True}}
    assert parse_update({"update_id": 2, "message": bot}).message is None
    assert parse_update({"update_id": 3, "my_chat_member": {}}).message is None


@pytest.mark.parametrize("update", [
    [], {"message": {}}, {"update_id": "1"}, {"update_id": 1, "message": "x"},
    {"update_id": 1, "message": {"message_id": 1, "chat": {"type": "private"}}},
    {"update_id": 1, "message": message(photo=[])},
    {"update_id": 1, "message": message(document={"file_unique_id": "x"})},
    {"update_id": 1, "message": {**message(text="x"), "date": "kemarin"}},
])
def test_a_wrong_shape_is_refused_with_a_reason(update) -> None:
    with pytest.raises(BadUpdate):
        parse_update(update)


def test_unknown_content_is_kept_as_unsupported() -> None:
    m = parse_update({"update_id": 1, "message": message(poll={"id": "p"})}).message
    assert (m.kind, m.text) == (base.UNSUPPORTED, "poll")


def test_addresses_are_not_shown_on_cards_and_masked_in_logs() -> None:
    assert TelegramChannel.show_address("5550001", whole=True) == ""
    assert TelegramChannel.mask_address("5550001") == "chat ****001"


# -- [telegram] ----------------------------------------------------------------------------
BASE = {"matrix": {"homeserver": "http://127.0.0.1:8008", "user_id": "@bot:example.org"},
        "rooms": {r: f"#{r}:example.org" for r in ("admin", "kasi", "kabid", "pimpinan")},
        "whatsapp": {"enabled": False}}
ENV = {"MATRIX_PASSWORD": "x", "TELEGRAM_BOT_TOKEN": "123:abc"}


def read(table: dict, env: dict = ENV):
    return from_dict({**BASE, "telegram": table}, env, base_dir=Path("/tmp")).channels["telegram"]


def test_telegram_is_off_unless_enabled_and_polls_by_default() -> None:
    assert not from_dict(BASE, ENV, base_dir=Path("/tmp")).channels["telegram"].enabled
    s = read({"enabled": True})
    assert (s.enabled, s.mode, s.api_url, s.token, s.webhook_secret) == (
        True, "polling", "https://api.telegram.org", "123:abc", "")


def test_webhook_mode_needs_its_secret_and_public_address() -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET is not set"):
        read({"enabled": True, "mode": "webhook", "webhook_url": "https://pengaduan.example.go.id/webhooks/telegram"})
    with pytest.raises(ConfigError, match=r"\[telegram\] webhook_url"):
        read({"enabled": True, "mode": "webhook"}, {**ENV, "TELEGRAM_WEBHOOK_SECRET": "s3cret"})
    with pytest.raises(ConfigError, match="A-Z, a-z, 0-9"):
        read({"enabled": True, "mode": "webhook", "webhook_url": "https://x.example/webhooks/telegram"},
             {**ENV, "TELEGRAM_WEBHOOK_SECRET": "bad secret!"})
    s = read({"enabled": True, "mode": "webhook", "webhook_url": "https://x.example/webhooks/telegram"},
             {**ENV, "TELEGRAM_WEBHOOK_SECRET": "s3cret_-"})
    assert (s.mode, s.webhook_secret) == ("webhook", "s3cret_-")


def test_a_wrong_mode_or_missing_token_is_named() -> None:
    with pytest.raises(ConfigError, match=r"\[telegram\] mode"):
        read({"enabled": True, "mode": "push"})
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN is not set"):
        read({"enabled": True}, {"MATRIX_PASSWORD": "x"})
