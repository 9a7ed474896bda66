"""Time in one place: an injectable clock and the one text form times are stored in."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def ts(dt: datetime) -> str:
    """Stored form: UTC, fixed width, so that text order is time order."""
    if dt.tzinfo is not timezone.utc:          # most are UTC already (every webhook's times)
        if dt.tzinfo is None:
            raise ValueError("naive datetime: the bridge stores aware times only")
        dt = dt.astimezone(timezone.utc)
    return dt.isoformat(timespec="microseconds")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)
