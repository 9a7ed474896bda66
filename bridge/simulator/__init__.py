"""The citizen simulator of the local demo: a chat page that plays the citizens' phones.

Served by the bridge in demo mode only (``/demo/``). The page writes as a citizen on any
channel that has a part in the demo (``Channel.demo()``, a
:class:`~bridge.channels.base.DemoService`: WhatsApp through a fake Graph API, Telegram
through a fake Bot API); the service hands it to the bridge exactly as the real one would
and tells the simulator every message the bot sends a citizen, which the page shows.

Each chat, keyed by (channel, number or user id), is one phone with its own chat and its
own name (the profile name sent with its messages); the page shows everything a citizen
wrote as text, never HTML.

API, all answers JSON, errors ``{"error": ...}`` in Indonesian:

* ``GET /demo/api/channels``: ``[{"name", "title"}]``, the channels in the demo;
* ``POST /demo/api/send`` ``{channel ("whatsapp"), chat (or "wa_id"), name, text, image}``:
  ``image`` a ``data:image/...;base64,`` URL; 200 ``{"status": "ok", "channel", "chat"}``;
* ``GET /demo/api/messages?channel=..&chat=..`` (or ``wa_id=``): ``{"channel", "chat",
  "wa_id", "name", "lines": [{"from": "citizen"|"bot", "text", "at", ...}]}``.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

if TYPE_CHECKING:
    from bridge.channels.base import DemoService

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
MAX_IMAGE = 5 * 1024 * 1024
MAX_TEXT = 4000
DEFAULT_CHANNEL = "whatsapp"       # what the API meant before it knew channels
_DATA_URL = re.compile(r"^data:(image/(?:jpeg|png|webp));base64,(.+)$", re.DOTALL)


@dataclass
class Chat:
    """One simulated phone: what its citizen sent and what the bot answered."""

    name: str | None = None          # the profile name its citizen last sent with, if any
    lines: list[dict[str, Any]] = field(default_factory=list)


class Simulator:
    def __init__(self, services: dict[str, "DemoService"]) -> None:
        self.services = services                    # by channel name, in the registry's order
        self.chats: dict[tuple[str, str], Chat] = {}

    def on_bot_message(self, channel: str) -> Callable[[str, str], None]:
        """What ``services[channel].connect`` calls with each message the bot sends."""
        def bot_sent(chat: str, text: str) -> None:
            self.chats.setdefault((channel, chat), Chat()).lines.append(
                {"from": "bot", "text": text, "at": time.time()})
        return bot_sent

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/demo", self.page), web.get("/demo/", self.page),
                web.get("/demo/api/channels", self.channels),
                web.get("/demo/api/messages", self.messages),
                web.post("/demo/api/send", self.send)]

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    async def channels(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": name, "title": s.title} for name, s in self.services.items()])

    async def messages(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel") or DEFAULT_CHANNEL
        chat_id = request.query.get("chat") or request.query.get("wa_id", "")
        chat = self.chats.get((channel, chat_id), Chat())
        return web.json_response({"channel": channel, "chat": chat_id, "wa_id": chat_id,
                                  "name": chat.name, "lines": chat.lines})

    async def send(self, request: web.Request) -> web.Response:
        """The visitor sends a message (and maybe a picture) as a citizen."""
        try:
            data = await request.json()
        except ValueError:
            return _error("permintaan harus berupa JSON")
        if not isinstance(data, dict):
            return _error("permintaan harus berupa objek JSON")
        channel = str(data.get("channel") or DEFAULT_CHANNEL)
        service = self.services.get(channel)
        if service is None:
            known = ", ".join(s.title for s in self.services.values())
            return _error(f"saluran {channel!r} tidak ada di demo ini (yang ada: {known})")
        chat_id = str(data.get("chat") or data.get("wa_id") or "").strip()
        text = str(data.get("text") or "").strip()
        name = str(data.get("name") or "").strip()[:60] or "Warga"
        if not chat_id:
            return _error("isi nomor atau ID pengirim")
        if not text and not data.get("image"):
            return _error("tulis pesan atau lampirkan gambar")
        if len(text) > MAX_TEXT:
            return _error(f"pesan terlalu panjang (paling banyak {MAX_TEXT} karakter)")
        image = None
        if data.get("image"):
            m = _DATA_URL.match(str(data["image"]))
            try:
                raw = base64.b64decode(m.group(2), validate=True) if m else b""
            except binascii.Error:
                raw = b""
            if not m or not raw or len(raw) > MAX_IMAGE:
                return _error("gambar harus JPEG/PNG/WebP, paling besar 5 MB")
            image = (raw, m.group(1))
        at = time.time()
        ok, detail = await service.citizen_says(chat_id, name, text, image)
        if not ok:
            return _error(detail)
        chat_id = detail or chat_id                # as the service names it (0812… is 62812…)
        chat = self.chats.setdefault((channel, chat_id), Chat())
        chat.name = name
        # In time order: the bot may have answered while the service was still posting.
        line = {"from": "citizen", "text": text, "image": image is not None, "at": at}
        index = bisect.bisect_right([ln["at"] for ln in chat.lines], at)
        chat.lines.insert(index, line)
        return web.json_response({"status": "ok", "channel": channel, "chat": chat_id})

    async def stop(self) -> None:
        """Nothing of its own runs: the services stop themselves."""


def _error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
