"""The monthly report an office sends to its superiors: every complaint of a month.

``month_rows`` reads the cases received in one calendar month of the office's timezone
(one row each, by ticket) with their outcome, working time against the SOP, and the
working minutes spent in each SOP step (waiting for the citizen excluded, as the SLA
counts it: ``schedules.digest.step_durations``). ``write_csv`` and ``write_xlsx`` write
the rows for Excel; ``export_month`` does all three: ``pengaduan-2026-11.csv``/``.xlsx``.
"""
from __future__ import annotations

import asyncio
import csv
import json
import math
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from bridge.channels import registry
from bridge.messages import STATE_NAMES
from bridge.store import Row, Store, Tx
from bridge.workflow import Profile, Step
from bridge.worktime import WorkCalendar
from schedules.digest import RatingFigures, step_durations

BULAN = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September",
         "Oktober", "November", "Desember")
MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
DATE_FORMAT = "%d-%m-%Y %H:%M"            # Diterima / Selesai, office time
_ALL_TIME = (datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc))

# The report's columns, then one "<step> (menit, SOP n)" per step with SOP minutes.
# No rating column yet: the citizen's rating of the answer is a later issue; add it here then.
COLUMNS = ("Nomor tiket", "Diterima", "Selesai", "Saluran", "Layanan", "Langkah terakhir", "Hasil",
           "Waktu total (menit)", "Target SOP (menit)", "Tepat waktu", "Nomor agenda", "Nomor agenda batal",
           "Penilaian (1-5)", "Komentar pemohon")


def step_column(name: str, minutes: int) -> str:
    return f"{name} (menit, SOP {minutes})"


def reported_steps(profile: Profile) -> list[Step]:
    """The steps with SOP minutes, but the first when it is the citizen's own (the bot
    answers at once, so a case is never in it)."""
    steps = profile.steps[1:] if profile.steps[0].role == "citizen" else profile.steps
    return [s for s in steps if s.minutes > 0]


def columns(profile: Profile) -> list[str]:
    return [*COLUMNS, *(step_column(s.name, s.minutes) for s in reported_steps(profile))]


def month_range(month: str, calendar: WorkCalendar) -> tuple[datetime, datetime]:
    """[first moment, first moment of the next month) of ``month`` in the office's timezone."""
    m = MONTH.fullmatch(month) if isinstance(month, str) else None
    if not m:
        raise ValueError(f"bulan tidak valid / invalid month: {month!r} (tulis/write YYYY-MM, mis./e.g. 2026-11)")
    year, mon = int(m[1]), int(m[2])
    nxt = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return datetime(year, mon, 1, tzinfo=calendar.tz), datetime(*nxt, 1, tzinfo=calendar.tz)


def whole_minutes(minutes: float) -> int:
    """Working minutes as the report shows them: a started minute counts (so 120 min 20 s is
    121, late against 120, as the SLA saw it); the tolerance absorbs float noise."""
    return max(0, math.ceil(minutes - 1e-6))


async def month_rows(tx: Tx, profile: Profile, calendar: WorkCalendar, month: str) -> list[dict[str, Any]]:
    """One row per case received in ``month`` ("2026-11"), by ticket, keyed by ``columns``.

    Diterima/Selesai are naive office-time datetimes (the writers format them); numbers
    are ints; what does not apply (an open case's total, a step never entered) is None.
    A step counts once it has ended, so an open case's current step is still empty.
    """
    start, end = month_range(month, calendar)
    events: dict[int, list[Row]] = defaultdict(list)
    for e in await tx.events_of_cases_opened_between(start, end):
        events[e["case_id"]].append(e)
    steps = {s.id: s for s in profile.steps}
    ratings = await tx.ratings_of_cases_opened_between(start, end)
    rows = []
    for case in await tx.cases_opened_between(start, end):
        spent: dict[str, float] = defaultdict(float)
        for step_id, minutes in step_durations(events[case["id"]], calendar, *_ALL_TIME):
            spent[step_id] += minutes
        closed = case["state"] == "closed"
        total = whole_minutes(sum(spent.values())) if closed else None
        step = steps.get(case["step"])
        row: dict[str, Any] = {
            "Nomor tiket": case["ticket"],
            "Diterima": _local(case["opened_at"], calendar),
            "Selesai": _local(case["closed_at"], calendar) if closed else None,
            "Saluran": registry.title(case["channel"]),
            "Layanan": case["category"],
            "Langkah terakhir": step.name if step else case["step"],
            "Hasil": case["outcome"] if closed else STATE_NAMES.get(case["state"], case["state"]),
            "Waktu total (menit)": total,
            "Target SOP (menit)": profile.total_minutes,
            "Tepat waktu": None if total is None else ("Ya" if total <= profile.total_minutes else "Tidak"),
            "Nomor agenda": case["agenda_number"],
            # A paraf taken back (the check after paraf failed): its number is void, never reused.
            "Nomor agenda batal": ", ".join(
                d["void_agenda_number"] for d in (json.loads(e["data"]) for e in events[case["id"]] if e["data"])
                if d.get("void_agenda_number")) or None,
            "Penilaian (1-5)": ratings[case["id"]]["score"] if case["id"] in ratings else None,
            "Komentar pemohon": ratings[case["id"]]["comment"] if case["id"] in ratings else None,
        }
        for s in reported_steps(profile):
            row[step_column(s.name, s.minutes)] = whole_minutes(spent[s.id]) if s.id in spent else None
        rows.append(row)
    return rows


def _local(at: datetime, calendar: WorkCalendar) -> datetime:
    return at.astimezone(calendar.tz).replace(tzinfo=None)


def _header(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    return list(rows[0]) if rows else list(COLUMNS)


def write_csv(rows: Sequence[dict[str, Any]], path: Path, *, columns: Sequence[str] | None = None) -> None:
    """UTF-8 with BOM (so Excel reads it as UTF-8), comma-separated, a header row."""
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        out = csv.DictWriter(f, fieldnames=_header(rows, columns))
        out.writeheader()
        for row in rows:
            out.writerow({k: v.strftime(DATE_FORMAT) if isinstance(v, datetime) else v for k, v in row.items()})


def write_xlsx(rows: Sequence[dict[str, Any]], path: Path, *, title: str, sheet: str = "Pengaduan",
               columns: Sequence[str] | None = None) -> None:
    """One sheet: the title, a bold frozen header, the rows (numbers and dates as such), a summary."""
    header = _header(rows, columns)
    wb = Workbook()
    ws = wb.active
    ws.title = sheet[:31]                          # Excel's limit on sheet names
    ws.append([title])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append(header)
    for cell in ws[2]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    # Dates shown as dates. The row number is counted here: openpyxl's max_row scans every
    # cell, so asking it once a row made a 10,000-case month take minutes (bench/).
    for line, row in enumerate(rows, start=3):
        values = [row.get(k) for k in header]
        ws.append(values)
        for col, value in enumerate(values, start=1):
            if isinstance(value, datetime):
                ws.cell(line, col).number_format = "dd-mm-yyyy hh:mm"
    for i, name in enumerate(header, start=1):
        longest = max([len(_shown(row.get(name))) for row in rows] + [min(len(name), 18)])
        ws.column_dimensions[get_column_letter(i)].width = min(longest + 2, 50)
    ws.freeze_panes = "B3"                         # below the header, the ticket kept in view
    if rows:
        ws.auto_filter.ref = f"A2:{get_column_letter(len(header))}{ws.max_row}"
    decided = [r for r in rows if r.get("Tepat waktu")]
    on_time = sum(1 for r in decided if r["Tepat waktu"] == "Ya")
    ws.append([])
    # The summary: each figure after its own label (an empty month has no percentage).
    scores = RatingFigures([r["Penilaian (1-5)"] for r in rows if r.get("Penilaian (1-5)")])
    ws.append(["Jumlah pengaduan", len(rows), "Selesai", len(decided), "Tepat waktu", on_time,
               "Tepat waktu (% dari selesai)", on_time / len(decided) if decided else None])
    ws.cell(ws.max_row, 8).number_format = "0.0%"
    _bold_labels(ws)
    # The citizens' ratings (IKM): how many, the average, and the spread over the five scores.
    ws.append(["Jumlah penilaian", scores.count, "Rata-rata penilaian (1-5)",
               round(scores.average, 2) if scores.average is not None else None,
               *(x for n, c in scores.spread.items() for x in (f"Nilai {n}", c))])
    _bold_labels(ws)
    wb.save(path)


def _bold_labels(ws: Any) -> None:
    """The last row in bold, each label wide enough to be read whole, not cut by its figure."""
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
        if isinstance(cell.value, str):
            width = ws.column_dimensions[cell.column_letter].width
            ws.column_dimensions[cell.column_letter].width = max(width, len(cell.value) + 2)


def _shown(value: Any) -> str:
    return value.strftime(DATE_FORMAT) if isinstance(value, datetime) else "" if value is None else str(value)


class Exported(NamedTuple):
    csv: Path
    xlsx: Path
    count: int                                     # complaints written (rows of each file)


async def export_month(store: Store, profile: Profile, calendar: WorkCalendar, month: str,
                       out_dir: Path) -> Exported:
    """Write ``out_dir/pengaduan-<month>.csv`` and ``.xlsx``; returns both paths and the count."""
    async with store.reading() as tx:
        rows = await month_rows(tx, profile, calendar, month)
    year, mon = int(month[:4]), int(month[5:])
    office = profile.office or profile.name
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, xlsx_path = out_dir / f"pengaduan-{month}.csv", out_dir / f"pengaduan-{month}.xlsx"
    header = columns(profile)
    await asyncio.to_thread(write_csv, rows, csv_path, columns=header)
    await asyncio.to_thread(write_xlsx, rows, xlsx_path, columns=header, sheet=f"Pengaduan {month}",
                            title=f"Rekap pengaduan {office} bulan {BULAN[mon - 1]} {year}")
    return Exported(csv_path, xlsx_path, len(rows))
