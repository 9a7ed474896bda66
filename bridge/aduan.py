"""The complaint format (format aduan), the NIK check and the services (layanan).

Pure functions over text: no I/O, no database, no Matrix. Nothing here raises on any
string a citizen can send (tests/test_aduan.py throws random text at every entry point).

The format, as the greeting publishes it (SOP.md, "The complaint format")::

    Nama: Siti Aminah
    NIK: 3402124501900003
    Layanan: KTP-el
    Aduan: KTP-el saya belum jadi sejak 3 bulan

``parse_format`` accepts it in any case and spacing, with ``:`` or ``=``, behind bullets
(``-``, ``•``, ``*``, ``1.``, an emoji), WhatsApp bold (``*Nama:*``), in any order, among
other lines (a greeting, a thank-you), and with several fields on one line
(``Nama: Siti, NIK: 3402...``). ``Aduan`` may run over the following lines until the next
field label; the other fields are one line. Optional ``Rahasia: ya/tidak`` asks the office
to keep the complainant's identity confidential.

``check_nik`` says whether a NIK can be real, and if not, why, in one kind Indonesian
sentence the conversation can send as is (texts key ``nik_invalid``, ``{reason}``).

``SERVICES`` are the SOP's eleven categories; ``match_service`` finds one from a number,
an id, a title, a name or an alias, forgiving a typo; ``numbered_list`` and ``list_rows``
show them (see ``list_rows`` for why one service has no row of its own).
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

# -- the complaint format --------------------------------------------------------------
FIELDS = ("nama", "nik", "layanan", "aduan", "rahasia")
REQUIRED_FIELDS = ("nama", "nik", "layanan", "aduan")     # in the order the bot asks for them

# Label spellings per field, as regex fragments (lowercase; matched case-insensitively).
# Longer variants first is not needed: a label must be followed by its separator.
_LABEL_VARIANTS: dict[str, tuple[str, ...]] = {
    "nama": (r"nama(?:\s+lengkap)?(?:\s+(?:pelapor|pengadu|pemohon))?", r"(?:full\s+)?name"),
    "nik": (r"(?:(?:no|nmr|nomor|nomer)\s*\.?\s*)?nik(?:\s*[/(]?\s*ktp(?:\s*-?\s*el)?\s*\)?)?",
            r"nomor\s+induk\s+kependudukan", r"(?:no|nmr|nomor|nomer)\s*\.?\s*(?:e\s*-?\s*)?ktp(?:\s*-?\s*el)?"),
    "layanan": (r"(?:jenis|kategori)\s+(?:layanan|pelayanan|aduan|pengaduan|keluhan)", r"layanan",
                r"pelayanan", r"kategori", r"service"),
    "aduan": (r"(?:isi|uraian|detail|rincian)\s+(?:aduan|pengaduan|keluhan|laporan|masalah)",
              r"aduan", r"pengaduan", r"keluhan", r"laporan", r"permasalahan", r"masalah", r"complaint"),
    "rahasia": (r"rahasiakan(?:\s+identitas)?", r"rahasia(?:\s+identitas)?",
                r"identitas\s+(?:di)?rahasiakan", r"anonim", r"confidential"),
}
_LABEL = "|".join(f"(?P<{field}>{'|'.join(v)})" for field, v in _LABEL_VARIANTS.items())
# Between a label and its value: a short note in brackets ("NIK (16 angka):"), WhatsApp's
# bold/italic marks, then ":" or "=" (or their full-width forms).
_SEP = r"[ \t]*(?:\([^()\n]{0,40}\))?[ \t*_~]*[:=：＝][ \t*_~]*"
# Before a label at the start of a line: anything that is not a letter or digit (bullets,
# emoji, quote marks, bold), and an item number such as "1." or "2)".
_PREFIX = r"^(?:[^\w\n]|_)*(?:\d{1,2}[ \t]*[.)](?:[^\w\n]|_)*)?"
_LINE_LABEL = re.compile(_PREFIX + rf"(?:{_LABEL})" + _SEP, re.IGNORECASE)
# "NIK 3402..." without a separator: accepted only for NIK, and only before a digit.
_LINE_NIK_BARE = re.compile(_PREFIX + rf"(?:{'|'.join(_LABEL_VARIANTS['nik'])})[ \t]+(?=\d)", re.IGNORECASE)
# Another field on the same line ("Nama: Siti, NIK: 3402..."): after a space or , ; |
_INLINE_LABEL = re.compile(rf"(?<=[\s,;|])[*_~]*(?:{_LABEL})" + _SEP, re.IGNORECASE)

# "Contoh:" alone on a line: the greeting's example follows (texts key format_aduan).
_EXAMPLE = re.compile(r"^(?:[^\w\n]|_)*(?:contoh|example)(?:\s+(?:pengisian|format|pengaduan|aduan))?"
                      r"[\s*_~:]*$", re.IGNORECASE)

_YES = {"ya", "y", "iya", "iyaa", "yes", "ok", "oke", "okey", "setuju", "benar", "betul", "boleh", "mau",
        "rahasia", "rahasiakan", "dirahasiakan", "1", "true", "perlu"}
_NO = {"tidak", "tdk", "tak", "gak", "ga", "nggak", "ngga", "enggak", "engga", "g", "no", "n", "bukan",
       "jangan", "0", "false", "tidakperlu", "tidak perlu", "gausah", "nggak usah", "tidak usah"}


@dataclass(frozen=True)
class FormatAduan:
    """What a message in the complaint format gave; a field is None when absent or empty.

    ``nik`` and ``layanan`` are as written: check them with ``check_nik`` and
    ``match_service`` (``service`` does the latter).
    """

    nama: str | None = None
    nik: str | None = None
    layanan: str | None = None
    aduan: str | None = None
    rahasia: bool | None = None      # None: not said (or not understood as ya/tidak)

    @property
    def found(self) -> frozenset[str]:
        """The fields that have a value (from ``FIELDS``)."""
        return frozenset(f for f in FIELDS if getattr(self, f) is not None)

    @property
    def missing(self) -> tuple[str, ...]:
        """The required fields still to ask for, in the order the bot asks."""
        return tuple(f for f in REQUIRED_FIELDS if getattr(self, f) is None)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def service(self) -> "Service | None":
        return match_service(self.layanan) if self.layanan else None


def parse_format(text: str) -> FormatAduan | None:
    """The fields of a message in the complaint format; None when no field label is present.

    A message with some labels is a partial ``FormatAduan`` (``missing`` says what to ask).
    A label with an empty value, or a value with no letter or digit (the "..." of the
    published template), counts as absent. A field given twice keeps its first value;
    ``Aduan`` given twice keeps both, one after the other. A line "Contoh:" followed by
    labels is the greeting's example copied along: what follows it is not read, once a
    field above it has a value.
    """
    if not isinstance(text, str) or not text:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    values: dict[str, list[str]] = {}
    labelled = False
    current: str | None = None          # the field whose value the next lines continue (aduan)
    lines = text.split("\n")
    matches = [_LINE_LABEL.match(line) or _LINE_NIK_BARE.match(line) for line in lines]
    last_label = max((i for i, m in enumerate(matches) if m), default=-1)
    for i, (line, m) in enumerate(zip(lines, matches)):
        if m is None and i < last_label and _EXAMPLE.match(line):
            # The greeting's example, copied along with the filled-in format: stop before it.
            # (With nothing filled in yet, the citizen is filling in the example: go on.)
            if any(_clean(v, multiline=True) for vs in values.values() for v in vs):
                break
            current = None
            continue
        if m is None:
            if current == "aduan":
                values["aduan"][-1] += "\n" + line.rstrip()
            continue
        labelled = True
        field, rest = m.lastgroup or "nik", line[m.end():]
        # Further fields on the same line, except inside an Aduan (its text may say "NIK: ...").
        while field != "aduan" and (inline := _INLINE_LABEL.search(rest)):
            values.setdefault(field, []).append(rest[:inline.start()])
            field, rest = inline.lastgroup or "nik", rest[inline.end():]
        values.setdefault(field, []).append(rest)
        current = field
    if not labelled:
        return None
    found: dict[str, object] = {}
    for field, found_values in values.items():
        cleaned = [v for v in (_clean(x, multiline=field == "aduan") for x in found_values) if v]
        if not cleaned:
            continue
        if field == "aduan":
            found[field] = "\n".join(cleaned)
        elif field == "rahasia":
            found[field] = next((r for r in map(_yes_no, cleaned) if r is not None), None)
        else:
            found[field] = cleaned[0]
    return FormatAduan(**found)       # type: ignore[arg-type]


def _clean(value: str, *, multiline: bool) -> str | None:
    """A value without its surrounding blanks, separators and bold marks; None if it says nothing."""
    lines = [ln.rstrip() for ln in value.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    value = "\n".join(lines) if multiline else " ".join(lines)
    value = value.strip().strip(",;|").strip()
    # WhatsApp bold/italic around the whole value: *Siti Aminah*
    while len(value) >= 2 and value[0] == value[-1] and value[0] in "*_~":
        value = value[1:-1].strip()
    if not any(ch.isalnum() for ch in value):
        return None
    return value


def _yes_no(value: str) -> bool | None:
    words = _normal(value)
    if not words:
        return None
    for candidate in (words, words.split()[0]):
        if candidate in _YES:
            return True
        if candidate in _NO:
            return False
    return None


# -- NIK -------------------------------------------------------------------------------
# Kemendagri's province codes (the first two digits): 38 provinces. Papua's codes moved when
# it was divided in 2022; NIKs keep the code they were given, and every one is in 91-96.
PROVINCE_CODES = frozenset({
    11, 12, 13, 14, 15, 16, 17, 18, 19,      # Aceh ... Kepulauan Bangka Belitung
    21,                                      # Kepulauan Riau
    31, 32, 33, 34, 35, 36,                  # DKI Jakarta, Jabar, Jateng, DIY, Jatim, Banten
    51, 52, 53,                              # Bali, NTB, NTT
    61, 62, 63, 64, 65,                      # Kalimantan
    71, 72, 73, 74, 75, 76,                  # Sulawesi, Gorontalo
    81, 82,                                  # Maluku, Maluku Utara
    91, 92, 93, 94, 95, 96,                  # Papua and the provinces divided from it
})

NIK_OK = "ok"
NIK_EMPTY = "empty"
NIK_CHARACTERS = "characters"
NIK_LENGTH = "length"
NIK_PROVINCE = "province"
NIK_REGENCY = "regency"
NIK_DISTRICT = "district"
NIK_BIRTH_DATE = "birth_date"
NIK_FUTURE = "future"
NIK_SERIAL = "serial"

_CHECK_AGAIN = " Mohon periksa kembali NIK pada KTP-el atau Kartu Keluarga Anda."
_NIK_GROUPING = re.compile(r"(?<=\d)[ .\-]+(?=\d)")
_NIK_LABEL = re.compile(r"^(?:(?:no|nomor)\s*\.?\s*)?nik\s*[:=]?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class NikCheck:
    """The verdict on one NIK.

    ``reason``: ``NIK_OK`` or the first rule it breaks (``NIK_EMPTY``, ``NIK_CHARACTERS``,
    ``NIK_LENGTH``, ``NIK_PROVINCE``, ``NIK_REGENCY``, ``NIK_DISTRICT``, ``NIK_BIRTH_DATE``,
    ``NIK_FUTURE``, ``NIK_SERIAL``). ``message``: for the citizen, in Indonesian ("" when ok).
    ``nik``: the 16 digits without spaces, dots or dashes, when there are 16 digits.
    """

    reason: str
    message: str = ""
    nik: str | None = None
    birth_date: date | None = None
    female: bool | None = None

    @property
    def ok(self) -> bool:
        return self.reason == NIK_OK


def check_nik(nik: str | None, today: date) -> NikCheck:
    """Whether ``nik`` can be a real NIK on ``today``; the first rule it breaks, explained.

    Spaces, dots and dashes between groups of digits are removed ("3402 1245 0190 0003"),
    and so is a leading "NIK:". Digits 7-12 are the birth date DDMMYY, the day plus 40 for
    women. The two-digit year is read in this century when that is not after this year,
    otherwise in the last one (a person is at most 100 years old); a date later this year is
    therefore in the future and refused: far more likely a typo than a centenarian.
    """
    raw = unicodedata.normalize("NFKC", nik if isinstance(nik, str) else "").strip()
    raw = _NIK_LABEL.sub("", raw, count=1)
    digits = _NIK_GROUPING.sub("", raw)
    if not digits:
        return NikCheck(NIK_EMPTY, "NIK belum Anda tulis. NIK adalah 16 angka yang tertera pada "
                                   "KTP-el atau Kartu Keluarga.")
    others = [ch for ch in digits if not "0" <= ch <= "9"]
    if others:
        shown = " ".join(dict.fromkeys(ch if ch.isprintable() and not ch.isspace() else "spasi"
                                       for ch in others[:40]))[:40]
        hint = (" Huruf O dan angka 0, atau huruf I/l dan angka 1, sering tertukar."
                if any(ch in "OoIl" for ch in others) else "")
        return NikCheck(NIK_CHARACTERS, f"NIK hanya berisi angka; yang Anda kirim memuat {shown}.{hint}"
                                        + _CHECK_AGAIN)
    if len(digits) != 16:
        return NikCheck(NIK_LENGTH, f"NIK harus 16 angka; yang Anda kirim {len(digits)} angka." + _CHECK_AGAIN)
    if int(digits[:2]) not in PROVINCE_CODES:
        return NikCheck(NIK_PROVINCE, f"Dua angka pertama NIK (kode provinsi) tidak dikenal: {digits[:2]}."
                                      + _CHECK_AGAIN, nik=digits)
    if digits[2:4] == "00":
        return NikCheck(NIK_REGENCY, "Angka ke-3 dan ke-4 NIK (kode kabupaten/kota) tidak mungkin 00."
                                     + _CHECK_AGAIN, nik=digits)
    if digits[4:6] == "00":
        return NikCheck(NIK_DISTRICT, "Angka ke-5 dan ke-6 NIK (kode kecamatan) tidak mungkin 00."
                                      + _CHECK_AGAIN, nik=digits)
    born = digits[6:12]
    day, month, yy = int(born[:2]), int(born[2:4]), int(born[4:])
    female = day > 40
    year = today.year // 100 * 100 + yy
    if year > today.year:
        year -= 100
    try:
        birth = date(year, month, day - 40 if female else day)
    except ValueError:
        return NikCheck(NIK_BIRTH_DATE, f"Tanggal lahir dalam NIK (angka ke-7 sampai 12) tidak valid: {born}. "
                                        "Enam angka itu adalah tanggal, bulan, dan tahun lahir "
                                        "(untuk perempuan, tanggalnya ditambah 40)." + _CHECK_AGAIN, nik=digits)
    if birth > today:
        return NikCheck(NIK_FUTURE, f"Tanggal lahir dalam NIK (angka ke-7 sampai 12) jatuh setelah hari ini: "
                                    f"{birth:%d-%m-%Y}." + _CHECK_AGAIN, nik=digits)
    if digits[12:] == "0000":
        return NikCheck(NIK_SERIAL, "Empat angka terakhir NIK (nomor urut) tidak mungkin 0000." + _CHECK_AGAIN,
                        nik=digits)
    return NikCheck(NIK_OK, "", nik=digits, birth_date=birth, female=female)


# -- services (layanan) ---------------------------------------------------------------
TITLE_MAX = 24          # WhatsApp list row title
DESCRIPTION_MAX = 72    # WhatsApp list row description
LIST_ROWS_MAX = 10      # WhatsApp rows in one list message


@dataclass(frozen=True)
class Service:
    """One category of complaint.

    ``name``: the SOP's name, what a case stores as its category and what ``[[units]]``
    categories in config.toml list. ``title``: at most 24 characters (a WhatsApp list row).
    """

    number: int
    id: str
    name: str
    title: str
    description: str | None
    aliases: tuple[str, ...]


SERVICES: tuple[Service, ...] = (
    Service(1, "ktp_el", "KTP-el", "KTP-el",
            "Perekaman, pencetakan, KTP-el hilang, rusak, atau salah data",
            ("ktp", "e-ktp", "ektp", "ktp el", "ktp-e", "ktp elektronik", "kartu tanda penduduk",
             "e ktp", "ktp elektronik")),
    Service(2, "kk", "Kartu Keluarga", "Kartu Keluarga",
            "KK baru, tambah/kurangi anggota, pecah KK, ubah data",
            ("kk", "kartu kk", "kartu keluarga", "keluarga", "pecah kk", "kk baru")),
    Service(3, "akta_kelahiran", "Akta Kelahiran", "Akta Kelahiran",
            "Akta kelahiran baru, terlambat, atau perbaikan data",
            ("akta lahir", "akte lahir", "akta kelahiran", "akte kelahiran", "kelahiran", "akta", "akte",
             "akta anak", "lahir")),
    Service(4, "akta_kematian", "Akta Kematian", "Akta Kematian",
            "Pencatatan kematian dan akta kematian",
            ("akta mati", "akte mati", "akte kematian", "kematian", "surat kematian", "meninggal",
             "meninggal dunia")),
    Service(5, "akta_perkawinan", "Akta Perkawinan/Perceraian", "Akta Perkawinan/Cerai",
            "Pencatatan perkawinan atau perceraian (non-muslim)",
            ("akta perkawinan", "akta perceraian", "akta nikah", "akte nikah", "akta kawin", "akte kawin",
             "akta cerai", "akte cerai", "akte perkawinan", "akte perceraian", "perkawinan", "perceraian",
             "nikah", "kawin", "cerai", "pernikahan", "akta perkawinan perceraian")),
    Service(6, "pindah_datang", "Pindah Datang", "Pindah Datang",
            "Surat pindah (SKPWNI), pindah masuk atau keluar daerah",
            ("pindah", "datang", "pindah datang", "pindah masuk", "pindah keluar", "pindahan", "skpwni",
             "surat pindah", "pindah domisili", "domisili", "mutasi penduduk")),
    Service(7, "kia", "KIA", "Kartu Identitas Anak",
            "KIA, untuk anak di bawah 17 tahun",
            ("kia", "kartu anak", "kartu identitas anak", "identitas anak", "ktp anak")),
    Service(8, "ikd", "IKD", "IKD (KTP Digital)",
            "Identitas Kependudukan Digital: aktivasi, masuk aplikasi, kode QR",
            ("ikd", "identitas kependudukan digital", "ktp digital", "aplikasi ikd", "aktivasi ikd")),
    Service(9, "data_nik", "Data/NIK", "Data/NIK",
            "NIK tidak ditemukan, NIK ganda, data tidak sesuai",
            ("nik", "data", "data nik", "nik ganda", "data ganda", "nik tidak ditemukan", "nik tidak terdaftar",
             "nik salah", "data salah", "nik tidak valid", "data kependudukan", "nik tidak aktif")),
    Service(10, "layanan_online", "Layanan Online", "Layanan Online",
            "Aplikasi atau situs layanan online, antrean daring",
            ("online", "daring", "layanan daring", "aplikasi", "website", "situs", "web", "antrean online",
             "antrian online", "pendaftaran online")),
    Service(11, "lainnya", "Lainnya", "Lainnya",
            "Pengaduan lain di luar daftar ini",
            ("lain", "lain lain", "lainya", "yang lain", "lain-lain", "hal lain", "other")),
)
SERVICE_BY_ID = {s.id: s for s in SERVICES}

# Words around a service name that say nothing about which ("layanan ktp", "soal kk saya").
_LEADING_FILLER = {"layanan", "pelayanan", "pengaduan", "aduan", "masalah", "soal", "tentang", "urus",
                   "mengurus", "pengurusan", "pembuatan", "buat", "bikin", "mau", "ingin", "jenis", "kategori",
                   "nomor", "no", "nmr", "pilih", "pilihan", "opsi", "yang"}
_TRAILING_FILLER = {"saya", "sy", "kak", "kakak", "min", "admin", "pak", "bu", "ya", "dong", "nya", "aja",
                    "saja", "mas", "mbak"}
_TYPO_MIN = 5           # a typo is forgiven in a word this long; "kk", "kia", "ikd" must be exact


def _normal(text: str) -> str:
    """Lowercase words of letters and digits, single spaces; "akte" read as "akta"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    words = re.sub(r"[^0-9a-z]+", " ", text).split()
    return " ".join("akta" if w == "akte" else w for w in words)


def _keys() -> dict[str, Service]:
    keys: dict[str, Service] = {}
    for s in SERVICES:
        for k in (s.id, s.name, s.title, *s.aliases):
            n = _normal(k)
            for form in (n, n.replace(" ", "")):
                if form:
                    keys.setdefault(form, s)
    return keys


_KEYS = _keys()
_KEY_WORDS = [(k.split(), s) for k, s in _KEYS.items() if not k.isdigit()]


def _one_typo(word: str, key: str) -> bool:
    """Whether ``word`` is ``key`` (of ``_TYPO_MIN`` letters or more) with one letter wrong,
    missing, extra, or two neighbours swapped."""
    if len(key) < _TYPO_MIN or abs(len(word) - len(key)) > 1 or word == key:
        return False
    if len(word) == len(key):
        diff = [i for i, (a, b) in enumerate(zip(word, key)) if a != b]
        if len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == key[diff[1]] \
                and word[diff[1]] == key[diff[0]]:
            return True
    ops = difflib.SequenceMatcher(None, word, key, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal") == 1


def _by_typo(words: list[str]) -> Service | None:
    """The one service a key of which ``words`` spell with a typo in some of its long words."""
    found = {s.id: s for key, s in _KEY_WORDS
             if len(key) == len(words) and all(w == k or _one_typo(w, k) for w, k in zip(words, key))}
    return next(iter(found.values())) if len(found) == 1 else None


def match_service(text: str | None) -> Service | None:
    """The service ``text`` names: a number (1-11, as ``numbered_list`` shows), an id, a
    name, a title or an alias, in any case and punctuation ("E-KTP", "akte kelahiran",
    "layanan KK"). A typo in a word of five letters or more is forgiven ("kartu kluarga",
    "kematiaan"): one letter wrong, missing or extra, or two swapped (compared with difflib);
    a typo that could be two services is not guessed. None for anything else."""
    if not isinstance(text, str):
        return None
    words = _normal(text[:200]).split()
    while words and words[0] in _LEADING_FILLER and len(words) > 1:
        words.pop(0)
    while words and words[-1] in _TRAILING_FILLER and len(words) > 1:
        words.pop()
    wanted = " ".join(words)
    if not wanted:
        return None
    if wanted.isdigit():
        number = int(wanted) if len(wanted) <= 3 else 0
        return SERVICES[number - 1] if 1 <= number <= len(SERVICES) else None
    found = _KEYS.get(wanted) or _KEYS.get(wanted.replace(" ", ""))
    if found or len(words) > 6:
        return found
    return _by_typo(words) or _by_typo([wanted.replace(" ", "")])


def numbered_list() -> str:
    """The services as text, one per line: "1. KTP-el" ... "11. Lainnya"."""
    return "\n".join(f"{s.number}. {s.title}" for s in SERVICES)


@dataclass(frozen=True)
class ListRow:
    """One row of a WhatsApp list message; ``id`` comes back when the citizen picks it,
    and ``match_service(id)`` gives the service."""

    id: str
    title: str
    description: str | None = None

    def as_whatsapp(self) -> dict[str, str]:
        row = {"id": self.id, "title": self.title}
        if self.description:
            row["description"] = self.description
        return row


ASIDE_FROM_LIST = "akta_perkawinan"


def list_rows(aside: str = ASIDE_FROM_LIST) -> tuple[ListRow, ...]:
    """The services as at most 10 WhatsApp list rows: all but ``aside``.

    WhatsApp shows at most 10 rows in a list and there are 11 services. Folding two
    services into one row would give a row that is not one service (the bot would have to
    ask again); dropping "Lainnya" would leave a citizen whose matter is not listed with
    nothing to pick. So one service is set aside: Akta Perkawinan/Perceraian, the rarest at
    Dukcapil, since Muslim marriages and divorces are recorded by KUA and Pengadilan Agama.
    It stays one tap away: the "Lainnya" row's description names it, and the typed name or
    number ("5", "akta nikah", "cerai") always matches (``match_service``). An office can
    set another service aside (``aside``: a service id).
    """
    put_aside = SERVICE_BY_ID.get(aside)
    rows = []
    for s in SERVICES:
        if s is put_aside:
            continue
        description = s.description
        if s.id == "lainnya" and put_aside is not None:
            description = f"{put_aside.title} atau hal lain di luar daftar"
            if len(description) > DESCRIPTION_MAX:
                description = s.description
        rows.append(ListRow(s.id, s.title, description))
    return tuple(rows[:LIST_ROWS_MAX])
