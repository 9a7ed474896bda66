"""Retention: a closed case's personal data is removed after the office's period (UU 27/2022
on personal data), and its anonymous figures stay.

``purge`` (``main.py purge --older-than DAYS``, and the daily job of ``[retention]``)
takes the closed cases whose ``closed_at`` is older than the period and removes:

- from the case: the complaint text (``summary``), the name and NIK given, the NIK's
  problem, the answer and its draft;
- the citizen's messages to it (text, attachments, address, message ids: WhatsApp's carry
  the number, Telegram's the chat id) and ours to them (texts, addresses, ids), the
  delivery records' ids, held messages, the rating's comment;
- from the audit trail: every note (the citizen's words, and staff notes, which may quote
  them) but the bot's own fixed ones, and every data key but the figures;
- the citizen's files kept on disk (``media/``), unless another case not purged has the
  same file;
- then the citizens whose every case is purged and who have been silent as long: their
  row is anonymised (deleted when they never had a case), with the messages to and from
  them that belong to no case and their conversation; and every row of no case older than
  the period (a greeting, a status question, a read receipt).

What stays: the ticket, channel, category (service), unit, the steps and their times, the
SLA clocks and alerts, the outcome, paraf (who, when), agenda numbers (void ones too),
the rating's score and time, and the audit trail's who (staff Matrix ids are staff, not
citizens), role, what, when and from which step to which. So the export of an earlier
month (``bridge/export.py``) gives the same counts, times and outcomes after a purge as
before it; only the citizen's comment is gone from it.

The audit trail (``case_events``) is append-only by trigger. Migration 8 keeps it so and
allows one thing more, checked by the database itself: an event of a case already marked
purged (``cases.purged_at``, set in the same transaction, only ever on a closed case and
never taken back) may lose its note and keys of its data, nothing else. No event is
deleted or reworded, so the trail still says who did what and when.

A purged case is marked (``purged_at``): a second purge passes it by, and ``main.py case``
says so. A case with an effect still on its way (an outbox row pending) waits for the next
run. Deleted content is zeroed in the file (``secure_delete``, set by the store), and the
write-ahead log is checkpointed and emptied after a purge, so the database file keeps no
copy of what was removed; ``--vacuum`` rebuilds the file once more (for a database that
was written before ``secure_delete`` was set).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from bridge.channels import registry
from bridge.messages import ROLE_NAMES, STATE_NAMES, history_line, local_time
from bridge.store import Row, Store, Tx
from bridge.workflow import Profile

log = logging.getLogger(__name__)

# Notes the bot writes from fixed texts (how a case came in, a held message's purpose, a
# delivery status, how late an SLA alert was): no personal data, kept.
KEPT_NOTES = frozenset({"opened", "held", "answer_delivered"})
KEPT_NOTE_PREFIXES = ("sla_",)
# The figures in an event's data: message kind, a linked ticket, a template's name, agenda numbers.
KEPT_DATA = frozenset({"kind", "linked", "template", "agenda_number", "void_agenda_number"})


def media_path(media_dir: Path, channel: str, ref: str) -> Path:
    """Where ``bridge.effects.Effects.attachment`` keeps a citizen's file (by its ref, so the
    path is found again after the data folder moved, e.g. restored from a backup)."""
    return media_dir / channel / hashlib.sha256(ref.encode()).hexdigest()[:32]


def cleaned_event(e: Row) -> tuple[str | None, dict[str, Any] | None]:
    """An event's note and data as a purge leaves them."""
    kind = e["kind"] or ""
    note = e["note"] if kind in KEPT_NOTES or kind.startswith(KEPT_NOTE_PREFIXES) else None
    data = json.loads(e["data"]) if e["data"] else {}
    kept = {k: v for k, v in data.items() if k in KEPT_DATA}
    return note, kept or None


@dataclass
class Purged:
    """What a purge did (or, ``dry_run``, would do)."""

    cutoff: datetime
    dry_run: bool
    tickets: list[str] = field(default_factory=list)      # cases purged
    waiting: list[str] = field(default_factory=list)      # in flight: left for the next run
    anonymised: int = 0
    deleted: int = 0
    files: int = 0
    bytes: int = 0
    loose: dict[str, int] = field(default_factory=dict)   # rows of no case, per table
    checkpointed: bool | None = None

    def lines(self, tz: tzinfo) -> list[str]:
        when = self.cutoff.astimezone(tz).strftime("%d-%m-%Y %H:%M")
        will = self.dry_run
        head = (f"Uji coba (--dry-run): tidak ada yang diubah. Pengaduan yang ditutup sebelum {when}:"
                if will else f"Retensi: pengaduan yang ditutup sebelum {when}:")
        cases = (f"  {len(self.tickets)} pengaduan {'akan dihapus' if will else 'dihapus'} data pribadinya"
                 + (": " + ", ".join(self.tickets) if self.tickets else ""))
        out = [head, cases]
        if self.waiting:
            out.append(f"  {len(self.waiting)} pengaduan masih ada pengiriman tertunda, menunggu retensi berikut: "
                       + ", ".join(self.waiting))
        out.append(f"  warga {'akan ' if will else ''}dianonimkan: {self.anonymised}, "
                   f"{'akan ' if will else ''}dihapus: {self.deleted}")
        out.append(f"  berkas media {'akan ' if will else ''}dihapus: {self.files} ({self.bytes} byte)")
        out.append(f"  baris tanpa pengaduan {'akan ' if will else ''}dikosongkan: {sum(self.loose.values())}")
        if self.checkpointed is False:
            out.append("  catatan: berkas -wal belum dapat dikosongkan (ada pembaca); retensi berikut mengulanginya")
        return out


async def purge(store: Store, media_dir: Path, *, days: int, now: datetime, dry_run: bool = False,
                vacuum: bool = False) -> Purged:
    """Purge the cases closed more than ``days`` days before ``now`` (see the module's doc)."""
    if days < 1:
        raise ValueError(f"retention period must be at least 1 day, not {days}")
    cutoff = now - timedelta(days=days)
    report = Purged(cutoff, dry_run)
    async with store.reading() as tx:
        candidates = await tx.cases_to_purge(cutoff)
        busy = {c["id"] for c in candidates if await tx.case_in_flight(c["id"])}
        if dry_run:
            return await _would(tx, report, [c for c in candidates if c["id"] not in busy], candidates,
                                busy, media_dir, cutoff)
    for case in candidates:
        if case["id"] in busy:
            report.waiting.append(case["ticket"])
            continue
        async with store.transaction() as tx:
            if await tx.case_in_flight(case["id"]):            # something came since the read
                report.waiting.append(case["ticket"])
                continue
            files = await tx.case_files(case["id"])
            if not await tx.purge_case(case["id"], now):
                continue
            for e in await tx.case_events(case["id"]):
                note, data = cleaned_event(e)
                if note != e["note"] or (json.dumps(data, ensure_ascii=False) if data else None) != e["data"]:
                    await tx.clean_event(e["id"], note, data)
            # The files go before the commit: should it fail, the next purge finds the case
            # again and the files already gone; never a purged case with its files left.
            for f in files:
                if not await tx.file_in_use(f["channel"], f["ref"]):
                    _remove(media_path(media_dir, f["channel"], f["ref"]), report)
        report.tickets.append(case["ticket"])
    async with store.transaction() as tx:
        report.loose = await tx.purge_loose(cutoff)
        anonymise = await tx.citizens_to_anonymise(cutoff)
        forget = await tx.citizens_without_cases(cutoff)
        await tx.forget_citizens(anonymise, now, delete=False)
        await tx.forget_citizens(forget, now, delete=True)
        report.anonymised, report.deleted = len(anonymise), len(forget)
    if vacuum:
        await store.vacuum()
    report.checkpointed = await store.checkpoint()
    if report.tickets or report.anonymised or report.deleted or any(report.loose.values()):
        log.info("retention: %d cases purged (closed before %s), %d citizens anonymised, %d deleted, "
                 "%d files removed, %d rows of no case cleared", len(report.tickets), cutoff.isoformat(),
                 report.anonymised, report.deleted, report.files, sum(report.loose.values()))
    return report


async def _would(tx: Tx, report: Purged, todo: list[Row], candidates: list[Row], busy: set[int],
                 media_dir: Path, cutoff: datetime) -> Purged:
    """A dry run's report: what ``purge`` would remove, read without writing anything."""
    report.tickets = [c["ticket"] for c in todo]
    report.waiting = [c["ticket"] for c in candidates if c["id"] in busy]
    seen: set[Path] = set()
    for case in todo:
        for f in await tx.case_files(case["id"]):
            path = media_path(media_dir, f["channel"], f["ref"])
            if path not in seen and path.is_file():
                seen.add(path)
                report.files += 1
                report.bytes += path.stat().st_size
    report.anonymised = len(await tx.citizens_to_anonymise(cutoff, purging=[c["id"] for c in todo]))
    report.deleted = len(await tx.citizens_without_cases(cutoff))
    report.loose = await tx.count_loose(cutoff)
    return report


def _remove(path: Path, report: Purged) -> None:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return
    report.files += 1
    report.bytes += size


async def purged_text(tx: Tx, case: Row, profile: Profile | None) -> str:
    """``main.py case`` for a purged case: that it was purged and when, and what stayed."""
    def when(at: datetime | None) -> str:
        return local_time(at) if at else "-"
    steps = {s.id: s for s in profile.steps} if profile else {}
    step = steps.get(case["step"])
    out = [f"TRANSKRIP PENGADUAN {case['ticket']}", "",
           f"Data pribadi pengaduan ini telah dihapus (retensi) pada {when(case['purged_at'])}: "
           "nama, nomor, NIK, isi pesan, jawaban, catatan, dan berkas tidak ada lagi.", "",
           f"Nomor tiket: {case['ticket']}",
           f"Saluran: {registry.title(case['channel'])}",
           f"Diterima: {when(case['opened_at'])}",
           f"Status: {STATE_NAMES.get(case['state'], case['state'])}" + (f" ({case['outcome']})" if case["outcome"] else ""),
           f"Langkah: {step.name if step else case['step']}"]
    if case["category"]:
        out.append(f"Layanan: {case['category']}")
    out.append(f"Ditutup: {when(case['closed_at'])}")
    if case["approved_at"]:
        out.append(f"Paraf: {case['approved_by']} ({ROLE_NAMES.get(case['approved_role'], case['approved_role'])}), "
                   f"{when(case['approved_at'])}")
    if case["agenda_number"]:
        out.append(f"Nomor agenda: {case['agenda_number']}")
    rating = await tx.rating_of(case["id"])
    if rating:
        out.append(f"Penilaian: {rating['score']} dari 5")
    out += ["", "RIWAYAT TINDAK LANJUT"]
    names = {s.id: s.name for s in profile.steps} if profile else None
    out += [history_line(e, names) for e in await tx.case_events(case["id"])]
    return "\n".join(out) + "\n"
