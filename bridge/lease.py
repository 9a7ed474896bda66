"""Work that one bridge process at a time does, when several share a PostgreSQL database.

Every process serves webhooks, processes inbound messages and delivers the outbox (each row
claimed: bridge/store.py ``Tx.claim``, ``Store.try_lock``). But one Matrix sync and one
Telegram ``getUpdates`` loop must run, not one per process: two syncs would act on each
staff event twice (``handled_events`` catches that, at the cost of a race for every
event), and Telegram answers a second ``getUpdates`` with 409 Conflict.

A ``Lease`` is a row of the ``leases`` table (schema 10): its holder renews it every
``seconds / 3`` while its loop runs, and another process takes it once it has expired, so
a holder that died (or whose event loop stopped) is replaced within ``seconds``; a clean
stop lets go at once. On SQLite there is one process: the lease is always held and never
written.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import datetime, timezone
from typing import Callable

from bridge.store import Store

log = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
# This process, as a lease's holder: readable in the table (host and pid), unique with the suffix.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    def __init__(self, store: Store, name: str, *, seconds: float = LEASE_SECONDS, holder: str = HOLDER,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        # Real time (not an injected clock): the processes sharing the lease share it too.
        self.store, self.name, self.seconds, self.holder, self.clock = store, name, seconds, holder, clock
        self.held = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if not store.shared:
            self.held.set()

    async def start(self) -> None:
        """Try to take it now, then keep trying (or renewing) in the background."""
        if self.store.shared and self._task is None:
            await self._renew()
            self._task = asyncio.create_task(self._keep(), name=f"lease-{self.name}")

    async def wait(self) -> None:
        """Until this process holds it."""
        await self.held.wait()

    async def _renew(self) -> None:
        try:
            async with self.store.transaction() as tx:
                got = await tx.take_lease(self.name, self.holder, now=self.clock(), seconds=self.seconds)
        except Exception as e:          # the database: we cannot say we hold it
            log.warning("lease %s: could not renew: %r", self.name, e)
            got = False
        if got and not self.held.is_set():
            log.info("lease %s: held by this process (%s)", self.name, self.holder)
            self.held.set()
        elif not got and self.held.is_set():
            log.warning("lease %s: lost (another process holds it now)", self.name)
            self.held.clear()

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            await self._renew()

    async def stop(self) -> None:
        """Let go at once, so that another process takes over without waiting for the expiry."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            if self.held.is_set():
                self.held.clear()
                try:
                    async with self.store.transaction() as tx:
                        await tx.release_lease(self.name, self.holder)
                except Exception as e:
                    log.warning("lease %s: could not let go (it expires by itself): %r", self.name, e)
