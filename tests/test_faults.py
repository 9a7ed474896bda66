"""Faults injected into the real parts: the homeserver stopped, the channels' APIs failing.

Each test says what it injects and what it then observes; nothing is mocked but the
channel services (the local fakes), which fail on request.
"""
from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.homeserver import LocalSynapse
from tests.harness import Env, FakeClock, bridge_settings, new_prefix, register_users, until
from tests.story import body, complaint, in_format

WIB = ZoneInfo("Asia/Jakarta")
OUTAGE_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def own_synapse(tmp_path_factory: pytest.TempPathFactory):
    """A homeserver of this module's own, on a fixed port, so that it can be stopped and
    started again at the same address without touching the session's."""
    server = LocalSynapse(tmp_path_factory.mktemp("synapse-faults"), port=free_port())
    server.start()
    register_users(server)
    try:
        yield server
    finally:
        server.stop()


async def test_matrix_down_for_a_minute_loses_nothing_and_repeats_nothing(own_synapse, graph, tmp_path: Path) -> None:
    """Injected: Synapse stopped for a minute while three complaints, a follow-up and an
    SLA warning happen. Observed: every webhook answered 200 at once; after Synapse is
    back, every card, thread message and alert arrives exactly once, each case's in order."""
    clock = FakeClock(datetime(2026, 11, 23, 8, 0, tzinfo=WIB))           # a Monday, 08:00
    prefix = new_prefix()
    env = Env(own_synapse, graph, tmp_path / prefix, prefix,
              bridge_settings(own_synapse, graph, tmp_path / prefix, prefix=prefix,
                              overrides={"sla": {"check_seconds": 0.2}}), clock=clock)
    try:
        await env.start_bridge()
        env.admin = await env.staff_member("admin")
        first = await complaint(env, "6281234500201", "KTP-el saya hilang")

        await asyncio.to_thread(own_synapse.stop)
        answers = [await env.send(graph.text(f"62812345003{i:02d}", in_format(f"Pengaduan nomor {i} saat server mati"),
                                             name=f"Warga {i}")) for i in range(3)]
        answers.append(await env.send(graph.text("6281234500201", "Tambahan: KTP-el hilang di terminal",
                                                 name="Siti Aminah")))
        assert [status for status, _ in answers] == [200] * 4          # stored, answered at once
        clock.set(datetime(2026, 11, 23, 8, 13, tzinfo=WIB))           # 13 of the first step's 15 minutes
        await asyncio.sleep(OUTAGE_SECONDS)
        assert not (await env.bridge.health())["ok"]                   # /healthz says so meanwhile
        await asyncio.to_thread(own_synapse.start)

        room = env.bridge.matrix.rooms["admin"]

        def cards() -> list:
            return [s for s in env.admin.seen if s.room_id == room and body(s).startswith("📨 Pengaduan baru")]

        await until(lambda: len(cards()) == 4, timeout=60, what="the three cards made while Synapse was down")

        def mine(ticket: str) -> list:
            """Everything the admin saw about one case, in the order it arrived."""
            return [body(s) for s in env.admin.seen if s.room_id == room and ticket in body(s)
                    or (getattr(s.event, "source", {}).get("content", {}).get("m.relates_to", {}).get("event_id")
                        == first.event_id and s.room_id == room)]

        await until(lambda: any("terminal" in b for b in mine(first.ticket)), timeout=30, what="the follow-up")
        await until(lambda: any(b.startswith(f"⏳ Peringatan SLA {first.ticket}") for b in mine(first.ticket)),
                    timeout=30, what="the SLA warning")
        # Exactly once: each card, the follow-up, the warning.
        heads = Counter(body(s).splitlines()[0] for s in cards())
        assert all(n == 1 for n in heads.values()) and len(heads) == 4
        about_first = mine(first.ticket)
        assert sum("terminal" in b for b in about_first) == 1
        assert sum(b.startswith(f"⏳ Peringatan SLA {first.ticket}") and "Verifikasi" in b
                   for b in about_first if "langkah" in b) == 1
        # In order: the card before the follow-up in its thread.
        assert about_first.index(next(b for b in about_first if b.startswith("📨"))) < \
            about_first.index(next(b for b in about_first if "terminal" in b))
        # The other cases' warnings (written during the outage too) may still be going out.
        async def matrix_rows_left() -> list:
            async with env.bridge.store.reading() as tx:
                return await tx._all("SELECT kind, state FROM outbox WHERE kind LIKE 'matrix.%' AND state != 'done'")

        async def none_left() -> bool:
            return not await matrix_rows_left()
        await until(none_left, timeout=30, what="every Matrix row delivered")
        assert not [r for r in await matrix_rows_left() if r["state"] == "dead"]
    finally:
        await env.close()


# -- the channels' APIs failing --------------------------------------------------------------
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=WIB)


async def ticket_row(env) -> dict:
    async with env.bridge.store.reading() as tx:
        return await tx._one("SELECT * FROM outbox WHERE kind = 'channel.text' ORDER BY id LIMIT 1")


async def retried_after(env, clock: FakeClock, seconds: float) -> dict:
    """The ticket reply's row waits exactly ``seconds`` (the clock stands still), then goes."""
    row = await until(lambda: _failed_once(env), what="the first refusal")
    assert (row["next_try_at"] - clock()).total_seconds() == pytest.approx(seconds)
    clock.advance(seconds=seconds)
    env.bridge.outbox.wake()
    return await until(lambda: _done(env), what="the ticket reply sent on the retry")


async def _failed_once(env):
    row = await ticket_row(env)
    return row if row and row["attempts"] == 1 and row["state"] == "pending" else None


async def _done(env):
    row = await ticket_row(env)
    return row if row and row["state"] == "done" else None


@pytest.mark.parametrize("status, code, retry_after, waits", [
    (500, 1, None, 2.0),                    # a server error: backoff, 2 s after the first
    (503, 2, 7, 7.0),                       # Retry-After is obeyed
    (429, 130429, None, 60.0),              # Cloud API throughput limit: a minute
    (400, 131056, None, 60.0),              # pair rate limit: a minute
    (400, 80007, None, 60.0),               # WABA rate limit: a minute
])
async def test_graph_failures_are_retried_as_told(make_env, status, code, retry_after, waits) -> None:
    """Injected: one refusal of the ticket reply by the Graph API. Observed: the row waits
    as the error says (the clock stands still, so the wait is exact), then the reply goes."""
    clock = FakeClock(MONDAY)
    env = await make_env(clock=clock)
    env.graph.fail_next(status=status, code=code, retry_after=retry_after, match=lambda b: "status" not in b)
    card = await complaint(env, "6281234500401", "KTP-el saya hilang")
    row = await retried_after(env, clock, waits)
    assert str(code) in row["last_error"]
    assert any(card.ticket in str(r["body"]) for r in env.graph.sent)


@pytest.mark.parametrize("code, description, retry_after, waits", [
    (500, "Internal Server Error", None, 2.0),
    (502, "Bad Gateway", None, 2.0),
    (429, "Too Many Requests: retry after 9", 9, 9.0),
])
async def test_bot_api_failures_are_retried_as_told(make_env, botapi, code, description, retry_after, waits) -> None:
    clock = FakeClock(MONDAY)
    env = await make_env(clock=clock, botapi=botapi)
    botapi.fail_next("sendMessage", code, description, retry_after=retry_after)
    from bridge.simulator.telegram import TgUser
    user = TgUser(id=5550401, first_name="Siti")
    botapi.text(user, in_format("KTP-el saya hilang"))
    row = await retried_after(env, clock, waits)
    assert str(code) in row["last_error"]
    assert any("ADU-" in m["text"] for m in botapi.sent)


async def test_a_permanent_bot_api_refusal_stops_and_shows_in_the_thread(make_env, botapi) -> None:
    env = await make_env(botapi=botapi)
    botapi.fail_next("sendMessage", 400, "Bad Request: chat not found")
    from bridge.simulator.telegram import TgUser
    botapi.text(TgUser(id=5550402, first_name="Siti"), in_format("KTP-el saya hilang di pasar"))
    room = env.bridge.matrix.rooms["admin"]
    await env.admin.wait_for(lambda s: s.room_id == room and "Gagal mengirim balasan nomor tiket" in body(s)
                             and "chat not found" in body(s), what="the refusal in the thread")
    row = await ticket_row(env)
    assert (row["state"], row["attempts"]) == ("dead", 1)        # not tried again


# -- a send cut off after the service took it -------------------------------------------------------
def a_ticket_reply(body: dict) -> bool:
    return "ADU-" in str(body) and "status" not in body


async def test_a_send_cut_off_after_the_graph_api_took_it_is_not_sent_again(make_env) -> None:
    """Injected: the Graph API takes the ticket reply and closes the connection before it
    answers. Observed: the row fails as transient and keeps the note that its send began;
    Meta's 'sent' status brings back the reference the send carried
    (biz_opaque_callback_data), and the retry takes that message's id instead of sending
    again: one ticket reply, its delivery recorded."""
    clock = FakeClock(MONDAY)
    env = await make_env(clock=clock)
    env.graph.status_webhook_url, env.graph.report_sent = env.webhook_url, True
    env.graph.cut_answer_next(a_ticket_reply)
    card = await complaint(env, "6281234500411", "KTP-el saya hilang")
    row = await until(lambda: _failed_once(env), what="the cut-off send failing")
    assert "ServerDisconnected" in row["last_error"] and json.loads(row["progress"])["text_began"]
    (taken,) = [r for r in env.graph.sent if a_ticket_reply(r["body"])]
    assert taken["body"]["biz_opaque_callback_data"] == f"outbox:{row['id']}:text"
    await env.graph.settle()                     # its 'sent' status is in
    clock.advance(seconds=2)                     # the retry's backoff
    env.bridge.outbox.wake()
    done = await until(lambda: _done(env), what="the row finished by the status")
    assert [r["id"] for r in env.graph.sent if a_ticket_reply(r["body"])] == [taken["id"]]
    assert card.ticket in taken["body"]["text"]["body"]
    assert json.loads(done["result"])["external_id"] == taken["id"]
    async with env.bridge.store.reading() as tx:
        delivery = await tx.delivery_of(done["id"])
    assert (delivery["external_id"], delivery["status"]) == (taken["id"], "sent")


async def test_without_its_status_a_cut_off_send_goes_again_after_the_grace(make_env) -> None:
    """Injected: as above, but no status ever comes (report_sent off). Observed: before the
    grace the row is not sent again (the dispatcher is driven by hand, the clock stands
    still); once the clock passes it, the reply goes a second time: a duplicate rather
    than a citizen without their ticket."""
    from bridge.effects import SENT_STATUS_GRACE
    clock = FakeClock(MONDAY)
    env = await make_env(clock=clock)
    env.graph.cut_answer_next(a_ticket_reply)
    await complaint(env, "6281234500412", "KTP-el saya hilang")
    await until(lambda: _failed_once(env), what="the cut-off send failing")
    dispatcher = env.bridge.dispatcher
    await dispatcher.stop()                               # driven by hand from here
    clock.advance(seconds=SENT_STATUS_GRACE - 1)
    await dispatcher.run_once()                           # waits for the status: no send, no attempt
    assert len([r for r in env.graph.sent if a_ticket_reply(r["body"])]) == 1
    assert (await ticket_row(env))["attempts"] == 1
    clock.advance(seconds=1)
    await dispatcher.run_once()
    assert len([r for r in env.graph.sent if a_ticket_reply(r["body"])]) == 2
    assert (await ticket_row(env))["state"] == "done"


# -- no answer, nobody listening ---------------------------------------------------------------
@pytest.fixture
async def black_hole():
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for w in held:
            w.close()
        server.close()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"          # bound, released: nobody listens there


def whatsapp(url: str):
    from bridge.channels.whatsapp import WhatsAppChannel
    return WhatsAppChannel(graph_url=url, api_version="v21.0", phone_number_id="1", token="secret-token",
                           app_secret="x", verify_token="y", request_timeout=0.5)


def telegram(url: str):
    from bridge.channels.telegram import TelegramChannel
    return TelegramChannel(api_url=url, token="123:secret-token", mode="webhook", request_timeout=0.5)  # no polling


@pytest.mark.parametrize("make", [whatsapp, telegram], ids=["whatsapp", "telegram"])
@pytest.mark.parametrize("where", ["black hole", "closed port"])
async def test_no_answer_and_refused_connections_are_transient(make, where, black_hole) -> None:
    """Injected: a service that never answers (past the request timeout), and a port nobody
    listens on. Observed: a transient DeliveryError (the outbox retries it), fast, and its
    text names no token."""
    from bridge.errors import DeliveryError

    class Sink:
        async def accept(self, *a, **k) -> None: ...
        async def cursor(self, channel): return None

    channel = make(black_hole if where == "black hole" else closed_port_url())
    await channel.start(Sink())
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(DeliveryError) as e:
            await channel.send_text("6281234500501" if make is whatsapp else "5550501", "halo")
        assert e.value.transient and loop.time() - began < 5
        assert "secret-token" not in str(e.value)
    finally:
        await channel.stop()
