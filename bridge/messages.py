"""What citizens and staff read: texts in Bahasa Indonesia, and Matrix HTML.

Every string a citizen wrote goes through ``esc`` before it enters HTML, and every bot
message that carries citizen text has empty ``m.mentions`` so that it pings nobody.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from bridge.channels.base import Attachment, InboundMessage
from bridge.privacy import mask_phone

DISPLAY_TZ = ZoneInfo("Asia/Jakarta")
CHANNEL_NAMES = {"whatsapp": "WhatsApp", "telegram": "Telegram"}
ROLE_NAMES = {"admin": "Admin WA", "kasi": "Kepala Seksi", "kabid": "Kepala Bidang",
              "pimpinan": "Pimpinan", "citizen": "Pemohon"}
ATTACHMENT_NAMES = {"image": "Foto", "document": "Dokumen", "audio": "Rekaman suara",
                    "video": "Video", "sticker": "Stiker"}


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
    return local.strftime("%d-%m-%Y %H:%M WIB" if date else "%H:%M")


@dataclass(frozen=True)
class Rich:
    """A Matrix message: plain body and its HTML twin."""

    body: str
    html: str

    def content(self, *, mentions: Iterable[str] = ()) -> dict[str, Any]:
        return {"msgtype": "m.text", "body": self.body, "format": "org.matrix.custom.html",
                "formatted_body": self.html, "m.mentions": {"user_ids": list(mentions)} if mentions else {}}

    def notice(self) -> dict[str, Any]:
        return {**self.content(), "msgtype": "m.notice"}


# -- to the citizen --------------------------------------------------------------------
def ticket_reply(ticket: str, total_minutes: int, name: str | None) -> str:
    greeting = f"Terima kasih, {name}." if name else "Terima kasih."
    return (f"{greeting} Pengaduan Anda sudah kami terima dengan nomor tiket {ticket}.\n"
            f"Perkiraan waktu penyelesaian: {duration(total_minutes)} (jam kerja).\n"
            "Pesan dan lampiran yang Anda kirim berikutnya akan kami tambahkan ke pengaduan ini.")


UNSUPPORTED_REPLY = ("Maaf, jenis pesan ini belum dapat kami proses. Silakan kirim pengaduan "
                     "Anda dalam bentuk teks, foto, atau dokumen.")


# -- to staff ----------------------------------------------------------------------------
def describe_attachments(attachments: Iterable[Attachment]) -> list[str]:
    return [ATTACHMENT_NAMES.get(a.kind, a.kind) + (f" ({a.filename})" if a.filename else "")
            for a in attachments]


def case_card(*, ticket: str, citizen_name: str | None, channel: str, address: str,
              step_name: str, role: str, opened_at: datetime, due_at: datetime | None,
              message: InboundMessage) -> Rich:
    who = citizen_name or "(tanpa nama)"
    via = CHANNEL_NAMES.get(channel, channel)
    text = message.text or "(tanpa teks)"
    files = describe_attachments(message.attachments)
    due = local_time(due_at) if due_at else "-"
    body = "\n".join([
        f"📨 Pengaduan baru {ticket}",
        f"Pemohon: {who} · {via} {mask_phone(address)}",
        f"Diterima: {local_time(opened_at)} · Tenggat: {due}",
        f"Langkah: {step_name} ({ROLE_NAMES.get(role, role)})",
        *([f"Lampiran: {', '.join(files)}"] if files else []),
        "", text,
    ])
    rows = [
        f"<b>Pemohon:</b> {esc(who)} · {esc(via)} {esc(mask_phone(address))}",
        f"<b>Diterima:</b> {esc(local_time(opened_at))} · <b>Tenggat:</b> {esc(due)}",
        f"<b>Langkah:</b> {esc(step_name)} ({esc(ROLE_NAMES.get(role, role))})",
    ]
    if files:
        rows.append(f"<b>Lampiran:</b> {esc(', '.join(files))}")
    html_ = (f"<h4>📨 Pengaduan baru <code>{esc(ticket)}</code></h4>"
             f"<p>{'<br>'.join(rows)}</p><blockquote>{multiline(text)}</blockquote>")
    return Rich(body, html_)


def citizen_followup(message: InboundMessage, name: str | None) -> Rich:
    """A later message of the citizen, for the card's thread."""
    who = name or "Pemohon"
    when = local_time(message.at, date=False)
    text = message.text
    label = {"reaction": "bereaksi", "edit": "mengubah pesan", "revoke": "menghapus pesan",
             "unsupported": "mengirim pesan yang tidak didukung"}.get(message.kind)
    if label:
        text = f"({label}) {text}".strip()
    files = describe_attachments(message.attachments)
    if files and not text:
        text = f"({', '.join(files)})"
    body = f"💬 {who} ({when}):\n{text}"
    html_ = f"💬 <b>{esc(who)}</b> ({esc(when)}):<br>{multiline(text)}"
    return Rich(body, html_)


def delivery_failed(ticket: str, what: str, error: str) -> Rich:
    body = f"⚠️ Gagal mengirim {what} untuk {ticket}: {error}"
    return Rich(body, f"⚠️ Gagal mengirim {esc(what)} untuk <code>{esc(ticket)}</code>: {esc(error)}")
