"""End-to-end test harness: the bridge in-process against a real Synapse and the fake Graph API.

Staff are real Matrix users driven by their own nio clients, as Element would drive them.
Every wait is on a real event (a Matrix event arriving, a request reaching the fake),
never a fixed sleep.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import nio

from bridge.app import Bridge
from bridge.config import ROLES, Settings, from_dict
from bridge.homeserver import LocalSynapse
from bridge.simulator.graph import FakeGraph

BOT = "pengaduan"
PASSWORD = "test-password-123"
STAFF = {"admin": "staff_admin", "kasi": "staff_kasi", "kabid": "staff_kabid", "pimpinan": "staff_pimpinan"}
TELEGRAM_SECRET = "tg-webhook-secret_1"
_test_ids = itertools.count(1)
# nio retries timeouts forever by default: a test must fail, not hang, when a server is gone.
BOUNDED = nio.AsyncClientConfig(max_timeouts=3, max_limit_exceeded=3, request_timeout=30)


def register_users(synapse: LocalSynapse) -> None:
    for localpart in (BOT, *STAFF.values()):
        synapse.register(localpart, PASSWORD)


def user_id(synapse: LocalSynapse, localpart: str) -> str:
    return f"@{localpart}:{synapse.server_name}"


def bridge_settings(synapse: LocalSynapse, graph: FakeGraph, data_dir: Path, *, prefix: str,
                    overrides: dict[str, Any] | None = None, botapi: Any = None,
                    extra_env: dict[str, str] | None = None, database_url: str | None = None) -> Settings:
    """Settings built through the real config reader, with rooms unique to one test;
    ``botapi`` (a FakeBotApi): Telegram is enabled too, polling it; ``database_url``: that
    PostgreSQL database (media/ in ``data_dir``), else a SQLite file in ``data_dir``."""
    server = synapse.server_name
    data: dict[str, Any] = {
        "matrix": {"homeserver": synapse.url, "user_id": user_id(synapse, BOT)},
        "rooms": {**{role: f"#{prefix}-{role}:{server}" for role in ROLES}, "create": True},
        "staff": {role: [user_id(synapse, lp)] for role, lp in STAFF.items()},
        "whatsapp": {"enabled": True, "graph_url": graph.url, "api_version": graph.api_version,
                     "phone_number_id": graph.phone_number_id},
        "http": {"host": "127.0.0.1", "port": 0},
        "database": ({"url": database_url, "data_dir": str(data_dir)} if database_url
                     else {"path": str(data_dir / "pengaduan.db")}),
        "sop": {"profile": "mojokerto"},
    }
    if botapi is not None:
        data["telegram"] = {"enabled": True, "api_url": botapi.url, "poll_timeout": 5}
    for table, values in (overrides or {}).items():
        if isinstance(values, dict):
            data.setdefault(table, {}).update(values)
        else:
            data[table] = values
    env = {"MATRIX_PASSWORD": PASSWORD, "WHATSAPP_TOKEN": graph.token,
           "WHATSAPP_APP_SECRET": graph.app_secret, "WHATSAPP_VERIFY_TOKEN": "verify-me",
           **({"TELEGRAM_BOT_TOKEN": botapi.token, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET} if botapi else {}),
           **(extra_env or {})}
    return from_dict(data, env, base_dir=data_dir)


@dataclass
class Seen:
    room_id: str
    event: Any


class StaffClient:
    """A staff member in Element: a real nio client that syncs and remembers what it saw."""

    def __init__(self, synapse: LocalSynapse, localpart: str) -> None:
        self.user_id = user_id(synapse, localpart)
        self.client = nio.AsyncClient(synapse.url, self.user_id, config=BOUNDED)
        self.password = PASSWORD
        self.seen: list[Seen] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        resp = await self.client.login(self.password)
        assert isinstance(resp, nio.LoginResponse), resp
        self.client.add_event_callback(self._on_event, nio.Event)
        first = await self.client.sync(timeout=0)
        assert isinstance(first, nio.SyncResponse), first
        self._task = asyncio.create_task(self._sync_forever())

    async def _sync_forever(self) -> None:
        while True:
            try:
                # A timeline long enough that a burst (hundreds of cards) arrives whole, not as a gap.
                resp = await self.client.sync(timeout=5000, since=self.client.next_batch,
                                              sync_filter={"room": {"timeline": {"limit": 1000}}})
            except Exception:          # the homeserver is down (a fault test): retry, as Element does
                resp = None
            if not isinstance(resp, nio.SyncResponse):
                await asyncio.sleep(1)

    async def _on_event(self, room: nio.MatrixRoom, event: Any) -> None:
        async with self._changed:
            self.seen.append(Seen(room.room_id, event))
            self._changed.notify_all()

    async def join(self, room_id: str) -> None:
        resp = await self.client.join(room_id)
        assert isinstance(resp, nio.JoinResponse), resp

    async def wait_for(self, predicate: Callable[[Seen], bool], timeout: float = 30,
                       what: str = "event") -> Seen:
        async def find() -> Seen:
            async with self._changed:
                while True:
                    for s in self.seen:
                        if predicate(s):
                            return s
                    await self._changed.wait()
        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            bodies = [getattr(s.event, "body", type(s.event).__name__) for s in self.seen][-10:]
            raise AssertionError(f"{self.user_id} never saw {what}; last seen: {bodies}") from None

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        resp = await self.client.room_send(room_id, "m.reaction", content)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return resp.event_id

    async def say(self, room_id: str, body: str, *, thread: str | None = None) -> str:
        """A message as Element sends it; in a thread when ``thread`` names the root."""
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if thread:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread, "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": thread}}
        resp = await self.client.room_send(room_id, "m.room.message", content)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return resp.event_id

    async def redact(self, room_id: str, event_id: str) -> None:
        resp = await self.client.room_redact(room_id, event_id)
        assert isinstance(resp, nio.RoomRedactResponse), resp

    def messages(self, room_id: str) -> list[Any]:
        return [s.event for s in self.seen if s.room_id == room_id
                and isinstance(s.event, (nio.RoomMessageText, nio.RoomMessageNotice, nio.RoomMessageMedia))]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.client.close()


def relates_to(event: Any) -> dict[str, Any]:
    return event.source.get("content", {}).get("m.relates_to", {})


def in_thread_of(root_event_id: str) -> Callable[[Any], bool]:
    def match(event: Any) -> bool:
        rel = relates_to(event)
        return rel.get("rel_type") == "m.thread" and rel.get("event_id") == root_event_id
    return match


@dataclass
class Env:
    """One test's world: a bridge, the fake Graph API, and the admin staff member."""

    synapse: LocalSynapse
    graph: FakeGraph
    data_dir: Path
    prefix: str
    settings: Settings
    bridge: Bridge | None = None
    admin: StaffClient | None = None
    staff: dict[str, StaffClient] = field(default_factory=dict)
    clock: Any = None                  # a FakeClock, or None for the system clock
    tg: Any = None                     # the fake Bot API, when Telegram is enabled

    @property
    def webhook_url(self) -> str:
        assert self.bridge and self.bridge.http
        return f"{self.bridge.http.url}/webhooks/whatsapp"

    async def start_bridge(self) -> Bridge:
        self.bridge = Bridge(self.settings, **({"clock": self.clock} if self.clock else {}))
        await self.bridge.start()
        return self.bridge

    async def stop_bridge(self) -> None:
        if self.bridge:
            await self.bridge.stop()
            self.bridge = None

    async def restart_bridge(self) -> Bridge:
        await self.stop_bridge()
        return await self.start_bridge()

    async def staff_member(self, role: str, *also: str) -> StaffClient:
        """The staff member of ``role``, logged in and joined to the role's room
        (and to the rooms keyed ``also``, e.g. a unit's room 'kasi:capil')."""
        assert self.bridge and self.bridge.matrix
        if role not in self.staff:
            client = StaffClient(self.synapse, STAFF[role])
            await client.start()
            await client.join(self.bridge.matrix.rooms[role])
            self.staff[role] = client
        for key in also:
            await self.staff[role].join(self.bridge.matrix.rooms[key])
        return self.staff[role]

    async def send(self, payload: dict[str, Any], **kw: Any) -> tuple[int, str]:
        return await self.graph.post_webhook(self.webhook_url, payload, **kw)

    async def close(self) -> None:
        for client in self.staff.values():
            await client.stop()
        await self.stop_bridge()


def new_prefix() -> str:
    return f"t{next(_test_ids)}"


async def until(condition: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Wait for a state the bridge reaches on its own (checked every 50 ms), up to ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class FakeClock:
    """An injected clock: tests move time by hand, so whole days pass in milliseconds."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class LoopTicks:
    """Counts the event loop's turns (one each 10 ms) while it is entered: a wait that
    ticks meanwhile was off the loop (a thread's), not on it."""

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.count += 1

    async def __aenter__(self) -> "LoopTicks":
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
