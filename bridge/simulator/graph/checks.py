"""What the fake Graph API checks on a request, and the error envelope it answers with.

Each check follows the API notes ("WhatsApp Cloud API"): the bearer token, the API
version, the phone number id, and the body of a ``POST .../messages``.  Only the bodies
the bridge sends are understood:

* a ``text`` message (with an optional ``context``);
* an ``interactive`` message: a ``list`` (at most 10 rows in all) or a ``button``
  message (up to three reply buttons), with an optional text header and footer;
* a ``template`` message, with text parameters for its header and body and payloads for
  its quick-reply buttons (which templates exist is :func:`check_template`'s business);
* a mark-read (``status: "read"``, ``message_id``, optional ``typing_indicator``).

A message goes ``to`` a phone number or, for a user known only by a business-scoped user
id, to a ``recipient`` BSUID; when both are given ``to`` wins.  Anything else, other
message types included, is answered the way Graph answers an invalid parameter: HTTP
400, code 100, the rule named in the message.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

TEXT_BODY_MAX = 4096

# Interactive messages (Meta's documented limits).
INTERACTIVE_BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_TEXT_MAX = 60
LIST_BUTTON_MAX = 20
LIST_ROWS_MAX = 10  # in all sections together
LIST_SECTIONS_MAX = 10
SECTION_TITLE_MAX = 24
ROW_ID_MAX = 200
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
REPLY_BUTTONS_MAX = 3
REPLY_ID_MAX = 256
REPLY_TITLE_MAX = 20

MESSAGE_TYPES = ("text", "interactive", "template")  # what the bridge sends

_PHONE = re.compile(r"[1-9][0-9]{0,14}")  # E.164 digits: country code first, no "+", no leading 0
# A business-scoped user id: country code, a dot, (ENT. for a parent id,) letters and digits.
BSUID = re.compile(r"[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}")
# Meta refuses a template parameter with a newline, a tab or more than 4 spaces in a row.
_BAD_PARAM_TEXT = re.compile(r"[\n\t]| {5,}")


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


def _fbtrace_id() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode().rstrip("=")


def invalid_param(rule: str) -> GraphError:
    """Graph's answer to a body that breaks ``rule``: 400, code 100."""
    return GraphError(400, 100, f"(#100) {rule}", details=rule)


def no_such_object(method: str, object_id: str, *, status: int = 400) -> GraphError:
    """Graph's answer to an id it does not know (or that is not ours)."""
    return GraphError(
        status,
        100,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
        "cannot be loaded due to missing permissions, or does not support this operation.",
        subcode=33,
    )


# --------------------------------------------------------------------------- the request


def check_bearer(request: web.Request, token: str) -> None:
    header = request.headers.get("Authorization")
    if header is None:
        raise GraphError(
            401,
            190,
            "An access token is required: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_request"'},
        )
    scheme, _, given = header.partition(" ")
    if scheme != "Bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise GraphError(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
            headers={"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token"'},
        )


def check_version(request: web.Request, api_version: str) -> None:
    version = request.match_info["version"]
    if version != api_version:
        raise GraphError(
            400,
            100,
            f"(#100) Unsupported request: API version {version!r} is not the configured {api_version!r}",
        )


# --------------------------------------------------------------------------- the send body
#
# Each check raises _Invalid with the rule, worded like Meta's error details
# ("Param text['body'] must be at most 4096 characters long").


class _Invalid(Exception):
    """A send body broke a rule; the text names the rule."""


def _sub(path: str, key: str) -> str:
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


def _array(
    obj: dict[str, Any], key: str, path: str, *, min_len: int = 0, max_len: int | None = None
) -> list[Any]:
    where = _sub(path, key)
    if key not in obj:
        raise _Invalid(f"The parameter {where} is required")
    value = obj[key]
    if not isinstance(value, list):
        raise _Invalid(f"Param {where} must be an array")
    if len(value) < min_len:
        raise _Invalid(f"Param {where} must hold at least {min_len} element{'s' if min_len > 1 else ''}")
    if max_len is not None and len(value) > max_len:
        raise _Invalid(f"Param {where} must hold at most {max_len} elements (got {len(value)})")
    return value


def _unique(value: str, seen: set[str], where: str, what: str) -> None:
    if value in seen:
        raise _Invalid(f"Param {where} must be unique: {what} {value!r} is used twice")
    seen.add(value)


def addressee(body: dict[str, Any]) -> str | None:
    """Whom an accepted send body goes to: ``to`` (a number) when given, else ``recipient``
    (a BSUID); None for a mark-read."""
    if "to" in body:
        return str(body["to"])
    if "recipient" in body:
        return str(body["recipient"])
    return None


def validate_send_body(body: Any) -> Literal["read", "message"]:
    """Check a ``POST .../messages`` body like Meta would; raise :class:`GraphError` if not.

    This checks the shape only; whether a template exists is :func:`check_template`'s.
    """
    try:
        return _validate_send_body(body)
    except _Invalid as exc:
        raise invalid_param(str(exc)) from None


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

    if "type" not in body:
        raise _Invalid("The parameter type is required")
    kind = body["type"]
    if kind not in MESSAGE_TYPES:  # the only message types the bridge sends
        raise _Invalid(f"Param type must be one of {', '.join(map(repr, MESSAGE_TYPES))} (got {kind!r})")
    _only(
        body,
        "",
        {"messaging_product", "recipient_type", "to", "recipient", "type", "context",
         "biz_opaque_callback_data", kind},
    )
    _check_addressee(body)
    if "recipient_type" in body and body["recipient_type"] != "individual":
        raise _Invalid("Param recipient_type must be 'individual'")
    if "context" in body:
        context = _obj(body["context"], "context")
        _only(context, "context", {"message_id"})
        _str(context, "message_id", "context")
    _str(body, "biz_opaque_callback_data", "", max_len=512, required=False)
    if kind not in body:
        raise _Invalid(f"The parameter {kind} is required")
    if kind == "text":
        _check_text(body)
    elif kind == "interactive":
        _check_interactive(body)
    else:
        _check_template_shape(body)
    return "message"


def _check_addressee(body: dict[str, Any]) -> None:
    if "to" not in body and "recipient" not in body:
        raise _Invalid("The parameter to is required (or recipient, the user's business-scoped user id)")
    if "to" in body:
        to = _str(body, "to", "")
        assert to is not None
        if not _PHONE.fullmatch(to):
            raise _Invalid(
                "Param to must be the recipient's number with country code, digits only "
                f"(no '+', spaces or leading 0), at most 15 digits (got {to!r})"
            )
    if "recipient" in body:
        recipient = _str(body, "recipient", "")
        assert recipient is not None
        if not BSUID.fullmatch(recipient):
            raise _Invalid(
                "Param recipient must be a business-scoped user id: a two-letter country code, "
                "a dot, optionally 'ENT.', then up to 128 letters and digits, e.g. "
                f"'ID.13491208655302741918' (got {recipient!r})"
            )


def _check_text(body: dict[str, Any]) -> None:
    text = _obj(body["text"], "text")
    _only(text, "text", {"body", "preview_url"})
    _str(text, "body", "text", max_len=TEXT_BODY_MAX)
    if "preview_url" in text and not isinstance(text["preview_url"], bool):
        raise _Invalid("Param text['preview_url'] must be a boolean")


# --------------------------------------------------------------------------- interactive


def _check_interactive(body: dict[str, Any]) -> None:
    path = "interactive"
    interactive = _obj(body[path], path)
    kind = _str(interactive, "type", path)
    if kind not in ("list", "button"):
        raise _Invalid(f"Param interactive['type'] must be 'list' or 'button' (got {kind!r})")
    _only(interactive, path, {"type", "header", "body", "footer", "action"})
    if "header" in interactive:
        where = _sub(path, "header")
        header = _obj(interactive["header"], where)
        _only(header, where, {"type", "text"})
        if header.get("type") != "text":
            raise _Invalid(f"Param {where}['type'] must be 'text' (got {header.get('type')!r})")
        _str(header, "text", where, max_len=HEADER_TEXT_MAX)
    if "body" not in interactive:
        raise _Invalid("The parameter interactive['body'] is required")
    where = _sub(path, "body")
    message_body = _obj(interactive["body"], where)
    _only(message_body, where, {"text"})
    _str(message_body, "text", where, max_len=INTERACTIVE_BODY_MAX)
    if "footer" in interactive:
        where = _sub(path, "footer")
        footer = _obj(interactive["footer"], where)
        _only(footer, where, {"text"})
        _str(footer, "text", where, max_len=FOOTER_TEXT_MAX)
    if "action" not in interactive:
        raise _Invalid("The parameter interactive['action'] is required")
    action = _obj(interactive["action"], _sub(path, "action"))
    if kind == "list":
        _check_list_action(action, _sub(path, "action"))
    else:
        _check_button_action(action, _sub(path, "action"))


def _check_list_action(action: dict[str, Any], path: str) -> None:
    _only(action, path, {"button", "sections"})
    _str(action, "button", path, max_len=LIST_BUTTON_MAX)
    sections = _array(action, "sections", path, min_len=1, max_len=LIST_SECTIONS_MAX)
    rows_in_all = 0
    row_ids: set[str] = set()
    for i, section in enumerate(sections):
        where = f"{_sub(path, 'sections')}[{i}]"
        section = _obj(section, where)
        _only(section, where, {"title", "rows"})
        if len(sections) > 1 and "title" not in section:
            raise _Invalid(f"The parameter {where}['title'] is required when a list has more than one section")
        _str(section, "title", where, max_len=SECTION_TITLE_MAX, required=False)
        rows = _array(section, "rows", where, min_len=1)
        rows_in_all += len(rows)
        for j, row in enumerate(rows):
            row_path = f"{where}['rows'][{j}]"
            row = _obj(row, row_path)
            _only(row, row_path, {"id", "title", "description"})
            row_id = _str(row, "id", row_path, max_len=ROW_ID_MAX)
            assert row_id is not None
            _unique(row_id, row_ids, f"{row_path}['id']", "row id")
            _str(row, "title", row_path, max_len=ROW_TITLE_MAX)
            _str(row, "description", row_path, max_len=ROW_DESCRIPTION_MAX, required=False)
    if rows_in_all > LIST_ROWS_MAX:
        raise _Invalid(
            f"Param {_sub(path, 'sections')} must hold at most {LIST_ROWS_MAX} rows in all (got {rows_in_all})"
        )


def _check_button_action(action: dict[str, Any], path: str) -> None:
    _only(action, path, {"buttons"})
    buttons = _array(action, "buttons", path, min_len=1, max_len=REPLY_BUTTONS_MAX)
    ids: set[str] = set()
    titles: set[str] = set()
    for i, button in enumerate(buttons):
        where = f"{_sub(path, 'buttons')}[{i}]"
        button = _obj(button, where)
        _only(button, where, {"type", "reply"})
        if button.get("type") != "reply":
            raise _Invalid(f"Param {where}['type'] must be 'reply' (got {button.get('type')!r})")
        if "reply" not in button:
            raise _Invalid(f"The parameter {where}['reply'] is required")
        reply_path = f"{where}['reply']"
        reply = _obj(button["reply"], reply_path)
        _only(reply, reply_path, {"id", "title"})
        button_id = _str(reply, "id", reply_path, max_len=REPLY_ID_MAX)
        title = _str(reply, "title", reply_path, max_len=REPLY_TITLE_MAX)
        assert button_id is not None and title is not None
        _unique(button_id, ids, f"{reply_path}['id']", "button id")
        _unique(title, titles, f"{reply_path}['title']", "button title")


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class ApprovedTemplate:
    """A message template as approved in WhatsApp Manager, in one language.

    ``body_params`` / ``header_params``: how many variables ({{1}}, {{2}}, ...) its body and
    its text header have; ``quick_replies``: how many quick-reply buttons it has.
    """

    name: str
    language: str = "id"
    body_params: int = 0
    header_params: int = 0
    quick_replies: int = 0


def _check_template_shape(body: dict[str, Any]) -> None:
    path = "template"
    template = _obj(body[path], path)
    _only(template, path, {"name", "language", "components"})
    _str(template, "name", path, max_len=512)
    if "language" not in template:
        raise _Invalid("The parameter template['language'] is required")
    where = _sub(path, "language")
    language = _obj(template["language"], where)
    _only(language, where, {"code", "policy"})
    _str(language, "code", where)
    if "policy" in language and language["policy"] != "deterministic":
        raise _Invalid(f"Param {where}['policy'] must be 'deterministic'")
    if "components" not in template:
        return
    components = _array(template, "components", path)
    seen: set[str] = set()
    indexes: set[int] = set()
    for i, component in enumerate(components):
        where = f"{_sub(path, 'components')}[{i}]"
        component = _obj(component, where)
        kind = _str(component, "type", where)
        if kind in ("header", "body"):
            if kind in seen:
                raise _Invalid(f"Param {where}['type']: a template has one {kind} component (got a second)")
            seen.add(kind)
            _only(component, where, {"type", "parameters"})
            for j, parameter in enumerate(_array(component, "parameters", where)):
                param_path = f"{where}['parameters'][{j}]"
                parameter = _obj(parameter, param_path)
                if parameter.get("type") != "text":
                    raise _Invalid(
                        f"Param {param_path}['type'] must be 'text' (got {parameter.get('type')!r}): "
                        "the bridge sends text parameters only"
                    )
                _only(parameter, param_path, {"type", "text"})
                _str(parameter, "text", param_path, max_len=HEADER_TEXT_MAX if kind == "header" else None)
        elif kind == "button":
            _only(component, where, {"type", "sub_type", "index", "parameters"})
            sub_type = _str(component, "sub_type", where)
            if sub_type != "quick_reply":
                raise _Invalid(
                    f"Param {where}['sub_type'] must be 'quick_reply' (got {sub_type!r}): "
                    "the bridge's templates have quick-reply buttons only"
                )
            index = _button_index(component, where)
            if index in indexes:
                raise _Invalid(f"Param {where}['index'] must be unique: button index {index} is used twice")
            indexes.add(index)
            parameters = _array(component, "parameters", where, min_len=1, max_len=1)
            param_path = f"{where}['parameters'][0]"
            parameter = _obj(parameters[0], param_path)
            if parameter.get("type") != "payload":
                raise _Invalid(f"Param {param_path}['type'] must be 'payload' (got {parameter.get('type')!r})")
            _only(parameter, param_path, {"type", "payload"})
            _str(parameter, "payload", param_path)
        else:
            raise _Invalid(f"Param {where}['type'] must be 'header', 'body' or 'button' (got {kind!r})")
    _check_parameter_texts(components)


def _button_index(component: dict[str, Any], where: str) -> int:
    if "index" not in component:
        raise _Invalid(f"The parameter {where}['index'] is required")
    value = component["index"]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() \
            or not 0 <= int(value) <= 9:
        raise _Invalid(f"Param {where}['index'] must be a button position from 0 to 9 (got {value!r})")
    return int(value)


def _check_parameter_texts(components: list[Any]) -> None:
    """Meta refuses a header or body parameter with a newline, a tab or 5+ spaces in a row."""
    for component in components:
        if component["type"] not in ("header", "body"):
            continue
        for parameter in component["parameters"]:
            if _BAD_PARAM_TEXT.search(parameter["text"]):
                raise GraphError(
                    400,
                    132018,
                    "(#132018) There was an issue with the parameters in your template.",
                    details=f"{component['type']}: Param text cannot have new-line/tab characters "
                    "or more than 4 consecutive spaces",
                )


def check_template(
    template: dict[str, Any], approved: Mapping[tuple[str, str], ApprovedTemplate]
) -> None:
    """Check a well-formed ``template`` object against the approved templates.

    ``approved`` is keyed by (name, language code).  An unknown name or language is
    Graph's 404 with code 132001; a header or body with the wrong number of parameters,
    400 with code 132000; a quick-reply button the template does not have, 400 with
    code 131009.
    """
    name = template["name"]
    code = template["language"]["code"]
    approved_template = approved.get((name, code))
    if approved_template is None:
        raise GraphError(
            404,
            132001,
            "(#132001) Template name does not exist in the translation",
            details=f"template name ({name}) does not exist in {code}",
        )
    given = {"header": 0, "body": 0}
    buttons: list[int] = []
    for component in template.get("components", []):
        if component["type"] == "button":
            buttons.append(int(component["index"]))
        else:
            given[component["type"]] = len(component["parameters"])
    for part, expected in (("header", approved_template.header_params), ("body", approved_template.body_params)):
        if given[part] != expected:
            raise GraphError(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                details=f"{part}: number of localizable_params ({given[part]}) does not match "
                f"the expected number of params ({expected})",
            )
    for index in buttons:
        if index >= approved_template.quick_replies:
            raise GraphError(
                400,
                131009,
                "(#131009) Parameter value is not valid",
                details=f"buttons: Button at index {index} of type QuickReply does not exist: "
                f"template {name} has {approved_template.quick_replies} quick-reply button(s)",
            )
