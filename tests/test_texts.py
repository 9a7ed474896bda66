"""Citizen texts: the defaults, an office's overrides, and the rules an override must keep."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bridge.aduan import check_nik, match_service, parse_format
from bridge.texts import DEFAULT_PATH, MESSAGE_MAX, Texts, TextsError

KEYS = ("greeting", "format", "ask_name", "ask_nik", "nik_invalid", "nik_skipped", "ask_service",
        "ask_service_list", "service_list_button", "service_unknown", "ask_complaint", "ask_attachments",
        "evidence_kept", "summary", "confirm_choices", "which_field", "button_send", "button_edit", "button_cancel",
        "cancelled", "expired", "ticket_reply", "ticket_reply_after_hours", "status_none", "status_case",
        "status_unknown_ticket", "thanks_reply", "new_complaint_question", "not_new", "which_case_question",
        "followup_added", "rejected", "question", "answer", "answer_agenda", "rating_question", "rating_invalid",
        "rating_comment_question", "rating_thanks", "file_too_big", "unsupported", "template_question", "template_answer")


@pytest.fixture(scope="module")
def texts() -> Texts:
    return Texts.default()


def override(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "texts.toml"
    path.write_text(body, encoding="utf-8")
    return path


def error_of(tmp_path: Path, body: str) -> TextsError:
    path = override(tmp_path, body)
    with pytest.raises(TextsError) as e:
        Texts.load(DEFAULT_PATH, path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message        # one line, naming the file
    return e.value


# -- the defaults ------------------------------------------------------------------------------
def test_the_defaults_hold_every_key(texts: Texts) -> None:
    assert texts.keys() == KEYS
    assert texts.overridden == frozenset()


def test_every_default_renders_with_its_placeholders(texts: Texts) -> None:
    for key in texts.keys():
        values = {name: f"<{name}>" for name in texts.placeholders(key)}
        out = texts.render(key, **values)
        assert out.strip() == out and out
        assert "{" not in out and "}" not in out, key
        for name in texts.placeholders(key):
            assert f"<{name}>" in out
        assert len(out) <= MESSAGE_MAX


def test_required_placeholders_are_a_small_explicit_set(texts: Texts) -> None:
    assert texts.required("ticket_reply") == {"ticket"}
    assert texts.placeholders("ticket_reply") == {"name", "ticket", "time", "due"}
    assert texts.required("ticket_reply_after_hours") == {"opens"}
    assert texts.required("nik_invalid") == {"reason"}
    assert texts.required("rejected") == {"ticket", "reason"}
    assert texts.required("question") == {"ticket", "question"}
    assert texts.required("answer") == {"ticket", "answer", "agenda"}
    assert texts.required("summary") == {"name", "nik", "service", "complaint"}
    assert texts.placeholders("summary") == {"name", "nik", "service", "complaint", "evidence", "confidential"}
    assert texts.required("greeting") == frozenset() and texts.placeholders("greeting") == {"hours", "format"}
    for key in texts.keys():
        assert texts.required(key) <= texts.placeholders(key)


def test_the_existing_texts_are_the_base(texts: Texts) -> None:
    """The wording bridge/messages.py used before the texts moved here."""
    ticket = "ADU-2026-000007"
    assert texts.render("rejected", ticket=ticket, reason="Bukan wewenang kami") == (
        f"Mohon maaf, pengaduan Anda dengan nomor tiket {ticket} tidak dapat kami tindak lanjuti.\n"
        "Alasan: Bukan wewenang kami\nTerima kasih telah menghubungi kami.")
    assert texts.render("question", ticket=ticket, question="Kapan Anda merekam?") == (
        f"Untuk menindaklanjuti pengaduan {ticket}, petugas kami perlu keterangan:\nKapan Anda merekam?\n\n"
        "Silakan balas pesan ini.")
    assert texts.render("ticket_reply", ticket=ticket, name="Siti A", time="2 jam", due="Senin, 23-11-2026 "
                        "pukul 10:30 WIB") == (
        f"Terima kasih, Siti A. Pengaduan Anda sudah kami terima dengan nomor tiket {ticket}.\n"
        "Perkiraan waktu penyelesaian: 2 jam waktu kerja (paling lambat Senin, 23-11-2026 pukul 10:30 WIB).\n"
        "Pesan dan lampiran yang Anda kirim berikutnya akan kami tambahkan ke pengaduan ini.")
    assert texts.render("ticket_reply_after_hours", opens="Senin") == \
        "Saat ini di luar jam kerja; petugas kami mulai menanganinya Senin."
    assert texts.render("unsupported") == ("Maaf, jenis pesan ini belum dapat kami proses. Silakan kirim pengaduan "
                                           "Anda dalam bentuk teks, foto, atau dokumen.")


def test_an_answer_without_an_agenda_number_leaves_no_gap(texts: Texts) -> None:
    ticket = "ADU-2026-000007"
    assert texts.render("answer", ticket=ticket, answer="KTP-el sudah jadi.", agenda="") == (
        f"Jawaban atas pengaduan Anda ({ticket}):\n\nKTP-el sudah jadi.\n\nTerima kasih telah menghubungi kami.")
    agenda = texts.render("answer_agenda", agenda="470/12/416-314/2026")
    assert texts.render("answer", ticket=ticket, answer="KTP-el sudah jadi.", agenda=agenda) == (
        f"Jawaban atas pengaduan Anda ({ticket}):\n\nKTP-el sudah jadi.\n\nNomor agenda: 470/12/416-314/2026\n\n"
        "Terima kasih telah menghubungi kami.")


def test_the_greeting_publishes_the_format_and_its_example_is_valid(texts: Texts) -> None:
    greeting = texts.render("greeting", hours="Senin-Jumat 07.30-16.00 WIB", format=texts.render("format"))
    assert "Senin-Jumat 07.30-16.00 WIB" in greeting and "Nama: ...\nNIK: ...\nLayanan: ...\nAduan: ..." in greeting
    example = parse_format(texts.render("format"))
    assert example is not None and example.complete
    assert check_nik(example.nik, date(2026, 6, 15)).ok and match_service(example.layanan) is not None
    # A citizen who fills in the format and sends the example along: the example is not read.
    filled = texts.render("format").replace("Nama: ...", "Nama: Budi", 1)
    filled = filled.replace("Aduan: ...", "Aduan: KK hilang", 1)
    got = parse_format(filled)
    assert (got.nama, got.aduan, got.nik) == ("Budi", "KK hilang", None)


def test_a_summary_a_citizen_copies_back_is_the_format(texts: Texts) -> None:
    out = texts.render("summary", name="Siti Aminah", nik="3402124501900003", service="KTP-el",
                       complaint="Belum jadi", evidence=0, confidential="ya")
    got = parse_format(out)
    assert got.complete and got.rahasia is True and got.nik == "3402124501900003"


def test_button_titles_fit_whatsapp(texts: Texts) -> None:
    for key in ("service_list_button", "button_send", "button_edit", "button_cancel"):
        assert len(texts.text(key)) <= 20


# -- overrides ----------------------------------------------------------------------------------
def test_a_partial_override_changes_only_its_keys(tmp_path: Path, texts: Texts) -> None:
    path = override(tmp_path, 'ticket_reply = """\nNomor tiket Anda: {ticket}. Terima kasih, {name}.\n"""\n'
                              'unsupported = "Mohon kirim teks atau foto saja."\n')
    office = Texts.load(DEFAULT_PATH, path)
    assert office.overridden == {"ticket_reply", "unsupported"}
    assert office.render("ticket_reply", ticket="ADU-2026-000001", name="Siti", time="2 jam", due="besok") == \
        "Nomor tiket Anda: ADU-2026-000001. Terima kasih, Siti."
    assert office.render("unsupported") == "Mohon kirim teks atau foto saja."
    for key in KEYS:
        if key not in office.overridden:
            assert office.text(key) == texts.text(key)


def test_for_config_reads_the_texts_beside_the_config(tmp_path: Path, texts: Texts) -> None:
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    assert Texts.for_config(config).text("greeting") == texts.text("greeting")
    override(tmp_path, 'greeting = "Selamat datang di Disdukcapil Bantul. Jam layanan: {hours}."\n')
    assert Texts.for_config(config).render("greeting", hours="07.30-16.00", format="-") == \
        "Selamat datang di Disdukcapil Bantul. Jam layanan: 07.30-16.00."


def test_an_override_may_leave_out_placeholders_that_are_not_required(tmp_path: Path) -> None:
    path = override(tmp_path, 'greeting = "Halo! Kirim pengaduan Anda."\nticket_reply = "Tiket: {ticket}"\n')
    office = Texts.load(DEFAULT_PATH, path)
    assert office.render("greeting", hours="x", format="y") == "Halo! Kirim pengaduan Anda."


def test_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    e = error_of(tmp_path, 'greting = "Halo"\n')
    assert e.key == "greting" and "greting: unknown key" in str(e) and "did you mean greeting?" in str(e)
    assert "unknown key" in str(error_of(tmp_path, 'sapaan = "Halo"\n'))


def test_an_unknown_placeholder_is_refused_by_key_and_name(tmp_path: Path) -> None:
    e = error_of(tmp_path, 'ticket_reply = "Tiket {ticket} atas nama {nama}"\n')
    assert e.key == "ticket_reply"
    assert "ticket_reply: unknown placeholder {nama}" in str(e) and "{name}" in str(e)   # what it can use
    e = error_of(tmp_path, 'ask_name = "Siapa nama Anda, {name}?"\n')
    assert e.key == "ask_name" and "unknown placeholder {name}" in str(e) and "can use: none" in str(e)


def test_a_missing_required_placeholder_is_refused_by_key(tmp_path: Path) -> None:
    e = error_of(tmp_path, 'ticket_reply = "Terima kasih, {name}. Pengaduan Anda sudah kami terima."\n')
    assert e.key == "ticket_reply" and "ticket_reply: missing required placeholder {ticket}" in str(e)
    e = error_of(tmp_path, 'rejected = "Maaf, pengaduan {ticket} tidak dapat kami proses."\n')
    assert e.key == "rejected" and "missing required placeholder {reason}" in str(e)


@pytest.mark.parametrize("body, key, says", [
    ("ticket_reply = 42\n", "ticket_reply", "must be a text"),
    ('ticket_reply = "   "\n', "ticket_reply", "must not be empty"),
    ("[ticket_reply]\ntext = \"x\"\n", "ticket_reply", "must be a text"),
    ('ticket_reply = "Tiket {ticket"\n', "ticket_reply", "a lone {"),
    ('ticket_reply = "Tiket {ticket} }"\n', "ticket_reply", "a lone {"),
    ('ticket_reply = "Tiket {ticket.__class__}"\n', "ticket_reply", "must be a plain name"),
    ('ticket_reply = "Tiket {ticket!r}"\n', "ticket_reply", "must be a plain name"),
    ('ticket_reply = "Tiket {ticket:>20}"\n', "ticket_reply", "must be a plain name"),
    ('ticket_reply = "Tiket {}"\n', "ticket_reply", "must be a plain name"),
    ('ticket_reply = "Tiket {0}"\n', "ticket_reply", "must be a plain name"),
    ("[required]\nticket_reply = []\n", "required", "fixed by the default texts"),
    ('button_send = "Ya, kirim pengaduan saya sekarang"\n', "button_send", "at most 20"),
    (f'answer = "{{ticket}} {{answer}} {{agenda}} {"x" * MESSAGE_MAX}"\n', "answer", f"at most {MESSAGE_MAX}"),
])
def test_other_unusable_overrides_are_refused_by_key(tmp_path: Path, body: str, key: str, says: str) -> None:
    e = error_of(tmp_path, body)
    assert e.key == key and f": {key}" in str(e) and says in str(e)


def test_a_broken_or_absent_file_is_refused_by_name(tmp_path: Path) -> None:
    e = error_of(tmp_path, 'greeting = "unterminated\n')
    assert "not valid TOML" in str(e)
    with pytest.raises(TextsError, match="file not found"):
        Texts.load(DEFAULT_PATH, tmp_path / "nowhere.toml")
    assert issubclass(TextsError, ValueError)


def test_a_default_file_that_contradicts_itself_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "default.toml"
    bad.write_text('a = "Tiket {ticket}"\n[required]\na = ["name"]\n', encoding="utf-8")
    with pytest.raises(TextsError, match=r"\[required\] a: \{name\} is not used"):
        Texts.load(bad)
    bad.write_text('a = "x"\n[required]\nb = []\n', encoding="utf-8")
    with pytest.raises(TextsError, match=r"\[required\] b: not a text"):
        Texts.load(bad)


# -- rendering -----------------------------------------------------------------------------------
def test_render_raises_on_a_missing_value_and_ignores_extra_ones(texts: Texts) -> None:
    with pytest.raises(TextsError, match=r"ticket_reply: no value given for \{ticket\}") as e:
        texts.render("ticket_reply", name="Siti", time="2 jam", due="besok")
    assert e.value.key == "ticket_reply"
    assert "ADU-2026-000001" in texts.render("followup_added", ticket="ADU-2026-000001", name="ignored")
    with pytest.raises(TextsError, match="no such text"):
        texts.render("nope")


def test_values_are_not_read_as_placeholders(tmp_path: Path, texts: Texts) -> None:
    out = texts.render("question", ticket="ADU-2026-000001", question="Apa isi {ticket} dan {{x}}?")
    assert "Apa isi {ticket} dan {{x}}?" in out
    office = Texts.load(DEFAULT_PATH, override(tmp_path, 'followup_added = "{{Tiket}} {ticket}"\n'))
    assert office.render("followup_added", ticket="T1") == "{Tiket} T1"


def test_template_body_bodies_number_their_parameters(tmp_path: Path, texts: Texts) -> None:
    body, params = texts.template_body("template_question")
    assert params == ("ticket", "question")
    assert body.startswith("Untuk menindaklanjuti pengaduan {{1}},") and "\n{{2}}\n" in body
    office = Texts.load(DEFAULT_PATH, override(tmp_path, 'template_answer = "{ticket}: jawaban siap ({ticket})."\n'))
    assert office.template_body("template_answer") == ("{{1}}: jawaban siap ({{1}}).", ("ticket",))


def test_load_takes_the_override_by_keyword_too(tmp_path: Path) -> None:
    path = override(tmp_path, 'not_new = "Baik."\n')
    assert Texts.load(override=path).render("not_new") == "Baik."
    assert Texts.load(DEFAULT_PATH, path).render("not_new") == "Baik."
    assert Texts.load().overridden == frozenset()
    with pytest.raises(TypeError):
        Texts.load(DEFAULT_PATH, path, override=path)
