"""A crash in a burst: the bridge process SIGKILLed while 500 complaints arrive on both
channels and staff react to the cards, then started again.

Injected: `kill -9` of `main.py` once about a third of the WhatsApp webhooks have been
answered and a WhatsApp ticket reply has been taken by the Graph API but not answered yet,
with Telegram updates waiting to be polled and staff reactions in flight; the
WhatsApp webhooks that got no 200 are posted again afterwards, as Meta retries them.
Observed after the restart: every complaint has exactly one case and one card; no staff
action was applied twice; Telegram's offset neither skipped nor repeated an update; every
complaint got its ticket reply: on WhatsApp exactly one (a send the kill cut short is
found taken when Meta's status brings its reference back), on Telegram a second copy only
where the kill cut a send after the Bot API took it (which nothing can tell).
"""
from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from bridge.simulator.telegram import FakeBotApi, TgUser
from tests.bridge_process import AdminReacting, Process, free_port, read_db, write_config
from tests.harness import PASSWORD, STAFF, StaffClient, until
from tests.story import body, in_format

N_WHATSAPP, N_TELEGRAM = 350, 150


async def test_sigkill_in_a_burst_of_500_from_both_channels(synapse_users, graph, tmp_path) -> None:
    botapi = FakeBotApi()
    await botapi.start()
    prefix = f"crash{free_port()}"
    port = free_port()
    config = tmp_path / "config.toml"
    write_config(config, synapse_users, graph, botapi, prefix, port)
    env = {"PATH": "/usr/bin:/bin", "MATRIX_PASSWORD": PASSWORD, "WHATSAPP_TOKEN": graph.token,
           "WHATSAPP_APP_SECRET": graph.app_secret, "WHATSAPP_VERIFY_TOKEN": "v",
           "TELEGRAM_BOT_TOKEN": botapi.token}
    bridge = Process(config, env)
    admin = StaffClient(synapse_users, STAFF["admin"])
    db = tmp_path / "data" / "bridge.db"
    hook = f"http://127.0.0.1:{port}/webhooks/whatsapp"
    # As Meta does: a 'sent' status for every accepted message, carrying the send's
    # biz_opaque_callback_data, and posted again while the bridge is down.
    graph.status_webhook_url, graph.report_sent, graph.retry_statuses_for = hook, True, 180.0
    staff: AdminReacting | None = None
    try:
        await bridge.start()
        staff = AdminReacting(admin, f"#{prefix}-admin:{synapse_users.server_name}")
        await staff.start()                         # 👀 on every card as it appears, through the kill
        room, cards, reacted = staff.room, staff.cards, staff.reacted

        wa_ids = [f"62812{70000000 + i}" for i in range(N_WHATSAPP)]
        users = [TgUser(id=7000000 + i, first_name=f"Tg{i}") for i in range(N_TELEGRAM)]
        payloads = {w: graph.text(w, in_format(f"Aduan burst WA {w}"), name=f"Warga {w[-4:]}") for w in wa_ids}
        answered: dict[str, int] = {}
        killed = asyncio.Event()
        # One WhatsApp ticket reply is taken and its answer held until the bridge is dead:
        # a send the kill cuts after the service took it, on purpose rather than by luck.
        held, released = asyncio.Event(), asyncio.Event()
        held_for: list[str] = []

        async def hold_one(record) -> None:
            if "ADU-" in str(record["body"]) and not held.is_set():
                held_for.append(record["body"]["to"])
                held.set()
                await released.wait()
        graph.on_send = hold_one
        gate = asyncio.Semaphore(16)

        async def post(wa_id: str) -> None:
            async with gate:
                try:
                    answered[wa_id] = (await graph.post_webhook(hook, payloads[wa_id]))[0]
                except (aiohttp.ClientError, OSError):
                    answered[wa_id] = 0                    # the bridge was dead: Meta retries later
                if sum(1 for s in answered.values() if s == 200) >= N_WHATSAPP // 3 and not killed.is_set():
                    killed.set()

        for i, user in enumerate(users):                   # queued at Telegram, polled in batches
            botapi.text(user, in_format(f"Aduan burst TG {user.id}"))
        posts = asyncio.gather(*(post(w) for w in wa_ids))
        await killed.wait()
        await held.wait()
        await bridge.kill()
        released.set()
        cursor_at_kill = await read_db(db, "SELECT position FROM channel_cursors")
        await posts
        await bridge.start()
        for wa_id, status in list(answered.items()):      # Meta's retries of what got no 200
            while status != 200:
                status = (await graph.post_webhook(hook, payloads[wa_id]))[0]
            answered[wa_id] = status

        total = N_WHATSAPP + N_TELEGRAM

        async def progress() -> str:
            cases = await read_db(db, "SELECT count(*) AS n FROM cases")
            pending = await read_db(db, "SELECT kind, count(*) AS n FROM outbox WHERE state = 'pending' GROUP BY kind")
            inbound = await read_db(db, "SELECT state, count(*) AS n FROM inbound GROUP BY state")
            return (f"{len(cards())} cards seen, {cases[0]['n']} cases, inbound {inbound}, pending {pending}; "
                    "bridge log:\n" + "\n".join(bridge.log[-25:]))
        try:
            await until(lambda: len(cards()) >= total, timeout=240, what=f"{total} cards")
        except AssertionError:
            raise AssertionError(await progress()) from None

        async def all_reacted_and_taken() -> bool:
            rows = await read_db(db, "SELECT count(*) AS n FROM case_events WHERE kind = 'claim'")
            return rows[0]["n"] >= len(reacted)
        await until(lambda: len(reacted) >= total, timeout=120, what="a 👀 on every card")
        await until(all_reacted_and_taken, timeout=120, what="every 👀 acted on")
        staff.stop()

        # One case and one card per complaint.
        cases = await read_db(db, "SELECT c.ticket, z.address, z.channel FROM cases c JOIN citizens z"
                                  " ON z.id = c.citizen_id")
        by_citizen = Counter((c["channel"], c["address"]) for c in cases)
        assert len(cases) == total and set(by_citizen.values()) == {1}
        seen_heads = Counter(body(s).splitlines()[0] for s in admin.seen
                             if s.room_id == room and body(s).startswith("📨 Pengaduan baru"))
        assert len(seen_heads) == total and set(seen_heads.values()) == {1}
        posted = await read_db(db, "SELECT case_id, count(*) AS n FROM card_posts GROUP BY case_id")
        assert len(posted) == total and {p["n"] for p in posted} == {1}
        # No staff action applied twice.
        claims = await read_db(db, "SELECT case_id, count(*) AS n FROM case_events WHERE kind = 'claim'"
                                   " GROUP BY case_id")
        assert len(claims) == total and {c["n"] for c in claims} == {1}
        # Telegram: every update taken once, the offset moved past them all, none asked for again.
        tg_rows = await read_db(db, "SELECT external_id FROM inbound WHERE channel = 'telegram'")
        assert len(tg_rows) == len({r["external_id"] for r in tg_rows}) == N_TELEGRAM
        if cursor_at_kill:
            first_after = next(c for c in botapi.get_updates_calls if c.get("offset", 0) >= int(
                cursor_at_kill[0]["position"]))
            assert first_after["offset"] == int(cursor_at_kill[0]["position"])
        # Ticket replies: one for each complaint. On WhatsApp exactly one: a send the kill cut
        # short is found taken by its status. On Telegram a second copy is possible where the
        # kill cut a send after the Bot API took it (it has no way to tell, nor to refuse a
        # repeat): at most one per chat, as each chat has one send under way at a time.
        async def every_row_done() -> bool:
            rows = await read_db(db, "SELECT count(*) AS n FROM outbox WHERE kind = 'channel.text'"
                                     " AND state != 'done'")
            return rows[0]["n"] == 0
        await until(lambda: len({m["chat_id"] for m in botapi.sent if "ADU-" in m["text"]}) == N_TELEGRAM
                    and len({r["body"]["to"] for r in graph.sent if "ADU-" in str(r["body"])}) == N_WHATSAPP,
                    timeout=120, what="a ticket reply to every citizen")
        await until(every_row_done, timeout=120, what="every reply's row done (a cut-off one by its status)")
        wa_replies = Counter(r["body"]["to"] for r in graph.sent if "ADU-" in str(r["body"]))
        assert set(wa_replies.values()) == {1}, [w for w, n in wa_replies.items() if n > 1]
        found = sum("was taken by whatsapp before" in line for line in bridge.log)
        assert found >= 1 and wa_replies[held_for[0]] == 1          # the held one among them
        tg_replies = Counter(m["chat_id"] for m in botapi.sent if "ADU-" in m["text"])
        twice = [who for who, n in tg_replies.items() if n > 1]
        assert all(n <= 2 for n in tg_replies.values())
        assert len(twice) <= 32, twice                      # at most one dispatcher round was in flight
        print(f"\ncrash: {found} WhatsApp replies found taken by their status, "
              f"{len(twice)} Telegram replies sent twice (cut by the kill)")
    finally:
        if staff is not None:
            staff.stop()
        await bridge.stop()
        await admin.stop()
        await botapi.stop()
