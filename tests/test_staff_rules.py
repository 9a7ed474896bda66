"""The staff contract's rules: refusals, reject, ask-and-answer, redactions, routing, records."""
from __future__ import annotations

import asyncio

import nio

from tests.harness import STAFF, Env, StaffClient, in_thread_of, user_id
from tests.story import (body, bot_says, card_in, case_reaches, case_row, command, complaint, office_year,
                         react)

WARGA = "6281234500003"


async def test_reject_tells_the_citizen_the_reason_and_closes(env: Env) -> None:
    card = await complaint(env, WARGA, "Saya mau protes soal pajak")
    await command(env, "admin", card, "!tolak Pajak bukan kewenangan Dukcapil; silakan hubungi Bapenda.")
    reply = await env.graph.wait_for_sent(lambda r: "tidak dapat kami tindak lanjuti" in r["body"]["text"]["body"])
    assert "bukan kewenangan Dukcapil" in reply["body"]["text"]["body"]
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["outcome"] == "ditolak"
    await bot_says(env.admin, card, "Kasus ditutup")


async def test_ask_and_answer(env: Env) -> None:
    card = await complaint(env, WARGA, "Akta kelahiran anak saya salah tanggal")
    await command(env, "admin", card, "!tanya Mohon kirim foto akta dan KK.")
    question = await env.graph.wait_for_sent(lambda r: "petugas kami perlu keterangan" in r["body"]["text"]["body"])
    assert "Mohon kirim foto akta dan KK." in question["body"]["text"]["body"]
    await case_reaches(env, card.ticket, state="waiting")
    # While waiting, step actions wait too.
    await react(env, "admin", card, "✅")
    await bot_says(env.admin, card, "menunggu jawaban pemohon")
    await env.send(env.graph.text(WARGA, "Baik, tanggal yang benar 12 Mei 2020"))
    await env.admin.wait_for(lambda s: in_thread_of(card.event_id)(s.event) and "12 Mei 2020" in body(s))
    await bot_says(env.admin, card, "kembali ke langkah Verifikasi pengaduan")
    row = await case_reaches(env, card.ticket, state="open")
    assert row["step"] == "verifikasi" and row["waiting_since"] is None


async def test_an_unauthorized_reaction_and_command(env: Env) -> None:
    card = await complaint(env, WARGA, "KTP-el hilang")
    # A Kasi in the Admin room reacts on a step that is the Admin WA's.
    invited = await env.bridge.matrix.client.room_invite(card.room_id, user_id(env.synapse, STAFF["kasi"]))
    assert isinstance(invited, nio.RoomInviteResponse)
    kasi = await env.staff_member("kasi")
    await kasi.join(card.room_id)
    await kasi.react(card.room_id, card.event_id, "✅")
    await bot_says(env.admin, card, "dikerjakan oleh Admin WA; Anda tidak memiliki peran itu")
    # Someone who is no staff at all, with a command.
    env.synapse.register("tamu", "tamu-password-1")
    guest = StaffClient(env.synapse, "tamu")
    guest.password = "tamu-password-1"
    await guest.start()
    try:
        await env.bridge.matrix.client.room_invite(card.room_id, guest.user_id)
        await guest.join(card.room_id)
        await guest.say(card.room_id, "!verifikasi", thread=card.event_id)
        await bot_says(env.admin, card, "tidak terdaftar sebagai petugas")
    finally:
        await guest.stop()
    assert (await case_row(env, card.ticket))["step"] == "verifikasi"


async def test_a_command_in_the_wrong_step_and_with_a_ticket_elsewhere(env: Env) -> None:
    card = await complaint(env, WARGA, "Pindah datang belum diproses")
    await command(env, "admin", card, "!kirim")
    await bot_says(env.admin, card, "Kirim jawaban tidak ada pada langkah \"Verifikasi pengaduan\"")
    # A command outside the thread names the ticket; a wrong ticket is said so.
    await env.admin.say(card.room_id, f"!verifikasi {card.ticket}")
    await bot_says(env.admin, card, "Diverifikasi oleh")
    await env.admin.say(card.room_id, "!status ADU-2026-999999")
    await env.admin.wait_for(lambda s: "Tiket ADU-2026-999999 tidak ditemukan" in body(s))
    await env.admin.say(card.room_id, "!frobnicate")
    await env.admin.wait_for(lambda s: "Perintah tidak dikenal" in body(s))


async def test_a_redacted_reaction_is_not_acted_on_and_one_acted_on_stays(env: Env) -> None:
    card = await complaint(env, WARGA, "Data NIK tidak sinkron")
    # The bridge is down while an admin reacts and takes it back: on its return it must not act.
    await env.stop_bridge()
    reaction = await env.admin.react(card.room_id, card.event_id, "✅")
    await env.admin.redact(card.room_id, reaction)
    await env.start_bridge()
    await command(env, "admin", card, "!status")
    said = await bot_says(env.admin, card, "Status ")
    assert "Verifikasi pengaduan" in said
    assert (await case_row(env, card.ticket))["step"] == "verifikasi"
    # A reaction that was acted on is not undone by removing it.
    reaction = await react(env, "admin", card, "✅")
    await bot_says(env.admin, card, "Diverifikasi oleh")
    await env.admin.redact(card.room_id, reaction)
    await command(env, "admin", card, "!catatan sudah dicek di SIAK")
    await bot_says(env.admin, card, "sudah dicek di SIAK")
    assert (await case_row(env, card.ticket))["step"] == "draf"


async def test_routing_by_category_to_the_units_room(make_env) -> None:
    env = await make_env()
    prefix, server = env.prefix, env.synapse.server_name
    await env.close()
    env = await make_env({"units": [{"name": "capil", "categories": ["Akta Kelahiran", "Akta Kematian"],
                                     "kasi": f"#{prefix}-kasi-capil:{server}",
                                     "kabid": f"#{prefix}-kabid-capil:{server}"}]})
    card = await complaint(env, WARGA, "Layanan: Akta Kelahiran\nAduan: akta anak belum jadi")
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab Akta sudah jadi.")
    kasi = await env.staff_member("kasi", "kasi:capil")
    unit_room = env.bridge.matrix.rooms["kasi:capil"]
    seen = await kasi.wait_for(lambda s: s.room_id == unit_room and card.ticket in body(s).split("\n")[0],
                               what="the card in the unit's kasi room")
    assert "Layanan: Akta Kelahiran" in body(seen)
    general = env.bridge.matrix.rooms["kasi"]
    assert not [e for e in kasi.messages(general) if card.ticket in e.body]


async def test_history_status_print_and_the_shell(env: Env, tmp_path) -> None:
    card = await complaint(env, WARGA, "KTP-el <rusak> & tidak terbaca")
    await command(env, "admin", card, "!ambil")
    await command(env, "admin", card, "!catatan cek chip di loket 3")
    await command(env, "admin", card, "!riwayat")
    history = await bot_says(env.admin, card, f"Riwayat {card.ticket}")
    assert "Pengaduan diterima" in history and "Diambil oleh" in history and "cek chip di loket 3" in history
    await command(env, "admin", card, "!cetak")
    seen = await env.admin.wait_for(lambda s: isinstance(s.event, nio.RoomMessageFile)
                                    and in_thread_of(card.event_id)(s.event), what="the transcript file")
    assert seen.event.body == f"{card.ticket}.html"
    html = (await env.admin.client.download(seen.event.url)).body.decode()
    assert "KTP-el &lt;rusak&gt; &amp; tidak terbaca" in html and "cek chip di loket 3" in html
    assert "Nomor tiket" in html and "Terima kasih" in html          # the bot's reply is in the record
    # The same record from the shell.
    from bridge.app import Bridge  # noqa: F401  (the shell reads the same database)
    from main import print_case
    text = await asyncio.to_thread(print_case, env.settings, card.ticket)
    assert text.startswith(f"TRANSKRIP PENGADUAN {card.ticket}") and "cek chip di loket 3" in text


async def test_concurrent_approvals_get_agenda_numbers_without_gaps(make_env) -> None:
    """An office's own profile: paraf by the kabid gives numbers 1..n once each."""
    sop = {"profile": "kantor", "total_minutes": 60, "min_approver": "kabid",
           "agenda_format": "470/{seq}/TEST/{year}", "steps": [
               {"id": "terima", "role": "citizen", "minutes": 5},
               {"id": "konsep", "role": "admin", "minutes": 20, "actions": {"answer": "paraf"}},
               {"id": "paraf", "role": "kabid", "minutes": 20, "actions": {"approve": "kirim"}},
               {"id": "kirim", "role": "admin", "minutes": 10, "actions": {"send": "selesai"}},
               {"id": "selesai", "role": "citizen", "minutes": 5}]}
    env = await make_env({"sop": sop})
    cards = [await complaint(env, f"62812345001{i:02d}", f"Aduan nomor {i}") for i in range(5)]
    for c in cards:
        await command(env, "admin", c, "!jawab Sudah kami tindak lanjuti.")
    kabid_cards = [await card_in(env, "kabid", c.ticket) for c in cards]
    await asyncio.gather(*(react(env, "kabid", c, "✍") for c in kabid_cards))   # without U+FE0F
    rows = [await case_reaches(env, c.ticket, step="kirim") for c in cards]
    assert sorted(r["agenda_number"] for r in rows) == sorted(f"470/{n}/TEST/{office_year(env)}" for n in range(1, 6))


async def test_help_list_and_the_pimpinan_reading_any_case(env: Env) -> None:
    card = await complaint(env, WARGA, "Layanan online error terus")
    await env.admin.say(card.room_id, "!bantuan")
    help_text = (await env.admin.wait_for(lambda s: body(s).startswith("Perintah ("))).event.body
    for name in ("!ambil / !claim", "!paraf / !approve", "!tolak / !reject", "!cetak / !print"):
        assert name in help_text
    await env.admin.say(card.room_id, "!list")
    listing = (await env.admin.wait_for(lambda s: body(s).startswith("Kasus terbuka"))).event.body
    assert card.ticket in listing and "Verifikasi pengaduan" in listing
    pimpinan = await env.staff_member("pimpinan")
    room = env.bridge.matrix.rooms["pimpinan"]
    await pimpinan.say(room, f"!status {card.ticket}")
    status = await pimpinan.wait_for(lambda s: s.room_id == room and body(s).startswith(f"Status {card.ticket}"))
    assert "Penanggung jawab: -" in body(status)
    await pimpinan.say(room, "!daftar")
    assert card.ticket in body(await pimpinan.wait_for(lambda s: s.room_id == room and "Kasus terbuka" in body(s)))


async def test_the_bot_takes_back_reactions_that_no_longer_apply(env: Env) -> None:
    card = await complaint(env, WARGA, "Kartu keluarga belum dicetak")
    bot = env.bridge.matrix.user_id
    tick = await env.admin.wait_for(lambda s: isinstance(s.event, nio.ReactionEvent) and s.event.sender == bot
                                    and s.event.reacts_to == card.event_id and s.event.key == "✅")
    await command(env, "admin", card, "!verifikasi")         # now in 'draf': nothing to verify
    await env.admin.wait_for(lambda s: isinstance(s.event, nio.RedactionEvent)
                             and s.event.redacts == tick.event.event_id, what="the bot's ✅ taken back")


async def test_the_card_itself_shows_the_current_step(env: Env) -> None:
    card = await complaint(env, WARGA, "Foto KTP-el buram")
    await command(env, "admin", card, "!verifikasi")
    edit = await env.admin.wait_for(
        lambda s: s.event.source.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"
        and s.event.source["content"]["m.relates_to"]["event_id"] == card.event_id, what="the card's edit")
    new = edit.event.source["content"]["m.new_content"]
    assert new["body"].startswith(f"📨 Pengaduan baru {card.ticket}") and "Langkah: Draf jawaban" in new["body"]
    assert "Foto KTP-el buram" in new["body"] and new["m.mentions"] == {}
