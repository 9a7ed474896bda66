"""The Bantul SOP (IKMT-PIAK-01-06) end to end: who resolves, and the kasi's approval."""
from __future__ import annotations

import pytest

from tests.story import (bot_says, card_in, case_reaches, case_row, command, complaint, react,
                         steps_walked)

WARGA = "6281234500002"
BANTUL = {"sop": {"profile": "bantul"}}


async def deliver_answer(env, card) -> str:
    """Admin WA sends the approved answer; the citizen's phone confirms it."""
    await react(env, "admin", card, "📤")
    sent = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"])
    await env.send(env.graph.status(sent["id"], "delivered", WARGA))
    await bot_says(env.admin, card, "Kasus selesai")
    return sent["body"]["text"]["body"]


@pytest.fixture
async def bantul(make_env):
    return await make_env(BANTUL)


async def test_the_admin_resolves_with_the_kasis_approval(bantul) -> None:
    env = bantul
    card = await complaint(env, WARGA, "Nama: Siti\nLayanan: KIA\nAduan: KIA anak saya belum terbit")
    await react(env, "admin", card, "👀")
    await bot_says(env.admin, card, "Verifikasi oleh Admin WA")
    # The admin can answer, but an answer goes out only with at least the kasi's paraf.
    await command(env, "admin", card, "!jawab KIA sudah terbit, silakan diambil di kecamatan.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    await react(env, "kasi", kasi_card, "✍️")
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    text = await deliver_answer(env, admin_card)
    assert "KIA sudah terbit" in text and "Nomor agenda" not in text     # Bantul gives none
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["approved_role"] == "kasi" and row["category"] == "KIA"
    assert await steps_walked(env, card.ticket) == [
        "diterima", "verifikasi_admin", "verifikasi_kasi", "jawab", "selesai"]


async def test_the_kasi_resolves(bantul) -> None:
    env = bantul
    card = await complaint(env, WARGA, "NIK saya tidak ditemukan saat daftar BPJS")
    await react(env, "admin", card, "👀")
    await react(env, "admin", card, "⬆️")
    kasi_card = await card_in(env, "kasi", card.ticket)
    # Paraf before there is an answer is refused, politely, in the thread.
    await react(env, "kasi", kasi_card, "✍️")
    await bot_says(env.staff["kasi"], kasi_card, "Belum ada konsep jawaban")
    await command(env, "kasi", kasi_card, "!jawab NIK Anda sudah aktif kembali; silakan coba lagi.")
    # Four eyes: "approved by at least the Kepala Seksi" means by someone else than its writer.
    await command(env, "kasi", kasi_card, "!paraf")
    await bot_says(env.staff["kasi"], kasi_card, "Anda tulis sendiri")
    pimpinan = await env.staff_member("pimpinan")
    await pimpinan.say(env.bridge.matrix.rooms["pimpinan"], f"!paraf {card.ticket}")
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    assert (await case_row(env, card.ticket))["approved_by"] == pimpinan.user_id
    assert "NIK Anda sudah aktif" in await deliver_answer(env, admin_card)
    assert await steps_walked(env, card.ticket) == [
        "diterima", "verifikasi_admin", "verifikasi_kasi", "jawab", "selesai"]


async def test_to_the_kabid_and_back(bantul) -> None:
    env = bantul
    card = await complaint(env, WARGA, "Data ganda: saya punya dua NIK")
    await react(env, "admin", card, "👀")
    await command(env, "admin", card, "!teruskan perlu pengecekan data ganda")
    kasi_card = await card_in(env, "kasi", card.ticket)
    await command(env, "kasi", kasi_card, "!escalate butuh keputusan kabid")
    kabid_card = await card_in(env, "kabid", card.ticket)
    kabid_view = (await env.staff["kabid"].wait_for(lambda s: s.event.event_id == kabid_card.event_id)).event.body
    assert "perlu pengecekan data ganda" in kabid_view and "Riwayat" in kabid_view   # the history so far
    await command(env, "kabid", kabid_card, "!jawab NIK ganda sudah dinonaktifkan; gunakan NIK 3402...")
    await command(env, "kabid", kabid_card, "!kembalikan Data sudah divalidasi, NIK lama dinonaktifkan")
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    await deliver_answer(env, admin_card)
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["approved_role"] == "kabid"            # the kabid's response counts as approved
    assert await steps_walked(env, card.ticket) == [
        "diterima", "verifikasi_admin", "verifikasi_kasi", "tanggapan_kabid", "jawab", "selesai"]


async def test_a_failed_answer_goes_back_to_the_admin_to_resend(bantul) -> None:
    env = bantul
    card = await complaint(env, WARGA, "KTP-el rusak, minta cetak ulang")
    await react(env, "admin", card, "👀")
    await command(env, "admin", card, "!jawab Silakan datang ke Disdukcapil untuk cetak ulang.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    await command(env, "kasi", kasi_card, "!paraf")
    admin_card = await card_in(env, "admin", card.ticket, after=card)
    await react(env, "admin", admin_card, "📤")
    first = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"])
    failed = env.graph.status(first["id"], "failed", WARGA,
                              errors=[env.graph.status_error(131047, "Re-engagement message")])
    await env.send(failed)
    said = await bot_says(env.admin, admin_card, "GAGAL terkirim")
    assert "131047" in said
    await case_reaches(env, card.ticket, step="jawab", state="open")
    await command(env, "admin", admin_card, "!kirim")
    second = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"]
                                           and r["id"] != first["id"])
    await env.send(env.graph.status(second["id"], "delivered", WARGA))
    await case_reaches(env, card.ticket, state="closed")
