"""What staff meet: cards that stay true, links that open, refusals that guide, replies
where they were asked for, one language, and the admin's card serving the admin."""
from __future__ import annotations

import nio

from bridge.messages import matrix_to
from tests.harness import STAFF, Env, StaffClient, in_thread_of, relates_to, until, user_id
from tests.story import Card, body, bot_says, card_in, case_reaches, command, complaint, to_the_sending_step

WARGA = "6281234500041"


def edits_of(client: StaffClient, card: Card) -> list[dict]:
    """The new contents of every edit of ``card`` that ``client`` received, oldest first."""
    return [s.event.source["content"]["m.new_content"] for s in client.seen
            if relates_to(s.event).get("rel_type") == "m.replace" and relates_to(s.event).get("event_id") == card.event_id]


async def edited_to(client: StaffClient, card: Card, text: str) -> dict:
    await client.wait_for(lambda s: relates_to(s.event).get("rel_type") == "m.replace"
                          and relates_to(s.event).get("event_id") == card.event_id
                          and text in s.event.source["content"]["m.new_content"]["body"],
                          what=f"the card {card.ticket} edited to say {text!r}")
    return [e for e in edits_of(client, card) if text in e["body"]][-1]


async def test_every_card_says_where_the_case_is_and_at_the_end_how_it_ended(env: Env) -> None:
    card = await complaint(env, WARGA, "KTP-el belum jadi")
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab KTP-el Anda sudah jadi.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    # The first admin card now points to the kasi's card, with a link Element opens.
    moved = await edited_to(env.admin, card, "Sekarang: di ruang Kepala Seksi, langkah Finalisasi jawaban")
    link = matrix_to(kasi_card.room_id, kasi_card.event_id)
    assert link in moved["body"] and f'href="{link}"' in moved["formatted_body"]
    # The pointer in the old thread links to the new card too.
    pointer = await bot_says(env.admin, card, "Kasus pindah ke ruang Kepala Seksi")
    assert link in pointer
    # On through the kabid, back to the admin, sent and delivered.
    await command(env, "kasi", kasi_card, "!verifikasi")
    kabid_card = await card_in(env, "kabid", card.ticket)
    await edited_to(env.staff["kasi"], kasi_card, "Sekarang: di ruang Kepala Bidang")
    await command(env, "kabid", kabid_card, "!paraf")
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    await edited_to(env.staff["kabid"], kabid_card, "Sekarang: di ruang Admin WA, langkah Pengecekan jawaban")
    await command(env, "admin", admin_card, "!verifikasi")
    await command(env, "admin", admin_card, "!kirim")
    sent = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"])
    await env.send(env.graph.status(sent["id"], "delivered", WARGA))
    await case_reaches(env, card.ticket, state="closed")
    # Every card of the case, in every room, now says how it ended.
    for client, c in ((env.admin, card), (env.staff["kasi"], kasi_card), (env.staff["kabid"], kabid_card),
                      (env.admin, admin_card)):
        finished = await edited_to(client, c, "Selesai: dijawab")
        assert "Langkah:" not in finished["body"] and "Sekarang:" not in finished["body"]
    # The last admin card kept its history.
    assert "Riwayat:" in (await edited_to(env.admin, admin_card, "Selesai: dijawab"))["body"]
    # Read after delivered: the close was announced once.
    await env.send(env.graph.status(sent["id"], "read", WARGA))
    await until(lambda: _status_applied(env, sent["id"], "read"), what="the read status")
    closes = [s for s in env.admin.seen if in_thread_of(admin_card.event_id)(s.event) and "Kasus selesai" in body(s)]
    assert len(closes) == 1


async def _status_applied(env: Env, wamid: str, status: str) -> bool:
    async with env.bridge.store.reading() as tx:
        row = await tx._one("SELECT status FROM deliveries WHERE external_id = ?", wamid)
    return bool(row) and row["status"] == status


async def test_a_rejected_case_says_rejected_not_received(env: Env) -> None:
    card = await complaint(env, WARGA, "Protes pajak kendaraan")
    await command(env, "admin", card, "!tolak Bukan kewenangan Dukcapil")
    finished = await edited_to(env.admin, card, "Selesai: ditolak")
    assert "Jawaban diterima pemohon" not in finished["body"]


async def test_refusals_say_why_and_what_can_be_done_now_by_whom(env: Env) -> None:
    card = await complaint(env, WARGA, "KK salah nama")
    guide = "Di langkah \"Verifikasi pengaduan\", Admin WA dapat:"
    # Not in this step (paraf comes later in this SOP).
    await command(env, "admin", card, "!paraf")
    said = await bot_says(env.admin, card, "Paraf tidak ada pada langkah")
    assert "\"Paraf kepala bidang\"" in said and guide in said and "!verifikasi (lalu Admin WA: Draf jawaban)" in said
    # Not in this SOP at all (Mojokerto has no ⬆️).
    await command(env, "admin", card, "!teruskan")
    said = await bot_says(env.admin, card, "Teruskan tidak dipakai dalam SOP mojokerto")
    assert guide in said and "!tolak <alasan>" in said
    # Not your role: a kasi in the admin room.
    invited = await env.bridge.matrix.client.room_invite(card.room_id, user_id(env.synapse, STAFF["kasi"]))
    assert isinstance(invited, nio.RoomInviteResponse)
    kasi = await env.staff_member("kasi")
    await kasi.join(card.room_id)
    await kasi.react(card.room_id, card.event_id, "✅")
    said = await bot_says(env.admin, card, "dikerjakan oleh Admin WA; Anda tidak memiliki peran itu (Anda: Kepala Seksi)")
    assert guide in said
    # Waiting for the citizen: what happens next.
    await command(env, "admin", card, "!tanya Nama siapa yang salah?")
    await case_reaches(env, card.ticket, state="waiting")
    await command(env, "admin", card, "!verifikasi")
    said = await bot_says(env.admin, card, "tunggu balasannya dulu")
    assert "setelah pemohon membalas, Admin WA melanjutkan" in said


async def test_a_command_in_the_timeline_is_answered_there_and_recorded_in_the_thread(env: Env) -> None:
    card = await complaint(env, WARGA, "Akta kelahiran belum jadi")
    await env.admin.say(card.room_id, f"!verifikasi {card.ticket}")
    answer = await env.admin.wait_for(lambda s: s.room_id == card.room_id and not relates_to(s.event)
                                      and body(s).startswith(f"✅ Diverifikasi {card.ticket} oleh"),
                                      what="the answer in the timeline")
    assert "Langkah sekarang: Draf jawaban" in body(answer)
    await bot_says(env.admin, card, "Diverifikasi oleh")                    # and the thread's record
    await env.admin.say(card.room_id, f"!status {card.ticket}")
    await env.admin.wait_for(lambda s: s.room_id == card.room_id and not relates_to(s.event)
                             and body(s).startswith(f"Status {card.ticket}"), what="the status in the timeline")


async def test_history_and_transcript_read_in_indonesian_with_each_steps_role(env: Env) -> None:
    card = await complaint(env, WARGA, "KIA belum dicetak")
    sending = await to_the_sending_step(env, card)
    await command(env, "admin", sending, "!kirim")
    sent = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"])
    await env.send(env.graph.status(sent["id"], "delivered", WARGA))
    await case_reaches(env, card.ticket, state="closed")
    await command(env, "admin", sending, "!riwayat")
    history = await bot_says(env.admin, sending, "Riwayat")
    assert "oleh sistem" in history and "oleh pemohon: sampai di ponsel pemohon" in history
    assert "[Verifikasi pengaduan → Draf jawaban]" in history
    for english in ("oleh bot", "oleh citizen", "delivered", "[verifikasi"):
        assert english not in history
    from bridge import transcript
    async with env.bridge.store.reading() as tx:
        record = await transcript.build_by_ticket(tx, card.ticket, profile=env.bridge.profile)
    text = transcript.to_text(record)
    assert "Langkah: Jawaban diterima pemohon (Pemohon)" in text and "Dinas (sistem)" in text


async def test_the_admin_card_shows_the_whole_number_other_rooms_a_masked_one(env: Env) -> None:
    card = await complaint(env, WARGA, "KK belum jadi", name="Siti A.")
    first = (await env.admin.wait_for(lambda s: s.event.event_id == card.event_id)).event.body
    assert f"WhatsApp {WARGA}" in first
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab KK Anda sudah jadi.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    kasi_view = (await env.staff["kasi"].wait_for(lambda s: s.event.event_id == kasi_card.event_id)).event.body
    assert "WhatsApp 62812*****041" in kasi_view and WARGA not in kasi_view
    reply = await env.graph.wait_for_sent(lambda r: "nomor tiket" in r["body"]["text"]["body"])
    assert reply["body"]["text"]["body"].startswith("Terima kasih, Siti A. Pengaduan")
