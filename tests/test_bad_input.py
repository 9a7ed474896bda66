"""Bad input gets a clear answer and breaks nothing: oversized bodies, any JSON a service
could send, any text a citizen could write, and staff messages that are huge, odd or
hostile. The parsers are checked with generated input (hypothesis); the rest end to end."""
from __future__ import annotations

import json
import string
from datetime import date

import aiohttp
import nio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import aduan
from bridge.channels.telegram import BadUpdate, parse_update
from bridge.channels.whatsapp import BadPayload, parse_notification
from bridge.roles.base import parse as parse_command
from tests import queries as q
from tests.harness import BOT, in_thread_of
from tests.story import body, bot_says, command, complaint, in_format

WARGA = "6281234500801"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, with the keys the parsers look for mixed in, so that the generated
# documents reach deep into the parsers rather than failing at the first key.
KEYS = st.sampled_from(["entry", "changes", "field", "value", "messages", "statuses", "contacts", "id", "type",
                        "from", "timestamp", "text", "body", "image", "context", "errors", "wa_id", "profile",
                        "update_id", "message", "edited_message", "callback_query", "chat", "message_id",
                        "date", "photo", "document", "file_id", "data", "reply_markup", "inline_keyboard",
                        "location", "contact", "interactive", "system", "reaction", "edit", "revoke"])
SCALARS = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=6), max_leaves=40)


@FAST
@given(JSON)
def test_no_json_crashes_the_whatsapp_parser(payload) -> None:
    try:
        parse_notification(payload, [])
    except BadPayload:
        pass


@FAST
@given(st.fixed_dictionaries({"entry": st.lists(st.fixed_dictionaries(
    {"changes": st.lists(st.fixed_dictionaries({"field": st.just("messages"), "value": JSON}), max_size=2)}),
    max_size=2)}))
def test_no_notification_shaped_json_crashes_the_whatsapp_parser(payload) -> None:
    problems: list[str] = []
    try:
        parse_notification(payload, problems)
    except BadPayload:
        pass


@FAST
@given(JSON | st.fixed_dictionaries({"update_id": st.integers(0, 2**31)}, optional={
    "message": JSON, "edited_message": JSON, "callback_query": JSON}))
def test_no_json_crashes_the_telegram_parser(update) -> None:
    try:
        parse_update(update)
    except BadUpdate:
        pass


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=400) | st.lists(
    st.sampled_from(["Nama:", "NIK:", "Layanan:", "Aduan:", "Rahasia:", "*", "-", "=", "\n", " ", "3402124501900003",
                     "KTP-el", "ya", "１２３", "‮", "​", "👨‍👩‍👧", "<b>", "@room"]), max_size=30).map("".join)


@FAST
@given(TEXT)
def test_no_text_crashes_the_complaint_format_or_the_nik_check(text) -> None:
    found = aduan.parse_format(text)
    assert found is None or isinstance(found, aduan.FormatAduan)
    assert aduan.check_nik(text, date(2026, 11, 30)).ok in (True, False)
    aduan.match_service(text)


@FAST
@given(st.text(max_size=300) | st.text(alphabet=string.printable, max_size=300).map(lambda t: "!" + t))
def test_no_text_crashes_the_command_parser(text) -> None:
    parsed = parse_command(text)
    assert parsed is None or parsed.text in text or parsed.text.strip() in text


# -- over the wire ----------------------------------------------------------------------------
async def test_a_body_over_the_limit_gets_413_and_stores_nothing(env) -> None:
    big = b'{"entry": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    async with aiohttp.ClientSession() as s:
        async with s.post(env.webhook_url, data=big, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413
    async with env.bridge.store.reading() as tx:
        assert await q.inbound_count(tx) == 0
    assert (await env.send(env.graph.text(WARGA, "halo")))[0] == 200     # and the next one is fine


async def test_hostile_and_odd_staff_text_is_handled_and_pings_nobody(env) -> None:
    """A note with @room, HTML, right-to-left and zero-width marks and an emoji sequence is
    kept as written, shown escaped, and mentions nobody; a message as large as the
    homeserver takes (its events stop at 64 KiB, so 100 KB cannot reach the bot) is
    refused as an answer with how much to cut, and as a note it is kept and shown cut."""
    card = await complaint(env, WARGA, "KTP-el saya hilang")
    odd = "@room <script>alert(1)</script> <b>tebal</b> ‮kiri‬ nol​lebar 👨‍👩‍👧‍👦 🇮🇩"
    await command(env, "admin", card, f"!catatan {odd}")
    seen = await env.admin.wait_for(lambda s: s.event.sender.startswith(f"@{BOT}:") and in_thread_of(card.event_id)(
        s.event) and "script" in body(s), what="the note's confirmation")
    content = seen.event.source["content"]
    assert odd in content["body"]
    assert "<script>" not in content["formatted_body"] and "&lt;script&gt;" in content["formatted_body"]
    assert content.get("m.mentions") == {}                       # no @room ping, no user pinged
    case_id = await _case_id(env, card.ticket)
    async with env.bridge.store.reading() as tx:
        notes = [e["note"] for e in await tx.case_events(case_id) if e["kind"] == "note"]
    assert notes == [odd]

    huge = "Jawaban " + "sangat panjang " * 4200                   # about 63,000 characters
    assert len(huge.encode()) < 64 * 1024
    await command(env, "admin", card, f"!verifikasi")
    await command(env, "admin", card, f"!jawab {huge}")
    said = await bot_says(env.admin, card, "terlalu panjang")
    assert "4096" in said or "karakter" in said
    rooms = await env.admin.client.joined_members(card.room_id)
    assert isinstance(rooms, nio.JoinedMembersResponse)


async def _case_id(env, ticket: str) -> int:
    async with env.bridge.store.reading() as tx:
        return (await tx.get_case_by_ticket(ticket))["id"]


async def test_a_telegram_body_over_the_limit_gets_413(botapi, make_env) -> None:
    env = await make_env({"telegram": {"mode": "webhook", "webhook_url": "https://x.example/webhooks/telegram"}},
                         botapi=botapi)
    from tests.harness import TELEGRAM_SECRET
    big = json.dumps({"update_id": 1, "message": {"text": "x" * (9 * 1024 * 1024)}}).encode()
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{env.bridge.http.url}/webhooks/telegram", data=big,
                          headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}) as r:
            assert r.status == 413
    complaint_text = in_format("KTP-el saya hilang")
    assert complaint_text                                          # the service goes on: see the polling tests
