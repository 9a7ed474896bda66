"""NIK and phone numbers never reach the logs whole."""
from __future__ import annotations

import io
import json
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


# -- what must stay readable: ticket and agenda numbers, message ids ---------------------------
PHONES = ["6281234567890", "081234567890", "+62 812-3456-7890", "0812-3456-7890", "0812 3456 7890",
          "+6281234567890", "0812.3456.7890", "628123456789012"]


def test_ticket_and_agenda_numbers_stay_whole_while_phones_and_niks_are_masked() -> None:
    for ticket in ("ADU-2026-000001", "ADU-2026-123456", "ADU-2062-081234"):
        assert mask_text(f"intake: {ticket} opened") == f"intake: {ticket} opened"
        assert mask_text(f"{ticket}: paraf") == f"{ticket}: paraf"
    agenda = "470/12/416-314/2026"
    assert mask_text(f"paraf ADU-2026-000001 nomor agenda {agenda}") == \
        f"paraf ADU-2026-000001 nomor agenda {agenda}"
    # A ticket right beside a phone number or a NIK: each keeps its own fate.
    text = mask_text("ADU-2026-000001 0812 3456 7890 ADU-2026-000002 3402124501900003 ADU-2026-000003")
    assert text == "ADU-2026-000001 08123****890 ADU-2026-000002 340212******0003 ADU-2026-000003"
    for phone in PHONES:
        digits = "".join(c for c in phone if c.isdigit())
        masked = mask_text(f"balas ke {phone}, tiket ADU-2026-000001")
        assert masked == f"balas ke {mask_phone(phone)}, tiket ADU-2026-000001", (phone, masked)
        assert digits not in masked and digits[5:-3] not in masked
    assert mask_text("NIK:3402124501900003.") == "NIK:340212******0003."
    for nik in ("3402 1245 0190 0003", "3402.1245.0190.0003", "340212-450190-0003", "34.02.12.450190.0003"):
        assert mask_text(f"NIK {nik}, tiket ADU-2026-000001") == "NIK 340212******0003, tiket ADU-2026-000001"
    assert mask_text("dari luar negeri +60 12-345 6789") == "dari luar negeri 60123***789"


def test_message_ids_and_short_numbers_do_not_break_masking() -> None:
    wamid = "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABIYFjNFQjA4MTIzNDU2Nzg5MDEyMzQ1AA=="
    assert mask_text(f"whatsapp: text {wamid[-12:]} from 62812*****890") == \
        f"whatsapp: text {wamid[-12:]} from 62812*****890"
    assert isinstance(mask_text(wamid), str)
    for harmless in ("Rp 100.000", "jam 08.00", "tanggal 01.02.2026", "loket 3", "port 8008", "0x7f3a2c1b9e40",
                     "due 2026-11-30 10:00:00", "ts 1764463895123", "Rp 1.250.000.000"):
        assert mask_text(harmless) == harmless


def test_log_records_keep_tickets_whole(caplog) -> None:
    log = logging.getLogger("test.privacy.tickets")
    log.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO):
        log.info("intake: %s opened for %s", "ADU-2026-000001", "6281234567890")
    assert caplog.records[0].getMessage() == "intake: ADU-2026-000001 opened for 62812*****890"


def test_a_record_whose_arguments_do_not_fit_is_still_logged_masked(caplog) -> None:
    log = logging.getLogger("test.privacy.badargs")
    log.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO):
        log.info("warga %s", "6281234567890", "3402124501900003")       # one argument too many
    message = caplog.records[0].getMessage()
    assert "62812*****890" in message and "340212******0003" in message and "3402124501900003" not in message


# -- tracebacks and stacks ---------------------------------------------------------------------
def _handler(formatter: logging.Formatter) -> tuple[logging.Handler, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(formatter)
    return handler, out


def _log_failure(log: logging.Logger) -> None:
    try:
        raise ValueError("bad 3402124501900003 from 6281234567890")
    except ValueError:
        log.exception("intake: case %s failed", 7)


def test_exception_text_is_masked() -> None:
    handler, out = _handler(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.privacy.exc")
    log.addHandler(handler)
    log.propagate = False
    try:
        _log_failure(log)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = out.getvalue()
    assert "Traceback (most recent call last)" in text and "intake: case 7 failed" in text
    assert "ValueError: bad 340212******0003 from 62812*****890" in text
    assert "3402124501900003" not in text and "6281234567890" not in text


def test_exception_text_rendered_by_an_earlier_handler_is_masked_too() -> None:
    """The formatter caches the traceback on the record (exc_text); a handler without the
    filter may have rendered it first."""
    plain_out = io.StringIO()
    plain = logging.StreamHandler(plain_out)
    masking, out = _handler(logging.Formatter("%(message)s"))
    child, parent = logging.getLogger("test.privacy.cached.child"), logging.getLogger("test.privacy.cached")
    child.addHandler(plain)
    parent.addHandler(masking)
    parent.propagate = False
    try:
        _log_failure(child)
    finally:
        child.removeHandler(plain)
        parent.removeHandler(masking)
        parent.propagate = True
    assert "3402124501900003" in plain_out.getvalue()        # the unfiltered handler, as configured
    assert "ValueError: bad 340212******0003" in out.getvalue() and "3402124501900003" not in out.getvalue()


def _deep(log: logging.Logger, nik: str) -> None:
    log.warning("cek data", stack_info=True)


def test_stack_info_is_masked() -> None:
    handler, out = _handler(logging.Formatter("%(message)s"))
    log = logging.getLogger("test.privacy.stack")
    log.addHandler(handler)
    log.propagate = False
    try:
        _deep(log, "3402124501900003")       # this line, with the NIK, is part of the stack
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = out.getvalue()
    assert "Stack (most recent call last)" in text and '_deep(log, "340212******0003")' in text
    assert "3402124501900003" not in text


# -- main.py's handlers: text and JSON ---------------------------------------------------------
def _through_main_handler(fmt: str, capsys) -> str:
    from main import setup_logging
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging(fmt)
    try:
        _log_failure(logging.getLogger("bridge.test"))
    finally:
        # Back to pytest's own handlers: ours writes to capsys' stream, closed after this test.
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    return capsys.readouterr().err


def test_main_text_log_masks_the_traceback(capsys) -> None:
    text = _through_main_handler("text", capsys)
    assert "intake: case 7 failed" in text and "Traceback (most recent call last)" in text
    assert "ValueError: bad 340212******0003 from 62812*****890" in text
    assert "3402124501900003" not in text and "6281234567890" not in text


def test_main_json_log_keeps_the_masked_traceback(capsys) -> None:
    lines = _through_main_handler("json", capsys).strip().splitlines()
    assert len(lines) == 1                    # one record, one line: the traceback is inside the JSON
    record = json.loads(lines[0])
    assert record["level"] == "ERROR" and record["message"] == "intake: case 7 failed"
    tb = record["exc_info"]
    assert tb.startswith("Traceback (most recent call last)") and "_log_failure" in tb
    assert tb.rstrip().endswith("ValueError: bad 340212******0003 from 62812*****890")
    assert "3402124501900003" not in lines[0] and "6281234567890" not in lines[0]


def test_main_json_log_keeps_the_masked_stack(capsys) -> None:
    from main import setup_logging
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("json")
    try:
        _deep(logging.getLogger("bridge.test"), "3402124501900003")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = capsys.readouterr().err.strip().splitlines()
    stack = json.loads(line)["stack_info"]
    assert stack.startswith("Stack (most recent call last)") and '_deep(logging.getLogger("bridge.test"), ' \
        '"340212******0003")' in stack and "3402124501900003" not in line


def test_json_formatter_masks_even_without_the_filter() -> None:
    from main import JsonFormatter
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.privacy.nofilter")
    log.addHandler(handler)
    log.propagate = False
    try:
        _log_failure(log)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    record = json.loads(out.getvalue())
    assert "ValueError: bad 340212******0003 from 62812*****890" in record["exc_info"]
    assert "3402124501900003" not in out.getvalue() and "6281234567890" not in out.getvalue()
