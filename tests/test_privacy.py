"""NIK and phone numbers never reach the logs whole."""
from __future__ import annotations

import logging

from bridge.privacy import MaskingFilter, mask_nik, mask_phone, mask_text


def test_masks() -> None:
    assert mask_nik("3402124501900003") == "340212******0003"
    assert mask_phone("6281234567890") == "62812*****890"
    text = mask_text("NIK 3402124501900003, hubungi 0812-3456-7890 atau +62 812 3456 7890")
    assert "3402124501900003" not in text and "3456-7890" not in text and "3456 7890" not in text
    assert "340212******0003" in text


def test_log_records_are_masked(caplog) -> None:
    log = logging.getLogger("test.privacy")
    log.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO):
        log.info("warga %s NIK %s", "6281234567890", "3402124501900003")
    (record,) = caplog.records
    assert "6281234567890" not in record.getMessage() and "3402124501900003" not in record.getMessage()
