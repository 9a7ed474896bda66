"""WhatsApp Cloud API (Meta Graph API) adapter.

Inbound: the webhook (GET handshake, POST notifications signed with X-Hub-Signature-256),
parsed into InboundMessage / StatusUpdate and handed to the sink before Meta gets its 200.
Outbound: text messages, mark-as-read, the two-step media download.
See ../shared/API-NOTES.md for the wire format this follows.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

import aiohttp
import orjson
from aiohttp import web

from bridge.channels import base
from bridge.channels.base import Attachment, ChannelSettings, InboundMessage, Media, StatusUpdate
from bridge.config import Section
from bridge.errors import DeliveryError
from bridge.privacy import mask_phone

log = logging.getLogger(__name__)

NAME = "whatsapp"
MAX_TEXT = 4096
INTERACTIVE_BODY_MAX = 1024
REF_MAX = 512                   # biz_opaque_callback_data: up to 512 characters
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")

# Graph error codes (API-NOTES.md): back off and retry, or give up.
_RATE_LIMITED = {4, 80007, 130429, 131056}
_TEMPORARY = {1, 2, 131000}


# A business-scoped user id: country code, a dot, (ENT. for a parent id,) letters and digits.
_BSUID = re.compile(r"[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}")
_NOT_DIGIT = re.compile(r"\D")


# The answer to a notification taken: the same bytes every time (json_response would encode them anew).
_OK = b'{"ok": true}'

SECRETS = ("WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN")
TEMPLATE_PURPOSES = ("answer", "question", "rejection")


@dataclass(frozen=True)
class Template:
    """An approved message template: the ticket number is its one body parameter, and it
    has one quick-reply button."""

    name: str
    language: str


@dataclass(frozen=True)
class WhatsAppSettings(ChannelSettings):
    graph_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"
    phone_number_id: str = ""
    token: str = ""
    app_secret: str = ""
    verify_token: str = ""
    # Outside the 24-hour window, by purpose of the waiting message: answer, question,
    # rejection (a purpose without its own uses the answer's).
    templates: dict[str, Template] = field(default_factory=dict)


def read_settings(section: Section) -> WhatsAppSettings:
    settings = WhatsAppSettings(
        enabled=section.enabled,
        graph_url=section.url("graph_url", "https://graph.facebook.com").rstrip("/"),
        api_version=section.match("api_version", re.compile(r"^v\d+\.\d+$"), "a Graph API version like v21.0",
                                  "v21.0"),
        phone_number_id=section.required("phone_number_id"),
        token=section.secret("WHATSAPP_TOKEN"),
        app_secret=section.secret("WHATSAPP_APP_SECRET"),
        verify_token=section.secret("WHATSAPP_VERIFY_TOKEN"),
        templates=_templates(section),
    )
    if settings.enabled and not settings.phone_number_id.isdigit():
        raise section.error("phone_number_id: must be the digits of the phone number id from Meta")
    return settings


def _templates(section: Section) -> dict[str, Template]:
    out = {}
    for purpose, spec in section.get("templates", dict, {}).items():
        where = f"templates.{purpose}"
        if purpose not in TEMPLATE_PURPOSES:
            raise section.error(f"{where}: unknown purpose (one of {', '.join(TEMPLATE_PURPOSES)})")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"].strip():
            raise section.error(f"{where} name: missing (the template's name as approved by Meta)")
        language = spec.get("language", "id")
        if not isinstance(language, str) or not re.match(r"^[a-z]{2,3}(_[A-Z]{2})?$", language):
            raise section.error(f"{where} language: {language!r} is not a language code like \"id\"")
        out[purpose] = Template(spec["name"].strip(), language)
    return out


class BadPayload(ValueError):
    """A notification that does not have the documented shape."""


def normalize_msisdn(number: str, default_country: str = "62") -> str:
    """One form for every phone number: digits with the country code, no '+'.

    '0812-3456-7890', '+62 812 3456 7890' and '6281234567890' are the same number.
    """
    if number.isascii() and number.isdigit():      # as Meta sends a wa_id: the quick way
        return default_country + number[1:] if number.startswith("0") else number
    if _BSUID.fullmatch(number.strip()):
        return number.strip()       # a business-scoped user id (ID.1349..., ID.ENT.1181...): kept as it is
    digits = _NOT_DIGIT.sub("", number)
    if not digits:
        return number.strip()
    if number.strip().startswith("+"):
        return digits
    if digits.startswith("0"):
        return default_country + digits[1:]
    return digits


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    try:
        given = bytes.fromhex(header[len("sha256="):].strip())
    except ValueError:
        return False
    mac = _keyed(app_secret).copy()
    mac.update(body)
    return hmac.compare_digest(mac.digest(), given)


@functools.lru_cache(maxsize=4)
def _keyed(app_secret: str) -> hmac.HMAC:
    """The HMAC with the app secret as its key, made once: a copy is half the work of
    keying it again, for every webhook."""
    return hmac.new(app_secret.encode(), digestmod=hashlib.sha256)


def _time(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (TypeError, ValueError):
        raise BadPayload(f"timestamp {value!r} is not a Unix time") from None


def parse_notification(payload: Any, problems: list[str] | None = None
                       ) -> tuple[list[InboundMessage], list[StatusUpdate]]:
    """Every message and status of one webhook POST, in order. Raises BadPayload for a
    notification of the wrong shape; a message or status of the wrong shape raises too,
    unless ``problems`` is given: then it is left out and its reason appended there."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise BadPayload("no 'entry' list")
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    for entry in payload["entry"]:
        for change in _list(entry, "changes"):
            if not isinstance(change, dict) or change.get("field") != "messages":
                continue            # other subscriptions (templates, account) are not ours
            value = change.get("value")
            if not isinstance(value, dict):
                raise BadPayload("change without a 'value' object")
            # A contact is known by its number, its business-scoped user id, or both.
            contacts = {key: c for c in _list(value, "contacts") if isinstance(c, dict)
                        for key in (c.get("wa_id"), c.get("user_id")) if key}
            for m in _list(value, "messages"):
                _take(messages, _message, problems, m, contacts)
            for s in _list(value, "statuses"):
                _take(statuses, _status, problems, s)
    return messages, statuses


def _take(into: list[Any], parse: Any, problems: list[str] | None, *args: Any) -> None:
    try:
        into.append(parse(*args))
    except BadPayload as e:
        if problems is None:
            raise
        problems.append(str(e))


def _list(obj: Any, key: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise BadPayload(f"expected an object holding '{key}'")
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise BadPayload(f"'{key}' is not a list")
    return value


def _message(m: Any, contacts: dict[str, dict[str, Any]]) -> InboundMessage:
    if not isinstance(m, dict) or not m.get("id") or not m.get("type"):
        raise BadPayload("message without id or type")
    sender = m.get("from")
    contact = (contacts.get(sender) or contacts.get(m.get("from_user_id"))
               or (next(iter(contacts.values())) if len({id(c) for c in contacts.values()}) == 1 else {}))
    if not sender:
        # Accounts with usernames may come without a phone number: key on the user id.
        sender = contact.get("wa_id") or m.get("from_user_id") or contact.get("user_id")
    if not sender:
        raise BadPayload(f"message {m['id']} has no sender")
    context = m.get("context") or {}
    profile = contact.get("profile") or {}
    body = _body(m["type"], m)
    return InboundMessage(
        channel=NAME, external_id=str(m["id"]), address=normalize_msisdn(str(sender)),
        at=_time(m.get("timestamp")), name=profile.get("name"), username=profile.get("username"),
        user_id=body.pop("user_id", None) or contact.get("user_id") or m.get("from_user_id"),
        reply_to=context.get("id"), forwarded=bool(context.get("forwarded")), raw=m, **body,
    )


def _body(mtype: str, m: dict[str, Any]) -> dict[str, Any]:
    """The kind, text and attachments of one message type."""
    body = m.get(mtype)
    if mtype == "text":
        return dict(kind=base.TEXT, text=str((body or {}).get("body", "")))
    if mtype in MEDIA_TYPES:
        if not isinstance(body, dict) or not body.get("id"):
            raise BadPayload(f"{mtype} message without a media id")
        att = Attachment(kind=mtype, ref=str(body["id"]),
                         mime_type=body.get("mime_type") or "application/octet-stream",
                         filename=body.get("filename"), sha256=body.get("sha256"),
                         voice=bool(body.get("voice")))
        return dict(kind=base.MEDIA, text=str(body.get("caption") or ""), attachments=(att,))
    if mtype == "location":
        body = body or {}
        where = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
        text = f"📍 {body.get('latitude')}, {body.get('longitude')}" + (f" ({where})" if where else "")
        return dict(kind=base.LOCATION, text=text)
    if mtype == "contacts":
        return dict(kind=base.CONTACTS, text="\n".join(_contact_line(c) for c in (body or [])))
    if mtype == "interactive":
        body = body or {}
        reply = body.get(body.get("type") or "") or {}
        return dict(kind=base.CHOICE, text=str(reply.get("title", "")), choice_id=reply.get("id"))
    if mtype == "button":
        body = body or {}
        return dict(kind=base.CHOICE, text=str(body.get("text", "")), choice_id=body.get("payload"))
    if mtype == "reaction":
        body = body or {}
        return dict(kind=base.REACTION, text=str(body.get("emoji") or ""), target_id=body.get("message_id"))
    if mtype == "edit":
        inner = (body or {}).get("message") or {}
        edited = _body(inner.get("type", "unsupported"), inner) if inner.get("type") else {}
        return dict(kind=base.EDIT, text=edited.get("text", ""),
                    attachments=edited.get("attachments", ()),
                    target_id=(body or {}).get("original_message_id"))
    if mtype == "revoke":
        return dict(kind=base.REVOKE, target_id=(body or {}).get("original_message_id"))
    if mtype == "system":
        body = body if isinstance(body, dict) else {}
        change: dict[str, Any] = {}
        if body.get("type") == "user_changed_number" and body.get("wa_id"):
            change["new_address"] = normalize_msisdn(str(body["wa_id"]))
        if body.get("type") in ("user_changed_number", "user_changed_user_id") and body.get("previous_user_id"):
            change["previous_user_id"] = str(body["previous_user_id"])
            if body.get("user_id"):
                change["user_id"] = str(body["user_id"])
        return dict(kind=base.SYSTEM, text=str(body.get("body", "")), **change)
    # unsupported, unknown, order, and whatever Meta adds next: kept, never a crash.
    errors = m.get("errors") or []
    title = errors[0].get("title") if errors and isinstance(errors[0], dict) else None
    return dict(kind=base.UNSUPPORTED, text=title or mtype)


def _contact_line(card: Any) -> str:
    if not isinstance(card, dict):
        return ""
    name = (card.get("name") or {}).get("formatted_name", "")
    phones = ", ".join(p.get("phone", "") for p in card.get("phones", []) if isinstance(p, dict))
    return f"👤 {name} {phones}".strip()


def _status(s: Any) -> StatusUpdate:
    if not isinstance(s, dict) or not s.get("id") or not s.get("status"):
        raise BadPayload("status without id or status")
    errors = s.get("errors") or []
    err = errors[0] if errors and isinstance(errors[0], dict) else {}
    return StatusUpdate(channel=NAME, external_id=str(s["id"]), status=str(s["status"]),
                        at=_time(s.get("timestamp")), recipient=s.get("recipient_id"),
                        error_code=err.get("code"),
                        error_title=err.get("title") or err.get("message"),
                        ref=_ref(s.get("biz_opaque_callback_data")))


def _ref(value: Any) -> str | None:
    # Ours, given back: only a string we could have written counts.
    return value if isinstance(value, str) and 0 < len(value) <= REF_MAX else None


class WhatsAppChannel(base.Channel):
    name = NAME
    title = "WhatsApp"
    secrets = SECRETS
    marks_read = True
    echoes_ref = True                  # biz_opaque_callback_data comes back in the statuses
    enabled_by_default = True          # the first channel: configs before the registry have no "enabled"
    window_hours = 24.0

    def __init__(self, *, graph_url: str, api_version: str, phone_number_id: str, token: str,
                 app_secret: str, verify_token: str, session: aiohttp.ClientSession | None = None,
                 templates: dict[str, Any] | None = None, request_timeout: float = 30.0) -> None:
        self.templates = dict(templates or {})
        self.base = f"{graph_url.rstrip('/')}/{api_version}"
        self.phone_number_id = phone_number_id
        self._token = token
        self._app_secret = app_secret
        self._verify_token = verify_token
        self._session = session
        self.request_timeout = request_timeout      # seconds for one Graph API call
        self.last_webhook_at: datetime | None = None

    # -- what the bridge knows of WhatsApp --------------------------------------------
    @classmethod
    def read_settings(cls, section: Section) -> WhatsAppSettings:
        return read_settings(section)

    @classmethod
    def from_settings(cls, s: Any) -> "WhatsAppChannel":
        return cls(graph_url=s.graph_url, api_version=s.api_version, phone_number_id=s.phone_number_id,
                   token=s.token, app_secret=s.app_secret, verify_token=s.verify_token, templates=s.templates)

    @classmethod
    def show_address(cls, address: str, *, whole: bool) -> str:
        if _BSUID.fullmatch(address):
            return ""                  # known by a username only: no number to show
        return address if whole else mask_phone(address)

    @classmethod
    def mask_address(cls, address: str) -> str:
        return "(user id)" if _BSUID.fullmatch(address) else mask_phone(address)

    @classmethod
    def operator_notes(cls, settings: Any, http_url: str) -> list[str]:
        return [f"webhook: register https://<your host>/webhooks/whatsapp with Meta (HTTPS only: a reverse "
                f"proxy to {http_url}), verify token = the value of WHATSAPP_VERIFY_TOKEN, "
                f"subscribe to \"messages\""]

    @classmethod
    def demo(cls) -> base.DemoService:
        from bridge.simulator.graph.demo import GraphDemo
        return GraphDemo()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, sink: base.InboundSink) -> None:
        await super().start(sink)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def health(self) -> dict[str, Any]:
        return {"ok": self._session is not None,
                "last_webhook_at": self.last_webhook_at.isoformat() if self.last_webhook_at else None}

    # -- webhook ---------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.get("/webhooks/whatsapp", self.handle_verify),
                web.post("/webhooks/whatsapp", self.handle_notification)]

    async def handle_verify(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("hub.mode") == "subscribe" and hmac.compare_digest(
                q.get("hub.verify_token", "").encode(), self._verify_token.encode()):
            return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
        log.warning("whatsapp: webhook verification with a wrong token refused")
        return web.Response(status=403, text="verify token mismatch")

    async def handle_notification(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not signature_ok(self._app_secret, body, request.headers.get("X-Hub-Signature-256")):
            log.warning("whatsapp: notification with a missing or wrong signature refused (%s)",
                        request.remote)
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            payload = orjson.loads(body)     # orjson: a third of json's time, for every webhook
        except ValueError as e:                   # not JSON at all (JSONDecodeError, bad UTF-8)
            log.warning("whatsapp: malformed notification refused: %s", e)
            return web.json_response({"error": f"malformed notification: {e}"}, status=400)
        problems: list[str] = []
        try:
            messages, statuses = parse_notification(payload, problems)
        except BadPayload as e:
            # JSON of another shape: Meta would retry a non-200 for days, so take it, and say so.
            log.warning("whatsapp: notification of an unknown shape ignored: %s", e)
            return web.json_response({"ok": True, "ignored": str(e)})
        for problem in problems:
            log.warning("whatsapp: an item of a notification ignored: %s", problem)
        # Stored before the 200: from here a crash loses nothing, and Meta's retries dedupe.
        # What was stored is logged by the intake: at most a line a second, however many came.
        await self.sink.accept(messages, statuses)
        self.last_webhook_at = datetime.now(timezone.utc)
        return web.Response(body=_OK, content_type="application/json")

    # -- outbound --------------------------------------------------------------------
    async def send_text(self, address: str, text: str, *, reply_to: str | None = None,
                        choices: Sequence[base.Choice] = (), ref: str | None = None) -> str:
        body = self._to(address) | _message_body(text, choices)
        if reply_to:
            body["context"] = {"message_id": reply_to}
        return await self._send(body, ref)

    async def send_template(self, address: str, name: str, language: str, params: Sequence[str],
                            button_payload: str | None = None, ref: str | None = None) -> str:
        components: list[dict[str, Any]] = []
        if params:
            components.append({"type": "body", "parameters": [{"type": "text", "text": p} for p in params]})
        if button_payload:
            components.append({"type": "button", "sub_type": "quick_reply", "index": "0",
                               "parameters": [{"type": "payload", "payload": button_payload}]})
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if components:
            template["components"] = components
        return await self._send(self._to(address) | {"type": "template", "template": template}, ref)

    @staticmethod
    def _to(address: str) -> dict[str, Any]:
        # A citizen known only by a business-scoped user id is addressed as "recipient".
        key = "recipient" if _BSUID.fullmatch(address) else "to"
        return {"messaging_product": "whatsapp", "recipient_type": "individual", key: normalize_msisdn(address)}

    async def _send(self, body: dict[str, Any], ref: str | None) -> str:
        if ref:
            body["biz_opaque_callback_data"] = ref
        answer = await self._request("POST", f"{self.base}/{self.phone_number_id}/messages", json=body)
        try:
            return str(answer["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise DeliveryError(f"send answer without a message id: {answer!r}", transient=False) from None

    async def mark_read(self, external_id: str) -> None:
        await self._request("POST", f"{self.base}/{self.phone_number_id}/messages",
                            json={"messaging_product": "whatsapp", "status": "read",
                                  "message_id": external_id})

    async def fetch_media(self, attachment: Attachment) -> Media:
        meta = await self._request("GET", f"{self.base}/{attachment.ref}")
        url = meta.get("url")
        if not url:
            raise DeliveryError(f"media {attachment.ref}: no url in {meta!r}", transient=False)
        assert self._session is not None
        try:
            async with self._session.get(url, headers=self._auth()) as resp:
                if resp.status != 200:
                    raise DeliveryError(f"media {attachment.ref}: download answered {resp.status}",
                                        transient=resp.status >= 500 or resp.status in (404, 429))
                data = await resp.read()
        except aiohttp.ClientError as e:
            raise DeliveryError(f"media {attachment.ref}: {e}", transient=True) from e
        except asyncio.TimeoutError:
            raise DeliveryError(f"media {attachment.ref}: no answer within {self.request_timeout:g}s",
                                transient=True) from None
        expected = meta.get("sha256") or attachment.sha256
        if expected and len(expected) == 64 and hashlib.sha256(data).hexdigest() != expected:
            raise DeliveryError(f"media {attachment.ref}: sha256 mismatch", transient=True)
        return Media(data=data, mime_type=meta.get("mime_type") or attachment.mime_type,
                     filename=attachment.filename)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def _request(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        if self._session is None:
            raise DeliveryError("whatsapp channel is not started", transient=True)
        try:
            async with self._session.request(method, url, headers=self._auth(), **kw) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else {}
                except ValueError:
                    data = {}
                if resp.status < 300:
                    return data
                raise _graph_error(resp.status, data, resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as e:       # no connection: nothing was sent
            raise DeliveryError(f"whatsapp: {e.__class__.__name__}: {e}", transient=True, unsent=True) from e
        except aiohttp.ClientError as e:
            raise DeliveryError(f"whatsapp: {e.__class__.__name__}: {e}", transient=True) from e
        except asyncio.TimeoutError:
            raise DeliveryError(f"whatsapp: no answer within {self.request_timeout:g}s", transient=True) from None


def _message_body(text: str, choices: Sequence[base.Choice]) -> dict[str, Any]:
    """A text, or an interactive message when the choices fit WhatsApp's limits: up to three
    reply buttons (titles of 20 characters), else a list of up to ten rows (24). Choices
    that fit neither are numbered in the text; a typed number or title always works."""
    if choices and len(text) <= INTERACTIVE_BODY_MAX:
        if len(choices) <= 3 and all(len(c.title) <= 20 for c in choices):
            return {"type": "interactive", "interactive": {
                "type": "button", "body": {"text": text},
                "action": {"buttons": [{"type": "reply", "reply": {"id": c.id, "title": c.title}}
                                       for c in choices]}}}
        if len(choices) <= 10 and all(len(c.title) <= 24 and len(c.description or "") <= 72 for c in choices):
            return {"type": "interactive", "interactive": {
                "type": "list", "body": {"text": text},
                "action": {"button": "Pilih", "sections": [{"title": "Pilihan", "rows": [
                    {"id": c.id, "title": c.title, **({"description": c.description} if c.description else {})}
                    for c in choices]}]}}}
    if choices:
        text += "\n\n" + "\n".join(f"{i}. {c.title}" for i, c in enumerate(choices, start=1))
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT - 1] + "…"
    return {"type": "text", "text": {"preview_url": False, "body": text}}


def _graph_error(status: int, data: dict[str, Any], retry_after: str | None) -> DeliveryError:
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    code = err.get("code")
    message = err.get("message") or f"HTTP {status}"
    details = (err.get("error_data") or {}).get("details")
    text = f"whatsapp error {code}: {message}" + (f" ({details})" if details else "")
    transient = status >= 500 or status == 429 or code in _RATE_LIMITED or code in _TEMPORARY
    delay: float | None = None
    if retry_after:
        try:
            delay = float(retry_after)
        except ValueError:
            delay = None
    if delay is None and code in _RATE_LIMITED:
        delay = 60.0
    # An error answer: the message was not taken.
    return DeliveryError(text, transient=transient, code=code, retry_after=delay, unsent=True)

