"""The contract between the bridge and a citizen channel (WhatsApp, Telegram).

A channel adapter turns its service's wire format into the normalized types below and
back. Nothing outside ``bridge/channels/`` knows a service's wire format, and the
adapters know nothing of Matrix or of cases: they hand inbound traffic to an
``InboundSink`` (which stores it before the service gets its 200) and deliver what the
outbox asks them to send.

Each ``Channel`` class also declares what the rest of the bridge needs to know of it
without naming it (its name and title, config table and secrets, whether it reports
delivery, how its addresses are shown, what setup and the demo do for it); the registry
(``bridge/channels/registry.py``) lists the classes.
"""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import orjson
from aiohttp import web

from bridge.errors import DeliveryError, NotYet  # noqa: F401  (what send_* raise)
from bridge.privacy import mask_text

if TYPE_CHECKING:
    from bridge.config import Section

# Kinds of inbound message, across channels.
TEXT = "text"
MEDIA = "media"            # image, document, audio, video, sticker: see Attachment.kind
LOCATION = "location"
CONTACTS = "contacts"
CHOICE = "choice"          # a tapped button or list row: text is its title, choice_id its id
REACTION = "reaction"
EDIT = "edit"
REVOKE = "revoke"
UNSUPPORTED = "unsupported"
SYSTEM = "system"

# Kinds that carry something the citizen wrote or sent, and so belong in a case.
CASE_KINDS = frozenset({TEXT, MEDIA, LOCATION, CONTACTS, CHOICE})


@dataclass(frozen=True)
class Attachment:
    """A file the citizen sent. ``ref`` is the channel's handle to fetch it later."""

    kind: str                      # image | document | audio | video | sticker
    ref: str                       # WhatsApp media id, Telegram file_id
    mime_type: str = "application/octet-stream"
    filename: str | None = None
    sha256: str | None = None
    voice: bool = False
    size: int | None = None        # bytes, when the channel says so before the download

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, False)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Attachment":
        return cls(**d)


@dataclass(frozen=True)
class InboundMessage:
    """One message from a citizen, in the same shape whatever channel it came by."""

    channel: str
    external_id: str               # the channel's message id: the deduplication key
    address: str                   # where to answer: WhatsApp wa_id, Telegram chat id
    at: datetime                   # when the citizen sent it (aware, UTC)
    kind: str
    text: str = ""                 # body, caption, or a readable rendering (location...)
    name: str | None = None        # the citizen's profile name, when the channel gives it
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None    # external id of the message this one answers
    choice_id: str | None = None
    target_id: str | None = None   # for reaction/edit/revoke: the message it is about
    user_id: str | None = None     # WhatsApp business-scoped user id, kept beside wa_id
    username: str | None = None    # the citizen's username, where the channel has one
    # A system message that the citizen changed number or user id: their new keys.
    new_address: str | None = None
    previous_user_id: str | None = None
    forwarded: bool = False
    group: str | None = None       # an album: the messages sent together share it
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field, but those of the optional ones that are empty (None, "" or False)."""
        d: dict[str, Any] = {"channel": self.channel, "external_id": self.external_id, "address": self.address,
                             "kind": self.kind}
        for k in _OPTIONAL:
            if (v := getattr(self, k)) is not None and v != "" and v is not False:
                d[k] = v
        d["at"] = self.at.isoformat()
        d["attachments"] = [a.to_dict() for a in self.attachments]
        d["raw"] = self.raw
        return d

    def to_json(self) -> str:
        """The stored form (the inbound table's ``message``): ``to_dict`` as JSON text.

        orjson, which does this in a third of the time ``json`` takes: it runs for every
        webhook's message. A number beyond 64 bits in ``raw`` (no service sends one, but
        it must not be lost) is left to ``json``."""
        d = self.to_dict()
        try:
            return orjson.dumps(d).decode()
        except orjson.JSONEncodeError:
            return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "InboundMessage":
        return cls.from_dict(orjson.loads(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InboundMessage":
        d = dict(d)
        d["at"] = datetime.fromisoformat(d["at"])
        d["attachments"] = tuple(Attachment.from_dict(a) for a in d.get("attachments", ()))
        return cls(**d)


_OPTIONAL = tuple(f.name for f in fields(InboundMessage)
                  if f.name not in ("channel", "external_id", "address", "kind", "at", "attachments", "raw"))

# Delivery states of our outbound messages, in the only order they may move.
STATUS_ORDER = {"pending": 0, "accepted": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}


@dataclass(frozen=True)
class StatusUpdate:
    """The service's word on one of our outbound messages."""

    channel: str
    external_id: str
    status: str                    # sent | delivered | read | failed
    at: datetime
    recipient: str | None = None
    error_code: int | None = None
    error_title: str | None = None
    ref: str | None = None         # ours, given with the send (channels with echoes_ref)


@dataclass(frozen=True)
class Choice:
    """One answer a citizen can tap (a button or a list row); typing its number or title
    works as well on every channel."""

    id: str
    title: str
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Choice":
        return cls(**d)


@dataclass(frozen=True)
class Media:
    data: bytes
    mime_type: str
    filename: str | None = None


class InboundSink(Protocol):
    """Where adapters hand what they received. Returns once it is durably stored."""

    async def accept(self, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate],
                     cursor: tuple[str, str] | None = None) -> None:
        """Store ``messages`` and ``statuses``; ``cursor`` (channel, position) is stored in
        the same transaction, for a polling channel to resume from after a restart."""

    async def cursor(self, channel: str) -> tuple[str, datetime] | None:
        """The position a polling channel stored last, and when (None: never polled)."""


@dataclass(frozen=True)
class ChannelSettings:
    """What every channel's settings have; each channel's own dataclass adds the rest."""

    enabled: bool


class DemoService(Protocol):
    """A channel's part in the local demo: a local fake of its service that the bridge
    talks to, and a way for the simulator page to write as a citizen on it."""

    title: str
    env: dict[str, str]                       # the demo's secrets for this channel

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def config(self) -> dict[str, Any]:
        """The channel's config table in the demo's config.toml."""

    def connect(self, bridge_url: str, on_bot_message: Any) -> None:
        """The bridge listens at ``bridge_url``; call ``on_bot_message(chat, text)`` for every
        message the bot sends a citizen."""

    async def citizen_says(self, chat: str, name: str, text: str,
                           image: tuple[bytes, str] | None) -> tuple[bool, str]:
        """A citizen writes (``chat``: a number or a user id, as the page's field names it).
        Returns (True, the chat as the service names it) or (False, why, in Indonesian)."""


class Channel(abc.ABC):
    """One citizen channel. Webhook channels expose routes; polling ones run a task."""

    name: str                      # its key: config table, database rows, webhook path
    title: str                     # as staff read it on cards, transcripts and exports
    secrets: tuple[str, ...] = ()  # environment variables it needs when enabled
    enabled_by_default = False
    # False: the service gives no delivery receipts, so what it accepted is delivered.
    reports_delivery = True
    # True: the citizen sees that we read their message (mark_read does something).
    marks_read = False
    # True: send_text and send_template take ``ref=`` (a string of ours), and the service
    # gives it back in the statuses of that message (StatusUpdate.ref): so a send whose
    # answer never came (a timeout, a crash) is found taken, not sent again.
    echoes_ref = False
    # Files larger than this cannot be fetched through the service (None: no such limit).
    max_download_bytes: int | None = None
    # Hours after the citizen's last message in which free text may be sent (WhatsApp's
    # customer-service window); None: no such limit.
    window_hours: float | None = None
    # Approved templates by purpose (answer, question, rejection): what may be sent outside
    # the window to say that something waits. Each has a name and a language.
    templates: dict[str, Any] = {}

    # -- what the rest of the bridge knows of a channel, without naming it -------------
    @classmethod
    @abc.abstractmethod
    def read_settings(cls, section: "Section") -> ChannelSettings:
        """This channel's settings from its config table and secrets (raises ConfigError)."""

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Any) -> "Channel":
        """The adapter for these settings."""

    @classmethod
    def needed_secrets(cls, settings: Any) -> tuple[str, ...]:
        """The secrets these settings use (all of ``secrets`` unless a mode needs fewer)."""
        return cls.secrets

    @classmethod
    def show_address(cls, address: str, *, whole: bool) -> str:
        """Where the citizen is reached, as a card shows it: ``whole`` in the admin room
        (they may call back), masked elsewhere; "" when there is nothing to show."""
        return address if whole else mask_text(address)

    @classmethod
    def mask_address(cls, address: str) -> str:
        """The address as logs show it."""
        return mask_text(address)

    @classmethod
    def operator_notes(cls, settings: Any, http_url: str) -> list[str]:
        """What ``main.py setup`` tells the operator to do outside the bridge (webhooks)."""
        return []

    @classmethod
    async def setup(cls, settings: Any) -> list[str]:
        """What ``main.py setup`` changes at the service itself; the changes made."""
        return []

    @classmethod
    def demo(cls) -> DemoService | None:
        """This channel's part in the local demo (None: not in the demo)."""
        return None

    def routes(self) -> list[web.RouteDef]:
        """aiohttp routes this channel serves (its webhooks)."""
        return []

    # Set by the bridge before start() when ``polls``: one process at a time may poll the
    # service (bridge/lease.py). None: this channel's receiving needs no lease.
    lease: Any = None

    @property
    def polls(self) -> bool:
        """Whether this channel asks its service for messages (rather than being sent them)."""
        return False

    async def start(self, sink: InboundSink) -> None:
        """Begin receiving; inbound traffic goes to ``sink``."""
        self.sink = sink

    async def stop(self) -> None:
        """Stop receiving and release connections."""

    def health(self) -> dict[str, Any]:
        return {"ok": True}

    @abc.abstractmethod
    async def send_text(self, address: str, text: str, *, reply_to: str | None = None,
                        choices: Sequence[Choice] = ()) -> str:
        """Send a text to a citizen, with ``choices`` to tap where the channel can show
        them (else as a numbered list in the text); return the channel's id for it.
        A channel with ``echoes_ref`` also takes ``ref=`` (see there)."""

    async def send_template(self, address: str, name: str, language: str, params: Sequence[str],
                            button_payload: str | None = None) -> str:
        """Send an approved template (outside the window); return the message's id."""
        raise DeliveryError(f"{self.name} has no message templates", transient=False)

    async def mark_read(self, external_id: str) -> None:
        """Tell the citizen their message was read, where the channel has that."""

    @abc.abstractmethod
    async def fetch_media(self, attachment: Attachment) -> Media:
        """Download an attachment's bytes."""
