"""The fake Graph API server: its routes, what it records, and the tests' controls.

:class:`FakeGraph` serves the three Graph paths the bridge calls (see the package
docstring), checks each request with :mod:`.checks`, records what it accepted and what
it refused, stores media for the two-step download, and injects failures
(:meth:`FakeGraph.fail_next`). It is also Meta's side of the webhook: the notification
builders and ``post_webhook`` come from :class:`.webhooks.Webhooks`.

It keeps what Meta keeps beyond a single request: the approved message templates
(``templates=``, :meth:`FakeGraph.approve_template`) and, by its own clock, when each
citizen last wrote (:mod:`.window`): a free-form send outside the 24-hour window is
accepted, then a ``failed`` status with error 131047 is posted to
``status_webhook_url`` in the background. With ``report_sent``, every accepted message
gets a ``sent`` status there too. Statuses carry the send's ``biz_opaque_callback_data``
back, and a post that fails is tried again for ``retry_statuses_for`` seconds (Meta
retries for days; 0, the default, posts once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from aiohttp import web

from bridge.simulator.graph.checks import (BSUID, ApprovedTemplate, GraphError, addressee, check_bearer,
                                           check_template, check_version, invalid_param, no_such_object,
                                           validate_send_body)
from bridge.simulator.graph.webhooks import Clock, Webhooks, new_wamid
from bridge.simulator.graph.window import (RE_ENGAGEMENT_CODE, RE_ENGAGEMENT_DETAILS, RE_ENGAGEMENT_TITLE,
                                           CustomerWindows)

log = logging.getLogger(__name__)

# The parsed body of a messages POST, kept on the request so a rejection can record it.
_BODY_KEY = web.RequestKey("graph_body", object)


class SentRecord(TypedDict):
    """One accepted ``POST .../messages``."""

    body: dict[str, Any]  # the parsed JSON body, exactly as the bridge sent it
    id: str | None  # the wamid we answered with; None for a mark-read


class PostedStatus(TypedDict):
    """One status webhook the fake posted on its own (a 131047 refusal, a ``sent``)."""

    url: str
    payload: dict[str, Any]  # the notification, as built
    status: int | None  # the bridge's HTTP answer; None when the POST itself failed
    answer: str | None  # the bridge's answer body (or the exception, when the POST failed)


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
        status_webhook_url: str | None = None,
        enforce_window: bool = True,
        report_sent: bool = False,
        retry_statuses_for: float = 0.0,
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
        # The 24-hour window: free-form sends to a citizen who has not written within 24
        # hours (by self.clock) are accepted, then refused by a failed status (131047).
        self.enforce_window = enforce_window
        # Where Meta posts statuses: the bridge's webhook URL. None: refusals are recorded
        # in window_refusals but no status is posted.
        self.status_webhook_url = status_webhook_url
        self.report_sent = report_sent              # post a "sent" status for each accepted message
        self.retry_statuses_for = retry_statuses_for  # seconds a failed status post is tried again
        self.windows = CustomerWindows()
        self.window_refusals: list[SentRecord] = []  # accepted sends the window refuses
        self.posted_statuses: list[PostedStatus] = []  # status webhooks the fake posted itself

        self.sent: list[SentRecord] = []
        self.rejected: list[RejectedRecord] = []
        self.media_requests: list[str] = []  # step 1 (GET /{version}/{media_id}), authorised calls
        self.media_downloads: list[str] = []  # step 2 (GET /media-bytes/{media_id}), served bytes

        self._media: dict[str, _Media] = {}
        self._download_tokens: dict[str, str] = {}  # token -> media id
        self._failures: list[_PendingFailure] = []
        self._cuts: list[Callable[[dict[str, Any]], bool]] = []   # see cut_answer_next
        self._sent_changed = asyncio.Condition()
        self.listeners: list[Callable[[SentRecord], None]] = []   # called with each accepted send
        # Awaited after a message send is recorded and before it is answered: a test posts a
        # status webhook here to play Meta's status arriving before the send call returns.
        self.on_send: Callable[[SentRecord], Awaitable[None]] | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._background: set[asyncio.Task[None]] = set()

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
        """Stop serving; status posts still under way are cancelled (see :meth:`settle`)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
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
        refused = self._outside_window(body, to)
        wamid = new_wamid()
        record: SentRecord = {"body": body, "id": wamid}
        await self._record_sent(record)
        if self.on_send is not None:
            await self.on_send(record)
        contact = {"input": to, "wa_id": to} if "to" in body else {"input": to, "user_id": to}
        response = web.json_response(
            {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
        )
        if refused:
            # Accepted all the same, as Meta does; the refusal comes as a status, after the answer.
            self.window_refusals.append(record)
            log.info("fake Graph: %s is outside the 24-hour window of %s: failed status follows", wamid, to)
        cut = self._take_cut(body)
        if self.status_webhook_url is not None and (refused or self.report_sent):
            if not cut:
                try:
                    await response.prepare(request)
                    await response.write_eof()
                except ConnectionError:    # the sender is gone: the message was taken all the same
                    log.info("fake Graph: %s taken, its sender gone before the answer", wamid)
            self._spawn(self._post_status(self.status_webhook_url, record, to, refused=refused))
        if cut:
            # Taken, and the connection closes before any answer: the sender cannot know.
            log.info("fake Graph: %s taken, the answer cut off", wamid)
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
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

    # ----------------------------------------------------------------- the 24-hour window

    def _outside_window(self, body: dict[str, Any], to: str) -> bool:
        """Whether Meta would refuse this accepted message for the 24-hour window."""
        if not self.enforce_window or body["type"] == "template":
            return False
        return not self.windows.is_open(to, self.clock())

    def _delivering(self, payload: dict[str, Any]) -> None:
        self.windows.note_notification(payload)

    def customer_wrote(self, *ids: str, at: datetime | None = None) -> None:
        """Open (or move) a citizen's window without posting a message: they wrote at
        ``at`` (default: now by the clock), known by ``ids`` (a wa_id, a BSUID, or both)."""
        if not ids:
            raise ValueError("customer_wrote needs a wa_id or a BSUID")
        self.windows.wrote(ids, at or self.clock())

    def last_inbound(self, address: str) -> datetime | None:
        """When the citizen at ``address`` (wa_id or BSUID) last wrote, as far as we know."""
        return self.windows.last_message(address)

    def window_open(self, address: str) -> bool:
        """Whether a free-form message to ``address`` would be delivered now."""
        return self.windows.is_open(address, self.clock())

    def _recipient_ids(self, to: str) -> tuple[str | None, str | None]:
        """(wa_id, BSUID) of the person at ``to``, each when known."""
        people = self.windows.aliases(to)
        wa_id = next((one for one in sorted(people) if not BSUID.fullmatch(one)), None)
        user_id = next((one for one in sorted(people) if BSUID.fullmatch(one)), None)
        if BSUID.fullmatch(to):
            user_id = to
        else:
            wa_id = to
        return wa_id, user_id

    async def _post_status(self, url: str, record: SentRecord, to: str, *, refused: bool) -> None:
        """The status Meta posts after an accepted send: ``failed`` (131047) outside the
        window, else ``sent``; tried again while ``retry_statuses_for`` allows."""
        assert record["id"] is not None
        wa_id, user_id = self._recipient_ids(to)
        errors = [self.status_error(RE_ENGAGEMENT_CODE, RE_ENGAGEMENT_TITLE, details=RE_ENGAGEMENT_DETAILS)]
        payload = self.status(record["id"], "failed" if refused else "sent", wa_id, recipient_user_id=user_id,
                              errors=errors if refused else None,
                              biz_opaque_callback_data=record["body"].get("biz_opaque_callback_data"))
        posted: PostedStatus = {"url": url, "payload": payload, "status": None, "answer": None}
        loop = asyncio.get_running_loop()
        give_up, pause = loop.time() + self.retry_statuses_for, 0.25
        while True:
            try:
                posted["status"], posted["answer"] = await self.post_webhook(url, payload)
            except Exception as exc:  # the bridge may be down
                posted["status"], posted["answer"] = None, repr(exc)
            if posted["status"] == 200 or loop.time() + pause > give_up:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
        if posted["status"] != 200:
            log.warning("fake Graph: status for %s not posted to %s: %s", record["id"], url, posted["answer"])
        self.posted_statuses.append(posted)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self, timeout: float = 10) -> None:
        """Wait until every status the fake is posting in the background has been posted."""
        async with asyncio.timeout(timeout):
            while self._background:
                await asyncio.gather(*self._background, return_exceptions=True)

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

    def choose(
        self,
        record: SentRecord,
        choice_id: str,
        *,
        name: str = "Warga",
        msg_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """The citizen's answer to an interactive message we recorded: the notification of
        a ``list_reply`` (a row) or ``button_reply`` (a reply button) with that id, its
        title (and description), replying to the message, from whom it was sent to."""
        body = record["body"]
        if body.get("type") != "interactive" or record["id"] is None:
            raise ValueError(f"choose() answers an interactive message, not {_summarise(body)}")
        to = addressee(body)
        assert to is not None
        wa_id, user_id = self._recipient_ids(to)
        interactive = body["interactive"]
        sender = dict(name=name, msg_id=msg_id, timestamp=timestamp, user_id=user_id, reply_to=record["id"])
        offered: list[str] = []
        if interactive["type"] == "list":
            for section in interactive["action"]["sections"]:
                for row in section["rows"]:
                    offered.append(row["id"])
                    if row["id"] == choice_id:
                        return self.list_reply(wa_id, row["id"], row["title"],
                                               description=row.get("description"), **sender)
        else:
            for button in interactive["action"]["buttons"]:
                offered.append(button["reply"]["id"])
                if button["reply"]["id"] == choice_id:
                    return self.button_reply(wa_id, choice_id, button["reply"]["title"], **sender)
        raise ValueError(f"{choice_id!r} is not offered by {record['id']}; it offers {offered}")

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
        refused = {id(record) for record in self.window_refusals}
        for record in self.sent[-limit:]:
            note = "  [outside the 24-hour window: failed 131047]" if id(record) in refused else ""
            lines.append("  " + _summarise(record["body"]) + note)
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

    def cut_answer_next(self, match: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Take the next valid message send (``match``: the next such send for which it
        holds), record it as sent, and close the connection without answering: the bridge
        cannot know whether it was taken. Its statuses follow as for any other send."""
        self._cuts.append(match or (lambda body: True))

    def _take_cut(self, body: dict[str, Any]) -> bool:
        for match in self._cuts:
            if match(body):
                self._cuts.remove(match)
                return True
        return False

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
