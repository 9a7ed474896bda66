"""The fake Graph API's 24-hour customer-service window, by its own clock.

A free-form message to a citizen who last wrote more than 24 hours ago (or never) is
accepted with 200 and a wamid, as Meta does, and then refused by a ``failed`` status
webhook with error 131047, posted signed to the bridge's URL. These tests stand a small
aiohttp server in for the bridge.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.simulator.graph import WINDOW, FakeGraph

WA_ID = "6281234567890"
BSUID = "ID.13491208655302741918"
START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
DETAILS = ("Message failed to send because more than 24 hours have passed since the customer "
           "last replied to this number.")


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Bridge:
    """Stands in for the bridge's webhook: records each POST, raw, with its signature."""

    url: str = ""
    posts: list[tuple[bytes, str | None]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answer_status: int = 200

    async def hook(self, request: web.Request) -> web.Response:
        self.posts.append((await request.read(), request.headers.get("X-Hub-Signature-256")))
        self.arrived.set()
        return web.Response(status=self.answer_status, text="ok")

    def statuses(self) -> list[dict[str, Any]]:
        found = []
        for raw, _ in self.posts:
            for entry in json.loads(raw)["entry"]:
                for change in entry["changes"]:
                    found.extend(change["value"].get("statuses", []))
        return found


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    stub = Bridge()
    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", stub.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/whatsapp"
    try:
        yield stub
    finally:
        await runner.cleanup()


@pytest.fixture
async def graph(clock: Clock, bridge: Bridge) -> AsyncIterator[FakeGraph]:
    templates = {"answer_ready": {"language": "id", "body_params": 1, "quick_replies": 1}}
    async with FakeGraph(clock=clock, templates=templates) as fake:
        fake.status_webhook_url = bridge.url
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def text_body(to: str = WA_ID, *, recipient: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                            "type": "text", "text": {"body": "Dokumen Anda sudah jadi."}}
    body["recipient" if recipient else "to"] = to
    return body


def buttons_body(to: str = WA_ID) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "interactive",
            "interactive": {"type": "button", "body": {"text": "Sudah selesai?"},
                            "action": {"buttons": [{"type": "reply", "reply": {"id": "ya", "title": "Ya"}}]}}}


def template_body(to: str = WA_ID) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "template",
            "template": {"name": "answer_ready", "language": {"code": "id"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "ADU-1"}]},
                                        {"type": "button", "sub_type": "quick_reply", "index": "0",
                                         "parameters": [{"type": "payload", "payload": "selesai:ADU-1"}]}]}}


async def send(session: aiohttp.ClientSession, graph: FakeGraph, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url = f"{graph.url}/{graph.api_version}/{graph.phone_number_id}/messages"
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {graph.token}"}) as resp:
        return resp.status, await resp.json()


async def citizen_writes(graph: FakeGraph, bridge: Bridge, wa_id: str | None = WA_ID, **kw: Any) -> None:
    status, _ = await graph.post_webhook(bridge.url, graph.text(wa_id, "Halo", **kw))
    assert status == 200


async def assert_delivered_normally(graph: FakeGraph, bridge: Bridge, status: int, payload: dict[str, Any]) -> None:
    assert status == 200, payload
    assert payload["messages"][0]["id"].startswith("wamid.")
    await graph.settle()
    assert bridge.statuses() == [] and graph.window_refusals == [] and graph.posted_statuses == []


async def the_refusal(graph: FakeGraph, bridge: Bridge) -> dict[str, Any]:
    """The one failed status the fake posted; its signature checked independently."""
    await asyncio.wait_for(bridge.arrived.wait(), 5)
    await graph.settle()
    raw, signature = bridge.posts[-1]
    expected = "sha256=" + hmac.new(graph.app_secret.encode(), raw, hashlib.sha256).hexdigest()
    assert signature == expected
    (status,) = bridge.statuses()
    return status


# --------------------------------------------------------------------------- inside and outside


async def test_inside_the_window_a_text_is_delivered_normally(graph, bridge, clock, session):
    await citizen_writes(graph, bridge)
    clock.advance(hours=23, minutes=59, seconds=59)
    status, payload = await send(session, graph, text_body())
    await assert_delivered_normally(graph, bridge, status, payload)
    assert graph.window_open(WA_ID)


async def test_outside_the_window_the_send_is_accepted_then_a_signed_131047_status_arrives(
    graph, bridge, clock, session
):
    await citizen_writes(graph, bridge)
    bridge.posts.clear()
    bridge.arrived.clear()
    clock.advance(hours=24, seconds=1)

    status, payload = await send(session, graph, text_body())
    assert status == 200
    assert payload["contacts"] == [{"input": WA_ID, "wa_id": WA_ID}]
    wamid = payload["messages"][0]["id"]
    assert graph.sent[-1] == {"body": text_body(), "id": wamid}   # Meta accepted it

    failed = await the_refusal(graph, bridge)
    assert failed["id"] == wamid and failed["status"] == "failed"
    assert failed["recipient_id"] == WA_ID and "recipient_user_id" not in failed
    assert failed["timestamp"] == str(int(clock.now.timestamp()))
    (error,) = failed["errors"]
    assert error["code"] == 131047
    assert error["title"] == "Re-engagement message"
    assert error["error_data"] == {"details": DETAILS}
    assert graph.window_refusals == [graph.sent[-1]]
    assert [p["status"] for p in graph.posted_statuses] == [200]
    assert "outside the 24-hour window" in graph.describe()


async def test_exactly_24_hours_later_the_window_is_closed(graph, bridge, clock, session):
    await citizen_writes(graph, bridge)
    clock.advance(hours=24)
    assert not graph.window_open(WA_ID)
    status, _ = await send(session, graph, text_body())
    assert status == 200
    assert (await the_refusal(graph, bridge))["errors"][0]["code"] == 131047


async def test_a_citizen_who_never_wrote_is_outside_the_window(graph, bridge, session):
    status, payload = await send(session, graph, text_body("6289999999999"))
    assert status == 200
    failed = await the_refusal(graph, bridge)
    assert (failed["id"], failed["recipient_id"]) == (payload["messages"][0]["id"], "6289999999999")
    assert graph.last_inbound("6289999999999") is None


async def test_an_interactive_message_outside_the_window_is_refused_too(graph, bridge, clock, session):
    await citizen_writes(graph, bridge)
    clock.advance(days=2)
    status, payload = await send(session, graph, buttons_body())
    assert status == 200
    assert (await the_refusal(graph, bridge))["id"] == payload["messages"][0]["id"]


async def test_a_template_outside_the_window_is_accepted_and_not_refused(graph, bridge, clock, session):
    await citizen_writes(graph, bridge)
    clock.advance(days=3)
    status, payload = await send(session, graph, template_body())
    await assert_delivered_normally(graph, bridge, status, payload)
    status, payload = await send(session, graph, template_body("6289999999999"))   # never wrote
    await assert_delivered_normally(graph, bridge, status, payload)


async def test_mark_read_is_not_affected_by_the_window(graph, bridge, clock, session):
    clock.advance(days=3)
    status, payload = await send(session, graph, {"messaging_product": "whatsapp", "status": "read",
                                                  "message_id": "wamid.old"})
    assert (status, payload) == (200, {"success": True})
    await graph.settle()
    assert bridge.posts == [] and graph.window_refusals == []


async def test_a_new_message_reopens_the_window(graph, bridge, clock, session):
    await citizen_writes(graph, bridge)
    clock.advance(days=2)
    assert not graph.window_open(WA_ID)
    await citizen_writes(graph, bridge)          # stamped with the clock's "now"
    assert graph.last_inbound(WA_ID) == clock.now.replace(microsecond=0)
    bridge.posts.clear()
    status, payload = await send(session, graph, text_body())
    await assert_delivered_normally(graph, bridge, status, payload)


async def test_the_window_runs_from_the_message_timestamp_not_from_when_it_was_posted(graph, bridge, clock, session):
    old = int((clock.now - timedelta(hours=25)).timestamp())
    await citizen_writes(graph, bridge, timestamp=old)           # Meta delivered it late
    assert graph.last_inbound(WA_ID) == datetime.fromtimestamp(old, timezone.utc)
    status, _ = await send(session, graph, text_body())
    assert status == 200
    assert (await the_refusal(graph, bridge))["errors"][0]["code"] == 131047


async def test_every_kind_of_citizen_message_opens_the_window(graph, bridge, clock, session):
    media = graph.add_media(b"\xff\xd8", "image/jpeg")
    numbers = ["628100000001", "628100000002", "628100000003", "628100000004", "628100000005"]
    payloads = [graph.image(numbers[0], media), graph.document(numbers[1], media, filename="kk.pdf"),
                graph.list_reply(numbers[2], "ktp", "KTP-el", reply_to="wamid.l"),
                graph.button_reply(numbers[3], "ya", "Ya", reply_to="wamid.b"),
                graph.quick_reply(numbers[4], "selesai", "Selesai")]
    for payload in payloads:
        await graph.post_webhook(bridge.url, payload)
    assert all(graph.window_open(number) for number in numbers)


async def test_a_late_retry_of_an_older_message_does_not_shorten_the_window(graph, bridge, clock):
    await citizen_writes(graph, bridge)
    await citizen_writes(graph, bridge, timestamp=int((clock.now - timedelta(hours=30)).timestamp()))
    assert graph.last_inbound(WA_ID) == clock.now
    assert graph.window_open(WA_ID)


async def test_a_batch_opens_the_window_of_each_sender(graph, bridge):
    await graph.post_webhook(bridge.url, graph.batch(graph.text("628100000001", "a"), graph.text("628100000002", "b")))
    assert graph.window_open("628100000001") and graph.window_open("628100000002")


async def test_a_system_message_does_not_open_the_window(graph, bridge):
    await graph.post_webhook(bridge.url, graph.user_changed_number(WA_ID, "6289876543210"))
    assert graph.last_inbound(WA_ID) is None and graph.last_inbound("6289876543210") is None


async def test_statuses_and_malformed_notifications_open_nothing(graph, bridge):
    await graph.post_webhook(bridge.url, graph.status("wamid.x", "read", WA_ID))
    await graph.post_webhook(bridge.url, graph.notification(messages=[{"from": WA_ID, "type": "text"}]))
    await graph.post_webhook(bridge.url, b"not json", signature=None)
    assert graph.last_inbound(WA_ID) is None


# --------------------------------------------------------------------------- BSUID users


async def test_a_bsuid_only_citizen_gets_a_recipient_send_inside_and_a_refusal_outside(graph, bridge, clock, session):
    await citizen_writes(graph, bridge, None, user_id=BSUID, username="siti")
    status, payload = await send(session, graph, text_body(BSUID, recipient=True))
    await assert_delivered_normally(graph, bridge, status, payload)
    assert payload["contacts"] == [{"input": BSUID, "user_id": BSUID}]

    clock.advance(hours=25)
    status, payload = await send(session, graph, text_body(BSUID, recipient=True))
    assert status == 200
    failed = await the_refusal(graph, bridge)
    assert failed["id"] == payload["messages"][0]["id"]
    assert failed["recipient_user_id"] == BSUID and "recipient_id" not in failed


async def test_a_message_with_number_and_bsuid_opens_the_window_for_both(graph, bridge, clock, session):
    await citizen_writes(graph, bridge, WA_ID, user_id=BSUID)
    assert graph.window_open(BSUID) and graph.window_open(WA_ID)
    status, payload = await send(session, graph, text_body(BSUID, recipient=True))
    await assert_delivered_normally(graph, bridge, status, payload)

    clock.advance(hours=30)
    await send(session, graph, text_body(WA_ID))
    failed = await the_refusal(graph, bridge)
    assert (failed["recipient_id"], failed["recipient_user_id"]) == (WA_ID, BSUID)


async def test_a_contact_with_number_and_bsuid_links_them_when_the_message_names_one(graph, bridge):
    """As in Meta's samples: ``from`` only in the message, ``user_id`` only in the contact."""
    message = {"from": WA_ID, "id": "wamid.m1", "timestamp": str(int(graph.clock().timestamp())),
               "type": "text", "text": {"body": "Halo"}}
    contact = {"profile": {"name": "Siti"}, "wa_id": WA_ID, "user_id": BSUID}
    await graph.post_webhook(bridge.url, graph.notification(messages=[message], contacts=[contact]))
    assert graph.window_open(BSUID)


async def test_a_later_bsuid_only_message_keeps_the_linked_number_open(graph, bridge, clock, session):
    await citizen_writes(graph, bridge, WA_ID, user_id=BSUID)
    clock.advance(hours=20)
    await citizen_writes(graph, bridge, None, user_id=BSUID)       # the number hidden this time
    clock.advance(hours=20)                                       # 40 h after the first, 20 h after the second
    status, payload = await send(session, graph, text_body(WA_ID))
    await assert_delivered_normally(graph, bridge, status, payload)


# --------------------------------------------------------------------------- controls


async def test_without_a_status_url_the_refusal_is_recorded_but_not_posted(graph, bridge, session):
    graph.status_webhook_url = None
    status, _ = await send(session, graph, text_body())
    assert status == 200
    await graph.settle()
    assert graph.window_refusals == graph.sent and bridge.posts == [] and graph.posted_statuses == []


async def test_enforce_window_false_delivers_everything(graph, bridge, session):
    graph.enforce_window = False
    status, payload = await send(session, graph, text_body("6289999999999"))
    await assert_delivered_normally(graph, bridge, status, payload)


async def test_customer_wrote_opens_a_window_without_posting(graph, bridge, clock, session):
    graph.customer_wrote(WA_ID, BSUID, at=clock.now - timedelta(hours=2))
    assert graph.last_inbound(BSUID) == clock.now - timedelta(hours=2)
    status, payload = await send(session, graph, text_body())
    await assert_delivered_normally(graph, bridge, status, payload)
    with pytest.raises(ValueError):
        graph.customer_wrote()


async def test_a_bridge_that_is_down_does_not_break_the_fake(graph, clock, session):
    graph.status_webhook_url = "http://127.0.0.1:9/webhooks/whatsapp"     # nothing listens there
    status, _ = await send(session, graph, text_body())
    assert status == 200
    await graph.settle()
    (posted,) = graph.posted_statuses
    assert posted["status"] is None and posted["answer"]


async def test_the_bridge_answer_to_the_status_is_recorded(graph, bridge, session):
    bridge.answer_status = 500
    await send(session, graph, text_body())
    await the_refusal(graph, bridge)
    assert graph.posted_statuses[0]["status"] == 500
    assert graph.posted_statuses[0]["payload"]["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] == "failed"


async def test_stopping_cancels_a_status_still_under_way(clock, session):
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        graph = FakeGraph(clock=clock, status_webhook_url=f"http://127.0.0.1:{runner.addresses[0][1]}/hook")
        await graph.start()
        status, _ = await send(session, graph, text_body())
        assert status == 200
        await asyncio.sleep(0.05)
        await graph.stop()                       # must not hang nor leave a pending task behind
        assert graph.posted_statuses == []
    finally:
        release.set()
        await runner.cleanup()


# --------------------------------------------------------------------------- the clock


def test_the_default_clock_is_the_system_clock_in_utc():
    graph = FakeGraph()
    now = graph.clock()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs((datetime.now(timezone.utc) - now).total_seconds()) < 5
    assert WINDOW == timedelta(hours=24)


def test_default_timestamps_follow_the_injected_clock(clock):
    graph = FakeGraph(clock=clock)
    stamp = str(int(START.timestamp()))
    assert graph.text(WA_ID, "x")["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] == stamp
    clock.advance(hours=1)
    later = str(int(START.timestamp()) + 3600)
    assert graph.status("wamid.x", "sent", WA_ID)["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"] == later
    system = graph.user_changed_user_id(BSUID, "ID.1")
    assert system["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] == later


async def test_the_clock_can_be_swapped_on_a_running_fake(bridge, session):
    """The shared ``graph`` fixture makes FakeGraph() first; a test can give it a clock after."""
    async with FakeGraph() as graph:
        await graph.post_webhook(bridge.url, graph.text(WA_ID, "x"))
        graph.clock = Clock(datetime.now(timezone.utc) + timedelta(days=2))
        graph.status_webhook_url = bridge.url
        bridge.posts.clear()
        await send(session, graph, text_body())
        assert (await the_refusal(graph, bridge))["errors"][0]["code"] == 131047
