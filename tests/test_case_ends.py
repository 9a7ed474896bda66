"""Every case can finish: undeliverable answers, lost receipts, failed questions, waits
that only the citizen's own words end, and read receipts that hold nothing up."""
from __future__ import annotations

from schedules.digest import build
from bridge.export import month_rows
from tests import queries as q
from tests.harness import Env, in_thread_of, until
from tests.story import (body, bot_says, card_in, case_reaches, case_row, command, complaint, in_format,
                         to_the_sending_step)

WARGA = "6281234500021"


def answer_sent(r) -> bool:
    return "Jawaban atas pengaduan" in r["body"]["text"]["body"]


async def test_an_undeliverable_answer_is_closed_with_tidak_terkirim(env: Env) -> None:
    card = await complaint(env, WARGA, "KTP-el saya belum jadi")
    admin_card = await to_the_sending_step(env, card)
    await command(env, "admin", admin_card, "!kirim")
    sent = await env.graph.wait_for_sent(answer_sent)
    # WhatsApp takes it, then reports it undeliverable: back to the sending step.
    await env.send(env.graph.status(sent["id"], "failed", WARGA,
                                    errors=[env.graph.status_error(131026, "Message undeliverable")]))
    said = await bot_says(env.admin, admin_card, "GAGAL terkirim")
    assert "131026" in said and "!tutup" in said
    row = await case_reaches(env, card.ticket, step="kirim", state="open")
    assert row["next_alert_at"] is not None                        # its SLA runs again
    # The way out: close it as undeliverable, with the reason.
    await command(env, "admin", admin_card, "!tutup Nomor pemohon tidak aktif; sudah ditelepon, tidak tersambung")
    await bot_says(env.admin, admin_card, "Ditutup, jawaban tidak terkirim")
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["outcome"] == "tidak terkirim" and row["next_alert_at"] is None   # no more alerts
    async with env.bridge.store.reading() as tx:
        events = await q.events(tx, card.ticket)
        digest = await build(tx, env.bridge.profile, env.bridge.cases.calendar, env.bridge.clock())
        month = env.bridge.clock().astimezone(env.bridge.cases.calendar.tz).strftime("%Y-%m")
        rows = await month_rows(tx, env.bridge.profile, env.bridge.cases.calendar, month)
    close = events[-1]
    assert close["kind"] == "close" and close["actor"] == env.admin.user_id and "tidak aktif" in close["note"]
    assert digest.closed == {"tidak terkirim": 1}
    assert [r["Hasil"] for r in rows if r["Nomor tiket"] == card.ticket] == ["tidak terkirim"]
    # The citizen is free to complain again.
    again = await complaint(env, WARGA, "Akta kelahiran anak saya belum jadi")
    assert again.ticket != card.ticket


async def test_close_is_only_for_the_sending_step(env: Env) -> None:
    card = await complaint(env, WARGA, "Kartu keluarga hilang")
    await command(env, "admin", card, "!tutup saya tutup saja")
    await bot_says(env.admin, card, "!tutup hanya untuk jawaban yang tidak dapat dikirim")
    assert (await case_row(env, card.ticket))["state"] == "open"


async def test_an_answer_never_confirmed_does_not_block_the_next_complaint(env: Env) -> None:
    card = await complaint(env, WARGA, "NIK saya tidak ditemukan di SIAK")
    admin_card = await to_the_sending_step(env, card)
    await command(env, "admin", admin_card, "!kirim")
    await env.graph.wait_for_sent(answer_sent)
    # The channel took it; no receipt comes (a phone off for a week, a lost webhook).
    row = await until(lambda: _answer_taken(env, card.ticket), what="the answer taken")
    assert row["state"] == "open" and row["next_alert_at"] is None     # nothing left for staff to do
    new = await complaint(env, WARGA, "Sekarang KK saya juga salah alamat")
    assert new.ticket != card.ticket
    old = await case_reaches(env, card.ticket, state="closed")
    assert old["outcome"] == "dijawab"
    await bot_says(env.admin, admin_card, "dianggap diterima")


async def _answer_taken(env: Env, ticket: str):
    row = await case_row(env, ticket)
    return row if row["answer_sent_at"] else None


async def test_a_delivered_status_faster_than_the_send_is_kept(env: Env) -> None:
    """Meta's 'delivered' can arrive before the send call has returned to us."""
    card = await complaint(env, WARGA, "KIA anak saya belum dicetak")
    admin_card = await to_the_sending_step(env, card)

    async def deliver_at_once(record) -> None:
        if answer_sent(record):
            status, _ = await env.send(env.graph.status(record["id"], "delivered", WARGA))
            assert status == 200
    env.graph.on_send = deliver_at_once
    await command(env, "admin", admin_card, "!kirim")
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["outcome"] == "dijawab"
    await bot_says(env.admin, admin_card, "sampai di ponsel pemohon")


async def test_a_failed_question_ends_the_wait_and_shows_in_the_thread(env: Env) -> None:
    card = await complaint(env, WARGA, "Akta kematian ayah saya salah nama")
    await command(env, "admin", card, "!tanya Mohon kirim foto akta kematian.")
    question = await env.graph.wait_for_sent(lambda r: "petugas kami perlu keterangan" in r["body"]["text"]["body"])
    await case_reaches(env, card.ticket, state="waiting")
    await env.send(env.graph.status(question["id"], "failed", WARGA,
                                    errors=[env.graph.status_error(131047, "Re-engagement message")]))
    said = await bot_says(env.admin, card, "Gagal mengirim pertanyaan")
    assert "131047" in said
    row = await case_reaches(env, card.ticket, state="open")
    assert row["waiting_since"] is None and row["next_alert_at"] is not None   # the clock runs again


async def test_a_failed_ticket_reply_shows_in_the_thread(env: Env) -> None:
    env.graph.fail_next(status=400, code=131026, message="Message undeliverable",
                        match=lambda b: "Pengaduan Anda sudah kami terima" in b.get("text", {}).get("body", ""))
    card = await complaint(env, WARGA, "Pindah datang belum selesai")
    said = await bot_says(env.admin, card, "Gagal mengirim balasan nomor tiket")
    assert "131026" in said


async def test_a_reaction_an_edit_or_a_deletion_does_not_end_a_wait(env: Env) -> None:
    card = await complaint(env, WARGA, "Data KK ganda")
    await command(env, "admin", card, "!tanya Nomor KK yang mana yang benar?")
    question = await env.graph.wait_for_sent(lambda r: "Nomor KK yang mana" in r["body"]["text"]["body"])
    await case_reaches(env, card.ticket, state="waiting")
    contact = [{"profile": {"name": "Siti Aminah"}, "wa_id": WARGA}]
    for i, message in enumerate([
            {"type": "reaction", "reaction": {"message_id": question["id"], "emoji": "👍"}},
            {"type": "edit", "edit": {"original_message_id": "wamid.earlier",
                                      "message": {"type": "text", "text": {"body": "Data KK ganda sekali"}}}},
            {"type": "revoke", "revoke": {"original_message_id": "wamid.earlier"}}]):
        message |= {"from": WARGA, "id": f"wamid.notananswer{i}{card.ticket}", "timestamp": "1764000000"}
        status, _ = await env.send(env.graph.notification(messages=[message], contacts=contact))
        assert status == 200
    await env.admin.wait_for(lambda s: in_thread_of(card.event_id)(s.event) and "menghapus pesan" in body(s),
                             what="the deletion shown in the thread")
    await env.admin.wait_for(lambda s: in_thread_of(card.event_id)(s.event) and "bereaksi" in body(s))
    assert (await case_row(env, card.ticket))["state"] == "waiting"
    # What the citizen writes does end it.
    await env.send(env.graph.text(WARGA, "Yang benar 3402120101900001"))
    await case_reaches(env, card.ticket, state="open")


async def test_a_failing_read_receipt_holds_nothing_up_and_alerts_nobody(env: Env) -> None:
    env.graph.fail_next(count=10, status=500, code=131000, message="Something went wrong",
                        match=lambda b: b.get("status") == "read")
    await env.send(env.graph.text(WARGA, in_format("Layanan online tidak bisa login")))
    # The ticket reply does not wait for the receipt's retries (2 s, then 4 s, ...).
    await env.graph.wait_for_sent(lambda r: "nomor tiket" in r["body"]["text"]["body"], timeout=5)
    await until(lambda: _dead_reads(env), what="the read receipt given up after a few tries")
    async with env.bridge.store.reading() as tx:
        notices = await q.outbox_rows(tx, kind="matrix.notice")
        (read,) = await q.outbox_rows(tx, kind="channel.read")
    assert read["attempts"] == 3
    assert not [n for n in notices if "Gagal" in n["payload"]["content"]["body"]]


async def _dead_reads(env: Env) -> bool:
    async with env.bridge.store.reading() as tx:
        return bool(await q.outbox_rows(tx, kind="channel.read", state="dead"))


async def test_only_the_admin_card_shows_the_nik_whole(env: Env) -> None:
    """The admin checks the NIK against SIAK; every other message in Matrix shows it masked."""
    card = await complaint(env, WARGA, "KTP-el saya belum jadi")          # in the format, with NIK
    seen = await env.admin.wait_for(lambda s: s.event.event_id == card.event_id)
    assert "NIK: 3402124501900003" in body(seen)
    await env.send(env.graph.text(WARGA, "NIK istri saya 3402125501920004 juga"))
    await env.admin.wait_for(lambda s: in_thread_of(card.event_id)(s.event) and "istri" in body(s))
    await command(env, "admin", card, "!riwayat")
    await bot_says(env.admin, card, "Riwayat")
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab KTP-el Anda sudah jadi.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    kasi_view = body(await env.staff["kasi"].wait_for(lambda s: s.event.event_id == kasi_card.event_id))
    assert "NIK: 340212******0003" in kasi_view and "3402124501900003" not in kasi_view
    # Everything else in the admin room (its card's own edits aside) shows the NIKs masked.
    everything = " ".join(body(s) + str(getattr(s.event, "formatted_body", "")) for s in env.admin.seen
                          if s.room_id == card.room_id and s.event.event_id != card.event_id
                          and "m.new_content" not in s.event.source.get("content", {}))
    assert "3402125501920004" not in everything and "340212******0004" in everything
    assert "3402124501900003" not in everything
