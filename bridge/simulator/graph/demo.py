"""WhatsApp's part in the local demo: the fake Graph API, and a phone for each number.

The demo's ``[whatsapp]`` table points the bridge at a :class:`FakeGraph`; what a visitor
writes on the simulator page becomes a WhatsApp notification, signed with the demo app
secret and posted to the bridge's own ``/webhooks/whatsapp``, exactly as Meta would. The
bot's answers reach the fake, which tells the simulator (as a phone shows them: buttons
and list rows as ``[title]`` lines), and, like a phone, each answer is reported
delivered and then read, so cases close.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Callable

from bridge.simulator.graph.server import FakeGraph, SentRecord

log = logging.getLogger(__name__)

TOKEN = "demo-token"
APP_SECRET = "demo-app-secret"
VERIFY_TOKEN = "demo-verify"


def wa_id_of(number: str) -> str:
    """A number as WhatsApp names its sender: digits only, Indonesia's 0 as 62."""
    digits = re.sub(r"\D", "", number)
    return "62" + digits[1:] if digits.startswith("0") else digits


class GraphDemo:
    """The WhatsApp :class:`~bridge.channels.base.DemoService`."""

    title = "WhatsApp"

    def __init__(self, *, status_delay: float = 0.5) -> None:
        self.graph = FakeGraph(token=TOKEN, app_secret=APP_SECRET)
        self.env = {"WHATSAPP_TOKEN": TOKEN, "WHATSAPP_APP_SECRET": APP_SECRET,
                    "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN}
        self.status_delay = status_delay          # the phone's "delivered", then "read"
        self.webhook_url = ""                      # the bridge's, once it listens
        self._on_bot_message: Callable[[str, str], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.graph.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.graph.stop()

    def config(self) -> dict[str, Any]:
        return {"graph_url": self.graph.url, "api_version": self.graph.api_version,
                "phone_number_id": self.graph.phone_number_id}

    def connect(self, bridge_url: str, on_bot_message: Callable[[str, str], None]) -> None:
        self.webhook_url = f"{bridge_url}/webhooks/whatsapp"
        self._on_bot_message = on_bot_message
        self.graph.listeners.append(self._bot_sent)

    async def citizen_says(self, chat: str, name: str, text: str,
                           image: tuple[bytes, str] | None) -> tuple[bool, str]:
        """Post what the citizen of number ``chat`` wrote; (True, their wa_id) once the bridge
        took it, else (False, why) in Indonesian."""
        wa_id = wa_id_of(chat)
        if not 8 <= len(wa_id) <= 15:
            return False, "nomor WhatsApp tidak valid: tulis 8 sampai 15 angka, misalnya 081234567890"
        if not self.webhook_url:
            return False, "bridge belum siap, coba lagi sebentar lagi"
        if image is not None:
            data, mime_type = image
            media_id = self.graph.add_media(data, mime_type)
            payload = self.graph.image(wa_id, media_id, caption=text or None, mime_type=mime_type, name=name)
        else:
            payload = self.graph.text(wa_id, text, name=name)
        try:
            status, answer = await self.graph.post_webhook(self.webhook_url, payload)
        except Exception as e:                     # the bridge may be restarting
            return False, f"bridge tidak dapat dihubungi ({e.__class__.__name__})"
        if status != 200:
            return False, f"bridge menolak pesan (HTTP {status}): {answer[:200]}"
        return True, wa_id

    # -- the phone -------------------------------------------------------------------
    def _bot_sent(self, record: SentRecord) -> None:
        body = record["body"]
        text = shown(body)
        if text is None or record["id"] is None or "to" not in body:
            return
        if self._on_bot_message is not None:
            self._on_bot_message(body["to"], text)
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
                log.info("demo: WhatsApp %s status not posted: %s", status, e)
                return


def shown(body: dict[str, Any]) -> str | None:
    """What a phone shows of the bot's message: its text, with the buttons or list rows of an
    interactive one below it as ``[title]`` lines (typing the title or number answers), or a
    template's gist."""
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
