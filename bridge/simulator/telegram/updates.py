"""The citizen's side of the fake Bot API: users, their chats, and the Updates they cause.

:class:`Citizens` is the half of :class:`~bridge.simulator.telegram.FakeBotApi` that plays
the people writing to the bot.  Each builder makes one Update in the documented shape (API
notes, "Telegram Bot API"), stores the message in the chat, returns the Update and hands
it to ``_enqueue`` (the server queues it for ``getUpdates`` or posts it to the webhook).

A user is a :class:`TgUser`; their chat with the bot is private and has the user's id as
its chat id.  Message ids are a counter per chat starting at 1, shared by the citizen's
messages and the bot's (as in Telegram); update ids increase from a random base.  Dates
are Unix seconds by ``clock``.  A chat exists, for ``sendMessage``, once its user sent the
bot something through a builder here.

Builders refuse what no Telegram client could send (a reply to a message the chat does not
have, a button the message does not carry) with ``ValueError``: that is a bug in the test.

The last part is how the citizen's app shows what the bot sends, which is what Telegram
checks in ``sendMessage``: :func:`html_text` and :func:`markdown_text` give the text once
its entities are parsed (what the user reads, and what counts towards the 4096
characters), :func:`inline_keyboard` checks the buttons; each raises :class:`Unshowable`
with Telegram's words for what it would refuse.
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypedDict

Clock = Callable[[], datetime]

def system_clock() -> datetime:
    """The default clock: now, UTC, timezone-aware."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class TgUser:
    """A Telegram user writing to the bot; their private chat's id is their user id."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "id"

    def as_user(self) -> dict[str, Any]:
        """The ``User`` object (``from`` of their messages)."""
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name is not None:
            user["last_name"] = self.last_name
        if self.username is not None:
            user["username"] = self.username
        if self.language_code is not None:
            user["language_code"] = self.language_code
        return user

    def as_chat(self) -> dict[str, Any]:
        """The ``Chat`` object of their private chat with the bot."""
        chat: dict[str, Any] = {"id": self.id, "first_name": self.first_name}
        if self.last_name is not None:
            chat["last_name"] = self.last_name
        if self.username is not None:
            chat["username"] = self.username
        chat["type"] = "private"
        return chat


class SentMessage(TypedDict):
    """One ``sendMessage`` the fake accepted."""

    chat_id: int
    text: str  # as the citizen reads it: HTML tags / MarkdownV2 markup parsed away
    params: dict[str, Any]  # every parameter as the bridge sent it (raw text in params["text"])
    message: dict[str, Any]  # the Message we answered with


@dataclass
class StoredFile:
    """A file the citizen sent: what ``getFile`` reports and the download serves."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    size: int  # reported as file_size and checked against the 20 MB limit
    mime_type: str | None


@dataclass
class Chat:
    """A private chat with the bot: its user, its messages (both sides) by id."""

    user: TgUser
    instance: str  # the callback queries' chat_instance
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_message_id: int = 0


_FOLDERS = (("image/", "photos"), ("audio/ogg", "voice"), ("video/", "videos"), ("audio/", "music"))
_EXTENSIONS = {"audio/ogg": ".oga", "image/jpeg": ".jpg", "application/pdf": ".pdf", "video/mp4": ".mp4"}
_PHOTO_SIZES = ((90, 68, 16), (320, 240, 4), (1280, 960, 1))  # width, height, every n-th byte kept


class Citizens:
    """The users' side: builders of Updates, the chats and the files they sent."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or system_clock
        # Telegram's ids grow per bot. A fake started again (the demo's second run) must not
        # start below the offset the bridge stored from the last run, or the bridge's first
        # getUpdates would confirm the new updates unseen: the ids follow the wall clock.
        self._next_update_id = int(time.time() * 1000) - 1_700_000_000_000
        self._chats: dict[int, Chat] = {}
        self._files: dict[str, StoredFile] = {}
        self._file_paths: dict[str, str] = {}  # file_path -> file_id
        self._callback_queries: dict[str, int] = {}  # issued query id -> chat id
        self._answered_queries: set[str] = set()

    def _enqueue(self, update: dict[str, Any]) -> None:  # the server queues or posts it
        raise NotImplementedError

    def _now(self) -> int:
        return int(self.clock().timestamp())

    # ----------------------------------------------------------------- chats and messages

    def _chat(self, user: TgUser) -> Chat:
        chat = self._chats.get(user.id)
        if chat is None:
            chat = self._chats[user.id] = Chat(user, str(-(10**18) - secrets.randbelow(8 * 10**18)))
        else:
            chat.user = user  # a new name or username is shown from now on
        return chat

    def _new_message_id(self, chat: Chat) -> int:
        chat.last_message_id += 1
        return chat.last_message_id

    def _message_in(self, chat: Chat, message_id: int) -> dict[str, Any]:
        message = chat.messages.get(message_id)
        if message is None:
            raise ValueError(f"chat {chat.user.id} has no message {message_id}")
        return message

    def _update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        self._enqueue(update)
        return update

    def _send(self, user: TgUser, content: dict[str, Any], reply_to: int | None = None) -> dict[str, Any]:
        """Store a message from ``user`` with ``content`` and queue its Update."""
        chat = self._chat(user)
        replied = None if reply_to is None else without_reply(self._message_in(chat, reply_to))
        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat),
            "from": user.as_user(),
            "chat": user.as_chat(),
            "date": self._now(),
        }
        if replied is not None:
            message["reply_to_message"] = replied
        message |= {key: value for key, value in content.items() if value is not None}
        chat.messages[message["message_id"]] = message
        return self._update("message", message)

    # ----------------------------------------------------------------- files

    def add_file(self, data: bytes, *, mime_type: str | None = None, size: int | None = None) -> tuple[str, str, str]:
        """Store ``data`` for ``getFile`` and the download; returns (file_id, file_unique_id,
        file_path).  ``size`` is reported as file_size instead of ``len(data)`` and checked
        against the 20 MB limit, so a test need not hold 20 MB."""
        folder = next((name for prefix, name in _FOLDERS if (mime_type or "").startswith(prefix)), "documents")
        extension = _EXTENSIONS.get(mime_type or "") or mimetypes.guess_extension(mime_type or "") or ""
        file_path = f"{folder}/file_{len(self._files)}{extension}"
        file_id = "AgACAgUAAxkBAAI" + secrets.token_urlsafe(48)
        unique_id = "AQAD" + secrets.token_urlsafe(12)
        stored = StoredFile(file_id, unique_id, file_path, bytes(data),
                            len(data) if size is None else size, mime_type)
        self._files[file_id] = stored
        self._file_paths[file_path] = file_id
        return file_id, unique_id, file_path

    def _file_fields(self, data: bytes, mime_type: str | None, size: int | None = None) -> dict[str, Any]:
        file_id, unique_id, _ = self.add_file(data, mime_type=mime_type, size=size)
        return {"file_id": file_id, "file_unique_id": unique_id}

    # ----------------------------------------------------------------- the builders

    def text(self, user: TgUser, text: str, *, reply_to: int | None = None) -> dict[str, Any]:
        """A text message; ``reply_to``: the message id (in this chat) it replies to."""
        if not text.strip():
            raise ValueError("Telegram clients do not send an empty text message")
        return self._send(user, {"text": text}, reply_to)

    def photo(self, user: TgUser, data: bytes, *, caption: str | None = None,
              media_group_id: str | None = None) -> dict[str, Any]:
        """A photo: three PhotoSize, smallest first, each its own file; the largest is ``data``
        and the smaller ones every 16th and every 4th byte of it.  An album is several photos
        with the same ``media_group_id`` (one message each)."""
        if not data:
            raise ValueError("a photo needs some bytes")
        sizes = []
        for width, height, step in _PHOTO_SIZES:
            part = data[::step]
            sizes.append(self._file_fields(part, "image/jpeg") | {"file_size": len(part), "width": width,
                                                                  "height": height})
        return self._send(user, {"media_group_id": media_group_id, "photo": sizes, "caption": caption})

    def document(self, user: TgUser, data: bytes, *, file_name: str, mime_type: str, caption: str | None = None,
                 media_group_id: str | None = None, size: int | None = None) -> dict[str, Any]:
        """A file sent as a document; ``size`` overrides the reported file_size (see add_file)."""
        document = self._file_fields(data, mime_type, size) | {
            "file_name": file_name, "mime_type": mime_type, "file_size": len(data) if size is None else size}
        return self._send(user, {"media_group_id": media_group_id, "document": document, "caption": caption})

    def voice(self, user: TgUser, data: bytes, *, duration: int = 3, mime_type: str = "audio/ogg") -> dict[str, Any]:
        """A voice note (OGG/Opus by default)."""
        voice = self._file_fields(data, mime_type) | {"duration": duration, "mime_type": mime_type,
                                                      "file_size": len(data)}
        return self._send(user, {"voice": voice})

    def video(self, user: TgUser, data: bytes, *, duration: int = 5, mime_type: str = "video/mp4",
              caption: str | None = None) -> dict[str, Any]:
        """A video, 640x360."""
        video = self._file_fields(data, mime_type) | {"width": 640, "height": 360, "duration": duration,
                                                      "mime_type": mime_type, "file_size": len(data)}
        return self._send(user, {"video": video, "caption": caption})

    def location(self, user: TgUser, latitude: float, longitude: float) -> dict[str, Any]:
        """A shared location (a single point, not a live location)."""
        return self._send(user, {"location": {"latitude": latitude, "longitude": longitude}})

    def contact(self, user: TgUser, phone_number: str, first_name: str, last_name: str | None = None,
                contact_user_id: int | None = None) -> dict[str, Any]:
        """A shared contact (their own, with ``contact_user_id`` = their id, or anyone's)."""
        contact: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name}
        if last_name is not None:
            contact["last_name"] = last_name
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        return self._send(user, {"contact": contact})

    def edit(self, user: TgUser, message_id: int, new_text: str) -> dict[str, Any]:
        """The user edited their message ``message_id``: an ``edited_message`` Update with the
        same message_id and an ``edit_date`` (the caption is edited for a media message)."""
        chat = self._chat(user)
        message = self._message_in(chat, message_id)
        if message["from"]["id"] != user.id:
            raise ValueError(f"message {message_id} is not {user.id}'s: a user edits only their own")
        field_name = "text" if "text" in message else "caption"
        if field_name == "caption" and not any(k in message for k in ("photo", "document", "video")):
            raise ValueError(f"message {message_id} has neither text nor caption to edit")
        edited = dict(message) | {field_name: new_text, "edit_date": self._now()}
        chat.messages[message_id] = edited
        return self._update("edited_message", edited)

    def callback(self, user: TgUser, sent: SentMessage | int, data: str) -> dict[str, Any]:
        """The user pressed the inline button with ``callback_data`` = ``data`` under a bot
        message (a recorded send, or its message_id in the user's chat)."""
        chat = self._chat(user)
        message = self._bot_message(chat, sent)
        offered = [button.get("callback_data") for button in _buttons(message)]
        if data not in offered:
            raise ValueError(f"message {message['message_id']} has no button with callback_data {data!r}; "
                             f"it offers {[one for one in offered if one is not None]}")
        query_id = str(10**18 + secrets.randbelow(9 * 10**18))
        self._callback_queries[query_id] = chat.user.id
        return self._update("callback_query", {"id": query_id, "from": user.as_user(), "message": message,
                                               "chat_instance": chat.instance, "data": data})

    def choose(self, user: TgUser, sent: SentMessage | int, title: str) -> dict[str, Any]:
        """:meth:`callback` for the button whose text is ``title``."""
        message = self._bot_message(self._chat(user), sent)
        for button in _buttons(message):
            if button.get("text") == title and "callback_data" in button:
                return self.callback(user, sent, button["callback_data"])
        raise ValueError(f"message {message['message_id']} has no callback button titled {title!r}; "
                         f"it offers {[button.get('text') for button in _buttons(message)]}")

    def _bot_message(self, chat: Chat, sent: SentMessage | int) -> dict[str, Any]:
        if isinstance(sent, int):
            message_id = sent
        else:
            if sent["chat_id"] != chat.user.id:
                raise ValueError(f"that message went to chat {sent['chat_id']}, not to {chat.user.id}")
            message_id = sent["message"]["message_id"]
        message = self._message_in(chat, message_id)
        if not message["from"].get("is_bot"):
            raise ValueError(f"message {message_id} is the user's own, not the bot's")
        return message


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


def without_reply(message: dict[str, Any]) -> dict[str, Any]:
    """A replied-to message as Telegram nests it: without its own reply_to_message."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


# --------------------------------------------------------------------------- the bot's messages, as shown
# What a Telegram app shows of a message the bot sends: the text once its entities are
# parsed, and the inline keyboard.  What Telegram cannot parse raises Unshowable with
# Telegram's description (the server answers it as "Bad Request: ...").

TEXT_MAX = 4096  # characters after entity parsing (Python characters; Telegram counts UTF-16 units)
CALLBACK_DATA_MAX = 64  # bytes of UTF-8
HTML_TAGS = frozenset("b strong i em u ins s strike del a code pre span tg-spoiler blockquote".split())
_HTML_TAG = re.compile(r"<(/?)([^\s/>]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")
_MD_PRE = re.compile(r"```((?:[^`\\]|\\.|`(?!``))*)```", re.DOTALL)
_MD_CODE = re.compile(r"`((?:[^`\\]|\\.)*)`", re.DOTALL)
_MD_LINK = re.compile(r"\[((?:[^\]\\]|\\.)*)\]\(((?:[^)\\]|\\.)*)\)", re.DOTALL)
_MD_MARKERS = {"__": "Underline", "||": "Spoiler", "*": "Bold", "_": "Italic", "~": "Strikethrough"}
_MD_RESERVED = set("_*[]()~`>#+-=|{}.!")
MARKUP_INVALID = "can't parse reply keyboard markup JSON object"


class Unshowable(ValueError):
    """A bot message Telegram refuses; ``str()`` is its description after "Bad Request: "."""


def _entities_error(what: str) -> Unshowable:
    return Unshowable(f"can't parse entities: {what}")


def _offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _html_unescape(match: re.Match[str]) -> str:
    name = match.group(1)
    if name.startswith("#"):
        return chr(int(name[2:], 16) if name[1] in "xX" else int(name[1:]))
    return {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}[name]


def html_text(text: str) -> str:
    """The text of an HTML-formatted message as shown, or the error Telegram's parser gives."""
    out, open_tags, position = [], [], 0
    while (start := text.find("<", position)) >= 0:
        out.append(text[position:start])
        tag = _HTML_TAG.match(text, start)
        if tag is None:
            raise _entities_error(f"Unclosed start tag at byte offset {_offset(text, start)}")
        closing, name, attributes = tag.group(1), tag.group(2).lower(), tag.group(3)
        if closing:
            if not open_tags:
                raise _entities_error(f"Unexpected end tag at byte offset {_offset(text, start)}")
            if open_tags[-1] != name:
                raise _entities_error(f'Unmatched end tag at byte offset {_offset(text, start)}, '
                                      f'expected "</{open_tags[-1]}>", found "</{name}>"')
            open_tags.pop()
        elif name not in HTML_TAGS:
            raise _entities_error(f'Unsupported start tag "{name}" at byte offset {_offset(text, start)}')
        elif name == "span" and not re.search(r"""class\s*=\s*["']?tg-spoiler\b""", attributes):
            raise _entities_error(f'Tag "span" must have class "tg-spoiler" at byte offset {_offset(text, start)}')
        else:
            open_tags.append(name)
        position = tag.end()
    if open_tags:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    out.append(text[position:])
    return _HTML_ENTITY.sub(_html_unescape, "".join(out))


def markdown_text(text: str) -> str:
    """The text of a MarkdownV2 message as shown: escapes, ``code``, ```pre```, [links](url),
    the markers * _ __ ~ || (which must close) and > at a line's start; any other reserved
    character unescaped is Telegram's error.  Nesting rules beyond that are not checked."""
    out: list[str] = []
    opened: dict[str, int] = {}
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        block = _MD_PRE.match(text, i) or _MD_CODE.match(text, i) if char == "`" else None
        link = _MD_LINK.match(text, i) if char == "[" else None
        marker = next((one for one in _MD_MARKERS if text.startswith(one, i)), None)
        if block is not None:
            body = block.group(1)
            if block.group(0).startswith("```") and "\n" in body:
                body = body.split("\n", 1)[1]  # the first line names the language
            out.append(re.sub(r"\\(.)", r"\1", body, flags=re.DOTALL))
            i = block.end()
        elif link is not None:
            out.append(markdown_text(link.group(1)))
            i = link.end()
        elif marker is not None:
            if marker in opened:
                del opened[marker]
            else:
                opened[marker] = _offset(text, i)
            i += len(marker)
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1
        elif char in _MD_RESERVED:
            raise _entities_error(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
        else:
            out.append(char)
            i += 1
    if opened:
        marker, at = min(opened.items(), key=lambda item: item[1])
        raise _entities_error(f"Can't find end of {_MD_MARKERS[marker]} entity at byte offset {at}")
    return "".join(out)


def inline_keyboard(value: Any) -> dict[str, Any]:
    """A valid ``reply_markup`` (an InlineKeyboardMarkup, as an object or a JSON string).

    Only inline keyboards are served: the other markups (reply keyboards, remove_keyboard,
    force_reply) are refused as unparseable, since the bridge has no use for them."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Unshowable(MARKUP_INVALID) from None
    rows = value.get("inline_keyboard") if isinstance(value, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise Unshowable(MARKUP_INVALID)
    for button in (button for row in rows for button in row):
        if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"].strip():
            raise Unshowable(MARKUP_INVALID)
        data, url = button.get("callback_data"), button.get("url")
        if data is None and url is None:
            raise Unshowable("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
        if data is not None and not (isinstance(data, str) and 1 <= len(data.encode()) <= CALLBACK_DATA_MAX):
            raise Unshowable("BUTTON_DATA_INVALID")
        if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://", "tg://"))):
            raise Unshowable("BUTTON_URL_INVALID")
    return value
