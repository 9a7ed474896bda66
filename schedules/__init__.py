"""APScheduler (3.x) triggers for the SLA check, the daily digest, idle conversations and
the retention purge.

The scheduler only triggers: the jobs read and write their state in the database, so
the in-memory job store is enough and a restart loses nothing (API-NOTES.md).
"""
from __future__ import annotations

import logging
from datetime import time
from typing import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)


class Schedules:
    def __init__(self, timezone: str, check_seconds: float, check: Callable[[], Awaitable[object]],
                 digest_hour: int, digest_minute: int, digest: Callable[[], Awaitable[object]],
                 expire: Callable[[], Awaitable[object]] | None = None,
                 retention: tuple[time, Callable[[], Awaitable[object]]] | None = None) -> None:
        self.scheduler = AsyncIOScheduler(timezone=timezone)
        self.scheduler.add_job(check, "interval", seconds=check_seconds, id="sla-check",
                               replace_existing=True, coalesce=True, max_instances=1)
        # Every day at digest_time; the job itself skips days off (holidays, cuti bersama).
        self.scheduler.add_job(digest, CronTrigger(hour=digest_hour, minute=digest_minute, timezone=timezone),
                               id="daily-digest", replace_existing=True, coalesce=True, max_instances=1)

        if expire is not None:
            # Idle citizen conversations end with a kind word (their state is in the database).
            self.scheduler.add_job(expire, "interval", seconds=60, id="conversations",
                                   replace_existing=True, coalesce=True, max_instances=1)

        if retention is not None:
            # [retention]: every day at its time (office time); a run that starts late (the
            # loop was busy) still runs within the hour. The purge is idempotent.
            at, purge = retention
            self.scheduler.add_job(purge, CronTrigger(hour=at.hour, minute=at.minute, timezone=timezone),
                                   id="retention", replace_existing=True, coalesce=True, max_instances=1,
                                   misfire_grace_time=3600)

    async def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
