"""Telegram Bot API adapter (our own small client over aiohttp).

Inbound, by long polling (``getUpdates``, the default: no public address needed) or by
webhook (``/webhooks/telegram``, the secret-token header checked in constant time).
Polling stores the next offset in the same transaction as the updates it got, so a
restart neither skips nor repeats one. Private chats only; a callback query (a tapped
button) is answered at once, after it is stored.

Outbound: ``sendMessage`` with an inline keyboard for choices, paced to about one
message a second per chat and 30 a second in all (``NotYet`` lets the outbox wait without
counting a failure); 429 waits ``retry_after``; 403 (the citizen blocked the bot) is
permanent. Files come through ``getFile`` (at most 20 MB). Telegram gives bots no
delivery receipts: what it accepted is delivered (``reports_delivery = False``).

Why not aiogram: we call six methods, the polling offset must be committed with our own
transaction (aiogram's dispatcher confirms updates itself), and its pins (aiohttp < 3.15,
pydantic) would tie the bridge's aiohttp to its release cadence. See ../shared/API-NOTES.md.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import aiohttp
import orjson
from aiohttp import web

from bridge.channels import base
from bridge.channels.base import Attachment, ChannelSettings, InboundMessage, Media, NotYet
from bridge.config import Section
from bridge.errors import DeliveryError

log = logging.getLogger(__name__)

NAME = "telegram"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64                 # bytes
MAX_DOWNLOAD = 20 * 1024 * 1024
REQUEST_TIMEOUT = 30.0                 # seconds for one Bot API call (a long poll: its timeout more)
PER_CHAT_SECONDS = 1.0                 # about one message a second per chat
OVERALL_PER_SECOND = 30
STALE_OFFSET = timedelta(days=6)       # Telegram may restart its update ids after a quiet week
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_OWN_ID = re.compile(r"^(-?\d+):(\d+)")    # our external ids: "<chat id>:<message id>[...]"


@dataclass(frozen=True)
class TelegramSettings(ChannelSettings):
    api_url: str = "https://api.telegram.org"
    mode: str = "polling"              # polling | webhook
    token: str = ""
    webhook_secret: str = ""
    webhook_url: str = ""              # webhook mode: the public https URL setup registers
    poll_timeout: int = 25             # seconds a getUpdates call waits for updates


def read_settings(section: Section) -> TelegramSettings:
    mode = section.get("mode", str, "polling")
    if mode not in ("polling", "webhook"):
        raise section.error(f"mode: must be \"polling\" or \"webhook\", not {mode!r}")
    webhook = section.enabled and mode == "webhook"
    timeout = section.get("poll_timeout", int, 25)
    if not 1 <= timeout <= 50:
        raise section.error("poll_timeout: must be 1 to 50 seconds")
    settings = TelegramSettings(
        enabled=section.enabled,
        api_url=section.url("api_url", "https://api.telegram.org").rstrip("/"),
        mode=mode, poll_timeout=timeout,
        token=section.secret("TELEGRAM_BOT_TOKEN"),
        webhook_secret=section.secret("TELEGRAM_WEBHOOK_SECRET") if webhook else "",
        webhook_url=section.url("webhook_url", "https://example.invalid") if webhook else "",
    )
    if webhook:
        if not settings.webhook_url.startswith("https://") or "example.invalid" in settings.webhook_url:
            raise section.error("webhook_url: webhook mode needs the public https:// address of "
                                "/webhooks/telegram (Telegram posts only to HTTPS)")
        if not _SECRET.match(settings.webhook_secret) and settings.webhook_secret != "(not set)":
            raise section.error("TELEGRAM_WEBHOOK_SECRET: 1-256 characters of A-Z, a-z, 0-9, _ and -")
    return settings


class BadUpdate(ValueError):
    """An update that does not have the documented shape."""


@dataclass(frozen=True)
class Parsed:
    message: InboundMessage | None     # None: not for us (a group chat, a bot, another kind)
    callback_id: str | None = None     # a callback query to answer


def _now() -> datetime:
    return datetime.now(timezone.utc)


def parse_update(update: Any) -> Parsed:
    """One Update as a normalized message. Raises BadUpdate for a wrong shape."""
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise BadUpdate("update without an integer update_id")
    if isinstance(update.get("message"), dict):
        return Parsed(_message(update["message"]))
    if isinstance(update.get("edited_message"), dict):
        return Parsed(_edited(update["edited_message"]))
    if isinstance(update.get("callback_query"), dict):
        return _callback(update["callback_query"])
    for key in ("message", "edited_message", "callback_query"):
        if key in update:
            raise BadUpdate(f"'{key}' is not an object")
    return Parsed(None)                # channel posts, member changes...: not ours


def _chat(m: dict[str, Any], *, from_people: bool = True) -> dict[str, Any] | None:
    chat, sender = m.get("chat"), m.get("from")
    if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
        raise BadUpdate("message without a chat id")
    if not isinstance(m.get("message_id"), int):
        raise BadUpdate("message without an integer message_id")
    if chat.get("type") != "private" or (from_people and isinstance(sender, dict) and sender.get("is_bot")):
        return None                    # complaints come in private chats, from people
    return chat


def _person(user: Any) -> dict[str, Any]:
    if not isinstance(user, dict):
        return {}
    name = " ".join(str(user[k]) for k in ("first_name", "last_name") if user.get(k)) or None
    return {"name": name, "username": user.get("username") or None,
            "user_id": str(user["id"]) if isinstance(user.get("id"), int) else None}


def _time(value: Any) -> datetime:
    if not isinstance(value, int):
        raise BadUpdate(f"date {value!r} is not a Unix time")
    return datetime.fromtimestamp(value, timezone.utc)


def _message(m: dict[str, Any]) -> InboundMessage | None:
    chat = _chat(m)
    if chat is None:
        return None
    chat_id = chat["id"]
    reply = m.get("reply_to_message")
    return InboundMessage(
        channel=NAME, external_id=f"{chat_id}:{m['message_id']}", address=str(chat_id), at=_time(m.get("date")),
        reply_to=f"{chat_id}:{reply['message_id']}" if isinstance(reply, dict) and "message_id" in reply else None,
        forwarded=bool(m.get("forward_origin") or m.get("forward_date")),
        group=str(m["media_group_id"]) if m.get("media_group_id") else None,
        raw=m, **_person(m.get("from")), **_body(m))


def _edited(m: dict[str, Any]) -> InboundMessage | None:
    chat = _chat(m)
    if chat is None:
        return None
    body = _body(m)
    return InboundMessage(
        channel=NAME, external_id=f"{chat['id']}:{m['message_id']}:edit:{m.get('edit_date', '')}",
        address=str(chat["id"]), at=_time(m.get("edit_date") or m.get("date")), kind=base.EDIT,
        text=body.get("text", ""), target_id=f"{chat['id']}:{m['message_id']}", raw=m, **_person(m.get("from")))


def _file(kind: str, obj: Any, mime: str, **extra: Any) -> Attachment:
    if not isinstance(obj, dict) or not obj.get("file_id"):
        raise BadUpdate(f"{kind} without a file_id")
    size = obj.get("file_size")
    return Attachment(kind=kind, ref=str(obj["file_id"]), mime_type=obj.get("mime_type") or mime,
                      filename=obj.get("file_name"), size=size if isinstance(size, int) else None, **extra)


def _body(m: dict[str, Any]) -> dict[str, Any]:
    caption = str(m.get("caption") or "")
    if "text" in m:
        return dict(kind=base.TEXT, text=str(m["text"]))
    if "photo" in m:
        sizes = m["photo"]
        if not isinstance(sizes, list) or not sizes:
            raise BadUpdate("photo is not a list of sizes")
        return dict(kind=base.MEDIA, text=caption, attachments=(_file("image", sizes[-1], "image/jpeg"),))
    for key, kind, mime, extra in (("document", "document", "application/octet-stream", {}),
                                   ("voice", "audio", "audio/ogg", {"voice": True}),
                                   ("audio", "audio", "audio/mpeg", {}),
                                   ("video", "video", "video/mp4", {}),
                                   ("video_note", "video", "video/mp4", {}),
                                   ("sticker", "sticker", "image/webp", {})):
        if key in m:
            return dict(kind=base.MEDIA, text=caption, attachments=(_file(kind, m[key], mime, **extra),))
    if isinstance(m.get("location"), dict):
        where = m["location"]
        venue = m.get("venue") if isinstance(m.get("venue"), dict) else {}
        place = ", ".join(str(venue[k]) for k in ("title", "address") if venue.get(k))
        return dict(kind=base.LOCATION, text=f"📍 {where.get('latitude')}, {where.get('longitude')}"
                    + (f" ({place})" if place else ""))
    if isinstance(m.get("contact"), dict):
        c = m["contact"]
        name = " ".join(str(c[k]) for k in ("first_name", "last_name") if c.get(k))
        return dict(kind=base.CONTACTS, text=f"👤 {name} {c.get('phone_number', '')}".strip())
    known = next((k for k in ("poll", "dice", "game", "animation", "story") if k in m), "unsupported")
    return dict(kind=base.UNSUPPORTED, text=known)


def _callback(q: dict[str, Any]) -> Parsed:
    if not q.get("id"):
        raise BadUpdate("callback_query without an id")
    message = q.get("message") if isinstance(q.get("message"), dict) else None
    chat = _chat(message, from_people=False) if message else None     # the bot's own message
    sender = _person(q.get("from"))
    if chat is None or not isinstance(q.get("data"), str):
        return Parsed(None, callback_id=str(q["id"]))       # answered, and nothing more
    data = q["data"]
    title = next((b.get("text") for row in ((message.get("reply_markup") or {}).get("inline_keyboard") or [])
                  for b in row if isinstance(b, dict) and b.get("callback_data") == data), None)
    msg = InboundMessage(
        channel=NAME, external_id=f"cb:{q['id']}", address=str(chat["id"]), at=_now(), kind=base.CHOICE,
        text=str(title or data), choice_id=data, reply_to=f"{chat['id']}:{message['message_id']}", raw=q, **sender)
    return Parsed(msg, callback_id=str(q["id"]))


class TelegramChannel(base.Channel):
    name = NAME
    title = "Telegram"
    secrets = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET")
    reports_delivery = False
    max_download_bytes = MAX_DOWNLOAD

    def __init__(self, *, api_url: str, token: str, mode: str = "polling", webhook_secret: str = "",
                 webhook_url: str = "", poll_timeout: int = 25, session: aiohttp.ClientSession | None = None,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.api_url = api_url.rstrip("/")
        self.mode = mode
        self.webhook_url = webhook_url
        self.poll_timeout = poll_timeout
        self.request_timeout = request_timeout
        self._token = token
        self._secret = webhook_secret
        self._session = session
        self._task: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[None]] = set()
        self.problem: str | None = None          # why receiving does not work now
        self.last_update_at: datetime | None = None
        self._last_to: dict[str, float] = {}     # chat -> when we last sent to it (monotonic)
        self._recent: deque[float] = deque(maxlen=OVERALL_PER_SECOND)

    # -- what the bridge knows of Telegram ---------------------------------------------
    @classmethod
    def read_settings(cls, section: Section) -> TelegramSettings:
        return read_settings(section)

    @classmethod
    def from_settings(cls, s: Any) -> "TelegramChannel":
        return cls(api_url=s.api_url, token=s.token, mode=s.mode, webhook_secret=s.webhook_secret,
                   webhook_url=s.webhook_url, poll_timeout=s.poll_timeout)

    @classmethod
    def needed_secrets(cls, settings: Any) -> tuple[str, ...]:
        return cls.secrets if settings.mode == "webhook" else cls.secrets[:1]

    @classmethod
    def show_address(cls, address: str, *, whole: bool) -> str:
        return ""                      # a chat id says nothing to staff: the name and @username do

    @classmethod
    def mask_address(cls, address: str) -> str:
        return "chat " + "*" * max(0, len(address) - 3) + address[-3:]

    @classmethod
    def operator_notes(cls, settings: Any, http_url: str) -> list[str]:
        if settings.mode != "webhook":
            return []
        return [f"webhook: {settings.webhook_url} must reach /webhooks/telegram on {http_url} "
                f"(HTTPS: a reverse proxy); setup registers it with Telegram"]

    @classmethod
    async def setup(cls, settings: Any) -> list[str]:
        """Webhook mode: register the webhook with its secret; polling: remove a webhook
        (Telegram refuses getUpdates while one is set). Changes nothing already right."""
        channel = cls.from_settings(settings)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as channel._session:
            info = await channel.call("getWebhookInfo", {})
            if settings.mode == "webhook":
                if info.get("url") == settings.webhook_url:
                    return []
                await channel.call("setWebhook", {"url": settings.webhook_url, "secret_token": settings.webhook_secret,
                                                  "allowed_updates": ALLOWED_UPDATES})
                return [f"telegram: webhook set to {settings.webhook_url}"]
            if info.get("url"):
                await channel.call("deleteWebhook", {})
                return [f"telegram: webhook {info['url']} removed (polling mode)"]
            return []

    @classmethod
    def demo(cls) -> base.DemoService:
        from bridge.simulator.telegram.demo import BotApiDemo
        return BotApiDemo()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def polls(self) -> bool:
        return self.mode == "polling"

    async def start(self, sink: base.InboundSink) -> None:
        await super().start(sink)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        if self.polls:
            self._task = asyncio.create_task(self._poll(), name="telegram-polling")

    async def stop(self) -> None:
        for task in [self._task, *self._callbacks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._callbacks] if t), return_exceptions=True)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def health(self) -> dict[str, Any]:
        return {"ok": self._session is not None and self.problem is None, "mode": self.mode,
                "problem": self.problem,
                "last_update_at": self.last_update_at.isoformat() if self.last_update_at else None}

    # -- receiving -------------------------------------------------------------------
    async def _poll(self) -> None:
        offset = await self._stored_offset()
        backoff = 1.0
        while True:
            try:
                if self.lease is not None and not self.lease.held.is_set():
                    # Another bridge process polls (Telegram allows one getUpdates at a time).
                    await self.lease.wait()
                    offset = await self._stored_offset()        # where that process stopped
                params: dict[str, Any] = {"timeout": self.poll_timeout, "allowed_updates": ALLOWED_UPDATES}
                if offset is not None:
                    params["offset"] = offset
                updates = await self.call("getUpdates", params)
                if self.lease is not None and not self.lease.held.is_set():
                    continue          # lost while it waited: not confirmed, the holder gets them again
                if not isinstance(updates, list):
                    raise DeliveryError(f"getUpdates answered {type(updates).__name__}, not a list", transient=True)
                if updates:
                    offset = await self._take(updates)
                self._ok()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except DeliveryError as e:
                self._trouble(e)
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)
            except Exception:          # the database, a bug: retry the same updates later
                log.exception("telegram: polling round failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)

    async def _stored_offset(self) -> int | None:
        """Where the last run stopped. After a week without updates Telegram may choose new
        update ids at random, lower than the stored offset, which would confirm them unseen:
        an offset that old is not used (anything seen again is deduplicated by its key)."""
        stored = await self.sink.cursor(NAME)
        if stored is None:
            return None
        position, at = stored
        if _now() - at > STALE_OFFSET:
            log.info("telegram: the stored offset is from %s, over a week ago: polling without it", at.date())
            return None
        return int(position)

    async def _take(self, updates: list[Any]) -> int:
        """Store one batch with the offset that confirms it; returns that offset."""
        messages, callbacks = [], []
        last = max((u["update_id"] for u in updates if isinstance(u, dict) and isinstance(u.get("update_id"), int)),
                   default=None)
        if last is None:
            raise DeliveryError("getUpdates returned no update with an update_id", transient=True)
        for u in updates:
            try:
                parsed = parse_update(u)
            except BadUpdate as e:     # skipped (and confirmed): one bad update must not stop the rest
                log.warning("telegram: update ignored: %s", e)
                continue
            if parsed.message is not None:
                messages.append(parsed.message)
            if parsed.callback_id:
                callbacks.append(parsed.callback_id)
        await self.sink.accept(messages, [], cursor=(NAME, str(last + 1)))
        self._received(messages, callbacks)
        return last + 1

    def _received(self, messages: Sequence[InboundMessage], callbacks: Sequence[str]) -> None:
        self.last_update_at = _now()
        for m in messages:
            log.info("telegram: %s %s from %s", m.kind, m.external_id.split(":")[-1][-12:],
                     self.mask_address(m.address))
        for query_id in callbacks:     # the citizen's button stops spinning
            task = asyncio.create_task(self._answer_callback(query_id))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    async def _answer_callback(self, query_id: str) -> None:
        try:
            await self.call("answerCallbackQuery", {"callback_query_id": query_id})
        except DeliveryError as e:
            log.warning("telegram: callback query not answered: %s", e)

    def _ok(self) -> None:
        if self.problem is not None:
            log.info("telegram: receiving again")
        self.problem = None

    def _trouble(self, e: DeliveryError) -> None:
        if e.code == 409:
            problem = ("getUpdates refused (409 Conflict): a webhook is set for this bot, or another "
                       "bridge polls it; run `main.py setup` to remove the webhook, or set [telegram] mode = \"webhook\"")
        elif e.code in (401, 404):
            problem = "the Bot API refused TELEGRAM_BOT_TOKEN (401/404): check the token from @BotFather"
        else:
            problem = f"getUpdates failed: {e}"
        if problem != self.problem:
            log.error("telegram: %s", problem)
        self.problem = problem

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/webhooks/telegram", self.handle_webhook)] if self.mode == "webhook" else []

    async def handle_webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not self._secret or not hmac.compare_digest(given.encode(), self._secret.encode()):
            log.warning("telegram: webhook without the right secret token refused (%s)", request.remote)
            return web.json_response({"error": "bad secret token"}, status=401)
        try:
            update = orjson.loads(await request.read())
        except ValueError as e:
            log.warning("telegram: malformed webhook body refused: %s", e)
            return web.json_response({"error": f"malformed JSON: {e}"}, status=400)
        try:
            parsed = parse_update(update)
        except BadUpdate as e:         # Telegram would retry a non-2xx forever: take it, and say so
            log.warning("telegram: webhook update ignored: %s", e)
            return web.json_response({"ok": True, "ignored": str(e)})
        messages = [parsed.message] if parsed.message else []
        await self.sink.accept(messages, [])
        self._received(messages, [parsed.callback_id] if parsed.callback_id else [])
        return web.json_response({"ok": True})

    # -- sending ---------------------------------------------------------------------
    def _pace(self, chat: str) -> None:
        """Raise NotYet when this send would be over Telegram's pace; else count it."""
        now = time.monotonic()
        wait = self._last_to.get(chat, -1e9) + PER_CHAT_SECONDS - now
        if len(self._recent) == OVERALL_PER_SECOND:
            wait = max(wait, self._recent[0] + 1.0 - now)
        if wait > 0:
            raise NotYet(wait)
        self._recent.append(now)
        self._last_to[chat] = now
        if len(self._last_to) > 10_000:          # forget chats not written to for a while
            self._last_to = {c: t for c, t in self._last_to.items() if now - t < PER_CHAT_SECONDS}

    async def send_text(self, address: str, text: str, *, reply_to: str | None = None,
                        choices: Sequence[base.Choice] = ()) -> str:
        params: dict[str, Any] = {"chat_id": int(address)}
        buttons = [[{"text": c.title, "callback_data": c.id}] for c in choices]
        if choices and all(len(c.id.encode()) <= MAX_CALLBACK_DATA for c in choices):
            params["reply_markup"] = {"inline_keyboard": buttons}
        elif choices:
            text += "\n\n" + "\n".join(f"{i}. {c.title}" for i, c in enumerate(choices, start=1))
        params["text"] = text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"
        own = _OWN_ID.match(reply_to or "")
        if own and own.group(1) == address:
            params["reply_parameters"] = {"message_id": int(own.group(2)), "allow_sending_without_reply": True}
        self._pace(address)
        result = await self.call("sendMessage", params)
        try:
            return f"{address}:{int(result['message_id'])}"
        except (KeyError, TypeError, ValueError):
            raise DeliveryError(f"sendMessage answered without a message_id: {result!r}", transient=False) from None

    async def fetch_media(self, attachment: Attachment) -> Media:
        if attachment.size and attachment.size > MAX_DOWNLOAD:
            raise _too_big(attachment.size)
        meta = await self.call("getFile", {"file_id": attachment.ref})
        if not isinstance(meta, dict) or not meta.get("file_path"):
            raise DeliveryError(f"getFile answered without a file_path: {meta!r}", transient=False)
        if (meta.get("file_size") or 0) > MAX_DOWNLOAD:
            raise _too_big(meta["file_size"])
        assert self._session is not None
        try:
            async with self._session.get(f"{self.api_url}/file/bot{self._token}/{meta['file_path']}") as resp:
                if resp.status != 200:
                    raise DeliveryError(f"file download answered {resp.status}",
                                        transient=resp.status >= 500 or resp.status == 429)
                data = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise DeliveryError(f"file download: {e.__class__.__name__}", transient=True) from None
        return Media(data=data, mime_type=attachment.mime_type, filename=attachment.filename)

    # -- the Bot API -----------------------------------------------------------------
    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """One Bot API method; its ``result``, or DeliveryError with the envelope's code."""
        if self._session is None:
            raise DeliveryError("telegram channel is not started", transient=True)
        url = f"{self.api_url}/bot{self._token}/{method}"
        # A long poll waits up to its own timeout; any other call gets request_timeout.
        wait = params.get("timeout", 0) + self.request_timeout if method == "getUpdates" else self.request_timeout
        try:
            async with self._session.post(url, json=params, timeout=aiohttp.ClientTimeout(total=wait)) as resp:
                try:
                    data = json.loads(await resp.text())
                except ValueError:
                    data = None
                status = resp.status
        except aiohttp.ClientError as e:
            # The URL holds the token: say what failed without it.
            raise DeliveryError(f"telegram {method}: {e.__class__.__name__}", transient=True) from None
        except asyncio.TimeoutError:
            raise DeliveryError(f"telegram {method}: timed out", transient=True) from None
        if isinstance(data, dict) and data.get("ok") is True and "result" in data:
            return data["result"]
        raise _error(method, status, data)


def _error(method: str, status: int, data: Any) -> DeliveryError:
    data = data if isinstance(data, dict) else {}
    code = data.get("error_code") if isinstance(data.get("error_code"), int) else status
    text = f"telegram {method} {code}: {data.get('description') or f'HTTP {status}'}"
    retry_after = (data.get("parameters") or {}).get("retry_after")
    if code == 429:
        return DeliveryError(text, transient=True, code=code,
                             retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else 5.0)
    # 403: the citizen blocked the bot (permanent); 400: a request we must not repeat.
    return DeliveryError(text, transient=code >= 500 or code == 409 or status >= 500, code=code)


def _too_big(size: int) -> DeliveryError:
    return DeliveryError(f"file of {size / 1024 / 1024:.1f} MB is over the Bot API's 20 MB download limit",
                         transient=False, code=413)
