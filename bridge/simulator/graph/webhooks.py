"""Meta's side of the webhook: notifications built as Meta sends them, signed and posted.

:class:`Webhooks` builds the documented envelope (``notification``, ``batch``) and the
messages and statuses in it, serialises it as Meta does (``encode``), signs it with the
app secret (``sign``: ``X-Hub-Signature-256``) and delivers it (``post_webhook``,
``verify_webhook``). :class:`~bridge.simulator.graph.FakeGraph` is one, so the media it
stores get the right hash in ``image`` and ``document`` notifications, and it learns from
each posted message when that citizen last wrote (the 24-hour window).

The citizen's messages: ``text``, ``image``, ``document``; the answers to what the
business sent: ``list_reply`` and ``button_reply`` (interactive messages) and
``quick_reply`` (a template's quick-reply button, ``type: "button"``).  Each comes from a
phone number (``wa_id``), a business-scoped user id (``user_id=``, a BSUID such as
``ID.13491208655302741918``), or both; ``wa_id=None`` with a ``user_id`` is a user who
hides the number behind a username (no ``from``, no ``wa_id`` in the contact).
System messages: ``user_changed_number`` and ``user_changed_user_id``.  Statuses:
``status`` and ``status_error``.

Default timestamps come from ``clock`` (the system clock unless one is given), so a test
that moves the clock gets messages and statuses stamped at its "now".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import aiohttp

from bridge.simulator.graph.checks import BSUID

STATUS_VALUES = ("sent", "delivered", "read", "failed", "played")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The default clock: now, UTC, timezone-aware."""
    return datetime.now(timezone.utc)


def new_wamid() -> str:
    """A fresh, unique WhatsApp message id (real ones are base64 after ``wamid.``)."""
    return "wamid." + base64.b64encode(secrets.token_bytes(27)).decode()


def _check_bsuid(value: str | None, what: str) -> None:
    if value is not None and not BSUID.fullmatch(value):
        raise ValueError(
            f"{what} must be a business-scoped user id like 'ID.13491208655302741918' "
            f"(country code, dot, optional 'ENT.', up to 128 letters and digits), not {value!r}"
        )


class Webhooks:
    """Builds, signs and posts the notifications of one business phone number."""

    def __init__(
        self,
        *,
        app_secret: str,
        phone_number_id: str,
        display_phone_number: str,
        waba_id: str,
        clock: Clock | None = None,
    ) -> None:
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id
        self.clock: Clock = clock or system_clock

    def _media_data(self, media_id: str) -> bytes | None:
        """The bytes stored under ``media_id``, if any (the Graph side knows them)."""
        return None

    def _timestamp(self, value: int | None) -> str:
        return str(int(self.clock().timestamp()) if value is None else value)

    # ----------------------------------------------------------------- signing

    def sign(self, body: bytes) -> str:
        """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
        return "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()

    @staticmethod
    def encode(payload: dict[str, Any]) -> bytes:
        """Serialise a notification the way Meta does: compact, non-ASCII as ``\\uXXXX``,
        ``/`` as ``\\/``. A bridge that re-serialises before checking the signature fails."""
        text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
        return text.replace("/", "\\/").encode("ascii")

    # ----------------------------------------------------------------- building

    def notification(
        self,
        *,
        messages: Sequence[dict[str, Any]] = (),
        statuses: Sequence[dict[str, Any]] = (),
        contacts: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A full webhook envelope with one entry and one ``messages`` change."""
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self.display_phone_number,
                "phone_number_id": self.phone_number_id,
            },
        }
        if contacts:
            value["contacts"] = list(contacts)
        if messages:
            value["messages"] = list(messages)
        if statuses:
            value["statuses"] = list(statuses)
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"value": value, "field": "messages"}]}],
        }

    @staticmethod
    def batch(*notifications: dict[str, Any]) -> dict[str, Any]:
        """Several notifications as one POST (their entries side by side), as Meta may send."""
        return {
            "object": "whatsapp_business_account",
            "entry": [entry for notification in notifications for entry in notification["entry"]],
        }

    def _incoming(
        self,
        wa_id: str | None,
        kind: str,
        content: dict[str, Any],
        *,
        name: str = "Warga",
        msg_id: str | None = None,
        timestamp: int | None = None,
        reply_to: str | None = None,
        user_id: str | None = None,
        username: str | None = None,
        parent_user_id: str | None = None,
    ) -> dict[str, Any]:
        """One message from a citizen and its contact.

        The sender is ``wa_id`` (the phone number), ``user_id`` (the BSUID), or both; a
        user known only by BSUID comes without ``from`` and without ``wa_id``. Every
        builder below takes these keywords (``**sender``): ``name`` (the profile name),
        ``msg_id``, ``timestamp``, ``reply_to`` (the wamid it answers), ``user_id``,
        ``username`` and ``parent_user_id``.
        """
        if wa_id is None and user_id is None:
            raise ValueError("a message comes from a wa_id, a user_id (BSUID), or both")
        _check_bsuid(user_id, "user_id")
        _check_bsuid(parent_user_id, "parent_user_id")
        message: dict[str, Any] = {}
        if reply_to is not None:
            message["context"] = {"from": self.display_phone_number, "id": reply_to}
        if wa_id is not None:
            message["from"] = wa_id
        if user_id is not None:
            message["from_user_id"] = user_id
        if parent_user_id is not None:
            message["from_parent_user_id"] = parent_user_id
        message |= {
            "id": msg_id or new_wamid(),
            "timestamp": self._timestamp(timestamp),
            "type": kind,
            kind: content,
        }
        profile: dict[str, Any] = {"name": name}
        if username is not None:
            profile["username"] = username
        contact: dict[str, Any] = {"profile": profile}
        if wa_id is not None:
            contact["wa_id"] = wa_id
        if user_id is not None:
            contact["user_id"] = user_id
        if parent_user_id is not None:
            contact["parent_user_id"] = parent_user_id
        return self.notification(messages=[message], contacts=[contact])

    def text(
        self,
        wa_id: str | None,
        body: str,
        **sender: Any,
    ) -> dict[str, Any]:
        """A notification carrying one text message from ``wa_id`` (or ``user_id``) and its contact."""
        return self._incoming(
            wa_id,
            "text",
            {"body": body},
            **sender,
        )

    def image(
        self,
        wa_id: str | None,
        media_id: str,
        *,
        caption: str | None = None,
        mime_type: str = "image/jpeg",
        **sender: Any,
    ) -> dict[str, Any]:
        """A notification carrying one image message (add the bytes with add_media first)."""
        content: dict[str, Any] = {}
        if caption is not None:
            content["caption"] = caption
        content |= {"mime_type": mime_type, "sha256": self._webhook_sha256(media_id), "id": media_id}
        return self._incoming(
            wa_id,
            "image",
            content,
            **sender,
        )

    def document(
        self,
        wa_id: str | None,
        media_id: str,
        *,
        filename: str,
        caption: str | None = None,
        mime_type: str = "application/pdf",
        **sender: Any,
    ) -> dict[str, Any]:
        """A notification carrying one document message (add the bytes with add_media first)."""
        content: dict[str, Any] = {}
        if caption is not None:
            content["caption"] = caption
        content |= {
            "filename": filename,
            "mime_type": mime_type,
            "sha256": self._webhook_sha256(media_id),
            "id": media_id,
        }
        return self._incoming(
            wa_id,
            "document",
            content,
            **sender,
        )

    def list_reply(
        self,
        wa_id: str | None,
        row_id: str,
        title: str,
        *,
        reply_to: str,
        description: str | None = None,
        **sender: Any,
    ) -> dict[str, Any]:
        """The citizen picked row ``row_id`` of the list message ``reply_to`` (its wamid).

        ``type: "interactive"``, ``interactive: {type: "list_reply", list_reply: {id,
        title, description?}}``; the description comes only when the row had one.
        """
        choice: dict[str, Any] = {"id": row_id, "title": title}
        if description is not None:
            choice["description"] = description
        return self._incoming(
            wa_id,
            "interactive",
            {"type": "list_reply", "list_reply": choice},
            reply_to=reply_to,
            **sender,
        )

    def button_reply(
        self,
        wa_id: str | None,
        button_id: str,
        title: str,
        *,
        reply_to: str,
        **sender: Any,
    ) -> dict[str, Any]:
        """The citizen tapped reply button ``button_id`` of the message ``reply_to`` (its wamid).

        ``type: "interactive"``, ``interactive: {type: "button_reply", button_reply: {id, title}}``.
        """
        return self._incoming(
            wa_id,
            "interactive",
            {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
            reply_to=reply_to,
            **sender,
        )

    def quick_reply(
        self,
        wa_id: str | None,
        payload: str,
        text: str,
        **sender: Any,
    ) -> dict[str, Any]:
        """The citizen tapped a quick-reply button of a template message.

        ``type: "button"``, ``button: {payload, text}``: ``payload`` is what the send put in
        the button component (or the button's text when it put none), ``text`` the label.
        Meta usually gives the template's wamid as ``context``, but not always.
        """
        return self._incoming(
            wa_id,
            "button",
            {"payload": payload, "text": text},
            **sender,
        )

    def user_changed_number(
        self,
        old_wa_id: str,
        new_wa_id: str,
        *,
        name: str = "Warga",
        user_id: str | None = None,
        previous_user_id: str | None = None,
        parent_user_id: str | None = None,
        previous_parent_user_id: str | None = None,
        msg_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A ``system`` message: the citizen moved from ``old_wa_id`` to ``new_wa_id``.

        As Meta documents it: ``from`` is the old number, ``system: {body, wa_id: <new
        number>, type: "user_changed_number"}`` and no ``contacts`` array.  A new number
        also makes a new BSUID: give ``user_id`` (new) and ``previous_user_id`` (old) and
        both come in ``system``, the previous one also as the message's ``from_user_id``.
        """
        for value, what in ((user_id, "user_id"), (previous_user_id, "previous_user_id"),
                            (parent_user_id, "parent_user_id"),
                            (previous_parent_user_id, "previous_parent_user_id")):
            _check_bsuid(value, what)
        system: dict[str, Any] = {
            "body": f"User {name} changed from {old_wa_id} to {new_wa_id}",
            "wa_id": new_wa_id,
            "type": "user_changed_number",
        }
        _ids(system, user_id, previous_user_id, parent_user_id, previous_parent_user_id)
        message: dict[str, Any] = {"from": old_wa_id}
        if previous_user_id is not None:
            message["from_user_id"] = previous_user_id
        message |= {"id": msg_id or new_wamid(), "timestamp": self._timestamp(timestamp),
                    "type": "system", "system": system}
        return self.notification(messages=[message])

    def user_changed_user_id(
        self,
        previous_user_id: str,
        user_id: str,
        *,
        name: str = "Warga",
        parent_user_id: str | None = None,
        previous_parent_user_id: str | None = None,
        msg_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A ``system`` message: the citizen's BSUID changed from ``previous_user_id`` to ``user_id``.

        No phone number comes with it (Meta sends this one when it cannot share the
        number): the message has ``from_user_id`` (the previous BSUID) and no ``from``;
        ``system: {body, type: "user_changed_user_id", user_id, previous_user_id,
        parent_user_id?, previous_parent_user_id?}``; no ``contacts`` array.
        """
        for value, what in ((user_id, "user_id"), (previous_user_id, "previous_user_id"),
                            (parent_user_id, "parent_user_id"),
                            (previous_parent_user_id, "previous_parent_user_id")):
            _check_bsuid(value, what)
        system: dict[str, Any] = {
            "body": f"User {name} changed from {previous_user_id} to {user_id}",
            "type": "user_changed_user_id",
        }
        _ids(system, user_id, previous_user_id, parent_user_id, previous_parent_user_id)
        message = {
            "from_user_id": previous_user_id,
            "id": msg_id or new_wamid(),
            "timestamp": self._timestamp(timestamp),
            "type": "system",
            "system": system,
        }
        return self.notification(messages=[message])

    def _webhook_sha256(self, media_id: str) -> str:
        # Webhooks carry the hash base64-encoded, while GET /{media_id} gives it in hex.
        # Unknown media: a hash of the id, still well-formed.
        data = self._media_data(media_id)
        digest = hashlib.sha256(media_id.encode() if data is None else data).digest()
        return base64.b64encode(digest).decode()

    def status(
        self,
        wamid: str,
        status: str,
        recipient_id: str | None,
        *,
        recipient_user_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        timestamp: int | None = None,
        biz_opaque_callback_data: str | None = None,
    ) -> dict[str, Any]:
        """A notification carrying one status update for a message we sent.

        ``recipient_id`` is the citizen's number; for a user known only by BSUID pass
        ``None`` and ``recipient_user_id`` (a status may carry both).
        ``biz_opaque_callback_data``: what the send carried in that field, given back.
        """
        if status not in STATUS_VALUES:
            raise ValueError(f"status must be one of {', '.join(STATUS_VALUES)}, not {status!r}")
        if recipient_id is None and recipient_user_id is None:
            raise ValueError("a status names its recipient: recipient_id, recipient_user_id, or both")
        _check_bsuid(recipient_user_id, "recipient_user_id")
        entry: dict[str, Any] = {"id": wamid, "status": status, "timestamp": self._timestamp(timestamp)}
        if recipient_id is not None:
            entry["recipient_id"] = recipient_id
        if recipient_user_id is not None:
            entry["recipient_user_id"] = recipient_user_id
        if errors is not None:
            entry["errors"] = errors
        if biz_opaque_callback_data is not None:
            entry["biz_opaque_callback_data"] = biz_opaque_callback_data
        return self.notification(statuses=[entry])

    @staticmethod
    def status_error(code: int, title: str, *, details: str | None = None) -> dict[str, Any]:
        """One element of a failed status's ``errors`` list, e.g. ``status_error(131047, "Re-engagement message")``."""
        return {
            "code": code,
            "title": title,
            "message": title,
            "error_data": {"details": details or title},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }

    # ----------------------------------------------------------------- delivering

    def _delivering(self, payload: dict[str, Any]) -> None:
        """Called with each notification (parsed) just before it is posted; FakeGraph
        notes the citizens' messages in it (the 24-hour window)."""

    async def post_webhook(
        self,
        target_url: str,
        payload: dict[str, Any] | bytes,
        *,
        signature: str | None | Literal["auto"] = "auto",
    ) -> tuple[int, str]:
        """POST a notification to the bridge as Meta would; returns (status, body text).

        ``payload`` is a dict (serialised with :meth:`encode`) or the raw bytes to send.
        ``signature``: "auto" signs the bytes correctly, None leaves the header out, any
        other string is sent as the header value as is.
        """
        raw = payload if isinstance(payload, bytes) else self.encode(payload)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            self._delivering(parsed)
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
        if signature == "auto":
            headers["X-Hub-Signature-256"] = self.sign(raw)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(target_url, data=raw, headers=headers) as response:
                return response.status, await response.text()

    async def verify_webhook(
        self, target_url: str, verify_token: str, *, challenge: str = "1158201444"
    ) -> tuple[int, str]:
        """Meta's subscription check: GET with hub.mode/hub.verify_token/hub.challenge."""
        params = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(target_url, params=params) as response:
                return response.status, await response.text()


def _ids(
    system: dict[str, Any],
    user_id: str | None,
    previous_user_id: str | None,
    parent_user_id: str | None,
    previous_parent_user_id: str | None,
) -> None:
    """The BSUIDs a system message carries, the new ones beside the previous ones."""
    for key, value in (("user_id", user_id), ("previous_user_id", previous_user_id),
                       ("parent_user_id", parent_user_id),
                       ("previous_parent_user_id", previous_parent_user_id)):
        if value is not None:
            system[key] = value
