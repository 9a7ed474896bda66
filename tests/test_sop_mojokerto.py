"""The Mojokerto SOP end to end, as the office works it: seven steps, paraf, the answer back."""
from __future__ import annotations

from tests.harness import Env
from tests.story import (bot_says, card_in, case_reaches, command, complaint, office_year, react,
                         steps_walked)

WARGA = "6281234500001"


async def test_the_whole_mojokerto_path(env: Env) -> None:
    # 1. A citizen complains on WhatsApp; the Admin WA gets the card.
    card = await complaint(env, WARGA, "KTP-el saya belum jadi sejak 3 bulan")
    admin = env.admin
    # The bot offers the step's reactions on the card.
    await admin.wait_for(lambda s: getattr(s.event, "reacts_to", None) == card.event_id
                         and s.event.key == "✅", what="the bot's ✅ on the card")

    # 2. Admin takes the case and verifies it.
    await react(env, "admin", card, "👀")
    await bot_says(admin, card, "Diambil oleh")
    await react(env, "admin", card, "✅")
    await bot_says(admin, card, "Langkah sekarang: Draf jawaban")

    # 3. Admin drafts the answer: it goes to the Kasi to finalise.
    await command(env, "admin", card, "!jawab KTP-el Anda sudah dicetak dan dapat diambil di kantor kecamatan.")
    await bot_says(admin, card, "pindah ke ruang Kepala Seksi")
    kasi_card = await card_in(env, "kasi", card.ticket)
    kasi = env.staff["kasi"]
    assert "Konsep jawaban" in (await kasi.wait_for(lambda s: s.event.event_id == kasi_card.event_id)).event.body

    # 4. The Kasi finalises (✅ with the English variant of the command name works too).
    await command(env, "kasi", kasi_card, "!verify")
    kabid_card = await card_in(env, "kabid", card.ticket)

    # 5. The Kabid gives paraf: the agenda number comes with it.
    await react(env, "kabid", kabid_card, "✍️")
    said = await bot_says(env.staff["kabid"], kabid_card, "Nomor agenda")
    agenda = f"470/1/416-314/{office_year(env)}"
    assert agenda in said

    # 6. Back to the Admin WA to check, then 7. send.
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    await react(env, "admin", admin_card, "✅")
    await bot_says(admin, admin_card, "Langkah sekarang: Jawaban dikirim")
    await react(env, "admin", admin_card, "📤")
    sent = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"])
    text = sent["body"]["text"]["body"]
    assert "sudah dicetak" in text and agenda in text and sent["body"]["to"] == WARGA

    # The citizen's phone confirms delivery: the case closes, staff see it in the thread.
    await env.send(env.graph.status(sent["id"], "delivered", WARGA))
    await bot_says(admin, admin_card, "Kasus selesai")
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["outcome"] == "dijawab" and row["agenda_number"] == agenda
    assert await steps_walked(env, card.ticket) == [
        "verifikasi", "draf", "final", "paraf", "cek", "kirim", "selesai"]


async def test_a_new_complaint_soon_after_an_answer_is_linked(env: Env) -> None:
    card = await complaint(env, WARGA, "KK saya salah tulis nama ibu")
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab Silakan datang dengan KK asli.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    await react(env, "kasi", kasi_card, "✅")
    kabid_card = await card_in(env, "kabid", card.ticket)
    await command(env, "kabid", kabid_card, "!approve")
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    await command(env, "admin", admin_card, "!verifikasi")
    await command(env, "admin", admin_card, "!kirim")
    sent = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"])
    await env.send(env.graph.status(sent["id"], "read", WARGA))        # read implies delivered
    await case_reaches(env, card.ticket, state="closed")

    again = await complaint(env, WARGA, "Masih belum beres, KK belum diganti")
    assert again.ticket != card.ticket
    first_card = (await env.admin.wait_for(lambda s: s.event.event_id == again.event_id)).event.body
    assert f"Terkait: {card.ticket}" in first_card
