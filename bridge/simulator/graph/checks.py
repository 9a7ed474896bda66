"""What the fake Graph API checks on a request, and the error envelope it answers with.

Each check follows the API notes ("WhatsApp Cloud API"): the bearer token, the API
version, the phone number id, and the body of a ``POST .../messages``.  Only the bodies
the bridge sends are understood: a ``type: "text"`` message (with an optional
``context``) and a mark-read (``status: "read"``, ``message_id``, optional
``typing_indicator``).  Anything else, other message types included, is answered the way
Graph answers an invalid parameter: HTTP 400, code 100, the rule named in the message.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from typing import Any, Literal

from aiohttp import web

TEXT_BODY_MAX = 4096

_PHONE = re.compile(r"[1-9][0-9]{0,14}")  # E.164 digits: country code first, no "+", no leading 0
# A business-scoped user id: country code, a dot, (ENT. for a parent id,) letters and digits.
BSUID = re.compile(r"[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}")


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


def validate_send_body(body: Any) -> Literal["read", "message"]:
    """Check a ``POST .../messages`` body like Meta would; raise :class:`GraphError` if not."""
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
    if body["type"] != "text":  # the only message type the bridge sends
        raise _Invalid(f"Param type must be 'text' (got {body['type']!r})")
    _only(
        body,
        "",
        {"messaging_product", "recipient_type", "to", "type", "context", "biz_opaque_callback_data", "text"},
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
    if "text" not in body:
        raise _Invalid("The parameter text is required")
    _check_text(body)
    return "message"


def _check_text(body: dict[str, Any]) -> None:
    text = _obj(body["text"], "text")
    _only(text, "text", {"body", "preview_url"})
    _str(text, "body", "text", max_len=TEXT_BODY_MAX)
    if "preview_url" in text and not isinstance(text["preview_url"], bool):
        raise _Invalid("Param text['preview_url'] must be a boolean")
