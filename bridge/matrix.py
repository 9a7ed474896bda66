"""The bot's Matrix side (matrix-nio): log in, the role rooms, sending, the sync loop.

It knows rooms, events and media, and nothing of citizens' channels or of cases: the
outbox handlers (bridge/effects.py) tell it what to post, and staff events reach the
handlers registered with ``on_event``.
"""
from __future__ import annotations

import asyncio
import io
import logging
from typing import Any, Awaitable, Callable

import nio

from bridge.clock import Clock
from bridge.config import ROLES, Settings
from bridge.errors import DeliveryError
from bridge.lease import Lease
from bridge.messages import ROLE_NAMES
from bridge.store import Store
from bridge.worker import cancel_and_wait

log = logging.getLogger(__name__)

# Errors a retry will not mend; anything else (rate limits, 5xx, timeouts) is transient.
_PERMANENT = {"M_FORBIDDEN", "M_BAD_JSON", "M_NOT_JSON", "M_INVALID_PARAM", "M_TOO_LARGE",
              "M_UNRECOGNIZED"}
SYNC_TIMEOUT_MS = 30_000
TIMELINE_LIMIT = 100       # events per room in one sync; more than that is a gap, fetched back
GAP_PAGES = 50             # at most this many /messages pages to close one gap


class MatrixStartupError(Exception):
    """The bot cannot work with this homeserver or these rooms; one line for the operator."""


# A sync that fails is tried again after 1, 2, 4... seconds, at most this long: a homeserver
# that comes back is noticed within it (and then every waiting Matrix effect goes at once).
SYNC_RETRY_MAX = 15.0

EventHandler = Callable[[nio.MatrixRoom, Any], Awaitable[None]]


class MatrixBot:
    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        cfg = nio.AsyncClientConfig(store_sync_tokens=False, encryption_enabled=False,
                                    max_limit_exceeded=2, max_timeouts=2, request_timeout=60)
        self.client = nio.AsyncClient(settings.matrix.homeserver, settings.matrix.user_id, config=cfg)
        self.rooms: dict[str, str] = {}          # room key ('admin', ...) -> room id
        self.synced = asyncio.Event()
        self.last_sync_ok = False
        self._sync_task: asyncio.Task[None] | None = None
        self.since_at_start: str | None = None     # the stored sync token a start resumed from
        self._handlers: list[tuple[type, EventHandler]] = []
        self.timeline_limit = TIMELINE_LIMIT
        self.sync_lease = Lease(store, "matrix-sync")
        # Called when a sync succeeds after failing: the homeserver is back.
        self.on_recovered: Callable[[], Awaitable[None]] | None = None

    @property
    def user_id(self) -> str:
        return self.client.user_id

    # -- start -----------------------------------------------------------------------
    async def start(self) -> None:
        await self.login()
        for key, role, ref, unit in self.room_refs():
            self.rooms[key] = await self._open_room(role, ref, unit)
        async with self.store.transaction() as tx:
            for role, room_id in self.rooms.items():
                await tx.set_state(f"room:{role}", room_id)
            self.since_at_start = await tx.get_state("sync_token")
        # One process syncs (several may share a PostgreSQL database: bridge/lease.py); the
        # others stand by and take over when it stops or dies.
        await self.sync_lease.start()
        self._sync_task = asyncio.create_task(self._sync_loop(self.since_at_start), name="matrix-sync")
        if self.sync_lease.held.is_set():
            # Ready means synced once: staff events from here on reach the handlers.
            await asyncio.wait_for(self.synced.wait(), 120)
        else:
            log.info("matrix: another bridge process syncs; this one stands by")

    @property
    def standby(self) -> bool:
        """Another process holds the sync: staff events reach its handlers, not ours."""
        return not self.sync_lease.held.is_set()

    def room_refs(self) -> list[tuple[str, str, str, str | None]]:
        """Every configured room as (key, role, alias or id, unit): the roles', then the units'."""
        refs: list[tuple[str, str, str, str | None]] = [
            (role, role, self.settings.rooms.by_role[role], None) for role in ROLES]
        for unit in self.settings.units:
            refs += [(f"{role}:{unit.name}", role, ref, unit.name) for role, ref in unit.rooms.items()]
        return refs

    async def login(self) -> None:
        """Log in with MATRIX_ACCESS_TOKEN, the token kept in the database, or the password."""
        m = self.settings.matrix
        async with self.store.reading() as tx:
            saved_token = await tx.get_state("access_token")
            saved_device = await tx.get_state("device_id")
        token = m.access_token or saved_token
        if token:
            self.client.access_token = token
            who = await self.client.whoami()
            if isinstance(who, nio.WhoamiResponse):
                if who.user_id != m.user_id:
                    raise MatrixStartupError(f"[matrix] user_id: the access token belongs to {who.user_id}")
                self.client.user_id = who.user_id
                self.client.device_id = who.device_id
                log.info("matrix: logged in as %s (device %s)", who.user_id, who.device_id)
                return
            if m.access_token:
                raise MatrixStartupError(f"environment: MATRIX_ACCESS_TOKEN refused by the homeserver ({who})")
        if not m.password:
            raise MatrixStartupError("environment: MATRIX_PASSWORD is needed (no valid access token)")
        # Reusing the device keeps transaction ids meaningful across restarts.
        if saved_device:
            self.client.device_id = saved_device
        resp = await self.client.login(m.password, device_name=m.device_name)
        if not isinstance(resp, nio.LoginResponse):
            raise MatrixStartupError(f"[matrix] login of {m.user_id} at {m.homeserver} failed: {resp}")
        async with self.store.transaction() as tx:
            await tx.set_state("access_token", resp.access_token)
            await tx.set_state("device_id", resp.device_id)
        log.info("matrix: logged in as %s with a new session (device %s)", resp.user_id, resp.device_id)

    async def _open_room(self, role: str, ref: str, unit: str | None = None) -> str:
        room_id, _ = await self.resolve_room(role, ref, unit)
        await self.join_room(role, ref, room_id)
        return room_id

    async def resolve_room(self, role: str, ref: str, unit: str | None = None) -> tuple[str, bool]:
        """The room id of ``ref``, and whether it was created now (a missing alias, [rooms] create)."""
        if not ref.startswith("#"):
            return ref, False
        resolved = await self.client.room_resolve_alias(ref)
        if isinstance(resolved, nio.RoomResolveAliasResponse):
            return resolved.room_id, False
        if self.settings.rooms.create:
            return await self._create_room(role, ref, unit), True
        raise MatrixStartupError(
            f"[rooms] {role}: alias {ref} does not exist (set [rooms] create = true to create it)")

    async def join_room(self, role: str, ref: str, room_id: str) -> None:
        """Join (a no-op when joined already), refusing an encrypted room."""
        joined = await self.client.join(room_id)
        if not isinstance(joined, nio.JoinResponse):
            raise MatrixStartupError(f"[rooms] {role}: the bot cannot join {ref}: {joined}")
        enc = await self.client.room_get_state_event(room_id, "m.room.encryption")
        if isinstance(enc, nio.RoomGetStateEventResponse) and enc.content:
            raise MatrixStartupError(
                f"[rooms] {role}: {ref} is encrypted; the bot reads only unencrypted rooms")
        log.info("matrix: room %s is %s", role, room_id)

    async def _create_room(self, role: str, alias: str, unit: str | None) -> str:
        localpart, _, server = alias[1:].partition(":")
        if server != self.client.user_id.partition(":")[2]:
            raise MatrixStartupError(f"[rooms] {role}: cannot create {alias} on another server")
        resp = await self.client.room_create(
            alias=localpart, name=f"Pengaduan · {ROLE_NAMES[role]}" + (f" · {unit}" if unit else ""),
            topic="Kasus pengaduan masyarakat (dikelola bot pengaduan)",
            preset=nio.RoomPreset.private_chat, invite=list(self.settings.staff[role]))
        if not isinstance(resp, nio.RoomCreateResponse):
            raise MatrixStartupError(f"[rooms] {role}: creating {alias} failed: {resp}")
        log.info("matrix: created %s for %s", alias, role)
        return resp.room_id

    # -- sync ------------------------------------------------------------------------
    def on_event(self, event_type: type, handler: EventHandler) -> None:
        """Call ``handler(room, event)`` for each new event of that type from others."""
        self._handlers.append((event_type, handler))

    async def _dispatch(self, resp: nio.SyncResponse, since: str) -> None:
        """Hand each new timeline event to its handlers, in order.

        A room whose timeline is ``limited`` left events out (the bot was away long):
        they are fetched back to ``since`` first, so no staff action is lost. A reaction
        redacted within the same batch is never acted on: its removal came before the bot
        could act. (One already acted on stays done: redactions of reactions are not
        handled.)
        """
        for room_id, info in resp.rooms.join.items():
            room = self.client.rooms.get(room_id) or nio.MatrixRoom(room_id, self.client.user_id)
            events = list(info.timeline.events)
            if info.timeline.limited and info.timeline.prev_batch:
                events = await self._gap(room_id, info.timeline.prev_batch, since) + events
            redacted = {e.redacts for e in events if isinstance(e, nio.RedactionEvent)}
            for event in events:
                if event.sender == self.client.user_id or event.event_id in redacted:
                    continue
                for event_type, handler in self._handlers:
                    if isinstance(event, event_type):
                        try:
                            await handler(room, event)
                        except Exception:
                            log.exception("matrix: handling %s failed", event.event_id)

    async def _invites(self, resp: nio.SyncResponse) -> None:
        """The bot works only in the rooms of config.toml: an invite to any other room, from
        anyone, is declined; one to a configured room (say, after a kick) is taken."""
        for room_id, info in resp.rooms.invite.items():
            inviter = next((e.sender for e in info.invite_state
                            if isinstance(e, nio.InviteMemberEvent) and e.state_key == self.user_id), "?")
            try:
                if room_id in self.rooms.values():
                    await self.client.join(room_id)
                    log.info("matrix: invited back to %s by %s: joined", room_id, inviter)
                else:
                    await self.client.room_leave(room_id)
                    log.warning("matrix: invite to %s from %s declined: not a room of config.toml", room_id, inviter)
            except (asyncio.TimeoutError, OSError) as e:    # tried again with the next sync
                log.warning("matrix: the invite to %s not answered yet: %s", room_id, e)

    async def _gap(self, room_id: str, prev_batch: str, since: str) -> list[Any]:
        """The events between the stored token and a limited sync's timeline, oldest first."""
        gap: list[Any] = []
        start: str | None = prev_batch
        for _ in range(GAP_PAGES):
            resp = await self.client.room_messages(room_id, start=start, end=since,
                                                   direction=nio.MessageDirection.back, limit=100)
            if not isinstance(resp, nio.RoomMessagesResponse):
                log.error("matrix: the gap in %s could not be fetched (%s): staff events in it are not "
                          "processed", room_id, resp)
                break
            gap.extend(resp.chunk)
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        else:
            log.error("matrix: the gap in %s is longer than %d pages: its oldest events are not processed",
                      room_id, GAP_PAGES)
        log.info("matrix: sync gap in %s: %d events fetched back", room_id, len(gap))
        return list(reversed(gap))

    async def _sync_loop(self, since: str | None) -> None:
        delay = 1.0
        wait_ms = 0          # the first sync returns at once: start-up waits for it
        while True:
            if not self.sync_lease.held.is_set():
                await self.sync_lease.wait()
                async with self.store.reading() as tx:     # where the process before us stopped
                    since = await tx.get_state("sync_token")
                log.info("matrix: this process syncs now")
            try:
                resp = await self.client.sync(timeout=wait_ms, since=since,
                                              sync_filter={"room": {"timeline": {"limit": self.timeline_limit}}})
            except Exception as e:  # network trouble: retry with backoff
                resp = e
            if not self.sync_lease.held.is_set():
                continue              # lost while it waited: the holder now acts on these events
            if isinstance(resp, nio.SyncResponse):
                await self._invites(resp)
                # The very first sync of a new bridge is history: nothing in it is for us.
                if since is not None:
                    await self._dispatch(resp, since)
                since = resp.next_batch
                async with self.store.transaction() as tx:
                    await tx.set_state("sync_token", since)
                recovered = self.synced.is_set() and not self.last_sync_ok
                self.last_sync_ok = True
                self.synced.set()
                delay, wait_ms = 1.0, SYNC_TIMEOUT_MS
                if recovered:
                    log.warning("matrix: the homeserver answers again")
                    if self.on_recovered is not None:
                        await self.on_recovered()
                continue
            self.last_sync_ok = False
            log.warning("matrix: sync failed, retry in %.0fs: %s", delay, resp)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SYNC_RETRY_MAX)

    # -- sending ---------------------------------------------------------------------
    def room_id(self, room_key: str) -> str:
        try:
            return self.rooms[room_key]
        except KeyError:
            raise DeliveryError(f"no room for {room_key!r}", transient=False) from None

    async def send(self, room_key: str, content: dict[str, Any], txn_id: str,
                   event_type: str = "m.room.message") -> str:
        """Send an event; the same ``txn_id`` again returns the first event, not a copy."""
        try:
            resp = await self.client.room_send(self.room_id(room_key), event_type, content, tx_id=txn_id)
        except (asyncio.TimeoutError, OSError) as e:
            raise DeliveryError(f"matrix: {e.__class__.__name__}: {e}", transient=True) from e
        if isinstance(resp, nio.RoomSendResponse):
            return resp.event_id
        raise _error("send", resp)

    async def redact(self, room_key: str, event_id: str, txn_id: str, reason: str | None = None) -> None:
        try:
            resp = await self.client.room_redact(self.room_id(room_key), event_id, reason=reason, tx_id=txn_id)
        except (asyncio.TimeoutError, OSError) as e:
            raise DeliveryError(f"matrix: {e.__class__.__name__}: {e}", transient=True) from e
        if not isinstance(resp, nio.RoomRedactResponse):
            raise _error("redact", resp)

    async def event_content(self, room_id: str, event_id: str) -> tuple[str, dict[str, Any]] | None:
        """The sender and content of one event, or None when it cannot be read."""
        try:
            resp = await self.client.room_get_event(room_id, event_id)
        except (asyncio.TimeoutError, OSError):
            return None
        if not isinstance(resp, nio.RoomGetEventResponse):
            return None
        return resp.event.sender, resp.event.source.get("content", {})

    def room_key(self, room_id: str) -> str | None:
        """The role (or unit) key of one of our rooms."""
        return next((k for k, v in self.rooms.items() if v == room_id), None)

    async def upload(self, data: bytes, mime_type: str, filename: str) -> str:
        try:
            resp, _ = await self.client.upload(io.BytesIO(data), content_type=mime_type,
                                               filename=filename, filesize=len(data))
        except (asyncio.TimeoutError, OSError) as e:
            raise DeliveryError(f"matrix upload: {e}", transient=True) from e
        if isinstance(resp, nio.UploadResponse):
            return resp.content_uri
        raise _error("upload", resp)

    async def stop(self) -> None:
        await cancel_and_wait(self._sync_task)
        self._sync_task = None
        await self.sync_lease.stop()
        await self.client.close()


def _error(what: str, resp: Any) -> DeliveryError:
    code = getattr(resp, "status_code", None)
    retry = getattr(resp, "retry_after_ms", None)
    return DeliveryError(f"matrix {what}: {resp}", transient=code not in _PERMANENT,
                         retry_after=retry / 1000 if retry else None)
