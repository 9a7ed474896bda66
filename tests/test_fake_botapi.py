"""The fake Telegram Bot API must be strict and correct, or the bridge's tests prove nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.simulator.telegram import FILE_MAX, FakeBotApi, TgUser

SITI = TgUser(7001, "Siti", "Aminah", username="siti_a")
BUDI = TgUser(7002, "Budi")


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(token="123456:TEST-token", bot_username="pengaduan_bot") as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(session: aiohttp.ClientSession, api: FakeBotApi, method: str, token: str | None = None,
               **params: Any) -> tuple[int, dict[str, Any]]:
    """POST ``params`` as JSON to a method; (HTTP status, envelope)."""
    async with session.post(f"{api.url}/bot{token or api.token}/{method}", json=params) as response:
        return response.status, await response.json()


def assert_error(status: int, envelope: dict[str, Any], code: int, description: str) -> None:
    assert status == code
    assert envelope["ok"] is False and envelope["error_code"] == code
    assert envelope["description"].startswith(description), envelope["description"]


# --------------------------------------------------------------------------- the envelope


async def test_get_me_in_the_envelope_by_get_and_post_in_any_case(api, session):
    async with session.get(f"{api.url}/bot{api.token}/getMe") as response:
        assert response.status == 200
        assert await response.json() == {"ok": True, "result": {
            "id": 123456, "is_bot": True, "first_name": "Layanan Pengaduan", "username": "pengaduan_bot"}}
    status, envelope = await call(session, api, "GETME")
    assert status == 200 and envelope["result"]["username"] == "pengaduan_bot"


async def test_wrong_token_is_401_and_unknown_method_404(api, session):
    assert_error(*await call(session, api, "getMe", token="123456:WRONG"), 401, "Unauthorized")
    assert_error(*await call(session, api, "sendPhoto"), 404, "Not Found")
    async with session.get(f"{api.url}/nothing/here") as response:
        assert response.status == 404 and (await response.json())["ok"] is False
    assert [(one["method"], one["error_code"]) for one in api.rejected] == [("getMe", 401), ("sendPhoto", 404)]


async def test_form_and_query_parameters_and_a_json_string_keyboard(api, session):
    api.text(SITI, "halo")
    keyboard = json.dumps({"inline_keyboard": [[{"text": "Ya", "callback_data": "yes"}]]})
    form = {"chat_id": str(SITI.id), "text": "Pilih", "reply_markup": keyboard}
    async with session.post(f"{api.url}/bot{api.token}/sendMessage", data=form) as response:
        envelope = await response.json()
    assert response.status == 200 and envelope["result"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "Ya"
    async with session.get(f"{api.url}/bot{api.token}/getUpdates", params={"limit": "abc"}) as response:
        assert_error(response.status, await response.json(), 400, "Bad Request: ")


# --------------------------------------------------------------------------- getUpdates


async def test_updates_are_returned_until_an_offset_confirms_them(api, session):
    first, second = api.text(SITI, "satu"), api.text(BUDI, "dua")
    status, envelope = await call(session, api, "getUpdates")
    assert status == 200 and envelope["result"] == [first, second]
    assert second["update_id"] == first["update_id"] + 1
    assert first["message"]["message_id"] == second["message"]["message_id"] == 1  # one counter per chat

    _, envelope = await call(session, api, "getUpdates", offset=first["update_id"] + 1, limit=0)
    assert envelope["result"] == [second]  # limit 0 is clamped to 1
    assert api.confirmed_through == first["update_id"]
    _, envelope = await call(session, api, "getUpdates", offset=second["update_id"] + 1)
    assert envelope["result"] == [] and api.pending_updates() == []
    assert [call_["offset"] for call_ in api.get_updates_calls[1:]] == [first["update_id"] + 1,
                                                                         second["update_id"] + 1]


async def test_long_poll_answers_on_a_new_update_and_empty_after_its_timeout(api, session):
    poll = asyncio.create_task(call(session, api, "getUpdates", timeout=1))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    update = api.text(SITI, "ada yang baru")
    status, envelope = await poll
    assert status == 200 and envelope["result"] == [update]
    assert time.monotonic() - started < 0.5

    started = time.monotonic()
    _, envelope = await call(session, api, "getUpdates", offset=update["update_id"] + 1, timeout=1)
    assert envelope["result"] == [] and 0.9 < time.monotonic() - started < 1.8


async def test_stop_answers_a_waiting_long_poll_at_once(session):
    api = FakeBotApi()
    await api.start()
    poll = asyncio.create_task(call(session, api, "getUpdates", timeout=1))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await api.stop()
    assert (await poll)[1] == {"ok": True, "result": []} and time.monotonic() - started < 0.5


async def test_a_second_poller_ends_the_first_with_409(api, session):
    first = asyncio.create_task(call(session, api, "getUpdates", timeout=1))
    await asyncio.sleep(0.05)
    status, envelope = await call(session, api, "getUpdates")
    assert status == 200 and envelope["result"] == []
    assert_error(*await first, 409, "Conflict: terminated by other getUpdates request")


async def test_get_updates_is_409_while_a_webhook_is_set(api, session):
    assert (await call(session, api, "setWebhook", url="https://bridge.example.id/telegram"))[0] == 200
    assert_error(*await call(session, api, "getUpdates"), 409,
                 "Conflict: can't use getUpdates method while webhook is active")
    assert (await call(session, api, "deleteWebhook"))[1] == {"ok": True, "result": True}
    assert (await call(session, api, "getUpdates"))[0] == 200


async def test_updates_older_than_24_hours_are_dropped():
    now = [datetime(2026, 10, 1, 8, 0, tzinfo=timezone.utc)]
    async with FakeBotApi(clock=lambda: now[0]) as api, aiohttp.ClientSession() as session:
        old = api.text(SITI, "kemarin")
        now[0] += timedelta(hours=23)
        fresh = api.text(SITI, "tadi")
        assert old["message"]["date"] == int(datetime(2026, 10, 1, 8, 0, tzinfo=timezone.utc).timestamp())
        now[0] += timedelta(hours=2)
        assert (await call(session, api, "getUpdates"))[1]["result"] == [fresh]


async def test_allowed_updates_persist_and_filter(api, session):
    await call(session, api, "getUpdates", allowed_updates=["callback_query"])
    api.text(SITI, "tidak diminta")
    assert api.pending_updates() == []
    await call(session, api, "getUpdates", allowed_updates=[])
    wanted = api.text(SITI, "diminta")
    assert api.pending_updates() == [wanted]


# --------------------------------------------------------------------------- the webhook


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, Any], str | None]], list[int]]]:
    """A tiny bridge: records (update, secret header) and answers the queued statuses, then 200."""
    got: list[tuple[dict[str, Any], str | None]] = []
    answers: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/telegram", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/telegram", got, answers
    await runner.cleanup()


@pytest.mark.parametrize("params, description", [
    ({}, "Bad Request: bad webhook: An HTTPS URL must be provided"),
    ({"url": "http://bridge.example.id/hook"}, "Bad Request: bad webhook: An HTTPS URL must be provided"),
    ({"url": "https://bridge.example.id:8080/hook"}, "Bad Request: bad webhook: Webhook can be set up only on ports"),
    ({"url": "https://bridge.example.id/hook", "secret_token": "bad secret!"},
     "Bad Request: secret token contains unallowed characters"),
    ({"url": "https://bridge.example.id/hook", "secret_token": "x" * 257},
     "Bad Request: secret token contains unallowed characters"),
])
async def test_set_webhook_validation(api, session, params, description):
    assert_error(*await call(session, api, "setWebhook", **params), 400, description)
    assert (await call(session, api, "getWebhookInfo"))[1]["result"]["url"] == ""


async def test_webhook_posts_with_the_secret_and_retries_after_a_refusal(api, session, receiver):
    url, got, answers = receiver
    api.webhook_retry_interval = 0.05
    queued = api.text(SITI, "sebelum webhook")
    answers.append(500)
    status, envelope = await call(session, api, "setWebhook", url=url, secret_token="s3cret_-X")
    assert status == 200 and envelope["result"] is True
    await api.settle()
    later = api.text(BUDI, "sesudah webhook")
    await api.settle()

    assert [update for update, _ in got] == [queued, queued, later]
    assert {secret for _, secret in got} == {"s3cret_-X"}
    assert [(post["update_id"], post["status"]) for post in api.webhook_posts] == [
        (queued["update_id"], 500), (queued["update_id"], 200), (later["update_id"], 200)]
    info = (await call(session, api, "getWebhookInfo"))[1]["result"]
    assert info["url"] == url and info["pending_update_count"] == 0 and info["has_custom_certificate"] is False
    assert info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"
    assert isinstance(info["last_error_date"], int)

    status, _ = await api.deliver_webhook(url, later, "wrong")
    assert status == 200 and got[-1][1] == "wrong"


async def test_webhook_unreachable_keeps_the_update_queued(api, session):
    api.webhook_retry_interval = 0.05
    await call(session, api, "setWebhook", url="http://127.0.0.1:9/telegram", drop_pending_updates=True)
    update = api.text(SITI, "tidak sampai")
    await asyncio.sleep(0.15)
    assert api.pending_updates() == [update]
    assert api.webhook_posts and api.webhook_posts[0]["status"] is None
    await call(session, api, "deleteWebhook", drop_pending_updates=True)
    assert api.pending_updates() == []


# --------------------------------------------------------------------------- sendMessage


@pytest.mark.parametrize("params, code, description", [
    ({"text": "hi"}, 400, "Bad Request: chat_id is empty"),
    ({"chat_id": 999, "text": "hi"}, 400, "Bad Request: chat not found"),
    ({"chat_id": "@siti_a", "text": "hi"}, 400, "Bad Request: chat not found"),
    ({"chat_id": SITI.id}, 400, "Bad Request: message text is empty"),
    ({"chat_id": SITI.id, "text": " \n "}, 400, "Bad Request: message text is empty"),
    ({"chat_id": SITI.id, "text": "x" * 4097}, 400, "Bad Request: message is too long"),
    ({"chat_id": SITI.id, "text": "hi", "parse_mode": "Markdown"}, 400, "Bad Request: unsupported parse_mode"),
    ({"chat_id": SITI.id, "text": "<script>x</script>", "parse_mode": "HTML"}, 400,
     'Bad Request: can\'t parse entities: Unsupported start tag "script"'),
    ({"chat_id": SITI.id, "text": "<b>tebal", "parse_mode": "HTML"}, 400, "Bad Request: can't parse entities: "),
    ({"chat_id": SITI.id, "text": "<b><i>x</b></i>", "parse_mode": "HTML"}, 400,
     "Bad Request: can't parse entities: Unmatched end tag"),
    ({"chat_id": SITI.id, "text": "a < b", "parse_mode": "HTML"}, 400, "Bad Request: can't parse entities: "),
    ({"chat_id": SITI.id, "text": "Nomor 12.", "parse_mode": "MarkdownV2"}, 400,
     "Bad Request: can't parse entities: Character '.' is reserved"),
    ({"chat_id": SITI.id, "text": "hi", "reply_markup": {"keyboard": [["Ya"]]}}, 400,
     "Bad Request: can't parse reply keyboard markup JSON object"),
    ({"chat_id": SITI.id, "text": "hi", "reply_markup": "{not json"}, 400,
     "Bad Request: can't parse reply keyboard markup JSON object"),
    ({"chat_id": SITI.id, "text": "hi", "reply_markup": {"inline_keyboard": [{"text": "Ya"}]}}, 400,
     "Bad Request: can't parse reply keyboard markup JSON object"),
    ({"chat_id": SITI.id, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "Ya"}]]}}, 400,
     "Bad Request: can't parse inline keyboard button"),
    *[({"chat_id": SITI.id, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "Ya", "callback_data": d}]]}},
       400, "Bad Request: BUTTON_DATA_INVALID") for d in ("é" * 33, "", 5)],  # 66 bytes; empty; not a string
    ({"chat_id": SITI.id, "text": "hi", "reply_parameters": {"message_id": 99}}, 400,
     "Bad Request: message to be replied not found"),
    ({"chat_id": SITI.id, "text": "hi", "disable_notification": "maybe"}, 400, "Bad Request: "),
])
async def test_send_message_validation(api, session, params, code, description):
    api.text(SITI, "halo")
    assert_error(*await call(session, api, "sendMessage", **params), code, description)
    assert api.sent == [] and api.rejected[-1]["params"] == params


async def test_send_message_result_reply_and_records(api, session):
    asked = api.text(SITI, "KTP saya?")["message"]
    shown: list[str] = []
    api.listeners.append(lambda record: shown.append(record["text"]))
    keyboard = {"inline_keyboard": [[{"text": "Ya", "callback_data": "case:1:yes"}]]}
    status, envelope = await call(session, api, "sendMessage", chat_id=str(SITI.id), parse_mode="HTML",
                                  text="<b>Aduan</b> &lt;#1&gt; diterima", reply_markup=keyboard,
                                  reply_parameters={"message_id": asked["message_id"]})
    message = envelope["result"]
    assert status == 200 and message["message_id"] == 2 and message["text"] == "Aduan <#1> diterima"
    assert message["from"]["is_bot"] is True and message["chat"] == {
        "id": SITI.id, "first_name": "Siti", "last_name": "Aminah", "username": "siti_a", "type": "private"}
    assert message["reply_to_message"]["text"] == "KTP saya?" and message["reply_markup"] == keyboard
    assert api.sent == [{"chat_id": SITI.id, "text": "Aduan <#1> diterima", "message": message,
                         "params": api.sent[0]["params"]}]
    assert api.sent[0]["params"]["text"].startswith("<b>") and shown == ["Aduan <#1> diterima"]
    status, envelope = await call(session, api, "sendMessage", chat_id=SITI.id, text="*Nomor* 12\\.",
                                  parse_mode="MarkdownV2",
                                  reply_parameters={"message_id": 99, "allow_sending_without_reply": True})
    assert status == 200 and envelope["result"]["text"] == "Nomor 12." and "reply_to_message" not in envelope["result"]
    assert api.texts_to(SITI.id) == ["Aduan <#1> diterima", "Nomor 12."]


async def test_blocked_user_is_403(api, session):
    api.text(SITI, "halo")
    api.block(SITI.id)
    assert_error(*await call(session, api, "sendMessage", chat_id=SITI.id, text="hi"), 403,
                 "Forbidden: bot was blocked by the user")


async def test_rate_limits_per_chat_and_overall(api, session):
    api.text(SITI, "halo")
    api.text(BUDI, "halo")
    for _ in range(3):
        assert (await call(session, api, "sendMessage", chat_id=SITI.id, text="hi"))[0] == 200
    status, envelope = await call(session, api, "sendMessage", chat_id=SITI.id, text="hi")
    assert_error(status, envelope, 429, "Too Many Requests: retry after 1")
    assert envelope["parameters"] == {"retry_after": 1}
    api.overall_per_second = 4
    assert (await call(session, api, "sendMessage", chat_id=BUDI.id, text="hi"))[0] == 200
    assert_error(*await call(session, api, "sendMessage", chat_id=BUDI.id, text="hi"), 429, "Too Many Requests")
    api.rate_limits = False
    assert (await call(session, api, "sendMessage", chat_id=SITI.id, text="hi"))[0] == 200


async def test_fail_next_with_match_times_and_retry_after(api, session):
    api.text(SITI, "halo")
    api.text(BUDI, "halo")
    api.fail_next("sendmessage", 502, "Bad Gateway", times=2, match=lambda params: params["chat_id"] == BUDI.id)
    api.fail_next("getUpdates", 429, "Too Many Requests: retry after 7", retry_after=7)
    assert (await call(session, api, "sendMessage", chat_id=SITI.id, text="hi"))[0] == 200
    for _ in range(2):
        assert_error(*await call(session, api, "sendMessage", chat_id=BUDI.id, text="hi"), 502, "Bad Gateway")
    assert (await call(session, api, "sendMessage", chat_id=BUDI.id, text="hi"))[0] == 200
    status, envelope = await call(session, api, "getUpdates")
    assert status == 429 and envelope["parameters"] == {"retry_after": 7}
    assert (await call(session, api, "getUpdates"))[0] == 200
    assert len(api.sent) == 2 and [one["error_code"] for one in api.rejected] == [502, 502, 429]


# --------------------------------------------------------------------------- citizens' updates


async def test_callback_queries_are_answered_once(api, session):
    api.text(SITI, "halo")
    keyboard = {"inline_keyboard": [[{"text": "Ya", "callback_data": "yes"}, {"text": "Tidak", "callback_data": "no"}]]}
    await call(session, api, "sendMessage", chat_id=SITI.id, text="Lanjut?", reply_markup=keyboard)
    with pytest.raises(ValueError):
        api.callback(SITI, api.sent[0], "maybe")
    query = api.choose(SITI, api.sent[0], "Tidak")["callback_query"]
    assert query["data"] == "no" and query["message"]["message_id"] == 2 and query["from"]["id"] == SITI.id
    assert api.callback(SITI, 2, "yes")["callback_query"]["chat_instance"] == query["chat_instance"]

    assert (await call(session, api, "answerCallbackQuery", callback_query_id=query["id"], text="OK"))[1]["result"]
    invalid = "Bad Request: query is too old and response timeout expired or query ID is invalid"
    assert_error(*await call(session, api, "answerCallbackQuery", callback_query_id=query["id"]), 400, invalid)
    assert_error(*await call(session, api, "answerCallbackQuery", callback_query_id="123"), 400, invalid)
    assert api.answered_callbacks == [{"callback_query_id": query["id"], "text": "OK"}]


async def test_media_updates_and_edits(api):
    photo = api.photo(SITI, b"J" * 320, caption="KTP", media_group_id="album1")["message"]
    assert [size["width"] for size in photo["photo"]] == [90, 320, 1280]
    assert [size["file_size"] for size in photo["photo"]] == [20, 80, 320]
    assert len({size["file_id"] for size in photo["photo"]}) == 3 and photo["media_group_id"] == "album1"
    document = api.document(SITI, b"%PDF", file_name="kk.pdf", mime_type="application/pdf")["message"]
    assert document["document"]["file_name"] == "kk.pdf" and document["document"]["file_size"] == 4
    assert api.voice(SITI, b"OggS")["message"]["voice"]["duration"] == 3
    assert api.video(SITI, b"mp4")["message"]["video"]["width"] == 640
    assert api.location(SITI, -7.8, 110.3)["message"]["location"] == {"latitude": -7.8, "longitude": 110.3}
    contact = api.contact(SITI, "+6281234567890", "Siti", contact_user_id=SITI.id)["message"]["contact"]
    assert contact == {"phone_number": "+6281234567890", "first_name": "Siti", "user_id": SITI.id}
    text = api.text(SITI, "salah ketik", reply_to=photo["message_id"])["message"]
    assert text["message_id"] == 7 and text["reply_to_message"]["caption"] == "KTP"
    edited = api.edit(SITI, text["message_id"], "sudah benar")["edited_message"]
    assert edited["message_id"] == 7 and edited["text"] == "sudah benar" and "edit_date" in edited
    with pytest.raises(ValueError):
        api.text(SITI, "balas", reply_to=99)


async def test_get_file_download_and_limits(api, session):
    file_id = api.document(SITI, b"%PDF-1.7 data", file_name="a.pdf", mime_type="application/pdf")[
        "message"]["document"]["file_id"]
    status, envelope = await call(session, api, "getFile", file_id=file_id)
    file = envelope["result"]
    assert status == 200 and file["file_size"] == 13 and file["file_id"] == file_id and file["file_unique_id"]
    async with session.get(f"{api.url}/file/bot{api.token}/{file['file_path']}") as response:
        assert response.status == 200 and await response.read() == b"%PDF-1.7 data"
    async with session.get(f"{api.url}/file/bot123456:WRONG/{file['file_path']}") as response:
        assert response.status == 404
    async with session.get(f"{api.url}/file/bot{api.token}/documents/nope.pdf") as response:
        assert response.status == 404
    assert api.downloads == [file_id]

    assert_error(*await call(session, api, "getFile", file_id="nope"), 400, "Bad Request: invalid file_id")
    big = api.document(SITI, b"x", file_name="big.mp4", mime_type="video/mp4", size=FILE_MAX + 1)
    assert big["message"]["document"]["file_size"] == FILE_MAX + 1
    assert_error(*await call(session, api, "getFile", file_id=big["message"]["document"]["file_id"]), 400,
                 "Bad Request: file is too big")
