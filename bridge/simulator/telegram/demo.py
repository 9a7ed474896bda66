"""Telegram's part in the local demo: the fake Bot API, and a Telegram app for each user id.

The demo's ``[telegram]`` table points the bridge at a :class:`FakeBotApi` in polling mode:
what a visitor writes on the simulator page is queued there as an Update from that user,
and the bridge gets it with ``getUpdates`` as it would from Telegram. The bot's
``sendMessage`` calls are shown as the app shows them: the text, and the inline
keyboard's buttons below it as ``[text]`` lines. Telegram gives bots no delivery
receipts, so there are none to play.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from bridge.simulator.telegram import FakeBotApi, SentMessage, TgUser

TOKEN = "123456:demo-token"
POLL_TIMEOUT = 5                        # seconds a getUpdates call waits: a quick Ctrl-C
_USER_ID = re.compile(r"\d{5,12}")


class BotApiDemo:
    """The Telegram :class:`~bridge.channels.base.DemoService`."""

    title = "Telegram"

    def __init__(self) -> None:
        self.api = FakeBotApi(token=TOKEN, bot_username="pengaduan_demo_bot")
        self.env = {"TELEGRAM_BOT_TOKEN": TOKEN}
        self._on_bot_message: Callable[[str, str], None] | None = None

    async def start(self) -> None:
        await self.api.start()

    async def stop(self) -> None:
        await self.api.stop()

    def config(self) -> dict[str, Any]:
        return {"api_url": self.api.url, "mode": "polling", "poll_timeout": POLL_TIMEOUT}

    def connect(self, bridge_url: str, on_bot_message: Callable[[str, str], None]) -> None:
        """The bridge polls the fake; nothing is posted to ``bridge_url``."""
        self._on_bot_message = on_bot_message
        self.api.listeners.append(self._bot_sent)

    async def citizen_says(self, chat: str, name: str, text: str,
                           image: tuple[bytes, str] | None) -> tuple[bool, str]:
        """Queue what user ``chat`` (their user id, which is their chat's id) wrote, with
        ``name`` as their first name; (True, the user id), or (False, why) in Indonesian."""
        user_id = re.sub(r"\s", "", chat)
        if not _USER_ID.fullmatch(user_id) or int(user_id) == 0:
            return False, "ID pengguna Telegram tidak valid: tulis 5 sampai 12 angka, misalnya 5123456789"
        user = TgUser(id=int(user_id), first_name=name or "Warga")
        if image is not None:
            self.api.photo(user, image[0], caption=text or None)
        else:
            self.api.text(user, text)
        return True, user_id

    def _bot_sent(self, record: SentMessage) -> None:
        if self._on_bot_message is not None:
            self._on_bot_message(str(record["chat_id"]), shown(record))


def shown(record: SentMessage) -> str:
    """What the Telegram app shows of the bot's message: its text, and the buttons of its
    inline keyboard below it as ``[text]`` lines."""
    markup = record["message"].get("reply_markup") or {}
    buttons = [b["text"] for row in markup.get("inline_keyboard", ()) for b in row]
    return record["text"] + ("\n\n" + "\n".join(f"[{t}]" for t in buttons) if buttons else "")
