"""A background loop that drains work from the database, woken when new work is committed."""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class Worker:
    """Runs ``run_once`` until it finds nothing to do, then sleeps until woken or idle time passes."""

    name = "worker"

    def __init__(self, wakeup: asyncio.Event | None = None) -> None:
        self.wakeup = wakeup or asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self.wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def run_once(self) -> int:
        """Do the work there is; return how much was done (0: go idle)."""
        raise NotImplementedError

    async def idle_seconds(self) -> float:
        return 30.0

    async def _run(self) -> None:
        while True:
            self.wakeup.clear()
            try:
                done = await self.run_once()
            except Exception:
                log.exception("%s: round failed; retrying shortly", self.name)
                await asyncio.sleep(1)
                continue
            if not done:
                timeout = await self.idle_seconds()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), timeout)
                except TimeoutError:
                    pass
