"""A citizen writes on WhatsApp; the case reaches the Admin room of a real homeserver.

Each test is a story through the interfaces people touch: Meta's signed webhook on one
side, a staff member's Matrix client on the other.
"""
from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import nio

from tests import queries as q
from tests.harness import Env, Seen, in_thread_of, until
from tests.story import in_format, office_year

CITIZEN = "6281234567890"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082")


def card_in(room_id: str):
    def match(seen: Seen) -> bool:
        return (seen.room_id == room_id and isinstance(seen.event, nio.RoomMessageText)
                and seen.event.body.startswith("📨 Pengaduan baru"))
    return match


def ticket_of(card: Seen) -> str:
    return card.event.body.split("Pengaduan baru ")[1].split()[0]


async def pending_rows(env: Env) -> int:
    async with env.bridge.store.reading() as tx:
        return (await tx.outbox_backlog())["pending"] + len(await tx.pending_inbound())


async def settled(env: Env) -> None:
    """Everything received is processed and every effect delivered."""
    await until(lambda: _zero(env), what="the bridge to settle")


async def _zero(env: Env) -> bool:
    return await pending_rows(env) == 0


def texts_to_citizen(env: Env) -> list[str]:
    return env.graph.texts_to(CITIZEN)


async def test_text_complaint_gives_one_card_and_one_ticket_reply(env: Env) -> None:
    status, _ = await env.send(env.graph.text(CITIZEN, in_format("KTP-el saya belum jadi sejak 3 bulan"),
                                              name="Siti Aminah"))
    assert status == 200
    admin_room = env.bridge.matrix.rooms["admin"]
    card = await env.admin.wait_for(card_in(admin_room), what="the case card")
    assert "Siti Aminah" in card.event.body and "KTP-el saya belum jadi" in card.event.body
    ticket = ticket_of(card)
    assert re.fullmatch(rf"ADU-{office_year(env)}-\d{{6}}", ticket)
    await settled(env)
    (reply,) = texts_to_citizen(env)
    assert ticket in reply and "2 jam" in reply
    assert len([e for e in env.admin.messages(admin_room) if e.body.startswith("📨")]) == 1
    # The citizen's message was marked read (the blue ticks).
    assert any(r["body"].get("status") == "read" for r in env.graph.sent)


async def test_a_follow_up_lands_in_the_same_thread(env: Env) -> None:
    await env.send(env.graph.text(CITIZEN, in_format("Aduan pertama")))
    admin_room = env.bridge.matrix.rooms["admin"]
    card = await env.admin.wait_for(card_in(admin_room))
    await env.send(env.graph.text(CITIZEN, "Tambahan: nomor antrean 17"))
    follow = await env.admin.wait_for(
        lambda s: in_thread_of(card.event.event_id)(s.event) and "nomor antrean 17" in s.event.body,
        what="the follow-up in the card's thread")
    assert follow.room_id == admin_room
    await settled(env)
    assert len(texts_to_citizen(env)) == 1          # one ticket reply, no reply per message
    assert len([e for e in env.admin.messages(admin_room) if e.body.startswith("📨")]) == 1


async def test_an_image_with_caption_appears_as_an_image_in_the_thread(env: Env) -> None:
    await env.send(env.graph.text(CITIZEN, in_format("KK saya salah nama")))
    card = await env.admin.wait_for(card_in(env.bridge.matrix.rooms["admin"]))
    media_id = env.graph.add_media(PNG, "image/png")
    await env.send(env.graph.image(CITIZEN, media_id, caption="Foto KK <lama>", mime_type="image/png"))
    seen = await env.admin.wait_for(
        lambda s: isinstance(s.event, nio.RoomMessageImage) and in_thread_of(card.event.event_id)(s.event),
        what="the image in the thread")
    content = seen.event.source["content"]
    assert content["body"] == "Foto KK <lama>"          # the caption, as plain text
    assert content["info"]["mimetype"] == "image/png" and content["info"]["size"] == len(PNG)
    assert env.graph.media_requests == [media_id]        # the two-step download, once
    # The bytes in the homeserver's media repository are the citizen's bytes.
    download = await env.admin.client.download(seen.event.url)
    assert isinstance(download, nio.DownloadResponse) and download.body == PNG


async def test_a_first_message_with_a_document_opens_a_case_with_the_file(env: Env) -> None:
    pdf = b"%PDF-1.4 surat keterangan"
    media_id = env.graph.add_media(pdf, "application/pdf")
    await env.send(env.graph.document(CITIZEN, media_id, filename="surat.pdf", caption=in_format("Akta salah tulis")))
    card = await env.admin.wait_for(card_in(env.bridge.matrix.rooms["admin"]))
    assert "Akta salah tulis" in card.event.body and "surat.pdf" in card.event.body
    seen = await env.admin.wait_for(
        lambda s: isinstance(s.event, nio.RoomMessageFile) and in_thread_of(card.event.event_id)(s.event))
    assert seen.event.source["content"]["filename"] == "surat.pdf"


async def test_the_same_webhook_twice_opens_one_case(env: Env) -> None:
    payload = env.graph.text(CITIZEN, in_format("Aduan dikirim ulang oleh Meta"))
    assert (await env.send(payload))[0] == 200
    assert (await env.send(payload))[0] == 200
    await env.admin.wait_for(card_in(env.bridge.matrix.rooms["admin"]))
    await settled(env)
    async with env.bridge.store.reading() as tx:
        assert await q.count_cases(tx) == 1
        assert await q.inbound_count(tx) == 1
    assert len(texts_to_citizen(env)) == 1


async def test_wrong_or_missing_signature_gets_401_and_stores_nothing(env: Env) -> None:
    payload = env.graph.text(CITIZEN, "palsu")
    assert (await env.send(payload, signature=None))[0] == 401
    assert (await env.send(payload, signature="sha256=" + "0" * 64))[0] == 401
    body = json.dumps(payload).encode()
    forged = "sha256=" + __import__("hmac").new(b"wrong-secret", body, "sha256").hexdigest()
    assert (await env.send(body, signature=forged))[0] == 401
    async with env.bridge.store.reading() as tx:
        assert await q.inbound_count(tx) == 0


async def test_malformed_notification_gets_400_and_stores_nothing(env: Env) -> None:
    assert (await env.send(b"{not json"))[0] == 400
    assert (await env.send(b"\xff\xfe not utf-8"))[0] == 400
    async with env.bridge.store.reading() as tx:
        assert await q.inbound_count(tx) == 0


async def test_json_of_another_shape_is_taken_and_ignored_and_good_items_kept(env: Env, caplog) -> None:
    """Meta retries a non-200 for days: a body it cannot mean is answered 200 and logged;
    in a notification, a message of a wrong shape is left out and the others are stored."""
    assert (await env.send({"object": "whatsapp_business_account", "entry": "nope"}))[0] == 200
    assert (await env.send({"hello": "world"}))[0] == 200
    bad_message = env.graph.notification(messages=[{"from": CITIZEN, "type": "text"}])   # no id
    assert (await env.send(bad_message))[0] == 200
    async with env.bridge.store.reading() as tx:
        assert await q.inbound_count(tx) == 0
    good = env.graph.text(CITIZEN, in_format("KTP-el saya hilang"))
    mixed = env.graph.notification(messages=[{"from": CITIZEN, "type": "text"}, *good["entry"][0]["changes"][0]
                                             ["value"]["messages"]])
    assert (await env.send(mixed))[0] == 200
    async with env.bridge.store.reading() as tx:
        assert await q.inbound_count(tx) == 1
    assert any("ignored" in r.getMessage() for r in caplog.records if r.name == "bridge.channels.whatsapp")


async def test_webhook_verification_handshake(env: Env) -> None:
    assert await env.graph.verify_webhook(env.webhook_url, "verify-me", challenge="1158201444") == (200, "1158201444")
    status, _ = await env.graph.verify_webhook(env.webhook_url, "not-the-token")
    assert status == 403


async def test_html_in_a_complaint_shows_as_text(env: Env) -> None:
    evil = '<b>tebal</b> <a href="https://phish.example">klik</a> <img src=x onerror=alert(1)> @room'
    await env.send(env.graph.text(CITIZEN, in_format(evil, name="<i>Budi</i>"), name="<i>Budi</i>"))
    card = await env.admin.wait_for(card_in(env.bridge.matrix.rooms["admin"]))
    content = card.event.source["content"]
    html = content["formatted_body"]
    assert "<b>tebal</b>" not in html and "<a href" not in html and "<img" not in html and "<i>Budi" not in html
    assert "&lt;b&gt;tebal&lt;/b&gt;" in html and "&lt;i&gt;Budi&lt;/i&gt;" in html
    assert evil in content["body"]              # the plain body keeps what was written
    assert content["m.mentions"] == {}          # "@room" in citizen text pings nobody


async def test_delivery_statuses_move_forward_only(env: Env) -> None:
    await env.send(env.graph.text(CITIZEN, in_format("Aduan")))
    reply = await env.graph.wait_for_sent(lambda r: r["body"].get("type") == "text")
    await settled(env)
    wamid = reply["id"]
    for st in ("delivered", "sent"):            # 'sent' arrives late, after 'delivered'
        assert (await env.send(env.graph.status(wamid, st, CITIZEN)))[0] == 200
    async with env.bridge.store.reading() as tx:
        assert (await q.get_delivery(tx, "whatsapp", wamid))["status"] == "delivered"
    failed = env.graph.status(wamid, "failed", CITIZEN,
                              errors=[env.graph.status_error(131047, "Re-engagement message")])
    assert (await env.send(failed))[0] == 200
    async with env.bridge.store.reading() as tx:
        row = await q.get_delivery(tx, "whatsapp", wamid)
    assert row["status"] == "failed" and row["error_code"] == 131047


async def test_a_transient_send_failure_is_retried(env: Env) -> None:
    env.graph.fail_next(1, status=500, code=131000, retry_after=0.2, match=lambda b: "status" not in b)
    await env.send(env.graph.text(CITIZEN, in_format("Aduan saat Meta sibuk")))
    await settled(env)
    assert len(texts_to_citizen(env)) == 1
    assert any(r["status"] == 500 for r in env.graph.rejected)


async def test_a_restart_between_two_messages_loses_and_duplicates_nothing(env: Env) -> None:
    admin_room = env.bridge.matrix.rooms["admin"]
    await env.send(env.graph.text(CITIZEN, in_format("Pesan sebelum restart")))
    card = await env.admin.wait_for(card_in(admin_room))
    # Meta is down when the bridge stops: the ticket reply is still waiting in the outbox.
    env.graph.fail_next(100, status=503, code=2, retry_after=30, match=lambda b: b.get("type") == "text")
    await settled_inbound(env)
    await env.restart_bridge()
    env.graph._failures.clear()
    env.bridge.outbox.wake()
    await env.send(env.graph.text(CITIZEN, "Pesan sesudah restart"))
    await env.admin.wait_for(lambda s: in_thread_of(card.event.event_id)(s.event)
                             and "sesudah restart" in getattr(s.event, "body", ""))
    await settled(env)
    assert len([e for e in env.admin.messages(admin_room) if e.body.startswith("📨")]) == 1
    assert len(texts_to_citizen(env)) == 1
    async with env.bridge.store.reading() as tx:
        assert await q.count_cases(tx) == 1 and await q.inbound_count(tx) == 2


async def settled_inbound(env: Env) -> None:
    async def done() -> bool:
        async with env.bridge.store.reading() as tx:
            return not await tx.pending_inbound()
    await until(done, what="inbound processed")


async def test_every_sample_notification_is_answered_200(env: Env) -> None:
    from tests.test_whatsapp_parse import samples
    ids = set()
    for name, payload in samples():
        status, text = await env.send(payload)
        assert status == 200, (name, text)
        ids |= {m["id"] for e in payload["entry"] for c in e["changes"] for m in c["value"].get("messages", [])}
    await settled_inbound(env)
    async with env.bridge.store.reading() as tx:
        assert await q.inbound_count(tx) == len(ids)   # the samples reuse ids: Meta's dedupe key
        assert await q.inbound_count(tx, "failed") == 0                 # none crashed its processing
    # A sample's text reached the conversation: no sample is in the complaint format, so the
    # citizen is greeted and asked for it.
    await env.graph.wait_for_sent(lambda r: "selamat datang" in str(r["body"]))


async def test_healthz_reports_matrix_channels_and_outbox(env: Env) -> None:
    await until(lambda: env.bridge.matrix.last_sync_ok, what="first sync")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{env.bridge.http.url}/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["ok"] is True and body["matrix"]["synced"] is True
    assert body["channels"]["whatsapp"]["ok"] is True and body["outbox"] == {"pending": 0, "dead": 0}


async def test_an_album_sent_at_once_lands_in_one_case(env: Env) -> None:
    """WhatsApp posts each photo of an album as its own webhook, all at once."""
    media = [env.graph.add_media(PNG, "image/png") for _ in range(4)]
    payloads = [env.graph.image(CITIZEN, m, caption=in_format("Foto KTP") if i == 0 else None, mime_type="image/png")
                for i, m in enumerate(media)]
    statuses = await asyncio.gather(*(env.send(p) for p in payloads))
    assert [s for s, _ in statuses] == [200] * 4
    card = await env.admin.wait_for(card_in(env.bridge.matrix.rooms["admin"]))
    await settled(env)

    def images() -> list:
        return [e for e in env.admin.messages(env.bridge.matrix.rooms["admin"])
                if isinstance(e, nio.RoomMessageImage) and in_thread_of(card.event.event_id)(e)]
    await until(lambda: len(images()) >= 4, what="four images in the thread")   # the staff client syncs
    assert len(images()) == 4
    async with env.bridge.store.reading() as tx:
        assert await q.count_cases(tx) == 1
    assert len(texts_to_citizen(env)) == 1


async def test_a_permanent_send_failure_is_shown_to_the_admin_room(env: Env) -> None:
    env.graph.fail_next(1, status=400, code=131026, message="Message undeliverable",
                        match=lambda b: b.get("type") == "text")
    await env.send(env.graph.text(CITIZEN, in_format("Nomor saya tidak bisa dibalas")))
    admin_room = env.bridge.matrix.rooms["admin"]
    card = await env.admin.wait_for(card_in(admin_room))
    notice = await env.admin.wait_for(
        lambda s: s.room_id == admin_room and "Gagal mengirim" in getattr(s.event, "body", ""),
        what="the failure notice")
    assert ticket_of(card) in notice.event.body and "131026" in notice.event.body
    async with env.bridge.store.reading() as tx:
        (dead,) = await q.outbox_rows(tx, state="dead")
    assert dead["kind"] == "channel.text"
