"""Masking of personal data (NIK, phone numbers) wherever it leaves the database.

Logs never carry a full NIK or phone number; staff-facing cards show a masked NIK.
"""
from __future__ import annotations

import logging
import re

_NIK = re.compile(r"(?<!\d)(\d{6})(\d{6})(\d{4})(?!\d)")
_PHONE = re.compile(r"(?<![\d])(\+?\d[\d\- ]{7,14}\d)(?![\d])")


def mask_nik(nik: str) -> str:
    """3402124501900003 -> 340212******0003 (region kept, birth date hidden)."""
    return _NIK.sub(lambda m: m.group(1) + "*" * 6 + m.group(3), nik)


def mask_phone(number: str) -> str:
    """6281234567890 -> 62812*****890."""
    digits = re.sub(r"\D", "", number)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:5] + "*" * (len(digits) - 8) + digits[-3:]


def mask_text(text: str) -> str:
    """Mask every NIK-like and phone-like number in free text."""
    text = _NIK.sub(lambda m: m.group(1) + "*" * 6 + m.group(3), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(1)) if len(re.sub(r"\D", "", m.group(1))) >= 9
                      else m.group(1), text)


class MaskingFilter(logging.Filter):
    """Last line of defence: masks numbers in every log record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
