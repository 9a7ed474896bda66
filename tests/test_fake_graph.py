"""The fake Graph API must be strict and correct, or the bridge's tests prove nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.simulator.graph import FakeGraph

WA_ID = "6281234567890"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def auth(graph: FakeGraph, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or graph.token}"}


def messages_url(graph: FakeGraph, *, version: str | None = None, number: str | None = None) -> str:
    return f"{graph.url}/{version or graph.api_version}/{number or graph.phone_number_id}/messages"


def text_body(to: str = WA_ID, body: str = "Pengaduan Anda sudah kami terima.") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": body},
    }


async def post(
    session: aiohttp.ClientSession,
    graph: FakeGraph,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    url: str | None = None,
) -> tuple[int, dict[str, Any]]:
    async with session.post(url or messages_url(graph), json=body, headers=headers or auth(graph)) as resp:
        return resp.status, await resp.json()


def assert_graph_error(payload: dict[str, Any], code: int) -> dict[str, Any]:
    error = payload["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert isinstance(error["message"], str) and error["message"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    return error


# --------------------------------------------------------------------------- sending


async def test_valid_text_send_is_recorded_and_answered_with_an_id(graph, session):
    status, payload = await post(session, graph, text_body())

    assert status == 200
    assert payload["messaging_product"] == "whatsapp"
    assert payload["contacts"] == [{"input": WA_ID, "wa_id": WA_ID}]
    wamid = payload["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert graph.sent == [{"body": text_body(), "id": wamid}]
    assert graph.texts_to(WA_ID) == ["Pengaduan Anda sudah kami terima."]
    assert graph.texts_to("6289999999999") == []


async def test_every_send_gets_a_unique_id(graph, session):
    ids = set()
    for _ in range(5):
        _, payload = await post(session, graph, text_body())
        ids.add(payload["messages"][0]["id"])
    assert len(ids) == 5


async def test_a_text_of_exactly_4096_characters_is_accepted(graph, session):
    status, _ = await post(session, graph, text_body(body="x" * 4096))
    assert status == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "test-token"}])
async def test_a_missing_or_wrong_token_gets_401_with_code_190(graph, session, headers):
    async with session.post(messages_url(graph), json=text_body(), headers=headers) as resp:
        status, payload = resp.status, await resp.json()
    assert status == 401
    assert_graph_error(payload, 190)
    assert graph.sent == []
    assert graph.rejected[-1]["status"] == 401


@pytest.mark.parametrize(
    "url_parts", [{"number": "999999999999999"}, {"version": "v19.0"}], ids=["phone_number_id", "version"]
)
async def test_a_wrong_phone_number_id_or_version_gets_400(graph, session, url_parts):
    status, payload = await post(session, graph, text_body(), url=messages_url(graph, **url_parts))
    assert status == 400
    assert_graph_error(payload, 100)
    assert graph.sent == []


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (text_body(body="x" * 4097), "4096"),
        (text_body(body=""), "text['body']"),
        (text_body(to="+6281234567890"), "Param to"),
        (text_body(to="081234567890"), "Param to"),
        (text_body(to="62 812 3456 7890"), "Param to"),
        (_without(text_body(), "messaging_product"), "messaging_product"),
        ({**text_body(), "messaging_product": "sms"}, "messaging_product"),
        ({**text_body(), "recipient_type": "group"}, "recipient_type"),
        ({**text_body(), "type": "sticker"}, "Param type"),
        (_without(text_body(), "text"), "The parameter text is required"),
        ({**text_body(), "text": {"body": "hi", "preview_url": "no"}}, "preview_url"),
        ({**text_body(), "text": "hi"}, "Param text"),
        ({**text_body(), "txt": {"body": "hi"}}, "txt"),
        ({**text_body(), "context": {"message_id": ""}}, "context['message_id']"),
    ],
    ids=[
        "body-over-4096",
        "empty-body",
        "plus-in-to",
        "local-number",
        "spaces-in-to",
        "no-messaging-product",
        "wrong-messaging-product",
        "group-recipient",
        "unsupported-type",
        "missing-type-object",
        "preview-url-not-bool",
        "text-not-object",
        "unknown-key",
        "empty-context-id",
    ],
)
async def test_a_malformed_text_send_gets_400_code_100_naming_the_rule(graph, session, body, rule):
    status, payload = await post(session, graph, body)
    assert status == 400
    error = assert_graph_error(payload, 100)
    assert rule in error["message"]
    assert rule in error["error_data"]["details"]
    assert graph.sent == []
    assert graph.rejected[-1]["body"] == body


async def test_a_non_json_body_gets_400(graph, session):
    headers = {**auth(graph), "Content-Type": "application/x-www-form-urlencoded"}
    async with session.post(messages_url(graph), data="to=62812", headers=headers) as resp:
        assert resp.status == 400
        assert_graph_error(await resp.json(), 100)


async def test_a_text_replying_to_a_message_is_accepted(graph, session):
    body = {**text_body(), "context": {"message_id": "wamid.abc"}}
    status, payload = await post(session, graph, body)
    assert status == 200, payload
    assert graph.sent == [{"body": body, "id": payload["messages"][0]["id"]}]


@pytest.mark.parametrize(
    "kind,content",
    [("image", {"id": "1234567890", "caption": "Foto KTP"}),
     ("document", {"id": "1234567890", "filename": "akta.pdf"}),
     ("sticker", {"id": "1234567890"}),
     ("reaction", {"message_id": "wamid.abc", "emoji": "👍"})],
)
async def test_message_types_the_bridge_never_sends_get_400_code_100(graph, session, kind, content):
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_ID,
            "type": kind, kind: content}
    status, payload = await post(session, graph, body)
    assert status == 400
    error = assert_graph_error(payload, 100)
    assert "Param type" in error["message"] and repr(kind) in error["error_data"]["details"]
    assert graph.sent == []
    assert graph.rejected[-1]["body"] == body


async def test_mark_read_answers_success_and_is_recorded(graph, session):
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.HBgM"}
    status, payload = await post(session, graph, body)
    assert status == 200
    assert payload == {"success": True}
    assert graph.sent == [{"body": body, "id": None}]


async def test_mark_read_needs_a_message_id(graph, session):
    status, payload = await post(session, graph, {"messaging_product": "whatsapp", "status": "read"})
    assert status == 400
    assert "message_id" in assert_graph_error(payload, 100)["message"]


async def test_mark_read_may_show_the_typing_indicator(graph, session):
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.HBgM",
            "typing_indicator": {"type": "text"}}
    status, payload = await post(session, graph, body)
    assert (status, payload) == (200, {"success": True})
    status, payload = await post(session, graph, {**body, "typing_indicator": {"type": "audio"}})
    assert status == 400
    assert "typing_indicator" in assert_graph_error(payload, 100)["message"]
    assert graph.sent == [{"body": body, "id": None}]


# --------------------------------------------------------------------------- injected failures


async def test_fail_next_gives_the_error_envelope_then_recovers(graph, session):
    graph.fail_next(2, status=429, code=130429, message="Rate limit hit", retry_after=3)

    for _ in range(2):
        async with session.post(messages_url(graph), json=text_body(), headers=auth(graph)) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
            error = assert_graph_error(await resp.json(), 130429)
            assert error["message"] == "Rate limit hit"
    assert graph.sent == []

    status, payload = await post(session, graph, text_body())
    assert status == 200
    assert graph.sent[0]["id"] == payload["messages"][0]["id"]


async def test_fail_next_defaults_to_a_temporary_500_without_retry_after(graph, session):
    graph.fail_next()
    async with session.post(messages_url(graph), json=text_body(), headers=auth(graph)) as resp:
        assert resp.status == 500
        assert "Retry-After" not in resp.headers
        assert assert_graph_error(await resp.json(), 131000)["message"] == "Something went wrong"


async def test_a_malformed_body_does_not_consume_an_injected_failure(graph, session):
    graph.fail_next()
    status, _ = await post(session, graph, text_body(to="+62812"))
    assert status == 400
    status, _ = await post(session, graph, text_body())
    assert status == 500


async def test_fail_next_match_spares_other_sends(graph, session):
    graph.fail_next(match=lambda body: body.get("type") == "text")
    status, _ = await post(session, graph, {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x"})
    assert status == 200
    status, _ = await post(session, graph, text_body())
    assert status == 500


# --------------------------------------------------------------------------- media


async def test_two_step_media_download_returns_the_exact_bytes(graph, session):
    data = bytes(range(256)) * 40
    media_id = graph.add_media(data, "image/jpeg")

    async with session.get(f"{graph.url}/{graph.api_version}/{media_id}", headers=auth(graph)) as resp:
        assert resp.status == 200
        info = await resp.json()
    assert info["messaging_product"] == "whatsapp"
    assert info["id"] == media_id
    assert info["mime_type"] == "image/jpeg"
    assert info["file_size"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["url"].startswith(f"{graph.url}/media-bytes/{media_id}?token=")
    assert graph.media_requests == [media_id]

    async with session.get(info["url"]) as resp:  # no bearer
        assert resp.status == 401
    async with session.get(info["url"], headers=auth(graph, "wrong")) as resp:
        assert resp.status == 401
    assert graph.media_downloads == []

    async with session.get(info["url"], headers=auth(graph)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert await resp.read() == data
    assert graph.media_downloads == [media_id]


async def test_media_lookup_checks_bearer_and_id(graph, session):
    media_id = graph.add_media(b"%PDF-1.7", "application/pdf", media_id="1234567890")
    assert media_id == "1234567890"

    async with session.get(f"{graph.url}/{graph.api_version}/{media_id}") as resp:
        assert resp.status == 401
        assert_graph_error(await resp.json(), 190)
    async with session.get(f"{graph.url}/{graph.api_version}/404404404", headers=auth(graph)) as resp:
        assert resp.status == 404
        assert_graph_error(await resp.json(), 100)


async def test_media_bytes_need_the_url_from_step_one(graph, session):
    media_id = graph.add_media(b"abc", "image/png")
    async with session.get(f"{graph.url}/media-bytes/{media_id}", headers=auth(graph)) as resp:
        assert resp.status == 404


# --------------------------------------------------------------------------- webhook side


def test_sign_matches_an_independent_hmac():
    graph = FakeGraph(app_secret="rahasia-aplikasi")
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    expected = hmac.new(b"rahasia-aplikasi", body, hashlib.sha256).hexdigest()
    assert graph.sign(body) == f"sha256={expected}"


def test_text_notification_has_the_sample_shape():
    graph = FakeGraph()
    payload = graph.text(WA_ID, "KTP-el saya belum jadi", name="Siti Aminah", timestamp=1763795000)
    assert payload["object"] == "whatsapp_business_account"
    change = payload["entry"][0]["changes"][0]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {"display_phone_number": "6281100000000", "phone_number_id": "106540352242922"}
    assert value["contacts"] == [{"profile": {"name": "Siti Aminah"}, "wa_id": WA_ID}]
    (message,) = value["messages"]
    assert message["from"] == WA_ID and message["type"] == "text"
    assert message["text"] == {"body": "KTP-el saya belum jadi"}
    assert message["timestamp"] == "1763795000"
    assert message["id"].startswith("wamid.")
    assert "statuses" not in value
    assert graph.text(WA_ID, "lagi")["entry"][0]["changes"][0]["value"]["messages"][0]["id"] != message["id"]


def test_status_notification_shape():
    graph = FakeGraph()
    errors = [graph.status_error(131047, "Re-engagement message")]
    payload = graph.status("wamid.abc", "failed", WA_ID, errors=errors)
    (status,) = payload["entry"][0]["changes"][0]["value"]["statuses"]
    assert status["id"] == "wamid.abc" and status["status"] == "failed" and status["recipient_id"] == WA_ID
    assert status["timestamp"].isdigit()
    assert status["errors"][0]["code"] == 131047
    with pytest.raises(ValueError):
        graph.status("wamid.abc", "deliverd", WA_ID)


async def test_post_webhook_sends_raw_signed_bytes(graph):
    received: list[tuple[bytes, str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("X-Hub-Signature-256")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    try:
        media_id = graph.add_media(b"\xff\xd8jpeg", "image/jpeg")
        payload = graph.image(WA_ID, media_id, caption="Foto KK / akta 😊")
        assert await graph.post_webhook(url, payload) == (200, "ok")
        assert await graph.post_webhook(url, payload, signature=None) == (200, "ok")
        assert await graph.post_webhook(url, b"{}", signature="sha256=bad") == (200, "ok")
    finally:
        await runner.cleanup()

    raw, sig = received[0]
    assert sig == graph.sign(raw)
    assert json.loads(raw) == payload
    assert b"\\/" in raw and b"\\ud83d" in raw  # Meta-style escaping: verify on the raw bytes
    assert received[1][1] is None
    assert received[2] == (b"{}", "sha256=bad")


# --------------------------------------------------------------------------- waiting


async def test_wait_for_sent_returns_a_message_sent_after_the_call_started(graph, session):
    await post(session, graph, text_body(body="lama"))
    waiter = asyncio.create_task(
        graph.wait_for_sent(lambda r: r["body"]["text"]["body"] == "baru", timeout=5)
    )
    await asyncio.sleep(0)  # let the waiter start waiting
    assert not waiter.done()

    await post(session, graph, {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x"})
    _, payload = await post(session, graph, text_body(body="baru"))

    record = await waiter
    assert record["body"]["text"]["body"] == "baru"
    assert record["id"] == payload["messages"][0]["id"]


async def test_wait_for_sent_returns_an_earlier_match_at_once(graph, session):
    await post(session, graph, text_body(body="sudah"))
    record = await graph.wait_for_sent(lambda r: r["body"].get("to") == WA_ID, timeout=0.5)
    assert record["body"]["text"]["body"] == "sudah"


async def test_wait_for_sent_times_out_with_a_dump(graph, session):
    await post(session, graph, text_body(body="yang terkirim"))
    await post(session, graph, text_body(to="+62"))
    with pytest.raises(TimeoutError) as excinfo:
        await graph.wait_for_sent(lambda r: r["body"].get("to") == "6280000000000", timeout=0.2)
    message = str(excinfo.value)
    assert "yang terkirim" in message
    assert "rejected (1)" in message


# --------------------------------------------------------------------------- recipient (BSUID)

BSUID = "ID.13491208655302741918"


def bsuid_body(recipient: str = BSUID, **extra: Any) -> dict[str, Any]:
    body = {k: v for k, v in text_body().items() if k != "to"}
    return {**body, "recipient": recipient, **extra}


async def test_a_send_to_a_bsuid_recipient_is_accepted_and_answered_with_it(graph, session):
    status, payload = await post(session, graph, bsuid_body())
    assert status == 200, payload
    assert payload["contacts"] == [{"input": BSUID, "user_id": BSUID}]
    (record,) = graph.sent
    assert record == {"body": bsuid_body(), "id": payload["messages"][0]["id"]}
    assert graph.sent_to(record) == BSUID
    assert graph.texts_to(BSUID) == ["Pengaduan Anda sudah kami terima."]
    assert graph.texts_to(WA_ID) == []


@pytest.mark.parametrize("recipient", ["ID.ENT.11815799212886844830", "US.a", "ID." + "Z9" * 64])
async def test_every_documented_bsuid_form_is_a_valid_recipient(graph, session, recipient):
    status, payload = await post(session, graph, bsuid_body(recipient))
    assert status == 200, payload


async def test_when_both_to_and_recipient_are_given_to_wins(graph, session):
    body = {**text_body(), "recipient": BSUID}
    status, payload = await post(session, graph, body)
    assert status == 200
    assert payload["contacts"] == [{"input": WA_ID, "wa_id": WA_ID}]
    assert graph.sent_to(graph.sent[0]) == WA_ID
    assert graph.texts_to(WA_ID) and not graph.texts_to(BSUID)


async def test_a_send_with_neither_to_nor_recipient_gets_400(graph, session):
    status, payload = await post(session, graph, _without(text_body(), "to"))
    assert status == 400
    error = assert_graph_error(payload, 100)
    assert "to" in error["message"] and "recipient" in error["message"]


@pytest.mark.parametrize(
    "body",
    [bsuid_body("id.13491208655302741918"), bsuid_body("ID13491208655302741918"),
     bsuid_body("IDN.1349"), bsuid_body("ID."), bsuid_body("ID.ENT."), bsuid_body("ID.1349-1208"),
     bsuid_body("ID." + "1" * 129), bsuid_body("6281234567890"), bsuid_body(""),
     {**text_body(), "recipient": "not-a-bsuid"}],
    ids=["lowercase-country", "no-dot", "three-letters", "nothing-after-dot", "ent-only", "dash",
         "129-characters", "phone-number", "empty", "bad-beside-to"],
)
async def test_a_malformed_recipient_gets_400_naming_it(graph, session, body):
    status, payload = await post(session, graph, body)
    assert status == 400
    assert "recipient" in assert_graph_error(payload, 100)["message"]
    assert graph.sent == []


async def test_to_must_stay_a_phone_number(graph, session):
    status, payload = await post(session, graph, text_body(to=BSUID))
    assert status == 400
    assert "Param to" in assert_graph_error(payload, 100)["message"]


# --------------------------------------------------------------------------- interactive messages


def list_message(sections: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    interactive = {
        "type": "list",
        "body": {"text": "Pilih layanan yang Anda adukan:"},
        "action": {"button": "Pilih layanan",
                   "sections": sections if sections is not None else
                   [{"rows": [{"id": "ktp", "title": "KTP-el"}, {"id": "kk", "title": "Kartu Keluarga"}]}]},
        **extra,
    }
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_ID,
            "type": "interactive", "interactive": interactive}


def buttons_message(*buttons: tuple[str, str], **extra: Any) -> dict[str, Any]:
    interactive = {
        "type": "button",
        "body": {"text": "Apakah jawaban kami sudah membantu?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in buttons]},
        **extra,
    }
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_ID,
            "type": "interactive", "interactive": interactive}


def rows(count: int, prefix: str = "r") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{n}", "title": f"Pilihan {n}"} for n in range(count)]


def edit(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with the item at ``path`` ("interactive.action.button",
    numbers index lists) set to ``value``, or deleted when value is DELETE."""
    body = json.loads(json.dumps(body))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = body
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return body


DELETE = object()


ACCEPTED_INTERACTIVE = {
    "list": list_message(),
    "list-at-every-limit": list_message(
        [{"title": "S" * 24,
          "rows": [{"id": "i" * 200, "title": "T" * 24, "description": "D" * 72}] + rows(4)},
         {"title": "Lainnya", "rows": rows(5, "x")}],
        header={"type": "text", "text": "H" * 60}, footer={"text": "F" * 60},
        body={"text": "B" * 1024}),
    "list-button-of-20": edit(list_message(), "interactive.action.button", "P" * 20),
    "one-section-without-title": list_message([{"rows": rows(10)}]),
    "one-button": buttons_message(("ya", "Ya")),
    "three-buttons-at-every-limit": buttons_message(("a" * 256, "A" * 20), ("b", "Belum"), ("c", "Tanya lagi"),
                                                    header={"type": "text", "text": "Aduan ADU-2026-000123"},
                                                    footer={"text": "Disdukcapil"}),
    "replying": {**buttons_message(("ya", "Ya")), "context": {"message_id": "wamid.abc"}},
    "to-a-bsuid": {**_without(list_message(), "to"), "recipient": BSUID},
}


@pytest.mark.parametrize("body", ACCEPTED_INTERACTIVE.values(), ids=ACCEPTED_INTERACTIVE.keys())
async def test_interactive_messages_within_the_limits_are_accepted(graph, session, body):
    status, payload = await post(session, graph, body)
    assert status == 200, payload
    assert graph.sent == [{"body": body, "id": payload["messages"][0]["id"]}]
    assert graph.messages_to(graph.sent_to(graph.sent[0]), "interactive") == graph.sent


_LIST_ROWS = "interactive.action.sections.0.rows"
REFUSED_INTERACTIVE = {
    "unknown-type": (edit(list_message(), "interactive.type", "cta_url"), "interactive['type']"),
    "no-body": (edit(list_message(), "interactive.body", DELETE), "interactive['body']"),
    "body-over-1024": (edit(list_message(), "interactive.body.text", "B" * 1025), "interactive['body']['text']"),
    "empty-body": (edit(list_message(), "interactive.body.text", ""), "interactive['body']['text']"),
    "header-over-60": (list_message(header={"type": "text", "text": "H" * 61}), "interactive['header']['text']"),
    "image-header": (list_message(header={"type": "image", "image": {"id": "1"}}), "interactive['header']"),
    "footer-over-60": (list_message(footer={"text": "F" * 61}), "interactive['footer']['text']"),
    "unknown-key": (list_message(extra={"x": 1}), "interactive['extra']"),
    "no-action": (edit(list_message(), "interactive.action", DELETE), "interactive['action']"),
    "list-no-button": (edit(list_message(), "interactive.action.button", DELETE),
                       "interactive['action']['button']"),
    "list-button-over-20": (edit(list_message(), "interactive.action.button", "P" * 21),
                            "interactive['action']['button']"),
    "list-no-sections": (list_message([]), "interactive['action']['sections']"),
    "list-11-rows": (list_message([{"rows": rows(11)}]), "at most 10 rows in all (got 11)"),
    "list-11-rows-in-two-sections": (list_message([{"title": "A", "rows": rows(6)},
                                                   {"title": "B", "rows": rows(5, "x")}]),
                                     "at most 10 rows in all (got 11)"),
    "list-section-without-rows": (list_message([{"title": "A"}]), "interactive['action']['sections'][0]['rows']"),
    "list-section-empty-rows": (list_message([{"rows": []}]), "interactive['action']['sections'][0]['rows']"),
    "list-row-id-over-200": (edit(list_message(), f"{_LIST_ROWS}.0.id", "i" * 201),
                             "interactive['action']['sections'][0]['rows'][0]['id']"),
    "list-row-title-over-24": (edit(list_message(), f"{_LIST_ROWS}.1.title", "T" * 25),
                               "interactive['action']['sections'][0]['rows'][1]['title']"),
    "list-row-without-title": (edit(list_message(), f"{_LIST_ROWS}.1.title", DELETE),
                               "interactive['action']['sections'][0]['rows'][1]['title']"),
    "list-row-description-over-72": (edit(list_message(), f"{_LIST_ROWS}.0.description", "D" * 73),
                                     "interactive['action']['sections'][0]['rows'][0]['description']"),
    "list-duplicate-row-ids": (list_message([{"title": "A", "rows": rows(2)}, {"title": "B", "rows": rows(1)}]),
                               "interactive['action']['sections'][1]['rows'][0]['id'] must be unique"),
    "list-section-title-over-24": (list_message([{"title": "S" * 25, "rows": rows(1)}]),
                                   "interactive['action']['sections'][0]['title']"),
    "list-second-section-untitled": (list_message([{"title": "A", "rows": rows(1)}, {"rows": rows(1, "x")}]),
                                     "interactive['action']['sections'][1]['title'] is required"),
    "buttons-none": (buttons_message(), "interactive['action']['buttons']"),
    "buttons-four": (buttons_message(("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")),
                     "interactive['action']['buttons'] must hold at most 3"),
    "button-title-over-20": (buttons_message(("a", "A" * 21)), "interactive['action']['buttons'][0]['reply']['title']"),
    "button-id-over-256": (buttons_message(("a" * 257, "A")), "interactive['action']['buttons'][0]['reply']['id']"),
    "button-empty-title": (buttons_message(("a", "")), "interactive['action']['buttons'][0]['reply']['title']"),
    "button-same-titles": (buttons_message(("a", "Ya"), ("b", "Ya")),
                           "interactive['action']['buttons'][1]['reply']['title'] must be unique"),
    "button-same-ids": (buttons_message(("a", "Ya"), ("a", "Tidak")),
                        "interactive['action']['buttons'][1]['reply']['id'] must be unique"),
    "button-not-reply": (edit(buttons_message(("a", "A")), "interactive.action.buttons.0.type", "url"),
                         "interactive['action']['buttons'][0]['type']"),
    "button-without-reply": (edit(buttons_message(("a", "A")), "interactive.action.buttons.0.reply", DELETE),
                             "interactive['action']['buttons'][0]['reply']"),
    "buttons-with-sections": (edit(buttons_message(("a", "A")), "interactive.action.sections", []),
                              "interactive['action']['sections']"),
    "interactive-not-object": (edit(list_message(), "interactive", "list"), "Param interactive"),
    "text-beside-interactive": ({**list_message(), "text": {"body": "x"}}, "Param text"),
}


@pytest.mark.parametrize(("body", "rule"), REFUSED_INTERACTIVE.values(), ids=REFUSED_INTERACTIVE.keys())
async def test_an_interactive_message_beyond_the_limits_gets_400_code_100_naming_the_parameter(
    graph, session, body, rule
):
    status, payload = await post(session, graph, body)
    assert status == 400, payload
    error = assert_graph_error(payload, 100)
    assert rule in error["message"] and rule in error["error_data"]["details"]
    assert graph.sent == []
    assert graph.rejected[-1]["body"] == body


# --------------------------------------------------------------------------- templates


def template_body(name: str = "answer_ready", code: str = "id", *components: dict[str, Any],
                  to: str = WA_ID) -> dict[str, Any]:
    template: dict[str, Any] = {"name": name, "language": {"code": code}}
    if components:
        template["components"] = list(components)
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "template", "template": template}


def body_params(*texts: str) -> dict[str, Any]:
    return {"type": "body", "parameters": [{"type": "text", "text": t} for t in texts]}


def quick_reply(index: int | str, payload: str = "selesai:ADU-2026-000123") -> dict[str, Any]:
    return {"type": "button", "sub_type": "quick_reply", "index": index,
            "parameters": [{"type": "payload", "payload": payload}]}


@pytest.fixture
async def approved() -> AsyncIterator[FakeGraph]:
    templates = {"answer_ready": {"language": "id", "body_params": 1, "quick_replies": 2},
                 "hello": {"language": "id"}}
    async with FakeGraph(templates=templates) as fake:
        fake.approve_template("answer_ready", language="en", body_params=1, quick_replies=2)
        fake.approve_template("case_update", header_params=1, body_params=2)
        yield fake


ACCEPTED_TEMPLATES = {
    "params-and-quick-replies": template_body("answer_ready", "id", body_params("ADU-2026-000123"),
                                              quick_reply("0"), quick_reply(1, "belum")),
    "params-without-buttons": template_body("answer_ready", "id", body_params("ADU-2026-000123")),
    "second-language": template_body("answer_ready", "en", body_params("ADU-2026-000123"), quick_reply(0)),
    "no-components": template_body("hello"),
    "empty-components": {**template_body("hello"), "template": {"name": "hello", "language": {"code": "id"},
                                                                 "components": []}},
    "deterministic-policy": {**template_body("hello"),
                             "template": {"name": "hello", "language": {"code": "id", "policy": "deterministic"}}},
    "header-and-body": template_body("case_update", "id",
                                     {"type": "header", "parameters": [{"type": "text", "text": "H" * 60}]},
                                     body_params("ADU-2026-000123", "4 spasi:    boleh")),
    "to-a-bsuid": {**_without(template_body("hello"), "to"), "recipient": BSUID},
}


@pytest.mark.parametrize("body", ACCEPTED_TEMPLATES.values(), ids=ACCEPTED_TEMPLATES.keys())
async def test_an_approved_template_with_its_parameters_is_accepted(approved, session, body):
    status, payload = await post(session, approved, body)
    assert status == 200, payload
    assert approved.sent == [{"body": body, "id": payload["messages"][0]["id"]}]


async def test_the_templates_argument_and_approve_template_agree(approved):
    from bridge.simulator.graph import ApprovedTemplate
    assert approved.templates[("answer_ready", "id")] == ApprovedTemplate("answer_ready", "id", 1, 0, 2)
    assert approved.templates[("hello", "id")] == ApprovedTemplate("hello")
    assert approved.templates[("case_update", "id")].header_params == 1
    with pytest.raises(ValueError):
        approved.approve_template("x", body_params=-1)


@pytest.mark.parametrize(
    "body",
    [template_body("jawaban_pengaduan"), template_body("answer_ready", "ms", body_params("x")),
     template_body("Answer_Ready", "id", body_params("x")), template_body("answer_ready", "id_ID", body_params("x"))],
    ids=["unknown-name", "unapproved-language", "name-is-case-sensitive", "language-code-exact"],
)
async def test_an_unknown_template_or_language_gets_404_code_132001(approved, session, body):
    status, payload = await post(session, approved, body)
    assert status == 404
    error = assert_graph_error(payload, 132001)
    assert error["message"] == "(#132001) Template name does not exist in the translation"
    name, code = body["template"]["name"], body["template"]["language"]["code"]
    assert error["error_data"]["details"] == f"template name ({name}) does not exist in {code}"
    assert approved.sent == []


@pytest.mark.parametrize(
    ("body", "details"),
    [(template_body("answer_ready"), "body: number of localizable_params (0) does not match the expected number of params (1)"),
     (template_body("answer_ready", "id", body_params("a", "b")), "body: number of localizable_params (2)"),
     (template_body("hello", "id", body_params("a")), "body: number of localizable_params (1) does not match the expected number of params (0)"),
     (template_body("case_update", "id", body_params("a", "b")), "header: number of localizable_params (0)"),
     (template_body("case_update", "id", {"type": "header", "parameters": []}, body_params("a", "b")), "header:"),
     (template_body("answer_ready", "id", {"type": "body", "parameters": []}), "body: number of localizable_params (0)")],
    ids=["no-body-params", "too-many", "params-for-none", "missing-header", "empty-header", "empty-body"],
)
async def test_a_wrong_number_of_template_parameters_gets_132000(approved, session, body, details):
    status, payload = await post(session, approved, body)
    assert status == 400
    error = assert_graph_error(payload, 132000)
    assert error["message"] == "(#132000) Number of parameters does not match the expected number of params"
    assert details in error["error_data"]["details"]
    assert approved.sent == []


async def test_a_quick_reply_the_template_does_not_have_gets_131009(approved, session):
    body = template_body("answer_ready", "id", body_params("x"), quick_reply(2))
    status, payload = await post(session, approved, body)
    assert status == 400
    assert "index 2" in assert_graph_error(payload, 131009)["error_data"]["details"]
    status, payload = await post(session, approved, template_body("hello", "id", quick_reply(0)))
    assert status == 400
    assert_graph_error(payload, 131009)


@pytest.mark.parametrize(
    "text", ["baris satu\nbaris dua", "kolom\tkolom", "lima     spasi"], ids=["newline", "tab", "five-spaces"]
)
async def test_a_template_parameter_with_a_newline_tab_or_five_spaces_gets_132018(approved, session, text):
    status, payload = await post(session, approved, template_body("answer_ready", "id", body_params(text)))
    assert status == 400
    error = assert_graph_error(payload, 132018)
    assert "new-line/tab characters or more than 4 consecutive spaces" in error["error_data"]["details"]
    assert error["error_data"]["details"].startswith("body: ")


def _template(template: dict[str, Any]) -> dict[str, Any]:
    return {**template_body(), "template": template}


_LANG = {"code": "id"}
REFUSED_TEMPLATES = {
    "no-template": (_without(template_body(), "template"), "The parameter template is required"),
    "no-name": (_template({"language": _LANG}), "template['name']"),
    "empty-name": (_template({"name": "", "language": _LANG}), "template['name']"),
    "no-language": (_template({"name": "hello"}), "template['language']"),
    "language-as-string": (_template({"name": "hello", "language": "id"}), "template['language']"),
    "no-language-code": (_template({"name": "hello", "language": {}}), "template['language']['code']"),
    "other-policy": (_template({"name": "hello", "language": {"code": "id", "policy": "fallback"}}),
                     "template['language']['policy']"),
    "unknown-key": (_template({"name": "hello", "language": _LANG, "namespace": "x"}), "template['namespace']"),
    "components-not-array": (_template({"name": "hello", "language": _LANG, "components": {}}),
                             "template['components']"),
    "footer-component": (template_body("hello", "id", {"type": "footer", "parameters": []}),
                         "template['components'][0]['type']"),
    "two-bodies": (template_body("hello", "id", body_params("a"), body_params("b")),
                   "template['components'][1]['type']"),
    "body-without-parameters": (template_body("hello", "id", {"type": "body"}),
                                "template['components'][0]['parameters']"),
    "currency-parameter": (template_body("hello", "id", {"type": "body", "parameters": [
        {"type": "currency", "currency": {"code": "IDR", "amount_1000": 1000}}]}),
        "template['components'][0]['parameters'][0]"),
    "empty-parameter-text": (template_body("hello", "id", body_params("")),
                             "template['components'][0]['parameters'][0]['text']"),
    "parameter-text-not-string": (template_body("hello", "id", {"type": "body", "parameters": [
        {"type": "text", "text": 123}]}), "template['components'][0]['parameters'][0]['text']"),
    "header-parameter-over-60": (template_body("case_update", "id", {"type": "header", "parameters": [
        {"type": "text", "text": "H" * 61}]}), "template['components'][0]['parameters'][0]['text']"),
    "url-button": (template_body("hello", "id", {**quick_reply(0), "sub_type": "url"}),
                   "template['components'][0]['sub_type']"),
    "button-without-index": (template_body("hello", "id", _without(quick_reply(0), "index")),
                             "template['components'][0]['index']"),
    "button-index-letter": (template_body("hello", "id", quick_reply("a")), "template['components'][0]['index']"),
    "button-index-10": (template_body("hello", "id", quick_reply(10)), "template['components'][0]['index']"),
    "button-index-bool": (template_body("hello", "id", quick_reply(True)), "template['components'][0]['index']"),
    "button-same-index": (template_body("hello", "id", quick_reply(0), quick_reply("0")),
                          "template['components'][1]['index'] must be unique"),
    "button-text-parameter": (template_body("hello", "id", {**quick_reply(0), "parameters": [
        {"type": "text", "text": "x"}]}), "template['components'][0]['parameters'][0]['type']"),
    "button-two-payloads": (template_body("hello", "id", {**quick_reply(0), "parameters": [
        {"type": "payload", "payload": "a"}, {"type": "payload", "payload": "b"}]}),
        "template['components'][0]['parameters']"),
    "button-empty-payload": (template_body("hello", "id", quick_reply(0, "")),
                             "template['components'][0]['parameters'][0]['payload']"),
}


@pytest.mark.parametrize(("body", "rule"), REFUSED_TEMPLATES.values(), ids=REFUSED_TEMPLATES.keys())
async def test_a_malformed_template_gets_400_code_100_naming_the_parameter(approved, session, body, rule):
    status, payload = await post(session, approved, body)
    assert status == 400, payload
    error = assert_graph_error(payload, 100)
    assert rule in error["message"] and rule in error["error_data"]["details"]
    assert approved.sent == []


async def test_a_refused_template_does_not_consume_an_injected_failure(approved, session):
    approved.fail_next()
    status, _ = await post(session, approved, template_body("jawaban_pengaduan"))
    assert status == 404
    status, _ = await post(session, approved, template_body("hello", "id", body_params("x")))
    assert status == 400
    status, _ = await post(session, approved, template_body("hello"))
    assert status == 500


# --------------------------------------------------------------------------- webhook builders


def _value(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["entry"][0]["changes"][0]["value"]


def test_a_bsuid_only_user_comes_without_from_and_without_wa_id():
    graph = FakeGraph()
    payload = graph.text(None, "Saya pakai nama pengguna", user_id=BSUID, username="siti.a", name="Siti")
    value = _value(payload)
    assert value["contacts"] == [{"profile": {"name": "Siti", "username": "siti.a"}, "user_id": BSUID}]
    (message,) = value["messages"]
    assert "from" not in message and message["from_user_id"] == BSUID
    assert message["type"] == "text" and message["text"] == {"body": "Saya pakai nama pengguna"}


def test_a_user_with_number_and_bsuid_carries_both():
    graph = FakeGraph()
    parent = "ID.ENT.11815799212886844830"
    value = _value(graph.image(WA_ID, "123", user_id=BSUID, parent_user_id=parent, username="budi"))
    assert value["contacts"] == [{"profile": {"name": "Warga", "username": "budi"}, "wa_id": WA_ID,
                                  "user_id": BSUID, "parent_user_id": parent}]
    (message,) = value["messages"]
    assert (message["from"], message["from_user_id"], message["from_parent_user_id"]) == (WA_ID, BSUID, parent)


def test_a_message_needs_a_sender_and_a_well_formed_bsuid():
    graph = FakeGraph()
    with pytest.raises(ValueError):
        graph.text(None, "dari siapa?")
    with pytest.raises(ValueError):
        graph.text(None, "x", user_id="id.123")
    with pytest.raises(ValueError):
        graph.status("wamid.x", "sent", None)
    with pytest.raises(ValueError):
        graph.status("wamid.x", "sent", None, recipient_user_id="6281234567890")


def test_a_status_for_a_bsuid_only_user_names_the_user_id():
    graph = FakeGraph()
    (status,) = _value(graph.status("wamid.x", "delivered", None, recipient_user_id=BSUID))["statuses"]
    assert status["recipient_user_id"] == BSUID and "recipient_id" not in status
    (status,) = _value(graph.status("wamid.x", "read", WA_ID, recipient_user_id=BSUID))["statuses"]
    assert (status["recipient_id"], status["recipient_user_id"]) == (WA_ID, BSUID)


def test_list_and_button_replies_have_the_documented_shape():
    graph = FakeGraph()
    (message,) = _value(graph.list_reply(WA_ID, "ktp", "KTP-el", reply_to="wamid.list",
                                         description="Kartu tanda penduduk"))["messages"]
    assert message["context"] == {"from": graph.display_phone_number, "id": "wamid.list"}
    assert message["type"] == "interactive"
    assert message["interactive"] == {"type": "list_reply", "list_reply": {
        "id": "ktp", "title": "KTP-el", "description": "Kartu tanda penduduk"}}
    (message,) = _value(graph.list_reply(WA_ID, "kk", "KK", reply_to="wamid.list"))["messages"]
    assert message["interactive"]["list_reply"] == {"id": "kk", "title": "KK"}

    (message,) = _value(graph.button_reply(None, "ya", "Ya", reply_to="wamid.btn", user_id=BSUID))["messages"]
    assert message["interactive"] == {"type": "button_reply", "button_reply": {"id": "ya", "title": "Ya"}}
    assert message["context"]["id"] == "wamid.btn" and message["from_user_id"] == BSUID and "from" not in message


def test_a_template_quick_reply_is_a_button_message():
    graph = FakeGraph()
    (message,) = _value(graph.quick_reply(WA_ID, "selesai:ADU-1", "Sudah selesai", reply_to="wamid.t"))["messages"]
    assert message["type"] == "button"
    assert message["button"] == {"payload": "selesai:ADU-1", "text": "Sudah selesai"}
    assert message["context"]["id"] == "wamid.t"
    (message,) = _value(graph.quick_reply(WA_ID, "p", "t"))["messages"]
    assert "context" not in message


def test_user_changed_number_is_a_system_message_without_contacts():
    graph = FakeGraph()
    new_bsuid = "ID.99887766554433221100"
    value = _value(graph.user_changed_number(WA_ID, "6289876543210", name="Siti", user_id=new_bsuid,
                                             previous_user_id=BSUID, timestamp=1763795000))
    assert "contacts" not in value
    (message,) = value["messages"]
    assert message["from"] == WA_ID and message["from_user_id"] == BSUID
    assert message["type"] == "system" and message["timestamp"] == "1763795000"
    assert message["system"] == {"body": f"User Siti changed from {WA_ID} to 6289876543210",
                                 "wa_id": "6289876543210", "type": "user_changed_number",
                                 "user_id": new_bsuid, "previous_user_id": BSUID}
    (message,) = _value(graph.user_changed_number(WA_ID, "6289876543210"))["messages"]
    assert set(message["system"]) == {"body", "wa_id", "type"} and "from_user_id" not in message


def test_user_changed_user_id_carries_no_phone_number():
    graph = FakeGraph()
    new_bsuid = "ID.99887766554433221100"
    value = _value(graph.user_changed_user_id(BSUID, new_bsuid, previous_parent_user_id="ID.ENT.1",
                                              parent_user_id="ID.ENT.2"))
    assert "contacts" not in value
    (message,) = value["messages"]
    assert "from" not in message and message["from_user_id"] == BSUID and message["type"] == "system"
    system = message["system"]
    assert system["type"] == "user_changed_user_id" and "wa_id" not in system
    assert (system["user_id"], system["previous_user_id"]) == (new_bsuid, BSUID)
    assert (system["parent_user_id"], system["previous_parent_user_id"]) == ("ID.ENT.2", "ID.ENT.1")
    with pytest.raises(ValueError):
        graph.user_changed_user_id(BSUID, "6281234567890")


SAMPLES = Path("/work/shared/samples/whatsapp")


def _sample_message(file: str, key: str) -> dict[str, Any]:
    return _value(json.loads((SAMPLES / file).read_text())[key])["messages"][0]


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared WhatsApp samples are not on this machine")
def test_reply_builders_match_the_real_samples_key_for_key():
    graph = FakeGraph()
    pairs = [
        (_sample_message("callback_selection.json", "description"),
         graph.list_reply(WA_ID, "a", "b", description="c", reply_to="wamid.x")),
        (_sample_message("callback_button.json", "button"), graph.button_reply(WA_ID, "a", "b", reply_to="wamid.x")),
        (_sample_message("callback_button.json", "quick_reply"), graph.quick_reply(WA_ID, "a", "b", reply_to="w")),
        (_sample_message("system.json", "phone_number_change"), graph.user_changed_number(WA_ID, "6289876543210")),
    ]
    for sample, built in pairs:
        (ours,) = _value(built)["messages"]
        assert set(ours) == set(sample)
        kind = sample["type"]
        assert set(ours[kind]) == set(sample[kind])
        if kind == "interactive":
            reply = sample[kind]["type"]
            assert ours[kind]["type"] == reply and set(ours[kind][reply]) == set(sample[kind][reply])


async def test_choose_answers_a_recorded_interactive_message(graph, session):
    _, payload = await post(session, graph, list_message([{"rows": [
        {"id": "ktp", "title": "KTP-el", "description": "Kartu tanda penduduk"}, {"id": "kk", "title": "KK"}]}]))
    record = graph.sent[-1]
    (message,) = _value(graph.choose(record, "ktp"))["messages"]
    assert message["from"] == WA_ID and message["context"]["id"] == record["id"]
    assert message["interactive"]["list_reply"] == {"id": "ktp", "title": "KTP-el",
                                                    "description": "Kartu tanda penduduk"}
    with pytest.raises(ValueError, match="'akta' is not offered"):
        graph.choose(record, "akta")

    await post(session, graph, {**_without(buttons_message(("ya", "Ya"), ("tidak", "Tidak")), "to"),
                                "recipient": BSUID})
    (message,) = _value(graph.choose(graph.sent[-1], "tidak"))["messages"]
    assert "from" not in message and message["from_user_id"] == BSUID
    assert message["interactive"]["button_reply"] == {"id": "tidak", "title": "Tidak"}
    await post(session, graph, text_body())
    with pytest.raises(ValueError):
        graph.choose(graph.sent[-1], "ya")


async def test_describe_summarises_every_kind_of_send(approved, session):
    await post(session, approved, list_message())
    await post(session, approved, template_body("hello", to="6281111111111"))
    await post(session, approved, bsuid_body())
    text = approved.describe()
    assert "type=interactive list" in text and "hello (id)" in text and f"to={BSUID} type=text" in text
