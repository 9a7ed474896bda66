"""Telegram end to end: a citizen on the fake Bot API, staff in the real Synapse.

The bridge polls the fake (getUpdates) as it polls Telegram, or takes its webhook posts;
what the citizen gets is read back from the fake's record of sendMessage calls.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from bridge.channels.telegram import TelegramChannel
from bridge.store import Store
from bridge.simulator.telegram import FakeBotApi, TgUser
from tests.harness import TELEGRAM_SECRET, until
from tests.story import (Card, bot_says, body, card_in, case_reaches, case_row, command, in_format, react,
                         steps_walked)

SITI = TgUser(id=5550001, first_name="Siti", last_name="Aminah", username="siti_a")
BANTUL = {"sop": {"profile": "bantul"}}


@pytest.fixture
async def tg_env(botapi: FakeBotApi, make_env):
    return await make_env(botapi=botapi)


async def tg_complaint(env, user: TgUser, text: str) -> Card:
    """A Telegram citizen writes a complaint in the format; the Admin WA sees the new card."""
    message = in_format(text, name=f"{user.first_name} {user.last_name or ''}".strip())
    env.tg.text(user, message)
    aduan = message.split("Aduan:", 1)[1].strip().splitlines()[0]
    room = env.bridge.matrix.rooms["admin"]
    seen = await env.admin.wait_for(
        lambda s: s.room_id == room and body(s).startswith("📨 Pengaduan baru") and aduan in body(s),
        what="the new case card")
    return Card(body(seen).split()[3], room, seen.event.event_id)


async def sent_to(env, user: TgUser, contains: str):
    return await env.tg.wait_for_sent(lambda m: m["chat_id"] == user.id and contains in m["text"], timeout=20)


async def inbound_rows(env) -> list[dict]:
    async with env.bridge.store.reading() as tx:
        return await tx._all("SELECT channel, external_id, state FROM inbound ORDER BY id")


# -- the same product ----------------------------------------------------------------------
async def test_a_whole_bantul_case_from_telegram_to_the_answer_and_the_rating(botapi, make_env) -> None:
    env = await make_env(BANTUL, botapi=botapi)
    card = await tg_complaint(env, SITI, "Layanan: KIA\nAduan: KIA anak saya belum terbit")
    # The card says where the citizen writes from, and who they are there.
    assert "Siti Aminah (@siti_a) · Telegram" in body(next(s for s in env.admin.seen
                                                           if s.event.event_id == card.event_id))
    ticket_reply = await sent_to(env, SITI, card.ticket)
    assert ticket_reply["params"]["reply_parameters"]["message_id"] > 0        # it answers the complaint
    await react(env, "admin", card, "👀")
    await command(env, "admin", card, "!jawab KIA sudah terbit, silakan diambil di kecamatan.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    await react(env, "kasi", kasi_card, "✍️")
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    await react(env, "admin", admin_card, "📤")
    answer = await sent_to(env, SITI, "KIA sudah terbit")
    assert card.ticket in answer["text"]
    # Telegram gives bots no receipts: the answer it accepted closes the case.
    await bot_says(env.admin, admin_card, "diterima server Telegram")
    row = await case_reaches(env, card.ticket, state="closed", outcome="dijawab")
    assert row["approved_role"] == "kasi"
    assert await steps_walked(env, card.ticket) == ["diterima", "verifikasi_admin", "verifikasi_kasi", "jawab",
                                                    "selesai"]
    # The rating, with buttons; the tapped button is answered (the spinner stops).
    rating = await sent_to(env, SITI, "nilai")
    buttons = [b["text"] for row in rating["params"]["reply_markup"]["inline_keyboard"] for b in row]
    assert len(buttons) == 5
    assert buttons[0] == "5 Sangat puas"
    query = env.tg.choose(SITI, rating, buttons[0])
    await until(lambda: any(a["callback_query_id"] == query["callback_query"]["id"]
                            for a in env.tg.answered_callbacks), what="the callback answered")

    async def rated():
        async with env.bridge.store.reading() as tx:
            return await tx._one("SELECT score FROM ratings WHERE case_id = ?", row["id"])
    assert (await until(rated, what="the rating stored"))["score"] == 5


async def reply_to(env, user: TgUser, act, expect: str):
    """Do ``act`` (the citizen's message or tap); the bot's next message to them that contains ``expect``."""
    before = len(env.tg.sent)
    act()
    return await env.tg.wait_for_sent(lambda m: m in env.tg.sent[before:] and m["chat_id"] == user.id
                                      and expect in m["text"], timeout=20)


async def test_the_guided_conversation_status_and_buttons_as_on_whatsapp(tg_env) -> None:
    env = tg_env
    tg = env.tg
    budi = TgUser(id=5550002, first_name="Budi")
    await reply_to(env, budi, lambda: tg.text(budi, "halo, mau tanya"), "nama lengkap")
    await reply_to(env, budi, lambda: tg.text(budi, "Budi Santoso"), "16 angka")
    services = await reply_to(env, budi, lambda: tg.text(budi, "3402124501900003"), "layanan apa")
    keyboard = services["params"]["reply_markup"]["inline_keyboard"]
    assert 2 <= len(keyboard) <= 10
    await reply_to(env, budi, lambda: tg.choose(budi, services, "KTP-el"), "ceritakan")
    summary = await reply_to(env, budi, lambda: tg.text(budi, "KTP-el saya rusak, fotonya buram"), "Mohon periksa")
    titles = [b["text"] for row in summary["params"]["reply_markup"]["inline_keyboard"] for b in row]
    yes = next(t for t in titles if t.upper().startswith("YA"))
    reply = await reply_to(env, budi, lambda: tg.choose(budi, summary, yes), "ADU-")
    ticket = next(w.strip(".,*") for w in reply["text"].split() if w.startswith("ADU-"))
    row = await case_reaches(env, ticket, state="open")
    assert (row["channel"], row["category"], row["citizen_name"]) == ("telegram", "KTP-el", "Budi Santoso")
    await reply_to(env, budi, lambda: tg.text(budi, "status"), ticket)
    assert len(tg.answered_callbacks) == 2                 # both taps answered


async def test_an_album_lands_in_one_case_with_every_photo(tg_env) -> None:
    env = tg_env
    caption = in_format("Layanan: KK\nAduan: KK saya salah nama, ini fotonya")
    for i, data in enumerate((b"\xff\xd8foto-1", b"\xff\xd8foto-2", b"\xff\xd8foto-3")):
        env.tg.photo(SITI, data, caption=caption if i == 0 else None, media_group_id="album-1")
    room = env.bridge.matrix.rooms["admin"]
    card_seen = await env.admin.wait_for(lambda s: s.room_id == room and body(s).startswith("📨 Pengaduan baru")
                                         and "KK saya salah" in body(s), what="the card")

    def images() -> list:
        return [s for s in env.admin.seen if s.room_id == room
                and s.event.source.get("content", {}).get("msgtype") == "m.image"]
    await until(lambda: len(images()) >= 3, what="three photos in the thread")
    assert {s.event.source["content"]["m.relates_to"]["event_id"] for s in images()} == {card_seen.event.event_id}
    async with env.bridge.store.reading() as tx:
        cases = await tx._all("SELECT ticket FROM cases")
    assert len(cases) == 1
    assert len([m for m in env.tg.sent if "ADU-" in m["text"]]) == 1           # one ticket reply
    assert len(env.tg.downloads) == 3


async def test_a_file_over_20_mb_is_explained_to_both_sides_and_not_fetched(tg_env) -> None:
    env = tg_env
    card = await tg_complaint(env, SITI, "Akta kelahiran anak saya belum terbit")
    env.tg.document(SITI, b"%PDF-1.7 besar", file_name="akta.pdf", mime_type="application/pdf",
                    size=25 * 1024 * 1024)
    await sent_to(env, SITI, "melebihi batas 20,0 MB")
    await bot_says(env.admin, card, "melebihi batas 20,0 MB yang dapat diambil lewat Telegram")
    assert env.tg.downloads == [] and not [r for r in env.tg.rejected if r["method"].lower() == "getfile"]


async def test_an_edit_shows_in_the_thread(tg_env) -> None:
    env = tg_env
    card = await tg_complaint(env, SITI, "KTP-el saya hilang di pasar")
    env.tg.edit(SITI, 1, in_format("KTP-el saya hilang di terminal"))
    await bot_says(env.admin, card, "terminal")


# -- receiving -----------------------------------------------------------------------------
async def test_polling_across_a_restart_neither_skips_nor_repeats(tg_env) -> None:
    env = tg_env
    tg = env.tg
    await tg_complaint(env, SITI, "KTP-el saya hilang")
    await env.stop_bridge()
    calls_before = len(tg.get_updates_calls)
    budi = TgUser(id=5550003, first_name="Budi")
    updates = [tg.text(budi, text) for text in ("halo", "Budi Santoso", "3402124501900003")]   # while it is down
    store = await Store.open(env.settings.database_url)
    try:
        async with store.reading() as tx:
            stored = int((await tx.get_cursor("telegram"))[0])
    finally:
        await store.close()
    # Everything before the three was stored with the offset that confirms it.
    assert stored == updates[0]["update_id"]
    await env.start_bridge()
    await reply_to(env, budi, lambda: None, "layanan apa")            # the third got its answer
    # It resumed from the stored offset: nothing confirmed before is asked for again...
    assert tg.get_updates_calls[calls_before].get("offset") == stored
    # ...and each of the three was taken once, in order.
    texts = tg.texts_to(budi.id)
    assert [sum(expect in t for t in texts) for expect in ("nama lengkap", "16 angka", "layanan apa")] == [1, 1, 1]
    rows = await inbound_rows(env)
    assert [r["external_id"] for r in rows[1:]] == [f"{budi.id}:{u['message']['message_id']}" for u in updates]
    async with env.bridge.store.reading() as tx:
        assert int((await tx.get_cursor("telegram"))[0]) == updates[-1]["update_id"] + 1


async def test_an_offset_older_than_a_week_is_not_used(tg_env) -> None:
    """Telegram may choose new update ids at random after a quiet week: an old offset could
    confirm new updates unseen, so polling starts without it (repeats are deduplicated)."""
    env = tg_env
    await tg_complaint(env, SITI, "KTP-el saya hilang")
    await env.stop_bridge()
    store = await Store.open(env.settings.database_url)
    try:
        async with store.transaction() as tx:
            position, _ = await tx.get_cursor("telegram")
            await tx.save_cursor("telegram", position, at=datetime.now(timezone.utc) - timedelta(days=8))
    finally:
        await store.close()
    calls_before = len(env.tg.get_updates_calls)
    await env.start_bridge()
    await until(lambda: len(env.tg.get_updates_calls) > calls_before, what="a getUpdates call")
    assert "offset" not in env.tg.get_updates_calls[calls_before]


async def test_a_webhook_set_elsewhere_is_one_clear_line_and_a_red_healthz(tg_env, caplog) -> None:
    env = tg_env
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{env.tg.url}/bot{env.tg.token}/setWebhook",
                          json={"url": "https://elsewhere.example/hook"}) as r:
            assert r.status == 200
    caplog.set_level(logging.ERROR, logger="bridge.channels.telegram")

    async def red():
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{env.bridge.http.url}/healthz") as r:
                data = await r.json()
                return data if not data["channels"]["telegram"]["ok"] else None
    data = await until(red, timeout=30, what="/healthz to turn red")
    assert "409" in data["channels"]["telegram"]["problem"] and not data["ok"]
    lines = [r for r in caplog.records if r.name == "bridge.channels.telegram" and "409" in r.getMessage()]
    assert len(lines) == 1 and "main.py setup" in lines[0].getMessage()
    # setup in polling mode removes the webhook; polling works again.
    changes = await TelegramChannel.setup(env.settings.channels["telegram"])
    assert changes == ["telegram: webhook https://elsewhere.example/hook removed (polling mode)"]
    await tg_complaint(env, SITI, "KTP-el saya hilang")
    assert await TelegramChannel.setup(env.settings.channels["telegram"]) == []     # nothing left to do


async def test_webhook_mode_takes_the_right_secret_only(botapi, make_env) -> None:
    url = "https://pengaduan.example.go.id/webhooks/telegram"
    env = await make_env({"telegram": {"mode": "webhook", "webhook_url": url}}, botapi=botapi)
    # main.py setup registers the webhook, with its secret, once.
    assert await TelegramChannel.setup(env.settings.channels["telegram"]) == [f"telegram: webhook set to {url}"]
    assert await TelegramChannel.setup(env.settings.channels["telegram"]) == []
    hook = f"{env.bridge.http.url}/webhooks/telegram"
    update = env.tg.text(SITI, in_format("KTP-el saya hilang di jalan"))
    assert (await env.tg.deliver_webhook(hook, update, "wrong-secret"))[0] == 401
    assert (await env.tg.deliver_webhook(hook, update, ""))[0] == 401
    assert await inbound_rows(env) == []
    async with aiohttp.ClientSession() as s:
        headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
        async with s.post(hook, data=b"{not json", headers=headers) as r:
            assert r.status == 400
        async with s.post(hook, json={"update_id": "x"}, headers=headers) as r:
            assert r.status == 200                         # a wrong shape: taken and ignored, never retried
    assert (await env.tg.deliver_webhook(hook, update, TELEGRAM_SECRET))[0] == 200
    assert (await env.tg.deliver_webhook(hook, update, TELEGRAM_SECRET))[0] == 200      # a retry: deduplicated
    await sent_to(env, SITI, "ADU-")
    assert len(await inbound_rows(env)) == 1


# -- sending -------------------------------------------------------------------------------
async def test_a_429_waits_retry_after(tg_env) -> None:
    env = tg_env
    env.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    card = await tg_complaint(env, SITI, "KTP-el saya hilang")
    await sent_to(env, SITI, card.ticket)
    (refused,) = [r for r in env.tg.rejected if r["error_code"] == 429]
    assert card.ticket in refused["params"]["text"]          # the ticket reply was the one refused

    async def done():
        async with env.bridge.store.reading() as tx:
            return await tx._one("SELECT attempts, last_error, created_at, next_try_at, done_at FROM outbox"
                                 " WHERE kind = 'channel.text' AND state = 'done'")
    row = await until(done, what="the ticket reply's row done")
    assert row["attempts"] == 2 and "429" in row["last_error"]       # refused once, then sent
    waited = row["next_try_at"] - row["created_at"]
    assert waited.total_seconds() >= 1 and row["done_at"] >= row["next_try_at"]


async def test_a_blocked_bot_shows_in_the_thread_and_the_case_can_be_closed(tg_env) -> None:
    env = tg_env
    card = await tg_complaint(env, SITI, "KTP-el saya hilang")
    await sent_to(env, SITI, card.ticket)
    env.tg.block(SITI.id)
    from tests.story import to_the_sending_step
    admin_card = await to_the_sending_step(env, card)
    await react(env, "admin", admin_card, "📤")
    await bot_says(env.admin, admin_card, "bot was blocked by the user")
    await case_reaches(env, card.ticket, step="kirim", state="open")
    await command(env, "admin", admin_card, "!tutup pemohon memblokir bot Telegram")
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["outcome"] == "tidak terkirim"
    assert (await case_row(env, card.ticket))["answer_sent_at"] is None
