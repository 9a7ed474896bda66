"""A local fake of Meta's Graph API, as far as the WhatsApp Cloud API goes.

The real Graph API cannot be reached from the test machines, so the tests point the
bridge's ``graph_url`` at this server; the local demo does the same, with the citizen
simulator (bridge/simulator/__init__.py) on top.  It follows ../shared/API-NOTES.md ("WhatsApp
Cloud API") and is deliberately strict: every request the bridge makes is checked the
way Meta checks it, and anything malformed is answered with Meta's error envelope, so a
wrong request fails the test instead of failing in production.

Graph side (the bridge calls us)::

    POST /{version}/{phone_number_id}/messages   send a message, or mark one read
    GET  /{version}/{media_id}                   media step 1: metadata and a download URL
    GET  /media-bytes/{media_id}?token=...       media step 2: the bytes (bearer required)

Webhook side (we play Meta calling the bridge): :meth:`FakeGraph.text`,
:meth:`FakeGraph.image`, :meth:`FakeGraph.document`, :meth:`FakeGraph.status` and
:meth:`FakeGraph.notification` build notifications shaped like the real samples in
../shared/samples/whatsapp/, and :meth:`FakeGraph.post_webhook` delivers them signed.

What the tests read back:

* ``sent`` – one :class:`SentRecord` per accepted ``POST .../messages``, in arrival
  order, mark-reads included: ``{"body": <the JSON body as the bridge sent it>,
  "id": <the wamid we answered with, or None for a mark-read>}``.
* ``rejected`` – one :class:`RejectedRecord` per request answered with an error
  (malformed body, bad token, injected failure, ...), to explain a failing test.
* ``media_requests`` / ``media_downloads`` – media ids asked for in step 1 / step 2.

Typical use::

    async with FakeGraph() as graph:
        await graph.post_webhook(bridge_url, graph.text("6281234567890", "KTP saya?"))
        reply = await graph.wait_for_sent(lambda r: r["body"].get("to") == "6281234567890")
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

TEXT_BODY_MAX = 4096
INTERACTIVE_BODY_MAX = 1024
HEADER_FOOTER_MAX = 60
CAPTION_MAX = 1024
LIST_BUTTON_MAX = 20
LIST_SECTIONS_MAX = 10
LIST_ROWS_MAX = 10  # across all sections
SECTION_TITLE_MAX = 24
ROW_ID_MAX = 200
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
REPLY_BUTTONS_MAX = 3
REPLY_BUTTON_ID_MAX = 256
REPLY_BUTTON_TITLE_MAX = 20

SEND_TYPES = ("text", "template", "interactive", "image", "document")
STATUS_VALUES = ("sent", "delivered", "read", "failed", "played")

_PHONE = re.compile(r"[1-9][0-9]{0,14}")  # E.164 digits: country code first, no "+", no leading 0

# The parsed body of a messages POST, kept on the request so a rejection can record it.
_BODY_KEY = web.RequestKey("graph_body", object)


class SentRecord(TypedDict):
    """One accepted ``POST .../messages``."""

    body: dict[str, Any]  # the parsed JSON body, exactly as the bridge sent it
    id: str | None  # the wamid we answered with; None for a mark-read


class RejectedRecord(TypedDict):
    """One request we answered with an error envelope."""

    method: str
    path: str
    status: int
    code: int
    message: str
    body: Any  # the parsed JSON body of a messages POST when we got that far, else None


# --------------------------------------------------------------------------- errors


class GraphError(Exception):
    """An error answer in Meta's envelope; raised by the handlers, rendered by a middleware."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        details: str | None = None,
        subcode: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else message
        self.subcode = subcode
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = _fbtrace_id()
        return {"error": error}


class _Invalid(Exception):
    """A send body broke a rule; the text names the rule."""


def _invalid_param(rule: str) -> GraphError:
    return GraphError(400, 100, f"(#100) {rule}", details=rule)


@dataclass
class _PendingFailure:
    remaining: int
    status: int
    code: int
    message: str
    details: str | None
    retry_after: float | None
    match: Callable[[dict[str, Any]], bool] | None

    def error(self) -> GraphError:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = f"{self.retry_after:g}"
        return GraphError(self.status, self.code, self.message, details=self.details, headers=headers)


@dataclass(frozen=True)
class _Media:
    data: bytes
    mime_type: str


# --------------------------------------------------------------------------- ids


def _fbtrace_id() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode().rstrip("=")


def new_wamid() -> str:
    """A fresh, unique WhatsApp message id (real ones are base64 after ``wamid.``)."""
    return "wamid." + base64.b64encode(secrets.token_bytes(27)).decode()


def _new_media_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))  # 16 digits, like Meta's


# --------------------------------------------------------------------------- body validation
#
# Each check raises _Invalid with the rule, worded like Meta's error details
# ("Param text['body'] must be at most 4096 characters long").


def _sub(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}['{key}']" if path else key


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"Param {path} must be a JSON object")
    return value


def _only(obj: dict[str, Any], path: str, allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _Invalid(f"Param {_sub(path, unknown[0])} is not a valid parameter")


def _str(
    obj: dict[str, Any], key: str, path: str, *, max_len: int | None = None, required: bool = True
) -> str | None:
    where = _sub(path, key)
    if key not in obj:
        if required:
            raise _Invalid(f"The parameter {where} is required")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise _Invalid(f"Param {where} must be a string")
    if not value:
        raise _Invalid(f"Param {where} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise _Invalid(f"Param {where} must be at most {max_len} characters long (got {len(value)})")
    return value


def _list(
    obj: dict[str, Any], key: str, path: str, *, max_items: int | None = None, required: bool = True
) -> list[Any]:
    where = _sub(path, key)
    if key not in obj:
        if required:
            raise _Invalid(f"The parameter {where} is required")
        return []
    value = obj[key]
    if not isinstance(value, list):
        raise _Invalid(f"Param {where} must be an array")
    if not value:
        raise _Invalid(f"Param {where} must not be empty")
    if max_items is not None and len(value) > max_items:
        raise _Invalid(f"Param {where} must have at most {max_items} elements (got {len(value)})")
    return value


def _text_holder(obj: dict[str, Any], key: str, path: str, max_len: int, *, required: bool) -> None:
    """``{"text": "..."}`` objects: interactive body and footer."""
    where = _sub(path, key)
    if key not in obj:
        if required:
            raise _Invalid(f"The parameter {where} is required")
        return
    holder = _obj(obj[key], where)
    _only(holder, where, {"text"})
    _str(holder, "text", where, max_len=max_len)


def _media_object(value: Any, path: str, allowed: set[str]) -> None:
    media = _obj(value, path)
    _only(media, path, allowed)
    has_id, has_link = "id" in media, "link" in media
    if has_id == has_link:
        raise _Invalid(f"Param {path} must have exactly one of 'id' or 'link'")
    if has_id:
        _str(media, "id", path)
    else:
        link = _str(media, "link", path)
        assert link is not None
        if not link.startswith(("http://", "https://")):
            raise _Invalid(f"Param {_sub(path, 'link')} must be an http(s) URL")
    if "caption" in allowed:
        _str(media, "caption", path, max_len=CAPTION_MAX, required=False)
    if "filename" in allowed:
        _str(media, "filename", path, required=False)


def _check_text(body: dict[str, Any]) -> None:
    text = _obj(body["text"], "text")
    _only(text, "text", {"body", "preview_url"})
    _str(text, "body", "text", max_len=TEXT_BODY_MAX)
    if "preview_url" in text and not isinstance(text["preview_url"], bool):
        raise _Invalid("Param text['preview_url'] must be a boolean")


def _check_template(body: dict[str, Any]) -> None:
    template = _obj(body["template"], "template")
    _only(template, "template", {"name", "language", "components"})
    _str(template, "name", "template", max_len=512)
    if "language" not in template:
        raise _Invalid("The parameter template['language'] is required")
    language = _obj(template["language"], "template['language']")
    _only(language, "template['language']", {"code", "policy"})
    _str(language, "code", "template['language']")
    if "policy" in language and language["policy"] != "deterministic":
        raise _Invalid("Param template['language']['policy'] must be 'deterministic'")
    for i, raw_component in enumerate(_list(template, "components", "template", required=False)):
        where = _sub("template['components']", i)
        component = _obj(raw_component, where)
        kind = _str(component, "type", where)
        if kind not in ("header", "body", "button"):
            raise _Invalid(f"Param {_sub(where, 'type')} must be one of header, body, button")
        allowed = {"type", "parameters"}
        if kind == "button":
            allowed |= {"sub_type", "index"}
            _str(component, "sub_type", where)
            index = component.get("index")
            if not (isinstance(index, int) or (isinstance(index, str) and index.isdigit())):
                raise _Invalid(f"Param {_sub(where, 'index')} is required and must be a number")
        _only(component, where, allowed)
        for j, raw_parameter in enumerate(_list(component, "parameters", where, required=False)):
            pwhere = _sub(_sub(where, "parameters"), j)
            parameter = _obj(raw_parameter, pwhere)
            if _str(parameter, "type", pwhere) == "text":
                value = _str(parameter, "text", pwhere)
                assert value is not None
                if re.search(r"[\n\t]| {5,}", value):
                    raise _Invalid(
                        f"Param {_sub(pwhere, 'text')} cannot have new-line/tab characters "
                        "or more than 4 consecutive spaces"
                    )


def _check_list_action(action: dict[str, Any], path: str) -> None:
    _only(action, path, {"button", "sections"})
    _str(action, "button", path, max_len=LIST_BUTTON_MAX)
    sections = _list(action, "sections", path, max_items=LIST_SECTIONS_MAX)
    row_ids: set[str] = set()
    total_rows = 0
    for i, raw_section in enumerate(sections):
        swhere = _sub(_sub(path, "sections"), i)
        section = _obj(raw_section, swhere)
        _only(section, swhere, {"title", "rows"})
        _str(section, "title", swhere, max_len=SECTION_TITLE_MAX, required=len(sections) > 1)
        rows = _list(section, "rows", swhere)
        total_rows += len(rows)
        if total_rows > LIST_ROWS_MAX:
            raise _Invalid(f"Param {path}['sections'] must have at most {LIST_ROWS_MAX} rows in all")
        for j, raw_row in enumerate(rows):
            rwhere = _sub(_sub(swhere, "rows"), j)
            row = _obj(raw_row, rwhere)
            _only(row, rwhere, {"id", "title", "description"})
            row_id = _str(row, "id", rwhere, max_len=ROW_ID_MAX)
            _str(row, "title", rwhere, max_len=ROW_TITLE_MAX)
            _str(row, "description", rwhere, max_len=ROW_DESCRIPTION_MAX, required=False)
            if row_id in row_ids:
                raise _Invalid(f"Param {_sub(rwhere, 'id')} must be unique among the rows")
            row_ids.add(row_id)  # type: ignore[arg-type]


def _check_button_action(action: dict[str, Any], path: str) -> None:
    _only(action, path, {"buttons"})
    ids: set[str] = set()
    titles: set[str] = set()
    for i, raw_button in enumerate(_list(action, "buttons", path, max_items=REPLY_BUTTONS_MAX)):
        bwhere = _sub(_sub(path, "buttons"), i)
        button = _obj(raw_button, bwhere)
        _only(button, bwhere, {"type", "reply"})
        if button.get("type") != "reply":
            raise _Invalid(f"Param {_sub(bwhere, 'type')} must be 'reply'")
        if "reply" not in button:
            raise _Invalid(f"The parameter {_sub(bwhere, 'reply')} is required")
        rwhere = _sub(bwhere, "reply")
        reply = _obj(button["reply"], rwhere)
        _only(reply, rwhere, {"id", "title"})
        button_id = _str(reply, "id", rwhere, max_len=REPLY_BUTTON_ID_MAX)
        title = _str(reply, "title", rwhere, max_len=REPLY_BUTTON_TITLE_MAX)
        if button_id in ids:
            raise _Invalid(f"Param {_sub(rwhere, 'id')} must be unique among the buttons")
        if title in titles:
            raise _Invalid(f"Param {_sub(rwhere, 'title')} must be unique among the buttons")
        ids.add(button_id)  # type: ignore[arg-type]
        titles.add(title)  # type: ignore[arg-type]


def _check_interactive(body: dict[str, Any]) -> None:
    path = "interactive"
    interactive = _obj(body["interactive"], path)
    _only(interactive, path, {"type", "header", "body", "footer", "action"})
    kind = interactive.get("type")
    if kind not in ("list", "button"):
        raise _Invalid("Param interactive['type'] must be 'list' or 'button'")
    if "header" in interactive:
        hwhere = _sub(path, "header")
        header = _obj(interactive["header"], hwhere)
        header_types = ("text",) if kind == "list" else ("text", "image", "video", "document")
        header_type = header.get("type")
        if header_type not in header_types:
            raise _Invalid(f"Param {_sub(hwhere, 'type')} must be one of {', '.join(header_types)}")
        _only(header, hwhere, {"type", header_type})
        if header_type == "text":
            _str(header, "text", hwhere, max_len=HEADER_FOOTER_MAX)
        else:
            if header_type not in header:
                raise _Invalid(f"The parameter {_sub(hwhere, header_type)} is required")
            _media_object(header[header_type], _sub(hwhere, header_type), {"id", "link"})
    _text_holder(interactive, "body", path, INTERACTIVE_BODY_MAX, required=True)
    _text_holder(interactive, "footer", path, HEADER_FOOTER_MAX, required=False)
    if "action" not in interactive:
        raise _Invalid("The parameter interactive['action'] is required")
    action = _obj(interactive["action"], "interactive['action']")
    if kind == "list":
        _check_list_action(action, "interactive['action']")
    else:
        _check_button_action(action, "interactive['action']")


def _check_image(body: dict[str, Any]) -> None:
    _media_object(body["image"], "image", {"id", "link", "caption"})


def _check_document(body: dict[str, Any]) -> None:
    _media_object(body["document"], "document", {"id", "link", "caption", "filename"})


_TYPE_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "text": _check_text,
    "template": _check_template,
    "interactive": _check_interactive,
    "image": _check_image,
    "document": _check_document,
}


def validate_send_body(body: Any) -> Literal["read", "message"]:
    """Check a ``POST .../messages`` body like Meta would; raise :class:`GraphError` if not."""
    try:
        return _validate_send_body(body)
    except _Invalid as exc:
        raise _invalid_param(str(exc)) from None


def _validate_send_body(body: Any) -> Literal["read", "message"]:
    if not isinstance(body, dict):
        raise _Invalid("The request body must be a JSON object")
    if "messaging_product" not in body:
        raise _Invalid("The parameter messaging_product is required")
    if body["messaging_product"] != "whatsapp":
        raise _Invalid("Param messaging_product must be 'whatsapp'")

    if "status" in body:  # mark as read
        _only(body, "", {"messaging_product", "status", "message_id", "typing_indicator"})
        if body["status"] != "read":
            raise _Invalid("Param status must be 'read'")
        _str(body, "message_id", "")
        if "typing_indicator" in body:
            indicator = _obj(body["typing_indicator"], "typing_indicator")
            if indicator != {"type": "text"}:
                raise _Invalid("Param typing_indicator must be {\"type\": \"text\"}")
        return "read"

    kind = body.get("type")
    if "type" not in body:
        raise _Invalid("The parameter type is required")
    if kind not in SEND_TYPES:
        raise _Invalid(f"Param type must be one of {', '.join(SEND_TYPES)} (got {kind!r})")
    _only(
        body,
        "",
        {"messaging_product", "recipient_type", "to", "type", "context", "biz_opaque_callback_data", kind},
    )
    to = _str(body, "to", "")
    assert to is not None
    if not _PHONE.fullmatch(to):
        raise _Invalid(
            "Param to must be the recipient's number with country code, digits only "
            f"(no '+', spaces or leading 0), at most 15 digits (got {to!r})"
        )
    if "recipient_type" in body and body["recipient_type"] != "individual":
        raise _Invalid("Param recipient_type must be 'individual'")
    if "context" in body:
        context = _obj(body["context"], "context")
        _only(context, "context", {"message_id"})
        _str(context, "message_id", "context")
    _str(body, "biz_opaque_callback_data", "", max_len=512, required=False)
    if kind not in body:
        raise _Invalid(f"The parameter {kind} is required")
    _TYPE_CHECKS[kind](body)
    return "message"


# --------------------------------------------------------------------------- the fake


class FakeGraph:
    """The fake Graph API server, and Meta's side of the webhook. See the module docstring."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        app_secret: str = "test-secret",
        phone_number_id: str = "106540352242922",
        api_version: str = "v21.0",
        display_phone_number: str = "6281100000000",
        waba_id: str = "102290129340398",
    ) -> None:
        self.token = token
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.api_version = api_version
        self.display_phone_number = display_phone_number
        self.waba_id = waba_id

        self.sent: list[SentRecord] = []
        self.rejected: list[RejectedRecord] = []
        self.media_requests: list[str] = []  # step 1 (GET /{version}/{media_id}), authorised calls
        self.media_downloads: list[str] = []  # step 2 (GET /media-bytes/{media_id}), served bytes

        self._media: dict[str, _Media] = {}
        self._download_tokens: dict[str, str] = {}  # token -> media id
        self._failures: list[_PendingFailure] = []
        self._sent_changed = asyncio.Condition()
        self.listeners: list[Callable[[SentRecord], None]] = []   # called with each accepted send
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the ``graph_url`` to give the bridge."""
        if self._url is None:
            raise RuntimeError("FakeGraph is not running: call start() first")
        return self._url

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeGraph is already running")
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)  # port 0: the OS picks a free port
        await site.start()
        port = runner.addresses[0][1]
        self._runner = runner
        self._url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._url = None

    async def __aenter__(self) -> FakeGraph:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _build_app(self) -> web.Application:
        @web.middleware
        async def graph_errors(
            request: web.Request, handler: Callable[[web.Request], Any]
        ) -> web.StreamResponse:
            try:
                return await handler(request)
            except GraphError as error:
                self._record_rejection(request, error)
                return web.json_response(error.envelope(), status=error.status, headers=error.headers)

        app = web.Application(middlewares=[graph_errors])
        # Order matters: /media-bytes/{id} would also match /{version}/{media_id}.
        app.router.add_get("/media-bytes/{media_id}", self._media_bytes)
        app.router.add_post("/{version}/{phone_number_id}/messages", self._messages)
        app.router.add_get("/{version}/{media_id}", self._media_info)
        app.router.add_route("*", "/{tail:.*}", self._unsupported)
        return app

    def _record_rejection(self, request: web.Request, error: GraphError) -> None:
        body = request.get(_BODY_KEY)
        self.rejected.append(
            {
                "method": request.method,
                "path": request.path,
                "status": error.status,
                "code": error.code,
                "message": error.message,
                "body": body,
            }
        )
        log.warning(
            "fake Graph answered %s %s with %s (code %s): %s",
            request.method,
            request.path,
            error.status,
            error.code,
            error.message,
        )

    # ----------------------------------------------------------------- request checks

    def _check_bearer(self, request: web.Request) -> None:
        header = request.headers.get("Authorization")
        if header is None:
            raise GraphError(
                401,
                190,
                "An access token is required: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_request"'},
            )
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(token.encode(), self.token.encode()):
            raise GraphError(
                401,
                190,
                "Invalid OAuth access token - Cannot parse access token",
                headers={"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token"'},
            )

    def _check_version(self, request: web.Request) -> None:
        version = request.match_info["version"]
        if version != self.api_version:
            raise GraphError(
                400,
                100,
                f"(#100) Unsupported request: API version {version!r} is not the configured "
                f"{self.api_version!r}",
            )

    @staticmethod
    def _no_such_object(method: str, object_id: str, *, status: int = 400) -> GraphError:
        return GraphError(
            status,
            100,
            f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
            "cannot be loaded due to missing permissions, or does not support this operation.",
            subcode=33,
        )

    # ----------------------------------------------------------------- routes

    async def _messages(self, request: web.Request) -> web.Response:
        self._check_bearer(request)
        self._check_version(request)
        if request.match_info["phone_number_id"] != self.phone_number_id:
            raise self._no_such_object("post", request.match_info["phone_number_id"])
        if request.content_type != "application/json":
            raise _invalid_param(f"Content-Type must be application/json (got {request.content_type!r})")
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise _invalid_param("The request body is not valid JSON") from None
        request[_BODY_KEY] = body

        kind = validate_send_body(body)
        failure = self._take_failure(body)
        if failure is not None:
            raise failure

        if kind == "read":
            await self._record_sent({"body": body, "id": None})
            return web.json_response({"success": True})
        wamid = new_wamid()
        await self._record_sent({"body": body, "id": wamid})
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid}],
            }
        )

    async def _media_info(self, request: web.Request) -> web.Response:
        self._check_bearer(request)
        self._check_version(request)
        media_id = request.match_info["media_id"]
        self.media_requests.append(media_id)
        asked_number = request.query.get("phone_number_id")
        if asked_number is not None and asked_number != self.phone_number_id:
            raise self._no_such_object("get", asked_number)
        media = self._media.get(media_id)
        if media is None:
            raise self._no_such_object("get", media_id, status=404)
        token = secrets.token_urlsafe(16)
        self._download_tokens[token] = media_id
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.url}/media-bytes/{media_id}?token={token}",
                "mime_type": media.mime_type,
                "sha256": hashlib.sha256(media.data).hexdigest(),
                "file_size": len(media.data),
                "id": media_id,
            }
        )

    async def _media_bytes(self, request: web.Request) -> web.Response:
        self._check_bearer(request)
        media_id = request.match_info["media_id"]
        media = self._media.get(media_id)
        if media is None or self._download_tokens.get(request.query.get("token", "")) != media_id:
            raise GraphError(404, 100, "Media URL not found: use the url returned by GET /{version}/{media_id}")
        self.media_downloads.append(media_id)
        return web.Response(body=media.data, headers={"Content-Type": media.mime_type})

    async def _unsupported(self, request: web.Request) -> web.Response:
        raise GraphError(
            400,
            100,
            f"Unsupported {request.method.lower()} request: {request.path} is not served by the fake Graph API",
        )

    # ----------------------------------------------------------------- recording

    async def _record_sent(self, record: SentRecord) -> None:
        async with self._sent_changed:
            self.sent.append(record)
            self._sent_changed.notify_all()
        for listener in self.listeners:
            listener(record)

    def texts_to(self, wa_id: str) -> list[str]:
        """Bodies of the text messages sent to ``wa_id``, in order."""
        return [
            record["body"]["text"]["body"]
            for record in self.sent
            if record["body"].get("type") == "text" and record["body"].get("to") == wa_id
        ]

    async def wait_for_sent(
        self, predicate: Callable[[SentRecord], bool], timeout: float = 10
    ) -> SentRecord:
        """The first record in ``sent`` (already there or still to come) matching ``predicate``.

        A predicate that raises ``LookupError`` or ``TypeError`` (say ``r["body"]["to"]`` on
        a mark-read) counts as "no match". Raises ``TimeoutError`` listing what was sent.
        """

        def first_match() -> SentRecord | None:
            for record in self.sent:
                try:
                    if predicate(record):
                        return record
                except (LookupError, TypeError):
                    continue
            return None

        try:
            async with asyncio.timeout(timeout):
                async with self._sent_changed:
                    found = await self._sent_changed.wait_for(first_match)
        except TimeoutError:
            raise TimeoutError(
                f"no sent request matched within {timeout:g}s\n{self.describe()}"
            ) from None
        assert found is not None
        return found

    def describe(self, limit: int = 10) -> str:
        """A short dump of the last sent and rejected requests, for failure messages."""
        lines = [f"sent ({len(self.sent)}):"]
        for record in self.sent[-limit:]:
            lines.append("  " + _summarise(record["body"]))
        if self.rejected:
            lines.append(f"rejected ({len(self.rejected)}):")
            for rejection in self.rejected[-limit:]:
                lines.append(
                    f"  {rejection['method']} {rejection['path']} -> {rejection['status']}: "
                    f"{rejection['message'][:120]}"
                )
        return "\n".join(lines)

    # ----------------------------------------------------------------- test controls

    def add_media(self, data: bytes, mime_type: str, media_id: str | None = None) -> str:
        """Store media the bridge can download; returns its id (a given id is replaced)."""
        media_id = media_id or _new_media_id()
        self._media[media_id] = _Media(bytes(data), mime_type)
        return media_id

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        code: int = 131000,
        message: str = "Something went wrong",
        retry_after: float | None = None,
        details: str | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next ``count`` valid send calls with a Graph error envelope.

        Failures are consumed only by sends that pass validation (a malformed body still
        gets its 400), in the order fail_next was called.  ``match``, given a send body,
        limits which sends consume this failure (e.g. ``lambda b: "status" not in b`` to
        leave mark-reads alone).  A failed send is not recorded in ``sent``.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._failures.append(_PendingFailure(count, status, code, message, details, retry_after, match))

    def _take_failure(self, body: dict[str, Any]) -> GraphError | None:
        for failure in self._failures:
            if failure.match is None or failure.match(body):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                return failure.error()
        return None

    # ----------------------------------------------------------------- webhook side

    def sign(self, body: bytes) -> str:
        """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
        return "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()

    @staticmethod
    def encode(payload: dict[str, Any]) -> bytes:
        """Serialise a notification the way Meta does: compact, non-ASCII as ``\\uXXXX``,
        ``/`` as ``\\/``. A bridge that re-serialises before checking the signature fails."""
        text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
        return text.replace("/", "\\/").encode("ascii")

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
        # Webhooks carry the hash base64-encoded (see samples/whatsapp/message.json), while
        # GET /{media_id} gives it in hex. Unknown media: a hash of the id, still well-formed.
        media = self._media.get(media_id)
        data = media.data if media is not None else media_id.encode()
        return base64.b64encode(hashlib.sha256(data).digest()).decode()

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


def _timestamp(value: int | None) -> str:
    return str(int(time.time()) if value is None else value)


def _summarise(body: dict[str, Any]) -> str:
    if "status" in body:
        return f"mark-read {body.get('message_id')}"
    kind = body.get("type")
    detail: Any = body.get(kind) if isinstance(kind, str) else None
    if kind == "text" and isinstance(detail, dict):
        detail = detail.get("body")
    elif kind == "template" and isinstance(detail, dict):
        detail = detail.get("name")
    text = json.dumps(detail, ensure_ascii=False)
    return f"to={body.get('to')} type={kind} {text[:100]}"
