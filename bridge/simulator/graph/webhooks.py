"""Meta's side of the webhook: notifications built as Meta sends them, signed and posted.

:class:`Webhooks` builds the documented envelope (``notification``, ``batch``) and the
messages and statuses in it (``text``, ``image``, ``document``, ``status``,
``status_error``), serialises it as Meta does (``encode``), signs it with the app secret
(``sign``: ``X-Hub-Signature-256``) and delivers it (``post_webhook``,
``verify_webhook``). :class:`~bridge.simulator.graph.FakeGraph` is one, so the media it
stores get the right hash in ``image`` and ``document`` notifications.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp

STATUS_VALUES = ("sent", "delivered", "read", "failed", "played")


def new_wamid() -> str:
    """A fresh, unique WhatsApp message id (real ones are base64 after ``wamid.``)."""
    return "wamid." + base64.b64encode(secrets.token_bytes(27)).decode()


def _timestamp(value: int | None) -> str:
    return str(int(time.time()) if value is None else value)


class Webhooks:
    """Builds, signs and posts the notifications of one business phone number."""

    def __init__(
        self, *, app_secret: str, phone_number_id: str, display_phone_number: str, waba_id: str
    ) -> None:
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id

    def _media_data(self, media_id: str) -> bytes | None:
        """The bytes stored under ``media_id``, if any (the Graph side knows them)."""
        return None

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
        wa_id: str,
        kind: str,
        content: dict[str, Any],
        *,
        name: str,
        msg_id: str | None,
        timestamp: int | None,
        reply_to: str | None,
        user_id: str | None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {}
        if reply_to is not None:
            message["context"] = {"from": self.display_phone_number, "id": reply_to}
        message |= {
            "from": wa_id,
            "id": msg_id or new_wamid(),
            "timestamp": _timestamp(timestamp),
            "type": kind,
            kind: content,
        }
        contact: dict[str, Any] = {"profile": {"name": name}, "wa_id": wa_id}
        if user_id is not None:
            contact["user_id"] = user_id
            message["from_user_id"] = user_id
        return self.notification(messages=[message], contacts=[contact])

    def text(
        self,
        wa_id: str,
        body: str,
        *,
        name: str = "Warga",
        msg_id: str | None = None,
        timestamp: int | None = None,
        reply_to: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """A notification carrying one text message from ``wa_id`` and its contact."""
        return self._incoming(
            wa_id,
            "text",
            {"body": body},
            name=name,
            msg_id=msg_id,
            timestamp=timestamp,
            reply_to=reply_to,
            user_id=user_id,
        )

    def image(
        self,
        wa_id: str,
        media_id: str,
        *,
        caption: str | None = None,
        mime_type: str = "image/jpeg",
        name: str = "Warga",
        msg_id: str | None = None,
        timestamp: int | None = None,
        reply_to: str | None = None,
        user_id: str | None = None,
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
            name=name,
            msg_id=msg_id,
            timestamp=timestamp,
            reply_to=reply_to,
            user_id=user_id,
        )

    def document(
        self,
        wa_id: str,
        media_id: str,
        *,
        filename: str,
        caption: str | None = None,
        mime_type: str = "application/pdf",
        name: str = "Warga",
        msg_id: str | None = None,
        timestamp: int | None = None,
        reply_to: str | None = None,
        user_id: str | None = None,
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
            name=name,
            msg_id=msg_id,
            timestamp=timestamp,
            reply_to=reply_to,
            user_id=user_id,
        )

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
        recipient_id: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A notification carrying one status update for a message we sent."""
        if status not in STATUS_VALUES:
            raise ValueError(f"status must be one of {', '.join(STATUS_VALUES)}, not {status!r}")
        entry: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": _timestamp(timestamp),
            "recipient_id": recipient_id,
        }
        if errors is not None:
            entry["errors"] = errors
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
