"""A long run: 2,000 complaints with staff actions and delivery statuses through the bridge
process, on loopback only, bounded in time; its memory and open descriptors are sampled.

Injected: 2,000 WhatsApp complaints in eight waves of 250 (16 at a time), a 👀 from the
admin on every fourth card, and Meta's "delivered" and "read" for every ticket reply.
Observed: after the first two waves (warm-up: caches, connection pools, SQLite's page
cache), resident memory grows by less than ``RSS_GROWTH_KB`` and open descriptors by less
than ``FD_GROWTH``; every case ends where it should (open at the first step, claimed where
claimed, its ticket reply read).
"""
from __future__ import annotations

import asyncio
import time

from tests.bridge_process import Process, free_port, read_db, write_config
from tests.harness import PASSWORD, STAFF, StaffClient, until
from tests.story import body, in_format

WAVES, PER_WAVE = 8, 250
RSS_GROWTH_KB = 40 * 1024          # after warm-up; a leak of 20 KB a complaint would be 30 MB
FD_GROWTH = 16
DEADLINE_SECONDS = 420             # the whole run; the test fails rather than hangs


async def test_2000_complaints_hold_memory_and_descriptors_steady(synapse_users, graph, tmp_path) -> None:
    began = time.monotonic()
    prefix, port = f"soak{free_port()}", free_port()
    config = tmp_path / "config.toml"
    write_config(config, synapse_users, graph, None, prefix, port)
    bridge = Process(config, {"PATH": "/usr/bin:/bin", "MATRIX_PASSWORD": PASSWORD, "WHATSAPP_TOKEN": graph.token,
                              "WHATSAPP_APP_SECRET": graph.app_secret, "WHATSAPP_VERIFY_TOKEN": "v"})
    admin = StaffClient(synapse_users, STAFF["admin"])
    db = tmp_path / "data" / "bridge.db"
    hook = f"http://127.0.0.1:{port}/webhooks/whatsapp"
    samples: list[tuple[int, int, int]] = []          # (complaints so far, RSS KiB, open fds)
    try:
        await bridge.start()
        await admin.start()
        room = (await admin.client.room_resolve_alias(f"#{prefix}-admin:{synapse_users.server_name}")).room_id
        await admin.join(room)
        gate = asyncio.Semaphore(16)
        receipted: set[str] = set()
        claimed: set[str] = set()

        async def post(payload) -> None:
            async with gate:
                status, _ = await graph.post_webhook(hook, payload)
                assert status == 200

        async def receipts_and_claims() -> None:
            """Meta's receipts for every ticket reply; the admin's 👀 on every fourth card."""
            while True:
                for record in list(graph.sent):
                    if record["id"] and record["id"] not in receipted and "ADU-" in str(record["body"]):
                        receipted.add(record["id"])
                        for status in ("delivered", "read"):
                            await post(graph.status(record["id"], status, record["body"]["to"]))
                for s in list(admin.seen):
                    if s.room_id == room and body(s).startswith("📨 Pengaduan baru"):
                        ticket = body(s).split()[3]
                        if int(ticket[-6:]) % 4 == 0 and ticket not in claimed:
                            claimed.add(ticket)
                            await admin.react(room, s.event.event_id, "👀")
                await asyncio.sleep(0.2)
        side = asyncio.create_task(receipts_and_claims())

        async def cases_done(n: int) -> bool:
            rows = await read_db(db, "SELECT count(*) AS n FROM cases")
            return rows[0]["n"] >= n

        for wave in range(WAVES):
            numbers = [f"62813{wave:02d}{i:05d}" for i in range(PER_WAVE)]
            await asyncio.gather(*(post(graph.text(w, in_format(f"Aduan soak {w}"), name="Warga")) for w in numbers))
            await until(lambda: cases_done((wave + 1) * PER_WAVE), timeout=120, what=f"wave {wave + 1}'s cases")
            samples.append(((wave + 1) * PER_WAVE, bridge.rss_kb(), bridge.open_fds()))
            assert time.monotonic() - began < DEADLINE_SECONDS, samples

        total = WAVES * PER_WAVE
        await until(lambda: len({body(s).split()[3] for s in admin.seen if s.room_id == room
                                 and body(s).startswith("📨 Pengaduan baru")}) == total,
                    timeout=DEADLINE_SECONDS - (time.monotonic() - began), what="every card")

        async def settled() -> bool:
            read = await read_db(db, "SELECT count(*) AS n FROM deliveries WHERE purpose = 'ticket' AND status = 'read'")
            claims = await read_db(db, "SELECT count(*) AS n FROM case_events WHERE kind = 'claim'")
            return read[0]["n"] == total and claims[0]["n"] == len(claimed) and len(claimed) == total // 4
        await until(settled, timeout=max(10, DEADLINE_SECONDS - (time.monotonic() - began)),
                    what="every receipt and claim")
        side.cancel()
        samples.append((total, bridge.rss_kb(), bridge.open_fds()))
        print("\nsoak (complaints, RSS KiB, fds):", samples)

        # Every case where it should be.
        states = await read_db(db, "SELECT state, step, count(*) AS n FROM cases GROUP BY state, step")
        assert sum(r["n"] for r in states) == total and all(r["state"] == "open" for r in states)
        async def outbox_empty() -> bool:
            return not await read_db(db, "SELECT id FROM outbox WHERE state != 'done' LIMIT 1")
        try:
            await until(outbox_empty, timeout=60, what="the outbox to empty")
        except AssertionError:
            raise AssertionError(await read_db(db, "SELECT kind, state, count(*) AS n, max(last_error) AS e"
                                                   " FROM outbox WHERE state != 'done' GROUP BY kind, state")) from None
        # Memory and descriptors: flat after the warm-up.
        warm = samples[1]
        assert max(rss for _, rss, _ in samples[2:]) - warm[1] < RSS_GROWTH_KB, samples
        assert max(fds for _, _, fds in samples[2:]) - warm[2] < FD_GROWTH, samples
    finally:
        await bridge.stop()
        await admin.stop()
