"""The printable record of a case: the SOP's "print out WhatsApp", and the audit trail.

One builder, two forms: HTML (posted as a file in the thread by ``!cetak``) and plain
text (``python main.py case ADU-...``).

What goes into Matrix is masked as the case card is: the citizen's address (masked by its channel)
and every NIK-like number in the texts (``mask_nik``: first 6 and last 4 digits). Only the
operator's shell, ``build(..., reveal_contact=True)``, shows them whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.channels.base import InboundMessage
from bridge.channels import registry
from bridge.messages import (DELIVERY_NAMES, ROLE_NAMES, STATE_NAMES, describe_attachments,
                             esc, history_line, local_time, multiline)
from bridge.privacy import mask_nik
from bridge.store import Row, Tx
from bridge.workflow import Profile


@dataclass(frozen=True)
class Line:
    at: datetime
    who: str
    text: str
    note: str = ""          # attachments, delivery state


@dataclass(frozen=True)
class Record:
    ticket: str
    case: Row
    citizen: Row
    conversation: list[Line]
    history: list[Row]
    reveal_contact: bool = False    # whole phone number and NIKs: the operator's shell only
    profile: Profile | None = None  # steps by their SOP names and roles (else by their ids)


class NotFound(LookupError):
    pass


async def build(tx: Tx, case_id: int, *, reveal_contact: bool = False, profile: Profile | None = None) -> Record:
    """The case's record; masked (phone number, NIKs) unless ``reveal_contact``."""
    case = await tx.get_case(case_id)
    if case is None:
        raise NotFound(case_id)
    citizen = await tx.get_citizen(case["citizen_id"])
    assert citizen is not None
    lines = [_citizen_line(m, citizen["name"]) for _, m in await tx.case_messages(case_id)]
    for r in await tx.case_replies(case_id):
        if r["done_at"]:
            lines.append(Line(r["done_at"], "Dinas (sistem)", r["payload"]["text"],
                              DELIVERY_NAMES.get(r["status"] or "", r["status"] or "")))
    lines.sort(key=lambda line: line.at)
    return Record(case["ticket"], case, citizen, lines, await tx.case_events(case_id), reveal_contact, profile)


async def build_by_ticket(tx: Tx, ticket: str, *, reveal_contact: bool = False,
                          profile: Profile | None = None) -> Record:
    case = await tx.get_case_by_ticket(ticket)
    if case is None:
        raise NotFound(ticket)
    return await build(tx, case["id"], reveal_contact=reveal_contact, profile=profile)


def _step(r: Record) -> str:
    """The case's step with the role that acts in it (a citizen's step is the Pemohon's)."""
    step_id = r.case["step"]
    if r.profile is None:
        return f"{step_id} ({ROLE_NAMES.get(r.case['holder_role'], r.case['holder_role'])})"
    step = r.profile.step(step_id)
    return f"{step.name} ({ROLE_NAMES.get(step.role, step.role)})"


def _history(r: Record) -> list[str]:
    names = {s.id: s.name for s in r.profile.steps} if r.profile else None
    return [history_line(e, names) for e in r.history]


def _private(r: Record, document: str) -> str:
    """The finished document, every NIK in it masked unless the record reveals them: citizens
    write them in texts and file names, staff in notes and answers."""
    return document if r.reveal_contact else mask_nik(document)


def _citizen_line(m: InboundMessage, name: str | None) -> Line:
    files = describe_attachments(m.attachments)
    return Line(m.at, name or "Pemohon", m.text, ("Lampiran: " + ", ".join(files)) if files else "")


def _facts(r: Record) -> list[tuple[str, str]]:
    c = r.case
    address = registry.show_address(c["channel"], r.citizen["address"], whole=r.reveal_contact)
    via = registry.title(c["channel"])
    facts = [
        ("Nomor tiket", r.ticket),
        ("Pemohon", f"{r.citizen['name'] or '-'} ({via} {address})" if address else f"{r.citizen['name'] or '-'} ({via})"),
        ("Diterima", local_time(c["opened_at"])),
        ("Status", STATE_NAMES[c["state"]]
         + (f" ({c['outcome']})" if c["outcome"] else "")),
        ("Langkah", _step(r)),
    ]
    if c["category"]:
        facts.append(("Layanan", c["category"]))
    if c["closed_at"]:
        facts.append(("Ditutup", local_time(c["closed_at"])))
    if c["approved_at"]:
        facts.append(("Paraf", f"{c['approved_by']} ({ROLE_NAMES.get(c['approved_role'], c['approved_role'])}), "
                               f"{local_time(c['approved_at'])}"))
    if c["agenda_number"]:
        facts.append(("Nomor agenda", c["agenda_number"]))
    if c["answer_draft"]:
        facts.append(("Jawaban", c["answer_draft"]))
    return facts


def to_text(r: Record) -> str:
    out = [f"TRANSKRIP PENGADUAN {r.ticket}", ""]
    out += [f"{k}: {v}" for k, v in _facts(r)]
    out += ["", "PERCAKAPAN"]
    for line in r.conversation:
        out.append(f"[{local_time(line.at)}] {line.who}: {line.text}" + (f" ({line.note})" if line.note else ""))
    out += ["", "RIWAYAT TINDAK LANJUT"]
    out += _history(r)
    return _private(r, "\n".join(out) + "\n")


def to_html(r: Record) -> str:
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{multiline(v)}</td></tr>" for k, v in _facts(r))
    talk = "".join(
        f"<tr><td>{esc(local_time(line.at))}</td><td>{esc(line.who)}</td><td>{multiline(line.text)}"
        + (f"<br><small>{esc(line.note)}</small>" if line.note else "") + "</td></tr>"
        for line in r.conversation)
    history = "".join(f"<li>{esc(line)}</li>" for line in _history(r))
    return _private(r, f"""<!doctype html>
<html lang="id"><head><meta charset="utf-8"><title>Transkrip {esc(r.ticket)}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}table{{border-collapse:collapse;width:100%}}
th,td{{border:1px solid #999;padding:.3em;text-align:left;vertical-align:top}}@media print{{body{{margin:0}}}}</style>
</head><body>
<h1>Transkrip pengaduan {esc(r.ticket)}</h1>
<table>{facts}</table>
<h2>Percakapan</h2>
<table><tr><th>Waktu</th><th>Dari</th><th>Pesan</th></tr>{talk}</table>
<h2>Riwayat tindak lanjut</h2>
<ol>{history}</ol>
</body></html>
""")
