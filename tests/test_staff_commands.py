"""Every staff action counts: what staff write arrives whole, in the right case, within the
limits, with four eyes on the paraf, and nothing is lost to a sync gap or a failure."""
from __future__ import annotations

import aiohttp
import nio

import bridge.matrix
from bridge.export import month_rows
from tests import queries as q
from tests.harness import STAFF, Env, in_thread_of, until, user_id
from tests.story import (Card, body, bot_says, card_in, case_reaches, case_row, command, complaint, in_format,
                         office_year, to_the_check, to_the_sending_step)

WARGA = "6281234500031"


async def test_a_multi_line_answer_reaches_the_citizen_with_its_line_breaks(env: Env) -> None:
    card = await complaint(env, WARGA, "KTP-el saya rusak")
    sending = await to_the_sending_step(env, card, "\nYth. Ibu Siti,\n\n1. Bawa KTP-el lama.\n2. Datang ke loket 3.")
    await command(env, "admin", sending, "!kirim")
    sent = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in r["body"]["text"]["body"])
    assert "Yth. Ibu Siti,\n\n1. Bawa KTP-el lama.\n2. Datang ke loket 3." in sent["body"]["text"]["body"]


async def test_in_a_thread_another_ticket_is_refused_not_acted_on(env: Env) -> None:
    first = await complaint(env, WARGA, "Akta kelahiran belum jadi")
    other = await complaint(env, "6281234500032", "KK belum dicetak", name="Budi")
    await command(env, "admin", first, f"!verifikasi {other.ticket}")
    said = await bot_says(env.admin, first, f"Utas ini milik {first.ticket}")
    assert other.ticket in said
    assert (await case_row(env, first.ticket))["step"] == "verifikasi"
    assert (await case_row(env, other.ticket))["step"] == "verifikasi"
    # Its own ticket named in its own thread is fine.
    await command(env, "admin", first, f"!verifikasi {first.ticket}")
    await case_reaches(env, first.ticket, step="draf")


async def test_an_answer_too_long_for_one_message_is_refused_with_how_much_to_cut(env: Env) -> None:
    card = await complaint(env, WARGA, "Data kependudukan saya ganda")
    await command(env, "admin", card, "!verifikasi")
    answer = ("Data Anda sudah kami perbaiki. " * 140).strip()
    await command(env, "admin", card, f"!jawab {answer}")
    said = await bot_says(env.admin, card, "terlalu panjang")
    assert f"{len(answer)} karakter" in said and "Persingkat" in said
    row = await case_row(env, card.ticket)
    assert row["answer_draft"] is None and row["step"] == "draf"


async def test_whoever_wrote_the_draft_cannot_give_it_paraf_even_in_two_roles(make_env) -> None:
    """The admin is also listed as a kabid: their own draft still needs someone else's paraf."""
    first = await make_env()
    admin_id = user_id(first.synapse, STAFF["admin"])
    kabid_id = user_id(first.synapse, STAFF["kabid"])
    await first.close()
    env = await make_env({"staff": {"kabid": [admin_id, kabid_id]}})
    card = await complaint(env, WARGA, "Surat pindah belum terbit")
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab Surat pindah Anda sudah terbit.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    await command(env, "kasi", kasi_card, "!verifikasi")
    await case_reaches(env, card.ticket, step="paraf")
    await env.admin.say(card.room_id, f"!paraf {card.ticket}")
    await env.admin.wait_for(lambda s: "Anda tulis sendiri" in body(s), what="the four-eyes refusal")
    assert (await case_row(env, card.ticket))["approved_at"] is None
    kabid_card = await card_in(env, "kabid", card.ticket)
    await command(env, "kabid", kabid_card, "!paraf")
    row = await case_reaches(env, card.ticket, step="cek")
    assert row["approved_by"] == kabid_id


async def test_the_check_after_paraf_can_send_it_back_and_the_agenda_number_is_void(env: Env) -> None:
    year = office_year(env)
    card = await complaint(env, WARGA, "KK belum jadi")
    check_card = await to_the_check(env, card, "KK Anda sudah jadi.")
    row = await case_reaches(env, card.ticket, step="cek")
    assert row["agenda_number"] == f"470/1/416-314/{year}"
    # Mojokerto's check finds a fault after the paraf: back to the draft.
    await command(env, "admin", check_card, "!kembalikan Nama kepala keluarga salah tulis")
    said = await bot_says(env.admin, check_card, "Paraf ditarik")
    assert f"470/1/416-314/{year} batal" in said
    row = await case_reaches(env, card.ticket, step="draf")
    assert row["approved_at"] is None and row["agenda_number"] is None
    # The draft goes round again; the next paraf gets a new number, never the void one.
    await command(env, "admin", check_card, "!jawab KK Anda sudah jadi, nama kepala keluarga sudah dibetulkan.")
    kasi_card = await card_in(env, "kasi", card.ticket, after=await card_in(env, "kasi", card.ticket))
    await command(env, "kasi", kasi_card, "!verifikasi")
    kabid_card = await card_in(env, "kabid", card.ticket, after=await card_in(env, "kabid", card.ticket))
    await command(env, "kabid", kabid_card, "!paraf")
    row = await case_reaches(env, card.ticket, step="cek")
    assert row["agenda_number"] == f"470/2/416-314/{year}"
    async with env.bridge.store.reading() as tx:
        month = env.bridge.clock().astimezone(env.bridge.cases.calendar.tz).strftime("%Y-%m")
        rows = {r["Nomor tiket"]: r for r in await month_rows(tx, env.bridge.profile, env.bridge.cases.calendar, month)}
    assert rows[card.ticket]["Nomor agenda batal"] == f"470/1/416-314/{year}"
    assert rows[card.ticket]["Nomor agenda"] == f"470/2/416-314/{year}"
    back = await card_in(env, "admin", card.ticket, after=check_card)
    await until(lambda: _card_saved(env, back), what="the new card recorded")   # replies go to its thread
    await command(env, "admin", back, "!riwayat")
    history = await bot_says(env.admin, back, "Riwayat")
    assert f"nomor agenda 470/1/416-314/{year} batal" in history and f"nomor agenda 470/2/416-314/{year}" in history


async def test_staff_events_in_a_sync_gap_are_fetched_back(env: Env, monkeypatch) -> None:
    card = await complaint(env, WARGA, "Akta perkawinan salah tanggal")
    await until(lambda: _card_saved(env, card), what="the card recorded")
    await env.stop_bridge()
    monkeypatch.setattr(bridge.matrix, "TIMELINE_LIMIT", 3)     # a small timeline: five events are a gap
    for i in range(1, 6):
        await env.admin.say(card.room_id, f"!catatan langkah {i} sudah dicek", thread=card.event_id)
    await env.start_bridge()
    for i in range(1, 6):
        await bot_says(env.admin, card, f"langkah {i} sudah dicek")
    async with env.bridge.store.reading() as tx:
        notes = [e["note"] for e in await q.events(tx, card.ticket) if e["kind"] == "note"]
    assert notes == [f"langkah {i} sudah dicek" for i in range(1, 6)]          # each once, in order


async def _card_saved(env: Env, card: Card) -> bool:
    async with env.bridge.store.reading() as tx:
        return await tx.card_by_event(card.event_id) is not None


async def test_a_command_that_fails_tells_the_staff_member(env: Env, monkeypatch) -> None:
    card = await complaint(env, WARGA, "Layanan IKD tidak bisa aktivasi")
    real = env.bridge.cases.act

    async def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(env.bridge.cases, "act", broken)
    await command(env, "admin", card, "!verifikasi")
    await bot_says(env.admin, card, "gagal diproses karena kesalahan sistem")
    assert (await case_row(env, card.ticket))["step"] == "verifikasi"           # nothing half done
    monkeypatch.setattr(env.bridge.cases, "act", real)
    await command(env, "admin", card, "!verifikasi")
    await case_reaches(env, card.ticket, step="draf")


async def test_escalated_staff_see_the_evidence_without_a_second_download(env: Env) -> None:
    photo = env.graph.add_media(b"\xff\xd8\xff\xe0 foto KTP-el " + bytes(200), "image/jpeg")
    pdf = env.graph.add_media(b"%PDF-1.4 surat keterangan", "application/pdf")
    card = await complaint(env, WARGA, "KTP-el saya rusak, foto dan surat menyusul")
    await env.send(env.graph.image(WARGA, photo, caption="Foto KTP-el saya", name="Siti Aminah"))
    await env.send(env.graph.document(WARGA, pdf, filename="surat.pdf", name="Siti Aminah"))
    await env.send(env.graph.text(WARGA, "Ini suratnya, mohon dicek"))
    admin_files = await files_under(env.admin, card.event_id)
    await env.admin.wait_for(lambda s: in_thread_of(card.event_id)(s.event) and "mohon dicek" in body(s))
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab KTP-el Anda sedang dicetak.")
    kasi_card = await card_in(env, "kasi", card.ticket)
    kasi = env.staff["kasi"]
    kasi_files = await files_under(kasi, kasi_card.event_id)
    assert [f.event.url for f in kasi_files] == [f.event.url for f in admin_files]    # the same mxc content
    said = await kasi.wait_for(lambda s: in_thread_of(kasi_card.event_id)(s.event) and "Pesan pemohon" in body(s))
    assert "mohon dicek" in body(said)
    downloaded = (await kasi.client.download(kasi_files[1].event.url)).body
    assert downloaded == b"%PDF-1.4 surat keterangan"
    assert env.graph.media_downloads.count(photo) == 1 and env.graph.media_downloads.count(pdf) == 1


async def files_under(client, root: str) -> list:
    """The photo and the PDF in the thread of ``root``, as ``client`` sees them."""
    photo = await client.wait_for(lambda s: isinstance(s.event, nio.RoomMessageImage)
                                  and in_thread_of(root)(s.event), what="the photo")
    pdf = await client.wait_for(lambda s: isinstance(s.event, nio.RoomMessageFile) and in_thread_of(root)(s.event)
                                and s.event.body == "surat.pdf", what="the PDF")
    return [photo, pdf]


async def test_one_bad_message_is_set_aside_and_the_others_go_on(env: Env, monkeypatch) -> None:
    real = env.bridge.cases.open

    async def open_unless_poison(tx, citizen, msg, **kw):
        if "RACUN" in msg.text:
            raise ValueError("cannot process this one")
        return await real(tx, citizen, msg, **kw)
    monkeypatch.setattr(env.bridge.cases, "open", open_unless_poison)
    await env.send(env.graph.text("6281234500039", in_format("RACUN: pesan yang selalu gagal")))
    await complaint(env, WARGA, "KTP-el saya belum jadi")     # another citizen's goes on
    notice = await env.admin.wait_for(lambda s: "disisihkan" in body(s), what="the set-aside notice")
    assert "62812*****039" in body(notice) and "6281234500039" not in body(notice)
    async with env.bridge.store.reading() as tx:
        assert await q.inbound_count(tx, "failed") == 1
    health = await env.bridge.health()
    assert health["inbound"] == {"failed": 1}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{env.bridge.http.url}/metrics") as resp:
            assert "pengaduan_inbound_failed 1.0" in await resp.text()
    assert len([s for s in env.admin.seen if "disisihkan" in body(s)]) == 1        # told once
