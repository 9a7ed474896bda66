"""The complaint format, the NIK check and the services: each rule, and no input that crashes."""
from __future__ import annotations

import random
import re
from datetime import date

import pytest

from bridge import aduan as A
from bridge.aduan import FormatAduan, check_nik, list_rows, match_service, numbered_list, parse_format

SOP_EXAMPLE = """Nama: Siti Aminah
NIK: 3402124501900003
Layanan: KTP-el
Aduan: KTP-el saya belum jadi sejak 3 bulan"""
FULL = FormatAduan(nama="Siti Aminah", nik="3402124501900003", layanan="KTP-el",
                   aduan="KTP-el saya belum jadi sejak 3 bulan")
TODAY = date(2026, 6, 15)


# -- the format ----------------------------------------------------------------------------
def test_the_sops_own_example_is_complete() -> None:
    got = parse_format(SOP_EXAMPLE)
    assert got == FULL
    assert got.complete and got.missing == ()
    assert got.found == {"nama", "nik", "layanan", "aduan"}
    assert got.service is A.SERVICE_BY_ID["ktp_el"]


@pytest.mark.parametrize("text", [
    SOP_EXAMPLE.lower().replace("siti aminah", "Siti Aminah").replace("ktp-el saya", "KTP-el saya")
    .replace("layanan: ktp-el", "layanan: KTP-el"),
    SOP_EXAMPLE.upper().replace("SITI AMINAH", "Siti Aminah").replace("KTP-EL SAYA BELUM JADI SEJAK 3 BULAN",
                                                                     "KTP-el saya belum jadi sejak 3 bulan")
    .replace("LAYANAN: KTP-EL", "LAYANAN: KTP-el"),
    SOP_EXAMPLE.replace(": ", "="),
    SOP_EXAMPLE.replace(": ", "   =   "),
    SOP_EXAMPLE.replace(": ", " : ").replace("\n", "\n   "),
    SOP_EXAMPLE.replace(": ", ":"),
    SOP_EXAMPLE.replace(": ", "\uff1a"),                                         # full-width colon
    "- " + SOP_EXAMPLE.replace("\n", "\n- "),
    "• " + SOP_EXAMPLE.replace("\n", "\n• "),
    "* " + SOP_EXAMPLE.replace("\n", "\n* "),
    "\n".join(f"{i}. {line}" for i, line in enumerate(SOP_EXAMPLE.split("\n"), 1)),
    "\n".join(f"{i}) {line}" for i, line in enumerate(SOP_EXAMPLE.split("\n"), 1)),
    "\n".join("👉 " + line for line in SOP_EXAMPLE.split("\n")),
    re.sub(r"^(\w+): ", r"*\1:* ", SOP_EXAMPLE, flags=re.M),                      # WhatsApp bold
    re.sub(r"^(\w+): ", r"*\1*: ", SOP_EXAMPLE, flags=re.M),
    re.sub(r"^(\w+): ", r"_\1_: ", SOP_EXAMPLE, flags=re.M),
    "\r\n".join(SOP_EXAMPLE.split("\n")),
])
def test_the_format_in_any_case_spacing_separator_and_bullet(text: str) -> None:
    assert parse_format(text) == FULL


def test_fields_in_any_order_among_other_lines() -> None:
    text = ("Assalamualaikum, selamat pagi admin.\nSaya mau mengadu.\n\n"
            "Aduan: KTP-el saya belum jadi sejak 3 bulan\n"
            "Layanan: KTP-el\n"
            "Terima kasih sebelumnya\n"          # after a one-line field: an extra line, ignored
            "NIK: 3402124501900003\n"
            "Nama: Siti Aminah\n"
            "Hormat saya")
    assert parse_format(text) == FULL


def test_the_complaint_runs_over_lines_until_the_next_label() -> None:
    text = ("Nama: Siti Aminah\nAduan: KTP-el saya belum jadi.\n\nSudah 3 bulan saya tunggu,\n"
            "NIK saya 3402124501900003 katanya belum dicetak.\n\nNIK: 3402124501900003\nLayanan: KTP-el\n")
    got = parse_format(text)
    assert got.aduan == ("KTP-el saya belum jadi.\n\nSudah 3 bulan saya tunggu,\n"
                         "NIK saya 3402124501900003 katanya belum dicetak.")
    assert got.nik == "3402124501900003" and got.layanan == "KTP-el" and got.complete


def test_a_complaint_that_starts_on_the_line_after_its_label() -> None:
    got = parse_format("Nama: Budi\nKeluhan:\nKK saya salah nama.\nMohon dibantu.\n\n")
    assert got.aduan == "KK saya salah nama.\nMohon dibantu."


@pytest.mark.parametrize("text, field, value", [
    ("Nama lengkap: Siti Aminah", "nama", "Siti Aminah"),
    ("NAMA PEMOHON : Siti Aminah", "nama", "Siti Aminah"),
    ("No. NIK: 3402124501900003", "nik", "3402124501900003"),
    ("No NIK = 3402124501900003", "nik", "3402124501900003"),
    ("Nomor NIK: 3402124501900003", "nik", "3402124501900003"),
    ("NIK KTP: 3402124501900003", "nik", "3402124501900003"),
    ("NIK (16 angka): 3402124501900003", "nik", "3402124501900003"),
    ("No. KTP: 3402124501900003", "nik", "3402124501900003"),
    ("NIK 3402124501900003", "nik", "3402124501900003"),              # no separator, but digits follow
    ("Jenis layanan: Akta Kelahiran", "layanan", "Akta Kelahiran"),
    ("Kategori: KK", "layanan", "KK"),
    ("Keluhan: akta belum terbit", "aduan", "akta belum terbit"),
    ("Isi aduan: akta belum terbit", "aduan", "akta belum terbit"),
    ("Pengaduan: akta belum terbit", "aduan", "akta belum terbit"),
    ("Isi pengaduan: akta belum terbit", "aduan", "akta belum terbit"),
    ("Masalah: akta belum terbit", "aduan", "akta belum terbit"),
])
def test_label_variants(text: str, field: str, value: str) -> None:
    got = parse_format(text)
    assert got is not None and getattr(got, field) == value and got.found == {field}


@pytest.mark.parametrize("answer, secret", [("ya", True), ("Ya, mohon dirahasiakan", True), ("IYA", True),
                                            ("tidak", False), ("Tidak perlu", False), ("tdk", False),
                                            ("entahlah", None)])
def test_rahasia_is_optional_and_read_as_yes_or_no(answer: str, secret: bool | None) -> None:
    got = parse_format(SOP_EXAMPLE + f"\nRahasia: {answer}")
    assert got.rahasia is secret
    assert got.complete and ("rahasia" in got.found) == (secret is not None)
    assert parse_format(SOP_EXAMPLE).rahasia is None


def test_a_partial_format_says_what_is_missing_in_asking_order() -> None:
    got = parse_format("Halo, saya Siti.\nNama: Siti Aminah\nNIK: 3402124501900003")
    assert got == FormatAduan(nama="Siti Aminah", nik="3402124501900003")
    assert got.found == {"nama", "nik"} and got.missing == ("layanan", "aduan") and not got.complete
    assert parse_format("Aduan: KK saya hilang").missing == ("nama", "nik", "layanan")


def test_the_published_template_left_unfilled_has_labels_but_no_values() -> None:
    got = parse_format("Nama: ...\nNIK:\nLayanan: -\nAduan: …")
    assert got == FormatAduan() and got.found == frozenset() and got.missing == A.REQUIRED_FIELDS


@pytest.mark.parametrize("text", ["", "Selamat pagi, KTP saya belum jadi sejak 3 bulan.",
                                  "nama saya Siti, NIK 16 angka sudah saya kirim", "Jam 10:30 saya datang",
                                  "http://contoh.id/nama:siti", "Layanan sangat lambat!"])
def test_no_label_no_format(text: str) -> None:
    assert parse_format(text) is None


def test_several_fields_on_one_line() -> None:
    got = parse_format("Nama: Siti Aminah, NIK: 3402124501900003; Layanan: KTP-el Aduan: belum jadi")
    assert got == FormatAduan(nama="Siti Aminah", nik="3402124501900003", layanan="KTP-el", aduan="belum jadi")
    # Inside a complaint a "label" is the citizen's own words.
    assert parse_format("Aduan: data saya, NIK: 3402124501900003, ganda").aduan == \
        "data saya, NIK: 3402124501900003, ganda"


def test_a_field_given_twice_keeps_the_first_value_and_complaints_add_up() -> None:
    got = parse_format("Nama: ...\nNama: Siti\nNama: Budi\nAduan: satu\nKeluhan: dua")
    assert got.nama == "Siti" and got.aduan == "satu\ndua"


def test_an_example_copied_along_below_the_filled_in_format_is_not_read() -> None:
    example = "Contoh:\nNama: Siti Aminah\nNIK: 3402124501900003\nLayanan: KTP-el\nAduan: KTP-el belum jadi"
    filled = "Nama: Budi\nNIK: ...\nLayanan: KK\nAduan: KK saya hilang\nsejak Senin\n\n" + example
    assert parse_format(filled) == FormatAduan(nama="Budi", layanan="KK", aduan="KK saya hilang\nsejak Senin")
    # Nothing filled in above it: the citizen is filling in the example itself.
    assert parse_format("Nama: ...\nNIK: ...\n" + example.replace("Siti Aminah", "Budi")).nama == "Budi"
    # "Contoh:" inside a complaint, with no labels after it, is the citizen's own text.
    assert parse_format("Aduan: banyak masalah.\nContoh:\nantrean panjang").aduan == \
        "banyak masalah.\nContoh:\nantrean panjang"


# -- NIK -------------------------------------------------------------------------------------
@pytest.mark.parametrize("nik, born, female", [
    ("3402120501900003", date(1990, 1, 5), False),
    ("3402124501900003", date(1990, 1, 5), True),            # a woman: the day plus 40
    ("3402127101900003", date(1990, 1, 31), True),           # 71 = the 31st
    ("3402124101900003", date(1990, 1, 1), True),
    ("3578012902000001", date(2000, 2, 29), False),          # 29 February of a leap year
    ("3578016902960001", date(1996, 2, 29), True),
    ("3578011506260001", date(2026, 6, 15), False),          # born today
    ("3578010107270001", date(1927, 7, 1), False),           # "27" is not yet this century: 1927
    ("9601010101010001", date(2001, 1, 1), False),           # Papua Barat Daya (96)
    ("1101010101010001", date(2001, 1, 1), False),           # Aceh (11)
])
def test_valid_niks(nik: str, born: date, female: bool) -> None:
    got = check_nik(nik, TODAY)
    assert got.ok and got.reason == A.NIK_OK and got.message == ""
    assert (got.nik, got.birth_date, got.female) == (nik, born, female)


@pytest.mark.parametrize("written", ["3402 1245 0190 0003", "3402.1245.0190.0003", "3402-1245-0190-0003",
                                     " 340212 450190 0003 ", "NIK: 3402124501900003",
                                     "３４０２１２４５０１９００００３"])            # full-width digits
def test_grouping_and_blanks_are_tolerated(written: str) -> None:
    got = check_nik(written, TODAY)
    assert got.ok and got.nik == "3402124501900003"


@pytest.mark.parametrize("nik, reason, message", [
    ("", A.NIK_EMPTY, "NIK belum Anda tulis."),
    ("   ", A.NIK_EMPTY, "NIK belum Anda tulis."),
    ("340212450190003", A.NIK_LENGTH, "NIK harus 16 angka; yang Anda kirim 15 angka."),
    ("34021245019000031", A.NIK_LENGTH, "NIK harus 16 angka; yang Anda kirim 17 angka."),
    ("34021245O1900003", A.NIK_CHARACTERS, "NIK hanya berisi angka; yang Anda kirim memuat O."),
    ("3402124501900003a", A.NIK_CHARACTERS, "NIK hanya berisi angka; yang Anda kirim memuat a."),
    ("9902124501900003", A.NIK_PROVINCE, "Dua angka pertama NIK (kode provinsi) tidak dikenal: 99."),
    ("2002124501900003", A.NIK_PROVINCE, "Dua angka pertama NIK (kode provinsi) tidak dikenal: 20."),
    ("0102124501900003", A.NIK_PROVINCE, "Dua angka pertama NIK (kode provinsi) tidak dikenal: 01."),
    ("3400124501900003", A.NIK_REGENCY, "Angka ke-3 dan ke-4 NIK (kode kabupaten/kota) tidak mungkin 00."),
    ("3402004501900003", A.NIK_DISTRICT, "Angka ke-5 dan ke-6 NIK (kode kecamatan) tidak mungkin 00."),
    ("3402123201950003", A.NIK_BIRTH_DATE, "Tanggal lahir dalam NIK (angka ke-7 sampai 12) tidak valid: 320195."),
    ("3402120001950003", A.NIK_BIRTH_DATE, "tidak valid: 000195."),        # day 0
    ("3402127201950003", A.NIK_BIRTH_DATE, "tidak valid: 720195."),        # a woman's day 32
    ("3402124001950003", A.NIK_BIRTH_DATE, "tidak valid: 400195."),        # neither a man's nor a woman's day
    ("3402120513950003", A.NIK_BIRTH_DATE, "tidak valid: 051395."),        # month 13
    ("3402123104950003", A.NIK_BIRTH_DATE, "tidak valid: 310495."),        # 31 April
    ("3402122902010003", A.NIK_BIRTH_DATE, "tidak valid: 290201."),        # 29 February 2001
    ("3402126902970003", A.NIK_BIRTH_DATE, "tidak valid: 690297."),        # a woman's 29 February 1997
    ("3402120107260003", A.NIK_FUTURE, "jatuh setelah hari ini: 01-07-2026."),
    ("3402125606260003", A.NIK_FUTURE, "jatuh setelah hari ini: 16-06-2026."),   # a woman born tomorrow
    ("3402124501900000", A.NIK_SERIAL, "Empat angka terakhir NIK (nomor urut) tidak mungkin 0000."),
])
def test_invalid_niks_say_which_rule_and_why(nik: str, reason: str, message: str) -> None:
    got = check_nik(nik, TODAY)
    assert not got.ok and got.reason == reason
    assert message in got.message
    assert got.birth_date is None


def test_letters_that_look_like_digits_get_a_hint() -> None:
    assert "sering tertukar" in check_nik("34021245O19OOOO3", TODAY).message
    assert "sering tertukar" not in check_nik("3402124501900003x", TODAY).message


def test_the_first_broken_rule_is_the_one_told() -> None:
    # province 99, regency 00, day 32 and serial 0000 all at once: the province comes first.
    assert check_nik("9900003201950000", TODAY).reason == A.NIK_PROVINCE
    assert check_nik("3400003201950000", TODAY).reason == A.NIK_REGENCY
    assert check_nik("3401003201950000", TODAY).reason == A.NIK_DISTRICT
    assert check_nik("3401013201950000", TODAY).reason == A.NIK_BIRTH_DATE


def test_every_province_code_and_no_other() -> None:
    assert len(A.PROVINCE_CODES) == 38
    for code in range(100):
        got = check_nik(f"{code:02d}02124501900003", TODAY)
        assert got.ok == (code in A.PROVINCE_CODES), code


def test_the_century_follows_today() -> None:
    nik = "3402120101000003"                         # 1 January of "00"
    assert check_nik(nik, date(2026, 1, 1)).birth_date == date(2000, 1, 1)
    assert check_nik(nik, date(1999, 12, 31)).birth_date == date(1900, 1, 1)
    leap = "3402122902000003"                        # 29 February "00": 2000 is a leap year, 1900 is not
    assert check_nik(leap, date(2026, 1, 1)).ok
    assert check_nik(leap, date(1999, 12, 31)).reason == A.NIK_BIRTH_DATE


# -- services --------------------------------------------------------------------------------
def test_the_sops_eleven_services_numbered_in_order() -> None:
    assert [s.name for s in A.SERVICES] == [
        "KTP-el", "Kartu Keluarga", "Akta Kelahiran", "Akta Kematian", "Akta Perkawinan/Perceraian",
        "Pindah Datang", "KIA", "IKD", "Data/NIK", "Layanan Online", "Lainnya"]
    assert [s.number for s in A.SERVICES] == list(range(1, 12))
    assert len({s.id for s in A.SERVICES}) == 11
    for s in A.SERVICES:
        assert 0 < len(s.title) <= A.TITLE_MAX, s.title
        assert s.description is None or len(s.description) <= A.DESCRIPTION_MAX, s.description


def test_no_alias_names_two_services() -> None:
    seen: dict[str, str] = {}
    for s in A.SERVICES:
        for key in (s.id, s.name, s.title, *s.aliases):
            n = A._normal(key)
            for form in (n, n.replace(" ", "")):
                assert seen.setdefault(form, s.id) == s.id, f"{key!r}: {seen[form]} and {s.id}"


@pytest.mark.parametrize("text, service_id", [
    ("1", "ktp_el"), ("5", "akta_perkawinan"), ("11", "lainnya"), (" 3. ", "akta_kelahiran"),
    ("no 9", "data_nik"), ("Nomor 2", "kk"), ("3️⃣", "akta_kelahiran"),
    ("akta_kelahiran", "akta_kelahiran"), ("data_nik", "data_nik"),          # ids (list row replies)
    ("Akta Perkawinan/Perceraian", "akta_perkawinan"), ("IKD (KTP Digital)", "ikd"), ("Data/NIK", "data_nik"),
    ("ktp", "ktp_el"), ("E-KTP", "ktp_el"), ("e ktp", "ktp_el"), ("KTP EL", "ktp_el"), ("ktpel", "ktp_el"),
    ("kk", "kk"), ("K.K.", "kk"), ("akta lahir", "akta_kelahiran"), ("Akte", "akta_kelahiran"),
    ("akte kelahiran!", "akta_kelahiran"), ("AKTE KEMATIAN", "akta_kematian"), ("akta nikah", "akta_perkawinan"),
    ("cerai", "akta_perkawinan"), ("pindah", "pindah_datang"), ("SKPWNI", "pindah_datang"), ("kia", "kia"),
    ("ikd", "ikd"), ("KTP digital", "ikd"), ("nik ganda", "data_nik"), ("NIK tidak ditemukan", "data_nik"),
    ("online", "layanan_online"), ("lainnya", "lainnya"), ("lain-lain", "lainnya"),
    ("layanan KK saya", "kk"), ("soal akta kematian", "akta_kematian"), ("urus ktp dong", "ktp_el"),
])
def test_a_service_by_number_id_title_or_alias(text: str, service_id: str) -> None:
    got = match_service(text)
    assert got is not None and got.id == service_id


@pytest.mark.parametrize("text, service_id", [
    ("kartu kluarga", "kk"), ("Kartu Kelaurga", "kk"), ("akta kelahran", "akta_kelahiran"),
    ("kematiaan", "akta_kematian"), ("perceraain", "akta_perkawinan"), ("pindah dtang", "pindah_datang"),
    ("ktp elektornik", "ktp_el"), ("lainnyaa", "lainnya"), ("kartukluarga", "kk"),
])
def test_a_typo_in_a_longer_word_is_forgiven(text: str, service_id: str) -> None:
    got = match_service(text)
    assert got is not None and got.id == service_id


@pytest.mark.parametrize("text", [
    "", "   ", "0", "12", "99", "1234567", "?", "halo", "selamat pagi", "terima kasih", "ok", "ya", "kkk", "kta",
    "ktpp",                       # too short to guess a typo
    "kecamatan",                  # a real word near "kematian"
    "kemarin", "kelurahan", "asdfgh", "bagaimana ini", "saya mau tanya", "apa salah", "tolong bantu saya",
    "KTP-el saya belum jadi sejak 3 bulan, tolong dicek",
])
def test_nonsense_and_other_text_is_no_service(text: str) -> None:
    assert match_service(text) is None


def test_the_numbered_list_shows_every_service_by_its_number() -> None:
    lines = numbered_list().split("\n")
    assert len(lines) == 11
    for s, line in zip(A.SERVICES, lines):
        assert line == f"{s.number}. {s.title}"
        assert match_service(str(s.number)) is s and match_service(s.title) is s


def test_list_rows_fit_whatsapp_and_every_service_stays_reachable() -> None:
    rows = list_rows()
    assert len(rows) <= A.LIST_ROWS_MAX == 10
    assert len({r.id for r in rows}) == len(rows)
    for r in rows:
        assert len(r.title) <= A.TITLE_MAX and (r.description is None or len(r.description) <= A.DESCRIPTION_MAX)
        assert match_service(r.id).title == r.title           # a picked row is one service
        assert r.as_whatsapp()["id"] == r.id
    listed = {r.id for r in rows}
    aside = [s for s in A.SERVICES if s.id not in listed]
    assert [s.id for s in aside] == ["akta_perkawinan"]
    # The set-aside service: named under "Lainnya", and its number and name still work when typed.
    lainnya = next(r for r in rows if r.id == "lainnya")
    assert "Perkawinan" in lainnya.description
    assert match_service("5").id == match_service("akta perkawinan").id == "akta_perkawinan"
    # An office may set another aside.
    other = list_rows(aside="kia")
    assert len(other) == 10 and "kia" not in {r.id for r in other} and "akta_perkawinan" in {r.id for r in other}


# -- no input crashes ----------------------------------------------------------------------
_PIECES = ["Nama", "NIK", "Layanan", "Aduan", "Rahasia", "Keluhan", "No. NIK", "nama lengkap", ":", "=", "：",
           "\n", "\r\n", " ", "\t", "-", "•", "*", "_", "~", "1.", "2)", "(", ")", "...", "ya", "tidak", "3402",
           "1245", "0190", "0003", "99", "00", "29", "02", "69", "O", "l", "ktp", "akte", "kk", "😀", "\u200b",
           "\x00", "\ufeff", "é", "٣", "３", "\u0301", "ß", "İ", "\U0010ffff", "\ud800"]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.3:          # raw code points, any plane
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(40)))
    return "".join(rng.choice(_PIECES) if rng.random() < 0.7 else chr(rng.randrange(32, 0x3000))
                   for _ in range(rng.randrange(60)))


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randrange(1, 6)):
        i = rng.randrange(len(chars) + 1)
        op = rng.randrange(3)
        if op == 0:
            chars.insert(i, rng.choice(_PIECES))
        elif chars and i < len(chars):
            if op == 1:
                del chars[i]
            else:
                chars[i] = rng.choice(_PIECES)
    return "".join(chars)


def test_no_input_crashes_the_parser_the_nik_check_or_the_service_match() -> None:
    rng = random.Random(20260615)
    for _ in range(3000):
        text = _random_text(rng) if rng.random() < 0.6 else _mutate(rng, SOP_EXAMPLE)
        got = parse_format(text)
        assert got is None or isinstance(got, FormatAduan)
        if got is not None:
            assert set(got.found) <= set(A.FIELDS)
            for field in ("nama", "nik", "layanan", "aduan"):
                value = getattr(got, field)
                assert value is None or (value.strip() and any(ch.isalnum() for ch in value))
            got.service  # noqa: B018 - must not raise either
        today = date(rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29))
        for nik in (text, _mutate(rng, "3402124501900003"), "".join(rng.choice("0123456789 .-") for _ in range(20))):
            verdict = check_nik(nik, today)
            assert verdict.ok == (verdict.reason == A.NIK_OK)
            assert verdict.ok or verdict.message
            assert not verdict.ok or (verdict.nik and len(verdict.nik) == 16 and verdict.birth_date <= today)
        found = match_service(text)
        assert found is None or found in A.SERVICES
    for odd in (None, 3402124501900003, b"NIK: 1"):          # not text at all
        assert parse_format(odd) is None and match_service(odd) is None  # type: ignore[arg-type]
        assert check_nik(odd, TODAY).reason == A.NIK_EMPTY  # type: ignore[arg-type]
