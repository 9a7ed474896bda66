"""What citizens and staff read: texts in Bahasa Indonesia, and Matrix HTML.

Every string a citizen wrote goes through ``esc`` before it enters HTML, and every bot
message that carries citizen text has empty ``m.mentions`` so that it pings nobody.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable
from zoneinfo import ZoneInfo

from bridge.channels.base import Attachment, InboundMessage
from bridge.channels import registry
from bridge.privacy import mask_nik
from bridge.workflow import OUTCOME_REJECTED, OUTCOME_UNDELIVERABLE
from bridge.workflow import ROLE_TITLES as ROLE_NAMES

if TYPE_CHECKING:
    from bridge.store import Row
    from bridge.workflow import Step

DISPLAY_TZ = ZoneInfo("Asia/Jakarta")
ATTACHMENT_NAMES = {"image": "Foto", "document": "Dokumen", "audio": "Rekaman suara",
                    "video": "Video", "sticker": "Stiker"}


# Synapse refuses an event over 65,536 bytes; a message the bot builds stays well below.
MAX_EVENT_BYTES = 60_000
CARD_HISTORY = 15          # the latest entries an escalation card shows; !riwayat has all
NIK_LINE = re.compile(r"^\W*NIK\s*[:=]\s*(\d{16})\b", re.IGNORECASE | re.MULTILINE)


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def multiline(text: str) -> str:
    """Citizen text as HTML: escaped, line breaks kept."""
    return esc(text).replace("\n", "<br>")


def duration(minutes: int) -> str:
    hours, mins = divmod(minutes, 60)
    parts = ([f"{hours} jam"] if hours else []) + ([f"{mins} menit"] if mins else [])
    return " ".join(parts) or "0 menit"


def local_time(dt: datetime, *, date: bool = True) -> str:
    local = dt.astimezone(DISPLAY_TZ)
    return local.strftime(f"%d-%m-%Y %H:%M {tz_label()}" if date else "%H:%M")


@dataclass(frozen=True)
class Rich:
    """A Matrix message: plain body and its HTML twin."""

    body: str
    html: str

    def content(self, *, mentions: Iterable[str] = ()) -> dict[str, Any]:
        """The event content; a message too large for the homeserver is cut (``fit``)."""
        return self.fit()._content(mentions)

    def _content(self, mentions: Iterable[str] = ()) -> dict[str, Any]:
        return {"msgtype": "m.text", "body": self.body, "format": "org.matrix.custom.html",
                "formatted_body": self.html, "m.mentions": {"user_ids": list(mentions)} if mentions else {}}

    def notice(self) -> dict[str, Any]:
        return {**self.content(), "msgtype": "m.notice"}

    def size(self) -> int:
        return len(json.dumps(self._content(), ensure_ascii=False).encode())

    def fit(self, limit: int = MAX_EVENT_BYTES) -> "Rich":
        """This message, or its beginning with a pointer to the whole, within ``limit`` bytes."""
        if self.size() <= limit:
            return self
        tail = "\n… (terpotong; teks lengkap: !riwayat atau !cetak)"
        body = self.body
        while body and Rich(body + tail, multiline(body + tail)).size() > limit:
            body = body[: len(body) * 3 // 4]
        return Rich(body + tail, multiline(body + tail))


# -- times, as citizens and staff read them ------------------------------------------------
DAY_NAMES = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")


def local_day_time(dt: datetime) -> str:
    """'Senin, 23-11-2026 pukul 07:30 WIB'"""
    local = dt.astimezone(DISPLAY_TZ)
    return f"{DAY_NAMES[local.weekday()]}, {local.strftime('%d-%m-%Y')} pukul {local.strftime('%H:%M')} {tz_label()}"


def office_hours(hours: dict[int, list[tuple[Any, Any]]]) -> str:
    """'Senin–Kamis 07.30–16.00, Jumat 07.30–11.30 dan 13.00–16.30 WIB' from a calendar's periods."""
    def spans(day: int) -> str:
        return " dan ".join(f"{a.strftime('%H.%M')}–{b.strftime('%H.%M')}" for a, b in hours.get(day, []))
    groups: list[tuple[int, int, str]] = []
    for day in range(7):
        text = spans(day)
        if text and groups and groups[-1][2] == text and groups[-1][1] == day - 1:
            groups[-1] = (groups[-1][0], day, text)
        elif text:
            groups.append((day, day, text))
    return ", ".join((DAY_NAMES[a] if a == b else f"{DAY_NAMES[a]}–{DAY_NAMES[b]}") + f" {t}"
                     for a, b, t in groups) + f" {tz_label()}"


def tz_label() -> str:
    return {"Asia/Makassar": "WITA", "Asia/Jayapura": "WIT"}.get(str(DISPLAY_TZ), "WIB")


def set_display_timezone(name: str) -> None:
    """Times staff and citizens read are in the office's timezone ([sla] timezone)."""
    global DISPLAY_TZ
    DISPLAY_TZ = ZoneInfo(name)


# -- to staff ----------------------------------------------------------------------------
def describe_attachments(attachments: Iterable[Attachment]) -> list[str]:
    return [ATTACHMENT_NAMES.get(a.kind, a.kind) + (f" ({a.filename})" if a.filename else "")
            for a in attachments]


def matrix_to(room_id: str, event_id: str) -> str:
    """A link to an event that Element (and any Matrix client) opens."""
    return f"https://matrix.to/#/{room_id}/{event_id}"


# A card's line: label, text, and a link the text points to (or None).
CardRow = tuple[str, str, "str | None"]


def case_card(*, case: Row, citizen: Row, step: "Step", text: str, attachments: list[str],
              room_role: str, linked: tuple[str, str | None] | None = None, history: list[Row] = (),
              escalated: bool = False, elsewhere: tuple[str, str | None] | None = None,
              step_names: dict[str, str] | None = None) -> Rich:
    """The card staff act on: who, what, where in the SOP, until when.

    ``room_role``: the Admin WA's card shows the citizen's whole number (they may call
    back), the other rooms a masked one. ``elsewhere``: this is an earlier card and the
    case is now there (a text and a link to its live card). A closed case's card says how
    it ended and when.
    """
    ticket = case["ticket"]
    via = registry.title(case["channel"])
    admin = room_role == "admin"
    found = NIK_LINE.search(text or "")
    nik = case.get("nik") or (found.group(1) if found else None)
    text = mask_nik(text) if text else "(tanpa teks)"
    opened = local_time(case["opened_at"])
    due = local_time(case["due_at"]) if case["due_at"] else "-"
    step_due = local_time(case["step_due_at"], date=False) if case["step_due_at"] else "-"
    head = "Pengaduan diteruskan" if escalated else "Pengaduan baru"
    rows: list[CardRow] = [("Pemohon", citizen_line(case, citizen, via, admin), None),
                           ("Diterima", f"{opened} · selesai paling lambat {due}", None)]
    if case["state"] == "closed":
        rows.append(("Selesai", f"{case['outcome'] or '-'} · {local_time(case['closed_at'])}", None))
    elif elsewhere is not None:
        rows.append(("Sekarang", elsewhere[0], elsewhere[1]))
    else:
        rows.append(("Langkah", f"{step.name} ({ROLE_NAMES.get(step.role, step.role)}), tenggat {step_due}", None))
    if not case.get("confidential") or admin:
        # The admin checks the NIK against SIAK; every other room sees it masked.
        if nik:
            rows.append(("NIK", nik if admin else mask_nik(nik), None))
        elif case.get("nik_problem"):
            rows.append(("NIK", f"⚠️ tidak ada NIK yang valid ({case['nik_problem']})", None))
    if case["category"]:
        rows.append(("Layanan", case["category"], None))
    if attachments:
        rows.append(("Lampiran", ", ".join(attachments), None))
    if linked:
        rows.append(("Terkait", f"{linked[0]} (dijawab kurang dari 3 hari lalu)", linked[1]))
    if case["answer_draft"]:
        rows.append(("Konsep jawaban", case["answer_draft"], None))
    notes = [e["note"] for e in history if e["kind"] in ("note", "return", "escalate") and e["note"]]
    lines = [history_line(e, step_names) for e in history]
    # A long history: its latest part, within the homeserver's event size.
    keep = CARD_HISTORY
    while True:
        card = _card(head, ticket, rows, text, notes[-keep:], lines[-keep:],
                     left_out=max(0, len(lines) - keep) + max(0, len(notes) - keep))
        if keep == 0 or card.size() <= MAX_EVENT_BYTES:
            return card.fit()
        keep //= 2


def citizen_line(case: Row, citizen: Row, via: str, admin: bool) -> str:
    """Who complains, as a room may see it: the admin room whole (they may call back),
    other rooms with the number masked, and for a confidential case nothing at all."""
    if case.get("confidential") and not admin:
        return f"(dirahasiakan) · {via}"
    name = case.get("citizen_name") or citizen["name"] or "(tanpa nama)"
    if citizen.get("username"):
        name += f" (@{citizen['username']})"
    address = registry.show_address(case["channel"], citizen["address"], whole=admin)
    return f"{name} · {via} {address}" if address else f"{name} · {via}"


def greeting_name(name: str | None) -> str:
    """A name to greet with: "Siti A." stays "Siti A" before the sentence's own full stop."""
    return (name or "").strip().rstrip(".") or "Bapak/Ibu"


def _card(head: str, ticket: str, rows: list[CardRow], text: str, notes: list[str],
          history: list[str], left_out: int) -> Rich:
    more = f"… {left_out} entri sebelumnya: lihat !riwayat atau !cetak" if left_out else ""
    body = "\n".join([f"📨 {head} {ticket}", *(f"{k}: {v}" + (f" {link}" if link else "") for k, v, link in rows),
                      "", text,
                      *([""] + ["Catatan:"] + [f"- {n}" for n in notes] if notes else []),
                      *([""] + ["Riwayat:"] + ([more] if more else []) + history if history else [])])
    html_ = (f"<h4>📨 {head} <code>{esc(ticket)}</code></h4><p>"
             + "<br>".join(f"<b>{esc(k)}:</b> " + (f'<a href="{esc(link)}">{multiline(v)}</a>' if link else multiline(v))
                           for k, v, link in rows)
             + f"</p><blockquote>{multiline(text)}</blockquote>")
    if notes:
        html_ += "<p><b>Catatan:</b></p><ul>" + "".join(f"<li>{multiline(n)}</li>" for n in notes) + "</ul>"
    if history:
        html_ += ("<p><b>Riwayat:</b>" + (f" <i>{esc(more)}</i>" if more else "") + "</p><ol>"
                  + "".join(f"<li>{esc(line)}</li>" for line in history) + "</ol>")
    return Rich(body, html_)


def citizen_followup(message: InboundMessage, name: str | None, note: str | None = None) -> Rich:
    """A later message of the citizen, for the card's thread (``note``: why it is in this case)."""
    who = name or "Pemohon"
    when = local_time(message.at, date=False)
    text = mask_nik(message.text)
    label = {"reaction": "bereaksi", "edit": "mengubah pesan", "revoke": "menghapus pesan",
             "unsupported": "mengirim pesan yang tidak didukung"}.get(message.kind)
    if label:
        text = f"({label}) {text}".strip()
    files = describe_attachments(message.attachments)
    if files and not text:
        text = f"({', '.join(files)})"
    body = f"💬 {who} ({when}):\n{text}" + (f"\n{note}" if note else "")
    html_ = f"💬 <b>{esc(who)}</b> ({esc(when)}):<br>{multiline(text)}" + (f"<br><i>{esc(note)}</i>" if note else "")
    return Rich(body, html_)


def earlier_messages(events: list["Row"]) -> Rich:
    """The citizen's messages so far, under a case's new card (the staff there did not see them)."""
    head = "💬 Pesan pemohon sebelumnya:"
    lines = [f"{local_time(e['at'], date=False)}: {mask_nik(e['note'])}" for e in events]
    return Rich("\n".join([head, *lines]),
                f"<b>{esc(head)}</b><ul>" + "".join(f"<li>{multiline(line)}</li>" for line in lines) + "</ul>")


def missing_attachment(name: str) -> Rich:
    text = f"📎 Lampiran {name} tidak dapat diambil dari saluran pemohon (lihat pemberitahuan di ruang Admin WA)."
    return Rich(text, esc(text))


def size(n: int) -> str:
    """A file size as people say it: 25,3 MB, 480 KB."""
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB".replace(".", ",")
    return f"{max(1, round(n / 1024))} KB"


def attachment_too_big(name: str, n: int, limit: int, via: str) -> Rich:
    text = (f"📎 Lampiran {name} ({size(n)}) melebihi batas {size(limit)} yang dapat diambil lewat {via}; "
            f"berkas tidak diambil. Pemohon sudah diminta mengirim berkas yang lebih kecil.")
    return Rich(text, esc(text))


def inbound_set_aside(ticket: str | None, sender: str, kind: str, attempts: int) -> Rich:
    about = f"kasus {ticket}" if ticket else f"pengirim {sender}"
    text = (f"⚠️ Sebuah pesan masuk ({kind}) untuk {about} gagal diproses {attempts} kali dan disisihkan; "
            "pesan lain tetap diproses. Operator: lihat log bridge dan /healthz.")
    return Rich(text, esc(text))


def delivery_failed(ticket: str, what: str, error: str) -> Rich:
    body = f"⚠️ Gagal mengirim {what} untuk {ticket}: {error}"
    return Rich(body, f"⚠️ Gagal mengirim {esc(what)} untuk <code>{esc(ticket)}</code>: {esc(error)}")


# -- the staff workflow --------------------------------------------------------------------
# The reaction for each step action: the bot puts these on a card, staff tap them.
ACTION_REACTIONS = {"claim": "👀", "verify": "✅", "escalate": "⬆️", "return": "⬇️",
                    "approve": "✍️", "send": "📤", "reject": "❌"}
ACTION_NAMES = {
    "claim": "👀 Diambil", "verify": "✅ Diverifikasi", "escalate": "⬆️ Diteruskan",
    "return": "⬇️ Dikembalikan", "approve": "✍️ Diparaf", "send": "📤 Jawaban dikirim",
    "reject": "❌ Ditolak", "answer": "📝 Konsep jawaban", "note": "🗒️ Catatan",
    "ask": "❓ Pertanyaan ke pemohon", "close": "🔒 Ditutup, jawaban tidak terkirim",
}
EVENT_NAMES = {**ACTION_NAMES, "opened": "Pengaduan diterima", "citizen_message": "Pesan pemohon",
               "citizen_answered": "Pemohon menjawab", "answer_delivered": "Jawaban diterima pemohon",
               "answer_failed": "Jawaban gagal terkirim", "question_failed": "Pertanyaan gagal terkirim",
               "answer_unconfirmed": "Jawaban dianggap diterima (pemohon menulis lagi)",
               "held": "Menunggu jendela 24 jam pemohon",
               **{f"sla_{scope}_{level}": f"{icon} {what} {label}"
                  for scope, label in (("step", "langkah"), ("total", "waktu total"))
                  for level, icon, what in (("warning", "⏳", "Peringatan SLA"), ("breach", "🚨", "Lewat SLA"),
                                            ("reminder", "🔁", "Pengingat SLA"))}}


# Staff actions that close a case, and the outcome they give.
CLOSING_OUTCOMES = {"reject": OUTCOME_REJECTED, "close": OUTCOME_UNDELIVERABLE}

# Who did it, as the record reads: the bot and the citizen by their Indonesian names.
ACTOR_NAMES = {"bot": "sistem", "citizen": "pemohon"}


def who(actor: str, role: str | None) -> str:
    name = ACTOR_NAMES.get(actor, actor)
    return f"{name} ({ROLE_NAMES.get(role, role)})" if role else name


def history_line(e: "Row", step_names: dict[str, str] | None = None) -> str:
    """One entry of the audit trail; ``step_names`` shows steps by their SOP names."""
    when = local_time(e["at"])
    names = step_names or {}
    to = names.get(e["to_step"], e["to_step"])
    if e["kind"] in CLOSING_OUTCOMES:     # to the last step, but not "Jawaban diterima pemohon"
        to = f"selesai, {CLOSING_OUTCOMES[e['kind']]}"
    move = (f" [{names.get(e['from_step'], e['from_step'])} → {to}]"
            if e["from_step"] and e["from_step"] != e["to_step"] else "")
    note = e["note"] or ""
    if e["kind"] == "answer_delivered":
        note = DELIVERY_NAMES.get(note, note)
    note = f": {mask_nik(note)}" if note else ""
    data = json.loads(e["data"]) if e.get("data") else {}
    if data.get("agenda_number"):
        note += f" (nomor agenda {data['agenda_number']})"
    if data.get("void_agenda_number"):
        note += f" (paraf ditarik; nomor agenda {data['void_agenda_number']} batal)"
    return f"{when} {EVENT_NAMES.get(e['kind'], e['kind'])} oleh {who(e['actor'], e['role'])}{move}{note}"


def confirmation(action: str, actor: str, role: str, step: "Step", case: "Row", text: str,
                 void_agenda: str | None = None, *, ticket: str | None = None) -> Rich:
    """The bot's word in the thread after an action (``ticket``: named, outside the thread)."""
    head = f"{ACTION_NAMES.get(action, action)}{f' {ticket}' if ticket else ''} oleh {who(actor, role)}"
    lines = [head]
    if text and action in ("answer", "note", "ask", "reject", "return", "escalate", "close"):
        lines.append(f"“{text}”")
    if case["agenda_number"] and action in ("approve", "return"):
        lines.append(f"Nomor agenda: {case['agenda_number']}")
    if void_agenda:
        lines.append(f"Paraf ditarik; nomor agenda {void_agenda} batal dan tidak dipakai lagi.")
    if case["state"] == "closed":
        lines.append("Kasus ditutup.")
    elif case["state"] == "waiting":
        lines.append("Menunggu jawaban pemohon; jam SLA berhenti.")
    else:
        lines.append(f"Langkah sekarang: {step.name} ({ROLE_NAMES.get(step.role, step.role)}).")
    return Rich("\n".join(lines), "<br>".join(multiline(line) for line in lines))


def refusal(reason: str, guide: str | None = None) -> Rich:
    """Why not, and (``guide``) what can be done now and by whom."""
    if guide is None:
        return Rich(f"⛔ {reason}", f"⛔ {esc(reason)}")
    return Rich(f"⛔ {reason}\n➡️ {guide}", f"⛔ {esc(reason)}<br>➡️ {esc(guide)}")


def moved_to(room_key: str, step_name: str, link: str | None) -> Rich:
    """The pointer in the old thread to the case's new card."""
    role = ROLE_NAMES.get(room_key.split(":")[0], room_key)
    text = f"➡️ Kasus pindah ke ruang {role} ({step_name})."
    if link is None:                    # the new card could not be posted: the admin room was told
        return Rich(text, esc(text))
    return Rich(f"{text} Kartu di sana: {link}", f'{esc(text)} <a href="{esc(link)}">Buka kartu di sana</a>')


def back_from_waiting(step: "Step") -> Rich:
    text = f"↩️ Pemohon sudah menjawab; kasus kembali ke langkah {step.name}."
    return Rich(text, esc(text))


# A case's state as staff and reports read it.
STATE_NAMES = {"open": "dalam proses", "waiting": "menunggu pemohon", "closed": "selesai"}

DELIVERY_NAMES = {"accepted": "diterima server saluran", "sent": "terkirim", "delivered": "sampai di ponsel pemohon",
                  "read": "dibaca pemohon", "failed": "GAGAL terkirim"}


def delivery_status(ticket: str, status: str, error: str | None = None, *, final: str | None = None) -> Rich:
    """What became of the answer. ``final``: the channel (by its title) gives no receipts,
    so its accepting the answer ends the case."""
    text = f"📬 Jawaban {ticket}: {DELIVERY_NAMES.get(status, status)}" + (f" ({error})" if error else "")
    if final:
        text = (f"📬 Jawaban {ticket}: diterima server {final}. {final} tidak memberi tanda terima sampai, "
                "jadi jawaban dianggap sampai. Kasus selesai.")
    elif status in ("delivered", "read"):
        text += ". Kasus selesai."
    elif status == "failed":
        text += (". Periksa nomor atau akun pemohon lalu kirim ulang dengan 📤 / !kirim; bila jawaban memang tidak "
                 "dapat dikirim, tutup kasus dengan !tutup <alasan>.")
    return Rich(text, esc(text))


def held(ticket: str, what: str, template: str) -> Rich:
    """A message to the citizen waits: the channel allows free text only within its window."""
    text = (f"⏳ {ticket}: {what} tidak dapat dikirim sebagai teks biasa (lebih dari 24 jam sejak pesan "
            f"terakhir pemohon). Template \"{template}\" terkirim; {what} dikirim begitu pemohon membalas.")
    return Rich(text, esc(text))


def answer_unconfirmed(ticket: str) -> Rich:
    text = (f"📬 Jawaban {ticket} sudah diterima server, tanpa konfirmasi sampai; pemohon menulis lagi, "
            "jadi jawaban dianggap diterima. Kasus selesai.")
    return Rich(text, esc(text))


# One message to a citizen: WhatsApp's text body and Telegram's sendMessage both stop at 4096.
CITIZEN_TEXT_MAX = 4096


def too_long(length: int, room: int) -> str:
    return (f"Teks ini terlalu panjang untuk satu pesan ke pemohon: {length} karakter, paling banyak "
            f"{room}. Persingkat {length - room} karakter lalu kirim lagi (tidak ada yang berubah).")


def case_status(case: "Row", step: "Step") -> Rich:
    state = STATE_NAMES[case["state"]]
    lines = [f"Status {case['ticket']}: {state}" + (f" ({case['outcome']})" if case["outcome"] else ""),
             f"Langkah: {step.name} ({ROLE_NAMES.get(step.role, step.role)})",
             f"Penanggung jawab: {case['assignee'] or '-'}",
             f"Tenggat langkah: {local_time(case['step_due_at']) if case['step_due_at'] else '-'}",
             f"Tenggat total: {local_time(case['due_at']) if case['due_at'] else '-'}",
             "Konsep jawaban: " + ("ada" if case["answer_draft"] else "belum ada")
             + (f", diparaf {case['approved_by']}" if case["approved_at"] else ""),
             *([f"Nomor agenda: {case['agenda_number']}"] if case["agenda_number"] else [])]
    return Rich("\n".join(lines), "<br>".join(esc(line) for line in lines))


def case_list(room_key: str, cases: list["Row"], profile: Any) -> Rich:
    if not cases:
        return Rich("Tidak ada kasus terbuka di ruang ini.", "Tidak ada kasus terbuka di ruang ini.")
    lines = [f"Kasus terbuka ({len(cases)}):"]
    for c in cases:
        due = local_time(c["step_due_at"], date=False) if c["step_due_at"] else "-"
        lines.append(f"{c['ticket']} · {profile.step(c['step']).name} · tenggat {due}"
                     + (" · menunggu pemohon" if c["state"] == "waiting" else ""))
    return Rich("\n".join(lines), "<br>".join(esc(line) for line in lines))


# -- SLA -------------------------------------------------------------------------------
def pill(user_id: str) -> str:
    return f'<a href="https://matrix.to/#/{esc(user_id)}">{esc(user_id)}</a>'


def sla_alert(*, case: "Row", step: "Step", scope: str, level: int, late_minutes: float,
              holders: list[str], link: str | None, total_minutes: int) -> Rich:
    """A warning (level 1), a breach (2) or a reminder (3+) about a step or the whole case."""
    what = (f"langkah \"{step.name}\" ({ROLE_NAMES.get(step.role, step.role)}, {duration(step.minutes)})"
            if scope == "step" else f"waktu penyelesaian total ({duration(total_minutes)})")
    due = case["step_due_at"] if scope == "step" else case["due_at"]
    if level == 1:
        head = f"⏳ Peringatan SLA {case['ticket']}: {what} berakhir {local_time(due, date=False)}."
    else:
        late = duration(int(late_minutes))
        head = (f"🚨 Lewat SLA {case['ticket']}: {what} terlambat {late}." if level == 2 else
                f"🔁 Pengingat: {case['ticket']} masih lewat SLA ({what}), terlambat {late}.")
    body = head + f"\nDitangani: {', '.join(holders) or ROLE_NAMES.get(step.role, step.role)}"
    html_ = esc(head) + "<br>Ditangani: " + (", ".join(pill(h) for h in holders) or esc(ROLE_NAMES.get(step.role, "")))
    if link:
        body += f"\nKartu: {link}"
        html_ += f'<br><a href="{esc(link)}">Buka kartu kasus</a>'
    return Rich(body, html_)


def clock_line(label: str, due: datetime | None, left_minutes: float | None, paused: bool) -> str:
    if due is None:
        return f"{label}: -"
    if paused:
        return f"{label}: berhenti (menunggu pemohon), sisa {duration(int(left_minutes or 0))}"
    if left_minutes is not None and left_minutes < 0:
        return f"{label}: lewat {duration(int(-left_minutes))} (tenggat {local_time(due)})"
    return f"{label}: sisa {duration(int(left_minutes or 0))} waktu kerja (tenggat {local_time(due)})"
