"""The fake Bot API server: routes, parameter checks, the update queue, webhook, records.

:class:`FakeBotApi` answers ``/bot{token}/{method}`` (GET with a query string, or POST with
JSON, a form or a query string; parameters from the body win) and the file download
``/file/bot{token}/{file_path}``, always in Telegram's envelope with the HTTP status equal
to ``error_code``.  What each method checks is in its handler, with the parameter readers
below; how a bot message's text and keyboard must look (HTML and MarkdownV2 entities, the
inline keyboard) is in :mod:`.updates`, beside the chats that show it.  Where Telegram
would quietly coerce a wrongly typed value (``limit=abc`` becomes 0), the fake answers 400
instead, in its own words, so such a request fails the test: it is a bug in the caller.

It also plays Telegram's servers between requests: the queue of updates (kept 24 hours by
the fake's clock, confirmed by ``offset``), the one long poll allowed at a time, the
webhook (posting queued updates one at a time and retrying refused ones in the
background), the rate limits, and failures injected by the tests (:meth:`FakeBotApi.fail_next`).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bridge.simulator.telegram.updates import (TEXT_MAX, Chat, Citizens, Clock, SentMessage, Unshowable, html_text,
                                              inline_keyboard, markdown_text, without_reply)

log = logging.getLogger(__name__)

ANSWER_TEXT_MAX = 200
FILE_MAX = 20 * 1024 * 1024  # what getFile serves to a bot
KEEP_UPDATES = timedelta(hours=24)
LONG_POLL_MAX = 50  # Telegram's cap on getUpdates' timeout
WEBHOOK_PORTS = (80, 88, 443, 8443)
LOOPBACK = ("127.0.0.1", "localhost", "::1")

_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_INTEGER = re.compile(r"\s*-?\d+\s*")

CONFLICT_WEBHOOK = ("Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first")
CONFLICT_POLLER = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
HTTPS_ONLY = "bad webhook: An HTTPS URL must be provided for webhook"


class BotApiError(Exception):
    """An error answer, raised by a handler and rendered as the envelope."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            envelope["parameters"] = {"retry_after": self.retry_after}
        return envelope


def bad_request(what: str) -> BotApiError:
    return BotApiError(400, "Bad Request: " + what)


# --------------------------------------------------------------------------- parameters
# An absent parameter, JSON null and "" are the same to Telegram: not given.

def int_param(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise bad_request(f'field "{name}" must be an Integer')


def bool_param(params: dict[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise bad_request(f'field "{name}" must be a Boolean')


def str_param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise bad_request(f'field "{name}" must be a String')


def json_param(params: dict[str, Any], name: str, error: str, kind: type = dict) -> Any:
    """An object (or array) parameter: given as such in JSON, or serialised as a string."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise bad_request(error) from None
    if not isinstance(value, kind):
        raise bad_request(error)
    return value


def update_kinds(params: dict[str, Any]) -> list[str] | None:
    kinds = json_param(params, "allowed_updates", "can't parse allowed updates JSON array", list)
    if kinds is not None and not all(isinstance(kind, str) for kind in kinds):
        raise bad_request("can't parse allowed updates JSON array")
    return kinds


# --------------------------------------------------------------------------- records

class RejectedCall(TypedDict):
    method: str  # as the caller spelled it
    error_code: int
    description: str
    params: dict[str, Any]  # as parsed, or {} when refused before parsing (token, method)


class WebhookPost(TypedDict):
    url: str
    update_id: int
    status: int | None  # the HTTP answer; None when the POST itself failed
    error: str | None  # what getWebhookInfo reports as last_error_message, when it failed


@dataclass
class _Queued:
    update: dict[str, Any]
    at: datetime  # when it was queued, by the fake's clock


@dataclass
class _Failure:
    method: str  # lower case
    error_code: int
    description: str
    retry_after: int | None
    remaining: int
    match: Callable[[dict[str, Any]], bool] | None


class FakeBotApi(Citizens):
    """The fake Bot API of one bot, and its users.  See the package docstring."""

    def __init__(self, token: str = "123456:TEST-token", bot_username: str = "pengaduan_bot",
                 clock: Clock | None = None, *, bot_name: str = "Layanan Pengaduan") -> None:
        if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", token):
            raise ValueError(f"a bot token looks like '123456:ABC-def', not {token!r}")
        super().__init__(clock)
        self.token = token
        self.me = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": bot_name, "username": bot_username}
        # Rate limits (real time): at most per_chat_burst messages to one chat and
        # overall_per_second in all within any second; beyond that 429, retry after 1.
        self.rate_limits = True
        self.per_chat_burst = 3
        self.overall_per_second = 30
        self.webhook_retry_interval = 0.2  # seconds between attempts to post a refused update

        self.sent: list[SentMessage] = []
        self.rejected: list[RejectedCall] = []
        self.get_updates_calls: list[dict[str, Any]] = []
        self.webhook_posts: list[WebhookPost] = []
        self.answered_callbacks: list[dict[str, Any]] = []
        self.downloads: list[str] = []  # file_ids whose bytes were served
        self.listeners: list[Callable[[SentMessage], None]] = []  # called with each accepted send
        self.blocked: set[int] = set()
        self.confirmed_through = 0  # the highest update_id confirmed by a getUpdates offset

        self._queue: list[_Queued] = []
        self._allowed_updates: list[str] = []  # [] = every kind
        self._webhook_url: str | None = None
        self._webhook_secret: str | None = None
        self._last_error: tuple[int, str] | None = None  # (date, message) of the last failed post
        self._handed_out: set[str] = set()  # file paths getFile gave
        self._failures: list[_Failure] = []
        self._poller = 0  # the latest getUpdates; an earlier one still waiting gets a 409
        self._wakers: set[asyncio.Event] = set()  # long polls and waits, set on any change
        self._sends: deque[float] = deque()
        self._chat_sends: dict[int, deque[float]] = {}
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._url: str | None = None
        self._methods = {
            "getme": self._get_me, "getupdates": self._get_updates, "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook, "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message, "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
        }

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the bridge's ``[telegram] api_url``."""
        if self._url is None:
            raise RuntimeError("FakeBotApi is not running: call start() first")
        return self._url

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeBotApi is already running")
        app = web.Application()
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._download)
        app.router.add_route("*", "/bot{token}/{method}", self._call)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner, self._stopping = runner, False
        self._url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop())

    async def stop(self) -> None:
        """Stop serving: waiting long polls answer [], the webhook retries stop."""
        self._stopping = True
        self._signal()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            await asyncio.gather(self._webhook_task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._runner = self._session = self._webhook_task = self._url = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- HTTP

    async def _call(self, request: web.Request) -> web.Response:
        method, params = request.match_info["method"], {}
        try:
            if request.match_info["token"] != self.token:
                raise BotApiError(401, "Unauthorized")
            handler = self._methods.get(method.lower())
            if handler is None or request.method not in ("GET", "POST"):
                raise BotApiError(404, "Not Found")
            params = await self._params(request)
            result = await handler(params)
        except BotApiError as error:
            self.rejected.append({"method": method, "error_code": error.error_code,
                                  "description": error.description, "params": params})
            log.warning("fake Bot API answered %s with %s: %s", method, error.error_code, error.description)
            return web.json_response(error.envelope(), status=error.error_code)
        except Exception:  # a bug in the fake or in a test's match/listener: loud, still an envelope
            log.exception("fake Bot API failed on %s", method)
            return web.json_response(BotApiError(500, "Internal Server Error").envelope(), status=500)
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return params
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON object")
            return params | body
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            return params | {key: value for key, value in form.items() if isinstance(value, str)}
        raise bad_request(f"unsupported Content-Type {request.content_type}")

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response(BotApiError(404, "Not Found").envelope(), status=404)

    async def _download(self, request: web.Request) -> web.Response:
        """The bytes of a file, at the path getFile handed out (404 for any other path)."""
        path = request.match_info["file_path"]
        file_id = self._file_paths.get(path)
        if request.match_info["token"] != self.token or file_id is None or path not in self._handed_out:
            return await self._not_found(request)
        self.downloads.append(file_id)
        stored = self._files[file_id]
        return web.Response(body=stored.data, content_type=stored.mime_type or "application/octet-stream")

    # ----------------------------------------------------------------- methods

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        self._inject("getMe", params)
        return dict(self.me)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.get_updates_calls.append(dict(params))
        offset, limit, timeout = (int_param(params, name) for name in ("offset", "limit", "timeout"))
        kinds = update_kinds(params)
        if self._webhook_url is not None:
            raise BotApiError(409, CONFLICT_WEBHOOK)
        self._inject("getUpdates", params)
        if kinds is not None:
            self._allowed_updates = kinds
        self._poller += 1
        me = self._poller
        self._signal()  # an earlier poll still waiting sees it was superseded
        if offset is not None and offset > self.confirmed_through:
            self.confirmed_through = offset - 1
            self._queue = [one for one in self._queue if one.update["update_id"] >= offset]
        limit = 100 if limit is None else min(max(limit, 1), 100)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(timeout or 0, 0), LONG_POLL_MAX)
        wake = asyncio.Event()
        self._wakers.add(wake)
        try:
            while True:
                if self._poller != me:
                    raise BotApiError(409, CONFLICT_POLLER)
                if self._webhook_url is not None:
                    raise BotApiError(409, CONFLICT_WEBHOOK)
                found = self.pending_updates()[:limit]
                remaining = deadline - loop.time()
                if found or remaining <= 0 or self._stopping:
                    return found
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            self._wakers.discard(wake)

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url, secret = str_param(params, "url"), str_param(params, "secret_token")
        kinds, drop = update_kinds(params), bool_param(params, "drop_pending_updates")
        int_param(params, "max_connections")
        try:
            parts = urlsplit(url or "")
            port = parts.port
        except ValueError:
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known") from None
        if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)):
            raise bad_request(HTTPS_ONLY)
        if not parts.hostname:
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
        if parts.scheme == "https" and parts.hostname not in LOOPBACK and (port or 443) not in WEBHOOK_PORTS:
            raise bad_request("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        if secret is not None and not _SECRET.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        self._inject("setWebhook", params)
        if drop:
            self._queue.clear()
        if kinds is not None:
            self._allowed_updates = kinds
        self._webhook_url, self._webhook_secret, self._last_error = url, secret, None
        self._signal()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        drop = bool_param(params, "drop_pending_updates")
        self._inject("deleteWebhook", params)
        if drop:
            self._queue.clear()
        self._webhook_url = self._webhook_secret = None
        self._signal()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        self._inject("getWebhookInfo", params)
        info: dict[str, Any] = {"url": self._webhook_url or "", "has_custom_certificate": False,
                                "pending_update_count": len(self.pending_updates())}
        if self._webhook_url is not None:
            info["max_connections"] = 40
            if self._allowed_updates:
                info["allowed_updates"] = list(self._allowed_updates)
        if self._last_error is not None:
            info["last_error_date"], info["last_error_message"] = self._last_error
        return info

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._addressed_chat(params)
        text = params.get("text")
        if text is not None and not isinstance(text, str):
            raise bad_request('field "text" must be a String')
        if not text or not text.strip():
            raise bad_request("message text is empty")
        parse_mode = str_param(params, "parse_mode")
        if parse_mode is not None and parse_mode.lower() not in ("html", "markdownv2"):
            raise bad_request("unsupported parse_mode")
        try:
            shown = text if parse_mode is None else (html_text if parse_mode.lower() == "html" else markdown_text)(text)
            markup = None if params.get("reply_markup") in (None, "") else inline_keyboard(params["reply_markup"])
        except Unshowable as error:
            raise bad_request(str(error)) from None
        if not shown.strip():
            raise bad_request("message text is empty")
        if len(shown) > TEXT_MAX:
            raise bad_request("message is too long")
        replied = self._replied(chat, params)
        for flag in ("disable_notification", "protect_content", "allow_sending_without_reply"):
            bool_param(params, flag)
        json_param(params, "link_preview_options", "can't parse link preview options JSON object")
        self._inject("sendMessage", params)
        self._take_rate(chat.user.id)
        message: dict[str, Any] = {"message_id": self._new_message_id(chat), "from": dict(self.me),
                                   "chat": chat.user.as_chat(), "date": self._now()}
        if replied is not None:
            message["reply_to_message"] = replied
        message["text"] = shown
        if markup is not None:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        record: SentMessage = {"chat_id": chat.user.id, "text": shown, "params": dict(params), "message": message}
        self.sent.append(record)
        self._signal()
        for listener in self.listeners:
            listener(record)
        return message

    def _addressed_chat(self, params: dict[str, Any]) -> Chat:
        value = params.get("chat_id")
        if value is None or value == "":
            raise bad_request("chat_id is empty")
        chat_id = None
        if isinstance(value, int) and not isinstance(value, bool):
            chat_id = value
        elif isinstance(value, str) and _INTEGER.fullmatch(value):
            chat_id = int(value)
        chat = self._chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise bad_request("chat not found")
        if chat.user.id in self.blocked:
            raise BotApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _replied(self, chat: Chat, params: dict[str, Any]) -> dict[str, Any] | None:
        """The message a send replies to (reply_parameters, or the older reply_to_message_id)."""
        error = "can't parse reply parameters JSON object"
        reply = json_param(params, "reply_parameters", error)
        if reply is not None:
            message_id, allow = reply.get("message_id"), reply.get("allow_sending_without_reply", False)
            if not isinstance(message_id, int) or isinstance(message_id, bool) or not isinstance(allow, bool):
                raise bad_request(error)
            if reply.get("chat_id") not in (None, chat.user.id, str(chat.user.id)):
                allow, message_id = False, 0  # quoting another chat: not served by the fake
        else:
            message_id = int_param(params, "reply_to_message_id")
            allow = bool(bool_param(params, "allow_sending_without_reply"))
            if message_id is None:
                return None
        message = chat.messages.get(message_id)
        if message is None and not allow:
            raise bad_request("message to be replied not found")
        return None if message is None else without_reply(message)

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id, text = str_param(params, "callback_query_id"), str_param(params, "text")
        bool_param(params, "show_alert")
        int_param(params, "cache_time")
        if query_id not in self._callback_queries or query_id in self._answered_queries:
            raise BotApiError(400, QUERY_INVALID)
        if text is not None and len(text) > ANSWER_TEXT_MAX:
            raise bad_request("MESSAGE_TOO_LONG")
        self._inject("answerCallbackQuery", params)
        self._answered_queries.add(query_id)
        self.answered_callbacks.append(dict(params))
        return True

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._files.get(str_param(params, "file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.size > FILE_MAX:
            raise bad_request("file is too big")
        self._inject("getFile", params)
        self._handed_out.add(stored.file_path)
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.size, "file_path": stored.file_path}

    # ----------------------------------------------------------------- the update queue

    def _enqueue(self, update: dict[str, Any]) -> None:
        kind = next(key for key in update if key != "update_id")
        if self._allowed_updates and kind not in self._allowed_updates:
            log.info("fake Bot API: %s %s not queued: allowed_updates is %s",
                     kind, update["update_id"], self._allowed_updates)
            return
        self._queue.append(_Queued(update, self.clock()))
        self._signal()

    def pending_updates(self) -> list[dict[str, Any]]:
        """The queued updates not yet confirmed (or posted to the webhook), oldest first;
        those queued more than 24 hours ago by the clock are dropped first."""
        oldest = self.clock() - KEEP_UPDATES
        self._queue = [one for one in self._queue if one.at >= oldest]
        return [one.update for one in self._queue]

    def _signal(self) -> None:
        for wake in self._wakers:
            wake.set()

    async def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        wake = asyncio.Event()
        self._wakers.add(wake)
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    wake.clear()
                    await wake.wait()
        except TimeoutError:
            raise TimeoutError(f"{what} within {timeout:g}s\n{self.describe()}") from None
        finally:
            self._wakers.discard(wake)

    # ----------------------------------------------------------------- the webhook

    async def _webhook_loop(self) -> None:
        wake = asyncio.Event()
        self._wakers.add(wake)
        try:
            while True:
                wake.clear()
                url, pending = self._webhook_url, self.pending_updates()
                if url is None or not pending:
                    await wake.wait()
                    continue
                update = pending[0]
                if await self._post_update(url, update):
                    self._queue = [one for one in self._queue if one.update is not update]
                    self._signal()
                else:
                    await asyncio.sleep(self.webhook_retry_interval)
        finally:
            self._wakers.discard(wake)

    async def _post_update(self, url: str, update: dict[str, Any]) -> bool:
        error = None
        try:
            status, _ = await self.deliver_webhook(url, update, self._webhook_secret)
        except Exception as exc:  # refused, unreachable, timed out: Telegram retries later
            status, error = None, f"Connection failed: {exc.__class__.__name__}: {exc}"
        else:
            if not 200 <= status < 300:
                try:
                    phrase = http.HTTPStatus(status).phrase
                except ValueError:
                    phrase = "Unknown"
                error = f"Wrong response from the webhook: {status} {phrase}"
        self.webhook_posts.append({"url": url, "update_id": update["update_id"], "status": status, "error": error})
        if error is not None:
            self._last_error = (self._now(), error)
            log.info("fake Bot API: update %s not taken by %s: %s", update["update_id"], url, error)
        return error is None

    async def deliver_webhook(self, url: str, update: dict[str, Any],
                              secret_token: str | None) -> tuple[int, str]:
        """POST one Update to ``url`` as Telegram does (JSON, the secret header when a
        secret is given); returns the HTTP status and the answer's body."""
        headers = {} if secret_token is None else {"X-Telegram-Bot-Api-Secret-Token": secret_token}
        body = json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
        if self._session is None or self._session.closed:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                async with session.post(url, data=body, headers=headers) as response:
                    return response.status, await response.text()
        async with self._session.post(url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def settle(self, timeout: float = 5) -> None:
        """Wait until the webhook (when one is set) has taken every queued update."""
        await self._wait(lambda: self._webhook_url is None or not self.pending_updates(), timeout,
                         "the webhook did not take every update")

    # ----------------------------------------------------------------- limits and failures

    def _take_rate(self, chat_id: int) -> None:
        if not self.rate_limits:
            return
        now = time.monotonic()
        to_chat = self._chat_sends.setdefault(chat_id, deque())
        for times in (self._sends, to_chat):
            while times and times[0] <= now - 1:
                times.popleft()
        if len(self._sends) >= self.overall_per_second or len(to_chat) >= self.per_chat_burst:
            raise BotApiError(429, "Too Many Requests: retry after 1", retry_after=1)
        self._sends.append(now)
        to_chat.append(now)

    def fail_next(self, method: str, error_code: int, description: str, *, retry_after: int | None = None,
                  times: int = 1, match: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` (any case) whose parameters pass its
        checks (and ``match``, given the parsed parameters) with this error envelope;
        ``retry_after`` adds ``parameters.retry_after``.  A failed send is not in ``sent``."""
        if times < 1:
            raise ValueError("times must be at least 1")
        self._failures.append(_Failure(method.lower(), error_code, description, retry_after, times, match))

    def _inject(self, method: str, params: dict[str, Any]) -> None:
        for failure in self._failures:
            if failure.method == method.lower() and (failure.match is None or failure.match(params)):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                raise BotApiError(failure.error_code, failure.description, failure.retry_after)

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: every send to them is 403 until :meth:`unblock`."""
        self.blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self.blocked.discard(chat_id)

    # ----------------------------------------------------------------- reading back

    def texts_to(self, chat_id: int) -> list[str]:
        """The texts (as shown) of the accepted sends to ``chat_id``, in order."""
        return [record["text"] for record in self.sent if record["chat_id"] == chat_id]

    async def wait_for_sent(self, predicate: Callable[[SentMessage], bool], timeout: float = 10) -> SentMessage:
        """The first accepted send (already there or still to come) matching ``predicate``."""
        await self._wait(lambda: any(predicate(record) for record in self.sent), timeout,
                         "no sent message matched")
        return next(record for record in self.sent if predicate(record))

    def describe(self, limit: int = 10) -> str:
        """The last sends and refusals, for a failing test's message."""
        lines = [f"sent ({len(self.sent)}):"]
        lines += [f"  to {record['chat_id']}: {record['text'][:100]!r}" for record in self.sent[-limit:]]
        lines.append(f"rejected ({len(self.rejected)}):")
        lines += [f"  {one['method']} -> {one['error_code']} {one['description'][:100]}"
                  for one in self.rejected[-limit:]]
        lines.append(f"pending updates: {[update['update_id'] for update in self.pending_updates()]}")
        return "\n".join(lines)
