"""The monthly export on a known month: cases made by the real intake and case service."""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from bridge.export import columns, export_month, month_rows
from bridge.store import Store
from tests.harness import FakeClock
from tests.test_sla import Office, at

STEPS = ["Verifikasi pengaduan (menit, SOP 15)",
         "Draf jawaban (menit, SOP 30)", "Finalisasi jawaban (menit, SOP 15)",
         "Paraf kepala bidang (menit, SOP 15)", "Pengecekan jawaban (menit, SOP 15)",
         "Jawaban dikirim (menit, SOP 15)"]
HEADER = ["Nomor tiket", "Diterima", "Selesai", "Saluran", "Layanan", "Langkah terakhir", "Hasil",
          "Waktu total (menit)", "Target SOP (menit)", "Tepat waktu", "Nomor agenda", "Nomor agenda batal",
          "Penilaian (1-5)", "Komentar pemohon",
          *STEPS]


def row(ticket: int, received: str, closed: str | None, service: str | None, step: str, outcome: str,
        total: int | None, on_time: str | None, agenda: str | None = None, minutes: tuple = (),
        void: str | None = None, rating: int | None = None, comment: str | None = None) -> dict[str, Any]:
    values = [f"ADU-2026-{ticket:06d}", datetime.fromisoformat(received),
              datetime.fromisoformat(closed) if closed else None, "WhatsApp", service, step, outcome,
              total, 120, on_time, agenda, void, rating, comment, *(list(minutes) + [None] * len(STEPS))[:len(STEPS)]]
    return dict(zip(HEADER, values))


# verifikasi, draf, final, paraf, cek, kirim (the citizen's own first step has no column)
# (a complaint in the format always names its service: "Lainnya" when nothing else fits)
E = row(1, "2026-11-01 06:30", "2026-11-02 07:45", "Akta Kelahiran", "Jawaban diterima pemohon", "ditolak",
        15, "Ya", minutes=(15,))
A = row(2, "2026-11-02 08:00", "2026-11-03 09:15", "KTP-el", "Jawaban diterima pemohon", "dijawab",
        80, "Ya", "470/1/416-314/2026", minutes=(10, 30, 20, 5, 5, 5))
B = row(3, "2026-11-04 08:00", "2026-11-04 11:00", "Lainnya", "Jawaban diterima pemohon", "ditolak",
        180, "Tidak", minutes=(180,))
C = row(4, "2026-11-27 14:00", None, "Lainnya", "Draf jawaban", "dalam proses", None, None, minutes=(10,))
W = row(5, "2026-11-30 10:00", None, "Lainnya", "Verifikasi pengaduan", "menunggu pemohon", None, None)
D = row(6, "2026-12-01 06:00", None, "Lainnya", "Verifikasi pengaduan", "dalam proses", None, None)


@pytest.fixture
async def office(tmp_path: Path, database_url: str):
    store = await Store.open(database_url)      # on SQLite and on PostgreSQL
    clock = FakeClock(at("2026-11-01 06:30"))            # Sunday morning: 31 October 23:30 UTC
    office = Office(store, clock)

    async def steps(case: dict, *moves: tuple[str, str, str, str]) -> dict:
        for when, role, action, text in moves:
            clock.set(at(when))
            case = await office.act(case, role, action, text)
        return case

    e = await office.complaint("Layanan: Akta Kelahiran\nNama di akta salah", "6281100000001")
    await steps(e, ("2026-11-02 07:45", "admin", "reject", "Silakan datang ke loket akta"))

    clock.set(at("2026-11-02 08:00"))
    a = await office.complaint("Layanan: KTP-el\nKTP-el belum jadi", "6281100000002")
    a = await steps(a, ("2026-11-02 08:05", "admin", "ask", "Mohon kirim foto KTP lama"))
    clock.set(at("2026-11-03 08:00"))                    # the citizen answers the next morning
    await office.complaint("Ini fotonya", "6281100000002")
    a = await steps(a, ("2026-11-03 08:05", "admin", "verify", ""),
                    ("2026-11-03 08:25", "admin", "answer", "Sudah jadi"),
                    ("2026-11-03 08:35", "kasi", "return", "Sebutkan loketnya"),     # draf a second time
                    ("2026-11-03 08:45", "admin", "answer", "Sudah jadi, ambil di loket 3"),
                    ("2026-11-03 08:55", "kasi", "verify", ""),
                    ("2026-11-03 09:00", "kabid", "approve", ""),
                    ("2026-11-03 09:05", "admin", "verify", ""),
                    ("2026-11-03 09:10", "admin", "send", ""))
    clock.set(at("2026-11-03 09:15"))
    async with store.transaction() as tx:
        await office.cases.answer_delivered(tx, await tx.get_case(a["id"]), "delivered")

    clock.set(at("2026-11-04 08:00"))
    b = await office.complaint("Protes pajak kendaraan", "6281100000003")
    await steps(b, ("2026-11-04 11:00", "admin", "reject", "Bukan kewenangan Dukcapil"))

    clock.set(at("2026-11-27 14:00"))                    # Friday (Thursday 26th is cuti bersama here)
    c = await office.complaint("NIK tidak ditemukan", "6281100000004")
    await steps(c, ("2026-11-27 14:10", "admin", "verify", ""))

    clock.set(at("2026-11-30 10:00"))
    w = await office.complaint("Kartu Keluarga hilang", "6281100000005")
    await steps(w, ("2026-11-30 10:05", "admin", "ask", "Di mana hilangnya?"))

    clock.set(datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc))     # 1 December 06:00 WIB
    await office.complaint("Akta kematian belum terbit", "6281100000006")
    try:
        yield office
    finally:
        await store.close()


async def rows_of(office: Office, month: str) -> list[dict[str, Any]]:
    async with office.store.reading() as tx:
        return await month_rows(tx, office.cases.profile, office.cases.calendar, month)


async def test_the_rows_of_a_month_cut_in_the_office_timezone(office: Office) -> None:
    assert columns(office.cases.profile) == HEADER
    assert await rows_of(office, "2026-11") == [E, A, B, C, W]
    assert await rows_of(office, "2026-12") == [D]
    assert await rows_of(office, "2026-10") == []        # E was 31 October in UTC, November in WIB


async def test_on_time_agrees_with_the_sla_deadline(office: Office) -> None:
    rows = await rows_of(office, "2026-11")
    async with office.store.reading() as tx:
        for r in rows:
            case = await tx.get_case_by_ticket(r["Nomor tiket"])
            if case["closed_at"]:
                assert (r["Tepat waktu"] == "Ya") == (case["closed_at"] <= case["due_at"])


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "11-2026", "2026-11-01", "November", ""])
async def test_a_bad_month_is_refused(office: Office, month: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        await rows_of(office, month)


async def test_the_csv_and_the_workbook(office: Office, tmp_path: Path) -> None:
    out = tmp_path / "laporan"
    csv_path, xlsx_path, count = await export_month(office.store, office.cases.profile, office.cases.calendar,
                                                    "2026-11", out)
    assert (csv_path, xlsx_path) == (out / "pengaduan-2026-11.csv", out / "pengaduan-2026-11.xlsx")
    assert count == 5

    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbfNomor tiket,Diterima,")
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == HEADER
        got = list(reader)
    assert got == [{k: v.strftime("%d-%m-%Y %H:%M") if isinstance(v, datetime) else "" if v is None else str(v)
                    for k, v in r.items()} for r in (E, A, B, C, W)]
    assert got[1]["Diterima"] == "02-11-2026 08:00" and got[1]["Draf jawaban (menit, SOP 30)"] == "30"

    ws = openpyxl.load_workbook(xlsx_path)["Pengaduan 2026-11"]
    assert ws["A1"].value == "Rekap pengaduan Dispendukcapil Kab. Mojokerto bulan November 2026"
    assert [c.value for c in ws[2]] == HEADER and all(c.font.bold for c in ws[2])
    assert ws.freeze_panes == "B3"
    data = [[c.value for c in r] for r in ws.iter_rows(min_row=3, max_row=7)]
    assert data == [[r[k] for k in HEADER] for r in (E, A, B, C, W)]
    assert isinstance(ws["H4"].value, int) and ws["H4"].value == 80          # numbers, not text
    assert isinstance(ws["B4"].value, datetime) and ws["B4"].number_format == "dd-mm-yyyy hh:mm"
    assert ws.column_dimensions["A"].width >= len("ADU-2026-000001")
    assert ws.max_row == 10 and all(c.value is None for c in ws[8])
    summary = [c.value for c in ws[9]][:8]
    assert summary[:7] == ["Jumlah pengaduan", 5, "Selesai", 3, "Tepat waktu", 2, "Tepat waktu (% dari selesai)"]
    assert summary[7] == pytest.approx(2 / 3) and ws["H9"].number_format == "0.0%"
    assert [c.value for c in ws[10]][:4] == ["Jumlah penilaian", 0, "Rata-rata penilaian (1-5)", None]
    assert_every_figure_labelled(ws)


def assert_every_figure_labelled(ws) -> None:
    """Each number of the sheet has a label: its column's heading (row 2) in the table, the
    cell before it in the summary; every label can be read whole."""
    header = {c.column: c.value for c in ws[2]}
    for row in ws.iter_rows(min_row=3):
        summary = isinstance(row[0].value, str) and not row[0].value.startswith("ADU-")
        for cell in row:
            if isinstance(cell.value, (int, float)):
                label = ws.cell(cell.row, cell.column - 1).value if summary else header.get(cell.column)
                assert isinstance(label, str) and label, f"{cell.coordinate} = {cell.value} has no label"
            if summary and isinstance(cell.value, str):
                assert ws.column_dimensions[cell.column_letter].width >= len(cell.value), cell.value


async def test_an_empty_month_still_has_its_header(office: Office, tmp_path: Path) -> None:
    csv_path, xlsx_path, count = await export_month(office.store, office.cases.profile, office.cases.calendar,
                                                    "2026-10", tmp_path)
    assert count == 0
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f)) == [HEADER]
    ws = openpyxl.load_workbook(xlsx_path).active
    assert ws["A1"].value.endswith("bulan Oktober 2026") and [c.value for c in ws[2]] == HEADER
    assert [c.value for c in ws[ws.max_row - 1]][:8] == ["Jumlah pengaduan", 0, "Selesai", 0, "Tepat waktu", 0,
                                                          "Tepat waktu (% dari selesai)", None]
    assert_every_figure_labelled(ws)
