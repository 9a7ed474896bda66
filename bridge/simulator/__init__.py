"""The citizen simulator of the local demo: a phone-chat page that plays Meta's part.

Served by the bridge in demo mode only (``/demo/``). What a visitor writes is turned into
a WhatsApp notification, signed with the demo app secret and posted to the bridge's own
``/webhooks/whatsapp``, exactly as Meta would; the bot's answers reach the fake Graph API
(``graph/``) that the demo's ``graph_url`` points at, and the page shows them. Like a
phone, the simulator reports each answer delivered and then read, so cases close.

Each number is one phone with its own chat and its own name (the WhatsApp profile name
sent with its messages); the page shows everything a citizen wrote as text, never HTML.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.simulator.graph import FakeGraph, SentRecord

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page.html")
MAX_IMAGE = 5 * 1024 * 1024
_DATA_URL = re.compile(r"^data:(image/(?:jpeg|png|webp));base64,(.+)$", re.DOTALL)


@dataclass
class Chat:
    """One simulated phone: what its citizen sent and what the bot answered."""

    name: str | None = None          # the profile name its citizen last sent with, if any
    lines: list[dict[str, Any]] = field(default_factory=list)


class Simulator:
    def __init__(self, graph: FakeGraph, *, status_delay: float = 0.5) -> None:
        self.graph = graph
        self.webhook_url = ""            # set once the bridge listens
        self.chats: dict[str, Chat] = {}
        self.status_delay = status_delay
        self._tasks: set[asyncio.Task[None]] = set()
        graph.listeners.append(self._bot_sent)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/demo", self.page), web.get("/demo/", self.page),
                web.get("/demo/api/messages", self.messages),
                web.post("/demo/api/send", self.send)]

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    async def messages(self, request: web.Request) -> web.Response:
        wa_id = request.query.get("wa_id", "")
        chat = self.chats.get(wa_id, Chat())
        return web.json_response({"wa_id": wa_id, "name": chat.name, "lines": chat.lines})

    async def send(self, request: web.Request) -> web.Response:
        """The visitor sends a message (and maybe a picture) as a citizen."""
        try:
            data = await request.json()
        except ValueError:
            return web.json_response({"error": "permintaan harus berupa JSON"}, status=400)
        wa_id = re.sub(r"\D", "", str(data.get("wa_id", "")))
        if wa_id.startswith("0"):
            wa_id = "62" + wa_id[1:]
        text = str(data.get("text", "")).strip()
        name = str(data.get("name", "")).strip()[:60] or "Warga"
        image = data.get("image")
        if not 8 <= len(wa_id) <= 15:
            return web.json_response({"error": "nomor WhatsApp tidak valid"}, status=400)
        if not text and not image:
            return web.json_response({"error": "tulis pesan atau lampirkan gambar"}, status=400)
        if image:
            m = _DATA_URL.match(str(image))
            try:
                raw = base64.b64decode(m.group(2), validate=True) if m else b""
            except binascii.Error:
                raw = b""
            if not raw or len(raw) > MAX_IMAGE:
                return web.json_response({"error": "gambar harus JPEG/PNG/WebP, paling besar 5 MB"}, status=400)
            media_id = self.graph.add_media(raw, m.group(1))   # type: ignore[union-attr]
            payload = self.graph.image(wa_id, media_id, caption=text or None, mime_type=m.group(1), name=name)
        else:
            payload = self.graph.text(wa_id, text, name=name)
        status, answer = await self.graph.post_webhook(self.webhook_url, payload)
        chat = self.chats.setdefault(wa_id, Chat())
        chat.name = name
        chat.lines.append({"from": "citizen", "text": text, "image": bool(image), "at": time.time(),
                           "status": status})
        return web.json_response({"status": status, "answer": answer[:200]}, status=200 if status == 200 else 502)

    def _bot_sent(self, record: SentRecord) -> None:
        body = record["body"]
        text = _shown(body)
        if text is None or record["id"] is None or "to" not in body:
            return
        chat = self.chats.setdefault(body["to"], Chat())
        chat.lines.append({"from": "bot", "text": text, "at": time.time()})
        task = asyncio.get_running_loop().create_task(self._phone_receipts(record["id"], body["to"]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _phone_receipts(self, wamid: str, wa_id: str) -> None:
        """The phone got it, then the citizen read it: Meta's status webhooks."""
        for status in ("delivered", "read"):
            await asyncio.sleep(self.status_delay)
            try:
                await self.graph.post_webhook(self.webhook_url, self.graph.status(wamid, status, wa_id))
            except Exception as e:          # the bridge may be stopping
                log.info("simulator: %s status not posted: %s", status, e)
                return

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _shown(body: dict[str, Any]) -> str | None:
    """What a phone shows of the bot's message: its text, with the buttons or list rows of an
    interactive one numbered below (typing the number answers), or a template's gist."""
    if body.get("type") == "text":
        return body["text"]["body"]
    if body.get("type") == "interactive":
        i = body["interactive"]
        if i["type"] == "button":
            titles = [b["reply"]["title"] for b in i["action"]["buttons"]]
        else:
            titles = [r["title"] for s in i["action"]["sections"] for r in s["rows"]]
        return i["body"]["text"] + "\n\n" + "\n".join(f"[{t}]" for t in titles)
    if body.get("type") == "template":
        params = [p.get("text", "") for c in body["template"].get("components", ()) if c.get("type") == "body"
                  for p in c.get("parameters", ())]
        return f"(template {body['template']['name']}: {', '.join(params)})"
    return None
