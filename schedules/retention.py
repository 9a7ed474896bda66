"""The daily retention job ([retention] enabled, days, time): APScheduler fires it at
``time`` in the office's timezone; the purge itself (bridge/retention.py) reads the
injected clock, so what it removes depends on the bridge's time, not the scheduler's.
A purge is idempotent (a purged case is marked), so a run twice a day, or two bridges,
remove nothing twice."""
from __future__ import annotations

from pathlib import Path

from bridge.clock import Clock
from bridge.retention import Purged, purge
from bridge.store import Store


class RetentionJob:
    def __init__(self, store: Store, media_dir: Path, days: int, clock: Clock) -> None:
        self.store = store
        self.media_dir = media_dir
        self.days = days
        self.clock = clock

    async def run(self) -> Purged:
        """Purge the cases closed more than ``days`` days ago (by the bridge's clock)."""
        return await purge(self.store, self.media_dir, days=self.days, now=self.clock())
