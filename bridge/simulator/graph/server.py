"""The fake Graph API server: its routes, what it records, and the tests' controls.

:class:`FakeGraph` serves the three Graph paths the bridge calls (see the package
docstring), checks each request with :mod:`.checks`, records what it accepted and what
it refused, stores media for the two-step download, and injects failures
(:meth:`FakeGraph.fail_next`). It is also Meta's side of the webhook: the notification
builders and ``post_webhook`` come from :class:`.webhooks.Webhooks`.

It keeps what Meta keeps beyond a single request: the approved message templates
(``templates=``, :meth:`FakeGraph.approve_template`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from aiohttp import web

from bridge.simulator.graph.checks import (ApprovedTemplate, GraphError, addressee, check_bearer,
                                           check_template, check_version, invalid_param, no_such_object,
                                           validate_send_body)
from bridge.simulator.graph.webhooks import Clock, Webhooks, new_wamid

log = logging.getLogger(__name__)

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


def _new_media_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))  # 16 digits, like Meta's


class FakeGraph(Webhooks):
    """The fake Graph API server, and Meta's side of the webhook. See the package docstring."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        app_secret: str = "test-secret",
        phone_number_id: str = "106540352242922",
        api_version: str = "v21.0",
        display_phone_number: str = "6281100000000",
        waba_id: str = "102290129340398",
        clock: Clock | None = None,
        templates: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            app_secret=app_secret,
            phone_number_id=phone_number_id,
            display_phone_number=display_phone_number,
            waba_id=waba_id,
            clock=clock,
        )
        self.token = token
        self.api_version = api_version
        # The approved templates, by (name, language code); see approve_template.
        self.templates: dict[tuple[str, str], ApprovedTemplate] = {}
        for name, spec in (templates or {}).items():
            self.approve_template(name, **spec)

        self.sent: list[SentRecord] = []
        self.rejected: list[RejectedRecord] = []
        self.media_requests: list[str] = []  # step 1 (GET /{version}/{media_id}), authorised calls
        self.media_downloads: list[str] = []  # step 2 (GET /media-bytes/{media_id}), served bytes

        self._media: dict[str, _Media] = {}
        self._download_tokens: dict[str, str] = {}  # token -> media id
        self._failures: list[_PendingFailure] = []
        self._sent_changed = asyncio.Condition()
        self.listeners: list[Callable[[SentRecord], None]] = []   # called with each accepted send
        # Awaited after a message send is recorded and before it is answered: a test posts a
        # status webhook here to play Meta's status arriving before the send call returns.
        self.on_send: Callable[[SentRecord], Awaitable[None]] | None = None
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

    # ----------------------------------------------------------------- routes

    async def _messages(self, request: web.Request) -> web.Response:
        check_bearer(request, self.token)
        check_version(request, self.api_version)
        if request.match_info["phone_number_id"] != self.phone_number_id:
            raise no_such_object("post", request.match_info["phone_number_id"])
        if request.content_type != "application/json":
            raise invalid_param(f"Content-Type must be application/json (got {request.content_type!r})")
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise invalid_param("The request body is not valid JSON") from None
        request[_BODY_KEY] = body

        kind = validate_send_body(body)
        if kind == "message" and body["type"] == "template":
            check_template(body["template"], self.templates)
        failure = self._take_failure(body)
        if failure is not None:
            raise failure

        if kind == "read":
            await self._record_sent({"body": body, "id": None})
            return web.json_response({"success": True})
        to = addressee(body)
        assert to is not None
        wamid = new_wamid()
        record: SentRecord = {"body": body, "id": wamid}
        await self._record_sent(record)
        if self.on_send is not None:
            await self.on_send(record)
        contact = {"input": to, "wa_id": to} if "to" in body else {"input": to, "user_id": to}
        response = web.json_response(
            {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
        )
        return response

    async def _media_info(self, request: web.Request) -> web.Response:
        check_bearer(request, self.token)
        check_version(request, self.api_version)
        media_id = request.match_info["media_id"]
        self.media_requests.append(media_id)
        asked_number = request.query.get("phone_number_id")
        if asked_number is not None and asked_number != self.phone_number_id:
            raise no_such_object("get", asked_number)
        media = self._media.get(media_id)
        if media is None:
            raise no_such_object("get", media_id, status=404)
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
        check_bearer(request, self.token)
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

    @staticmethod
    def sent_to(record: SentRecord) -> str | None:
        """Whom a recorded message went to: its ``to`` (a number) or, without one, its
        ``recipient`` (a BSUID); None for a mark-read."""
        return addressee(record["body"])

    def messages_to(self, address: str, type: str | None = None) -> list[SentRecord]:
        """The messages sent to ``address`` (wa_id or BSUID, as the send named it), in
        order; only those of ``type`` ("text", "interactive", "template") if given."""
        return [
            record
            for record in self.sent
            if record["id"] is not None
            and self.sent_to(record) == address
            and (type is None or record["body"]["type"] == type)
        ]

    def texts_to(self, wa_id: str) -> list[str]:
        """Bodies of the text messages sent to ``wa_id`` (or to a BSUID ``recipient``), in order."""
        return [record["body"]["text"]["body"] for record in self.messages_to(wa_id, "text")]

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

    def approve_template(
        self,
        name: str,
        *,
        language: str = "id",
        body_params: int = 0,
        header_params: int = 0,
        quick_replies: int = 0,
    ) -> ApprovedTemplate:
        """Approve a template in one language, as WhatsApp Manager would: sends naming it
        (with ``language.code`` = ``language``) must give ``body_params`` body parameters and
        ``header_params`` header parameters, and may give payloads for its ``quick_replies``
        buttons (indexes 0 to quick_replies - 1). Approving it again replaces it."""
        for what, count in (("body_params", body_params), ("header_params", header_params),
                            ("quick_replies", quick_replies)):
            if count < 0:
                raise ValueError(f"{what} cannot be negative")
        if quick_replies > 10:
            raise ValueError("a template has at most 10 buttons")
        template = ApprovedTemplate(name, language, body_params, header_params, quick_replies)
        self.templates[(name, language)] = template
        return template

    def _media_data(self, media_id: str) -> bytes | None:
        media = self._media.get(media_id)
        return media.data if media is not None else None

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


def _summarise(body: dict[str, Any]) -> str:
    """One line for :meth:`FakeGraph.describe`: a mark-read or a message (as accepted)."""
    if "status" in body:
        return f"mark-read {body.get('message_id')}"
    kind = body["type"]
    if kind == "text":
        detail = json.dumps(body["text"]["body"], ensure_ascii=False)
    elif kind == "interactive":
        interactive = body["interactive"]
        detail = f"{interactive['type']} " + json.dumps(interactive["body"]["text"], ensure_ascii=False)
    else:
        template = body["template"]
        detail = f"{template['name']} ({template['language']['code']})"
    return f"to={addressee(body)} type={kind} {detail[:100]}"
