"""The citizen's side, end to end: the complaint format, the guided questions, status,
thanks after an answer, a second complaint, the rating, and the conversation across a
restart. The citizen is the fake Graph API; staff are real Matrix clients."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests import queries as q
from tests.harness import Env, FakeClock, in_thread_of
from tests.story import Card, body, case_reaches, case_row, command, to_the_sending_step

WARGA = "6281234500051"
NIK = "3402124501900003"          # Bantul, a woman born 5 January 1990


def texts_to(env: Env, wa_id: str) -> list[str]:
    out = []
    for r in env.graph.sent:
        b = r["body"]
        if b.get("to") != wa_id:
            continue
        if b.get("type") == "text":
            out.append(b["text"]["body"])
        elif b.get("type") == "interactive":
            out.append(b["interactive"]["body"]["text"])
    return out


async def said_to(env: Env, wa_id: str, contains: str, *, after: int = 0) -> dict:
    """The first message to ``wa_id`` (after the first ``after`` of them) containing ``contains``."""
    def match(r: dict) -> bool:
        b = r["body"]
        if b.get("to") != wa_id:
            return False
        text = b["text"]["body"] if b.get("type") == "text" else b.get("interactive", {}).get("body", {}).get("text", "")
        return contains in text and env.graph.sent.index(r) >= after
    return await env.graph.wait_for_sent(match)


async def write(env: Env, text: str, wa_id: str = WARGA, **kw) -> None:
    status, _ = await env.send(env.graph.text(wa_id, text, name="Siti Aminah", **kw))
    assert status == 200


async def new_card(env: Env, contains: str) -> Card:
    room = env.bridge.matrix.rooms["admin"]
    seen = await env.admin.wait_for(lambda s: s.room_id == room and body(s).startswith("📨 Pengaduan baru")
                                    and contains in body(s), what=f"a card with {contains!r}")
    return Card(body(seen).split()[3], room, seen.event.event_id)


@pytest.mark.parametrize("message", [
    f"Nama: Siti Aminah\nNIK: {NIK}\nLayanan: KTP-el\nAduan: KTP-el saya belum jadi sejak 3 bulan",
    f"nama = Siti Aminah\n- layanan = ktp el\n- nik = {NIK[:4]} {NIK[4:8]} {NIK[8:12]} {NIK[12:]}\n"
    "- aduan = KTP-el saya belum jadi sejak 3 bulan",
    f"Selamat pagi\n\nAduan: KTP-el saya belum jadi sejak 3 bulan\nNama lengkap: Siti Aminah\n"
    f"Jenis layanan: E-KTP\nNIK: {NIK}\nTerima kasih",
])
async def test_the_format_in_one_message_opens_the_case_at_once(env: Env, message: str) -> None:
    await write(env, message)
    card = await new_card(env, "KTP-el saya belum jadi sejak 3 bulan")
    seen = body(await env.admin.wait_for(lambda s: s.event.event_id == card.event_id))
    assert "Layanan: KTP-el" in seen and f"NIK: {NIK}" in seen          # the admin checks it against SIAK
    assert "Siti Aminah" in seen and "Nama:" not in seen
    await said_to(env, WARGA, card.ticket)
    row = await case_row(env, card.ticket)
    assert row["nik"] == NIK and row["category"] == "KTP-el" and row["citizen_name"] == "Siti Aminah"


async def test_the_guided_path_with_a_wrong_nik_an_attachment_and_a_confirmation(env: Env) -> None:
    await write(env, "Halo, saya mau mengadu soal kartu keluarga")
    await said_to(env, WARGA, "Nama:")                                   # the greeting shows the format
    await said_to(env, WARGA, "nama lengkap")
    await write(env, "Siti Aminah")
    await said_to(env, WARGA, "Mohon kirim NIK")
    n = len(env.graph.sent)
    await write(env, "3402124501900")                                      # 13 digits
    explained = await said_to(env, WARGA, "16 angka", after=n)
    assert "13" in explained["body"]["text"]["body"]
    photo = env.graph.add_media(b"\xff\xd8\xff\xe0 foto KK " + bytes(100), "image/jpeg")
    await env.send(env.graph.image(WARGA, photo, name="Siti Aminah"))
    await write(env, NIK)
    asked = await said_to(env, WARGA, "Layanan", after=n)
    assert asked["body"]["type"] == "interactive" and asked["body"]["interactive"]["type"] == "list"
    rows = [r for s in asked["body"]["interactive"]["action"]["sections"] for r in s["rows"]]
    assert len(rows) <= 10 and all(len(r["title"]) <= 24 for r in rows)
    await write(env, "2")                                                  # typed beside the list
    await write(env, "Nama ibu di KK salah tulis, seharusnya Aminah bukan Aminan")
    summary = await said_to(env, WARGA, "YA", after=n)
    text = summary["body"]["interactive"]["body"]["text"]
    assert "Kartu Keluarga" in text and "Aminan" in text and "1" in text    # one attachment
    buttons = summary["body"]["interactive"]["action"]["buttons"]
    assert [b["reply"]["id"] for b in buttons] == ["ya", "ubah", "batal"] and all(len(b["reply"]["title"]) <= 20
                                                                                for b in buttons)
    await write(env, "ya")
    card = await new_card(env, "Aminan")
    await env.admin.wait_for(lambda s: in_thread_of(card.event_id)(s.event) and getattr(s.event, "url", None),
                             what="the photo under the card")
    row = await case_row(env, card.ticket)
    assert row["category"] == "Kartu Keluarga" and row["nik"] == NIK


async def test_a_cancelled_conversation_opens_nothing(env: Env) -> None:
    await write(env, "Nama: Budi\nAduan: akta kelahiran anak saya belum jadi")
    await said_to(env, WARGA, "Mohon kirim NIK")
    await write(env, "batal")
    await said_to(env, WARGA, "kami batalkan")
    async with env.bridge.store.reading() as tx:
        assert await q.count_cases(tx) == 0


async def test_two_wrong_niks_go_on_without_it_flagged_on_the_card(env: Env) -> None:
    await write(env, "Nama: Budi\nLayanan: Akta Kelahiran\nNIK: 9912124501900003\n"
                     "Aduan: akta kelahiran anak saya belum jadi")
    await said_to(env, WARGA, "kode provinsi")
    await write(env, "1234")
    await said_to(env, WARGA, "YA")                                         # on to the summary
    await write(env, "YA")
    card = await new_card(env, "akta kelahiran anak saya")
    assert "⚠️ tidak ada NIK yang valid" in body(await env.admin.wait_for(lambda s: s.event.event_id == card.event_id))


async def test_status_answers_for_ones_own_tickets_only(env: Env) -> None:
    await write(env, f"Nama: Siti\nNIK: {NIK}\nLayanan: KIA\nAduan: KIA anak saya belum dicetak")
    card = await new_card(env, "KIA anak saya")
    await said_to(env, WARGA, card.ticket)         # the ticket reply (it may come after the card), then the status
    n = len(env.graph.sent)
    await write(env, "status")
    mine = await said_to(env, WARGA, card.ticket, after=n)
    assert "ditangani petugas" in mine["body"]["text"]["body"]
    other = "6281234500059"
    await write(env, f"STATUS {card.ticket}", wa_id=other)
    unknown = await said_to(env, other, card.ticket)
    await write(env, "STATUS ADU-2000-000999", wa_id=other)
    never = await said_to(env, other, "ADU-2000-000999")
    assert unknown["body"]["text"]["body"].replace(card.ticket, "X") == never["body"]["text"]["body"].replace(
        "ADU-2000-000999", "X")                                              # someone else's = unknown


async def test_thanks_after_an_answer_opens_nothing_and_a_rating_follows(env: Env) -> None:
    await write(env, f"Nama: Siti\nNIK: {NIK}\nLayanan: KTP-el\nAduan: KTP-el saya rusak tidak terbaca")
    card = await new_card(env, "KTP-el saya rusak")
    sending = await to_the_sending_step(env, card)
    await command(env, "admin", sending, "!kirim")
    sent = await env.graph.wait_for_sent(lambda r: "KTP-el Anda sudah dapat diambil" in str(r["body"]))
    await env.send(env.graph.status(sent["id"], "delivered", WARGA))
    await case_reaches(env, card.ticket, state="closed")
    rating = await said_to(env, WARGA, "nilai")
    assert rating["body"]["type"] == "interactive"
    await write(env, "5")
    await said_to(env, WARGA, "saran")
    await write(env, "Pelayanannya cepat, terima kasih")
    await said_to(env, WARGA, "masukan Anda")
    async with env.bridge.store.reading() as tx:
        (r,) = await tx._all("SELECT * FROM ratings")
    assert r["score"] == 5 and "cepat" in r["comment"]
    n = len(env.graph.sent)
    await write(env, "terima kasih banyak 🙏")
    await said_to(env, WARGA, "Sama-sama", after=n)
    async with env.bridge.store.reading() as tx:
        assert await q.count_cases(tx) == 1
    # Something that reads like a new complaint is asked about; YA starts one.
    await write(env, "Akta kelahiran anak saya juga belum jadi")
    await said_to(env, WARGA, "pengaduan baru?", after=n)
    await write(env, "YA")
    await said_to(env, WARGA, "nama lengkap", after=n)


async def test_a_second_complaint_is_asked_about_and_a_follow_up_finds_its_case(env: Env) -> None:
    await write(env, f"Nama: Siti\nNIK: {NIK}\nLayanan: KTP-el\nAduan: KTP-el saya belum jadi")
    first = await new_card(env, "KTP-el saya belum jadi")
    reply = await said_to(env, WARGA, first.ticket)
    await write(env, f"Nama: Siti\nNIK: {NIK}\nLayanan: Akta Kelahiran\nAduan: akta anak saya salah nama")
    asked = await said_to(env, WARGA, "baru")
    assert asked["body"]["type"] == "interactive"
    await write(env, "baru")
    second = await new_card(env, "akta anak saya salah nama")
    assert second.ticket != first.ticket
    # A message replying to the first case's ticket reply goes to the first case, even though
    # the second is newer.
    await write(env, "Apakah sudah bisa diambil?", reply_to=reply["id"])
    await env.admin.wait_for(lambda s: in_thread_of(first.event_id)(s.event) and "sudah bisa diambil" in body(s),
                             what="the follow-up in the first case's thread")
    # One that replies to nothing goes to the newest, and the thread says so.
    await write(env, "Saya tambahkan, nama ayah juga salah")
    said = await env.admin.wait_for(lambda s: in_thread_of(second.event_id)(s.event) and "nama ayah" in body(s))
    assert "beberapa kasus terbuka" in body(said)


async def test_the_conversation_resumes_after_a_restart_and_expires_when_idle(make_env) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc))      # Monday 09:00 WIB
    env = await make_env(clock=clock)
    await write(env, "Nama: Siti Aminah\nAduan: KTP-el saya belum jadi sejak lama")
    await said_to(env, WARGA, "Mohon kirim NIK")
    await env.restart_bridge()
    await write(env, NIK)
    await said_to(env, WARGA, "Balas dengan nomornya")
    clock.advance(hours=25)
    assert await env.bridge.expire_conversations() == 1
    await said_to(env, WARGA, "lama tidak ada balasan")
    n = len(env.graph.sent)
    await write(env, "1")                                   # no longer an answer: a new greeting
    await said_to(env, WARGA, "Nama:", after=n)
    async with env.bridge.store.reading() as tx:
        assert await q.count_cases(tx) == 0


TEMPLATES = {"whatsapp": {"templates": {"answer": {"name": "pengaduan_siap", "language": "id"},
                                        "question": {"name": "pengaduan_pertanyaan", "language": "id"}}}}


def approve_templates(env: Env) -> None:
    for name in ("pengaduan_siap", "pengaduan_pertanyaan"):
        env.graph.approve_template(name, language="id", body_params=1, quick_replies=1)


async def test_an_answer_outside_the_window_goes_as_a_template_then_as_text(make_env) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc))      # Monday 09:00 WIB
    env = await make_env(TEMPLATES, clock=clock)
    env.graph.clock = clock                                  # Meta's clock is the bridge's here
    approve_templates(env)
    await write(env, f"Nama: Siti\nNIK: {NIK}\nLayanan: KTP-el\nAduan: KTP-el saya hilang di jalan",
                timestamp=int(clock().timestamp()))
    card = await new_card(env, "KTP-el saya hilang")
    sending = await to_the_sending_step(env, card)
    clock.advance(hours=25)                                  # by the store's clock, the window is shut
    await command(env, "admin", sending, "!kirim")
    template = await env.graph.wait_for_sent(lambda r: r["body"].get("type") == "template")
    t = template["body"]["template"]
    assert t["name"] == "pengaduan_siap" and t["components"][0]["parameters"][0]["text"] == card.ticket
    said = await env.admin.wait_for(lambda s: in_thread_of(sending.event_id)(s.event) and "⏳" in body(s),
                                    what="the thread told the answer waits")
    assert "pengaduan_siap" in body(said)
    row = await case_row(env, card.ticket)
    assert row["answer_sent_at"] is not None and row["next_alert_at"] is None     # the office's clock stopped
    assert not [r for r in env.graph.sent if "KTP-el Anda sudah dapat diambil" in str(r["body"])]
    # The citizen taps the template's button: the answer goes out as text now.
    await env.send(env.graph.quick_reply(WARGA, "held", "Lihat", reply_to=template["id"],
                                         timestamp=int(clock().timestamp())))
    answer = await env.graph.wait_for_sent(lambda r: "KTP-el Anda sudah dapat diambil" in str(r["body"]))
    await env.send(env.graph.status(answer["id"], "delivered", WARGA))
    row = await case_reaches(env, card.ticket, state="closed")
    assert row["outcome"] == "dijawab"


async def test_a_131047_failure_takes_the_template_path(make_env) -> None:
    env = await make_env(TEMPLATES)
    approve_templates(env)
    await write(env, f"Nama: Siti\nNIK: {NIK}\nLayanan: Kartu Keluarga\nAduan: KK saya belum dicetak juga")
    card = await new_card(env, "KK saya belum dicetak")
    await command(env, "admin", card, "!tanya Kapan Anda mengajukan KK itu?")
    question = await env.graph.wait_for_sent(lambda r: "Kapan Anda mengajukan" in str(r["body"]))
    await env.send(env.graph.status(question["id"], "failed", WARGA,
                                    errors=[env.graph.status_error(131047, "Re-engagement message")]))
    template = await env.graph.wait_for_sent(lambda r: r["body"].get("type") == "template")
    assert template["body"]["template"]["name"] == "pengaduan_pertanyaan"
    await case_reaches(env, card.ticket, state="waiting")                     # the question still waits
    # The question is held once the template's send is recorded (the thread says so), not
    # when Meta took the template: only then is there something for the citizen's reply to release.
    await env.admin.wait_for(lambda s: in_thread_of(card.event_id)(s.event) and "⏳" in body(s),
                             what="the thread told the question waits")
    n = len(env.graph.sent)
    await write(env, "Halo, ada pesan untuk saya?")
    again = await said_to(env, WARGA, "Kapan Anda mengajukan", after=n)
    assert again["body"]["type"] == "text"


async def test_a_citizen_known_only_by_a_username(env: Env) -> None:
    bsuid = "ID.13491208655302741918"
    status, _ = await env.send(env.graph.text(
        None, f"Nama: Dewi\nNIK: {NIK}\nLayanan: IKD\nAduan: aktivasi IKD saya gagal terus",
        user_id=bsuid, username="dewi_l", name="Dewi"))
    assert status == 200
    card = await new_card(env, "aktivasi IKD")
    seen = body(await env.admin.wait_for(lambda s: s.event.event_id == card.event_id))
    assert "@dewi_l" in seen and "ID.1349" not in seen
    reply = await env.graph.wait_for_sent(lambda r: card.ticket in str(r["body"]))
    assert reply["body"].get("recipient") == bsuid and "to" not in reply["body"]
    sending = await to_the_sending_step(env, card)
    await command(env, "admin", sending, "!kirim")
    answer = await env.graph.wait_for_sent(lambda r: "Jawaban atas pengaduan" in str(r["body"]))
    assert env.graph.sent_to(answer) == bsuid
    await env.send(env.graph.status(answer["id"], "delivered", bsuid))
    await case_reaches(env, card.ticket, state="closed")


async def test_a_confidential_case_shows_no_identity_beyond_the_admin_room(env: Env) -> None:
    await write(env, f"Nama: Siti Aminah\nNIK: {NIK}\nLayanan: Data/NIK\nRahasia: ya\n"
                     "Aduan: data saya dipakai orang lain untuk pinjaman")
    card = await new_card(env, "dipakai orang lain")
    admin_view = body(await env.admin.wait_for(lambda s: s.event.event_id == card.event_id))
    assert "Siti Aminah" in admin_view and NIK in admin_view
    await command(env, "admin", card, "!verifikasi")
    await command(env, "admin", card, "!jawab Data Anda sudah kami blokir sementara.")
    from tests.story import card_in
    kasi_card = await card_in(env, "kasi", card.ticket)
    kasi_view = body(await env.staff["kasi"].wait_for(lambda s: s.event.event_id == kasi_card.event_id))
    assert "(dirahasiakan)" in kasi_view
    for identity in ("Siti", WARGA, WARGA[:5], NIK[:6]):
        assert identity not in kasi_view
    assert (await case_row(env, card.ticket))["confidential"] == 1


async def test_ratings_reach_the_digest_and_the_export(env: Env) -> None:
    from bridge.export import month_rows
    from schedules.digest import build, render
    await write(env, f"Nama: Siti\nNIK: {NIK}\nLayanan: KIA\nAduan: KIA anak saya salah tanggal lahir")
    card = await new_card(env, "KIA anak saya")
    sending = await to_the_sending_step(env, card)
    await command(env, "admin", sending, "!kirim")
    sent = await env.graph.wait_for_sent(lambda r: "KTP-el Anda sudah dapat diambil" in str(r["body"]))
    await env.send(env.graph.status(sent["id"], "read", WARGA))
    rating = await said_to(env, WARGA, "penilaian")
    await env.send(env.graph.choose(rating, "4"))                    # the citizen taps "4" in the list
    await said_to(env, WARGA, "saran")
    await write(env, "LEWATI")
    await said_to(env, WARGA, "masukan Anda")
    async with env.bridge.store.reading() as tx:
        digest = await build(tx, env.bridge.profile, env.bridge.cases.calendar, env.bridge.clock())
        month = env.bridge.clock().astimezone(env.bridge.cases.calendar.tz).strftime("%Y-%m")
        rows = await month_rows(tx, env.bridge.profile, env.bridge.cases.calendar, month)
    assert "Penilaian pemohon: 1, rata-rata 4.00 dari 5" in render(digest, env.bridge.profile).body
    (row,) = [r for r in rows if r["Nomor tiket"] == card.ticket]
    assert row["Penilaian (1-5)"] == 4 and row["Komentar pemohon"] is None


def test_an_office_texts_file_with_an_unknown_key_stops_start_up(tmp_path) -> None:
    from bridge.app import Bridge
    from bridge.config import ConfigError, from_dict
    (tmp_path / "texts.toml").write_text('salam_pembuka = "Halo"\n', encoding="utf-8")
    settings = from_dict({"matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:localhost"},
                          "rooms": {r: f"#{r}:localhost" for r in ("admin", "kasi", "kabid", "pimpinan")},
                          "whatsapp": {"enabled": False}}, {"MATRIX_PASSWORD": "x"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="salam_pembuka"):
        Bridge(settings)
