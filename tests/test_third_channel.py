"""A third channel, defined here in the tests folder and registered, carries a complaint to
its answer with no change to the core: the registry is the only door a channel needs.

The channel is a small SMS gateway: the gateway posts each SMS to ``/webhooks/sms`` with a
shared key, and the bridge sends through the gateway's ``/send``; it gives no receipts.
"""
from __future__ import annotations

import hmac
import itertools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import aiohttp
import pytest
from aiohttp import web

from bridge.channels import base, registry
from bridge.channels.base import Attachment, ChannelSettings, InboundMessage, Media
from bridge.config import Section
from bridge.errors import DeliveryError
from tests.harness import until
from tests.story import body, case_reaches, in_format, react, to_the_sending_step, Card

KEY = "sms-gateway-key"


@dataclass(frozen=True)
class SmsSettings(ChannelSettings):
    gateway_url: str = ""
    key: str = ""


class SmsChannel(base.Channel):
    name = "sms"
    title = "SMS"
    secrets = ("SMS_GATEWAY_KEY",)
    reports_delivery = False

    def __init__(self, settings: SmsSettings) -> None:
        self.settings = settings
        self.session: aiohttp.ClientSession | None = None

    @classmethod
    def read_settings(cls, section: Section) -> SmsSettings:
        return SmsSettings(enabled=section.enabled, gateway_url=section.url("gateway_url", "http://127.0.0.1"),
                           key=section.secret("SMS_GATEWAY_KEY"))

    @classmethod
    def from_settings(cls, settings: Any) -> "SmsChannel":
        return cls(settings)

    async def start(self, sink: base.InboundSink) -> None:
        await super().start(sink)
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self.session:
            await self.session.close()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/webhooks/sms", self.receive)]

    async def receive(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("X-Key", "").encode(), self.settings.key.encode()):
            return web.json_response({"error": "bad key"}, status=401)
        sms = await request.json()
        await self.sink.accept([InboundMessage(channel=self.name, external_id=sms["id"], address=sms["from"],
                                               at=datetime.now(timezone.utc), kind=base.TEXT, text=sms["text"])], [])
        return web.json_response({"ok": True})

    async def send_text(self, address: str, text: str, *, reply_to: str | None = None,
                        choices: Sequence[base.Choice] = ()) -> str:
        if choices:
            text += "\n" + "\n".join(f"{i}. {c.title}" for i, c in enumerate(choices, start=1))
        assert self.session is not None
        async with self.session.post(f"{self.settings.gateway_url}/send", json={"to": address, "text": text}) as r:
            if r.status != 200:
                raise DeliveryError(f"gateway {r.status}", transient=r.status >= 500)
            return (await r.json())["id"]

    async def fetch_media(self, attachment: Attachment) -> Media:
        raise DeliveryError("SMS carries no files", transient=False)


class Gateway:
    """The SMS gateway's side: what the bridge sent through it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.ids = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/send", self.send)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def send(self, request: web.Request) -> web.Response:
        self.sent.append(await request.json())
        return web.json_response({"id": f"sms-{next(self.ids)}"})


@pytest.fixture
async def sms(make_env):
    gateway = Gateway()
    await gateway.start()
    registry.register(SmsChannel)
    try:
        env = await make_env({"sms": {"enabled": True, "gateway_url": gateway.url}},
                             extra_env={"SMS_GATEWAY_KEY": KEY})
        yield env, gateway
        await env.close()
    finally:
        registry.unregister("sms")
        assert gateway.runner is not None
        await gateway.runner.cleanup()


async def test_a_complaint_by_a_registered_third_channel_reaches_its_answer(sms) -> None:
    env, gateway = sms
    hook = f"{env.bridge.http.url}/webhooks/sms"
    async with aiohttp.ClientSession() as s:
        async with s.post(hook, json={"id": "x", "from": "6281299990000", "text": "halo"},
                          headers={"X-Key": "wrong"}) as r:
            assert r.status == 401
        async with s.post(hook, json={"id": "sms-in-1", "from": "6281299990000",
                                      "text": in_format("KTP-el saya hilang di pasar")}, headers={"X-Key": KEY}) as r:
            assert r.status == 200
    room = env.bridge.matrix.rooms["admin"]
    seen = await env.admin.wait_for(lambda s: s.room_id == room and body(s).startswith("📨 Pengaduan baru")
                                    and "pasar" in body(s), what="the card")
    assert "· SMS" in body(seen)                      # the title it registered, nothing the core knows
    card = Card(body(seen).split()[3], seen.room_id, seen.event.event_id)
    await until(lambda: any(card.ticket in m["text"] for m in gateway.sent), what="the ticket reply by SMS")
    admin_card = await to_the_sending_step(env, card, "KTP-el pengganti sudah dapat diambil.")
    await react(env, "admin", admin_card, "📤")
    await until(lambda: any("KTP-el pengganti" in m["text"] for m in gateway.sent), what="the answer by SMS")
    row = await case_reaches(env, card.ticket, state="closed", outcome="dijawab")     # no receipts: accepted is done
    assert row["channel"] == "sms"
    assert {m["to"] for m in gateway.sent} == {"6281299990000"}
