"""Masking of personal data (NIK, phone numbers) wherever it leaves the database.

Logs never carry a full NIK or phone number, not in the message, the traceback nor the
stack; staff-facing cards and transcripts show them masked. Ticket numbers (ADU-2026-000001)
and agenda numbers (470/12/416-314/2026) stay readable: staff and operators search for them.
"""
from __future__ import annotations

import logging
import re

_NIK = re.compile(r"(?<!\d)(\d{6})(\d{6})(\d{4})(?!\d)")

# One scan over the text; at each position the first alternative that fits wins:
#   ticket  ADU-2026-000001, kept whole (its digits must not start a phone match);
#   nik     16 digits, alone or grouped by single spaces, dots or dashes (3402 1245 0190 0003);
#   phone   +<country code>, 62 or 0, then digits, single spaces, dots or dashes between them,
#           10-15 digits in all (checked in _replace); not right after a digit or "+".
# Agenda numbers (470/12/416-314/2026) need no rule: their parts are short, "/" ends a number.
# Other numbers are left alone: dates, times, amounts, Unix timestamps, Telegram chat ids.
_SCAN = re.compile(r"""
    (?P<ticket> (?<!\w) ADU-\d{4}-\d{6} (?!\d) )
  | (?P<nik>    (?<!\d) (?: \d{16} | [1-9](?:[ .\-]?\d){15} ) (?!\d) )
  | (?P<phone>  (?<![\d+]) (?: \+\s?\d | 62 | 0 ) (?:[ .\-]?\d){8,14} (?!\d) )
""", re.VERBOSE | re.IGNORECASE)


def mask_nik(nik: str) -> str:
    """3402124501900003 -> 340212******0003 (region kept, birth date hidden); in free text,
    every 16-digit number."""
    return _NIK.sub(lambda m: m.group(1) + "*" * 6 + m.group(3), nik)


def mask_phone(number: str) -> str:
    """6281234567890 -> 62812*****890."""
    digits = re.sub(r"\D", "", number)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:5] + "*" * (len(digits) - 8) + digits[-3:]


def _replace(m: re.Match[str]) -> str:
    found = m.group(0)
    if m.lastgroup == "nik":
        digits = re.sub(r"\D", "", found)
        return digits[:6] + "*" * 6 + digits[-4:]
    if m.lastgroup == "phone" and 10 <= len(re.sub(r"\D", "", found)) <= 15:
        return mask_phone(found)
    return found


def mask_text(text: str) -> str:
    """Mask every NIK-like and phone-like number in free text; ticket numbers stay whole."""
    return _SCAN.sub(_replace, text)


class MaskingFilter(logging.Filter):
    """Last line of defence: masks numbers in every log record's final message, its
    exception text (the traceback the formatter appends) and its stack."""

    _render = logging.Formatter()           # the standard traceback, as Formatter.format caches it

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = fits = record.getMessage()
        except Exception:                   # msg and args that do not fit: log them, masked, anyway
            message, fits = f"{record.msg} {record.args!r}", None
        masked = mask_text(message)
        if masked != fits:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            # Rendered here so that every formatter reuses this (masked) text: logging.Formatter
            # uses record.exc_text when set, and so does main.JsonFormatter.
            record.exc_text = self._render.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True
