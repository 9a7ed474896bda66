"""The bridge assembled: store, case service, channels, Matrix, outbox, web server.

``Bridge`` is what main.py runs and what the tests start in-process, so both exercise
the same wiring. Start-up order makes each part ready before anything can reach it;
shutdown runs in reverse and waits for every task it started.
"""
from __future__ import annotations

import gc
import logging
from typing import Any

from aiohttp import web

from bridge import messages as msgs
from bridge.cases import Cases, Unit
from bridge.channels import registry
from bridge.channels.base import Channel
from bridge.clock import Clock, system_clock
from bridge.config import ConfigError, Settings
from bridge.conversation import Conversation
from bridge.effects import Effects
from bridge.intake import Intake
from bridge.lease import Lease
from bridge.matrix import MatrixBot
from bridge.metrics import Metrics
from bridge.outbox import CHANNEL_TEXT, MATRIX_NOTICE, Dispatcher, Outbox
from bridge.staff import Desk
from bridge.store import Row, Store
from bridge.texts import Texts, TextsError
from bridge.web import HttpServer, make_app
from schedules import Schedules
from schedules.digest import DailyDigest
from schedules.retention import RetentionJob
from schedules.sla import SlaCheck

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, settings: Settings, *, clock: Clock = system_clock,
                 extra_routes: list[web.RouteDef] = ()) -> None:
        self.settings = settings
        self.clock = clock
        self.extra_routes = list(extra_routes)      # the demo's citizen simulator
        self.profile = settings.sop
        msgs.set_display_timezone(settings.sla.calendar.tz.key)
        try:
            self.texts = Texts.load(override=settings.citizen.texts)
        except TextsError as e:
            raise ConfigError(str(e)) from None
        self.channels: dict[str, Channel] = {
            cls.name: cls.from_settings(settings.channels[cls.name])
            for cls in registry.channels() if cls.name in settings.channels and settings.channels[cls.name].enabled}
        self.store: Store | None = None
        self.matrix: MatrixBot | None = None
        self.http: HttpServer | None = None
        self._started: list[Any] = []

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        self.store = store = await Store.open(s.database_url)
        self._started.append(store)
        self.outbox = Outbox(self.clock)
        self.cases = Cases(self.profile, self.outbox, self.clock, s.sla.policy,
                           units=tuple(Unit(u.name, u.categories) for u in s.units), texts=self.texts)
        self.conversation = Conversation(self.cases, self.outbox, self.clock, self.texts, s.citizen,
                                         msgs.office_hours(s.sla.calendar.hours))
        self.cases.on_answered = self.conversation.ask_rating
        self.intake = Intake(store, self.cases, self.outbox, self.clock, self.conversation)

        self.matrix = MatrixBot(s, store, self.clock)
        self._started.append(self.matrix)
        self.desk = Desk(store, self.cases, self.outbox, self.matrix, s.staff, self.clock)
        await self.matrix.start()

        self.dispatcher = Dispatcher(store, self.outbox, self.clock, on_dead=self._delivery_dead)
        self.matrix.on_recovered = self._matrix_back
        Effects(store, self.matrix, self.channels, self.clock, s.data_dir / "media",
                on_status=self.cases.delivery_moved, on_answer_taken=self.cases.answer_taken,
                earlier_card=self.cases.earlier_card, profile=self.profile,
                on_held=self.cases.message_held).register(self.dispatcher)
        for name, channel in self.channels.items():
            if channel.polls:                                   # one process at a time polls
                channel.lease = Lease(store, f"{name}-polling")
                await channel.lease.start()
                self._started.append(channel.lease)
            await channel.start(self.intake)
            self._started.append(channel)
        self.intake.start()
        self._started.append(self.intake)
        self.dispatcher.start()
        self._started.append(self.dispatcher)

        self.sla = SlaCheck(store, self.cases, self.outbox, s.staff, self.clock, self.matrix.rooms)
        self.digest = DailyDigest(store, self.profile, s.sla.calendar, self.outbox, self.clock)
        self.retention = (RetentionJob(store, s.data_dir / "media", s.retention.days, self.clock)
                          if s.retention.enabled else None)
        self.schedules = Schedules(s.sla.calendar.tz.key, s.sla.check_seconds, self.sla.run_once,
                                   s.sla.digest_time.hour, s.sla.digest_time.minute, self.digest.run,
                                   self.expire_conversations,
                                   retention=(s.retention.run_at, self.retention.run) if self.retention else None)
        await self.schedules.start()
        self._started.append(self.schedules)

        self.metrics = Metrics(self)
        routes = [self.metrics.timed(r) for ch in self.channels.values() for r in ch.routes()] + self.extra_routes
        self.http = HttpServer(make_app(routes, self.health, self.metrics), s.http.host, s.http.port)
        await self.http.start()
        self._started.append(self.http)
        log.info("bridge: running (SOP %s, channels: %s)", self.profile.name,
                 ", ".join(self.channels) or "none")

    @staticmethod
    def freeze_what_start_made() -> None:
        """Called once the bridge runs, by the process that runs it (main.py, the demo): what
        start-up made lives as long as the bridge, so the garbage collector need not look at
        it again. Its full collections then look only at what came after: 40 ms each, every
        few seconds under a flood of webhooks, before (bench/README.md)."""
        gc.collect()
        gc.freeze()

    async def expire_conversations(self) -> int:
        """End the conversations idle past [citizen] idle_hours (each in its own transaction)."""
        assert self.store is not None
        async with self.store.reading() as tx:
            expired = await tx.expired_conversations(self.clock())
        ended = 0
        for conv in expired:
            async with self.store.transaction() as tx:
                ended += await self.conversation.expire(tx, conv)
        if ended:
            self.outbox.wake()
        return ended

    async def _matrix_back(self) -> None:
        """The homeserver answers again: what waited for it goes now, not after its backoff."""
        assert self.store is not None
        async with self.store.transaction() as tx:
            waiting = await tx.outbox_due_now("matrix.", self.clock())
        if waiting:
            log.info("bridge: %d Matrix effects that waited for the homeserver go now", waiting)
            self.outbox.wake()

    async def stop(self) -> None:
        # Reverse order: stop taking webhooks first, close the database last.
        while self._started:
            part = self._started.pop()
            try:
                await part.stop() if not isinstance(part, Store) else await part.close()
            except Exception:
                log.exception("bridge: stopping %s failed", part.__class__.__name__)

    async def health(self) -> dict[str, Any]:
        """What /healthz says: ok only when the database, Matrix and every channel work."""
        assert self.store is not None and self.matrix is not None
        try:
            async with self.store.reading() as tx:
                backlog: dict[str, Any] = await tx.outbox_backlog()
                inbound: dict[str, Any] = {"failed": await tx.failed_inbound_count()}
            db_ok = True
        except Exception as e:          # a broken disk or database: say so, do not crash
            backlog, inbound, db_ok = {"error": str(e)}, {}, False
        matrix_ok = self.matrix.last_sync_ok or self.matrix.standby     # standby: another process syncs
        channels = {name: ch.health() for name, ch in self.channels.items()}
        ok = db_ok and matrix_ok and all(c.get("ok") for c in channels.values())
        return {"ok": ok, "database": {"ok": db_ok},
                "matrix": {"synced": self.matrix.last_sync_ok, "standby": self.matrix.standby},
                "channels": channels, "outbox": backlog, "inbound": inbound}

    async def _delivery_dead(self, row: Row, error: str) -> None:
        """Tell the admin room what could not be delivered, so a person can act."""
        if row["kind"] == MATRIX_NOTICE:
            return
        assert self.store is not None
        async with self.store.transaction() as tx:
            case = await tx.get_case(row["case_id"]) if row["case_id"] else None
            if case and row["kind"] == CHANNEL_TEXT:
                purpose = row["payload"].get("purpose") or "notice"
                if purpose == "answer":
                    await self.cases.answer_failed(tx, case, error)
                else:                   # shown in the case's thread (a question's wait ends)
                    await self.cases.message_failed(tx, case, purpose, error)
            what = {"channel.text": "pesan ke pemohon", "matrix.attachment": "lampiran"}.get(
                row["kind"], row["kind"])
            await self.outbox.notice(tx, "admin", msgs.delivery_failed(
                case["ticket"] if case else "-", what, error).notice())
        self.outbox.wake()
