"""Two bridge processes on one PostgreSQL database, one of them SIGKILLed in a burst.

Injected: 500 complaints, 400 WhatsApp webhooks posted alternately to the two processes
(as a load balancer in front of them would) and 100 Telegram updates waiting to be polled;
staff react 👀 to every card as it appears; once a third of the webhooks have been
answered, ``kill -9`` of the process that started first (it holds the Matrix sync and the
Telegram polling). The webhooks that got no 200 are posted again to the survivor, as Meta
retries them (through the balancer, to the process that answers).
Observed: every complaint has exactly one case and one card; every WhatsApp citizen
exactly one ticket reply (a Telegram citizen one, or two where the kill cut a send after
the Bot API took it: test_crash says why); every 👀 acted on exactly once, the ones after
the kill by the survivor, which took over both leases (the dead one's claims on inbound
and outbox rows died with it); every Telegram update stored once.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from bridge.simulator.telegram import FakeBotApi, TgUser
from bridge.store import Store
from tests.bridge_process import AdminReacting, Process, free_port, write_config
from tests.harness import PASSWORD, STAFF, StaffClient, until
from tests.story import body, in_format

N_WHATSAPP, N_TELEGRAM = 400, 100
N = N_WHATSAPP + N_TELEGRAM


async def test_two_processes_share_the_work_and_one_takes_over_when_the_other_is_killed(
        synapse_users, graph, postgres_db: str, tmp_path) -> None:
    prefix = f"procs{free_port()}"
    data_dir = tmp_path / "data"              # media/ shared by both, as on one machine or a shared disk
    processes, hooks = [], []
    botapi = FakeBotApi()
    await botapi.start()
    env = {"PATH": "/usr/bin:/bin", "MATRIX_PASSWORD": PASSWORD, "WHATSAPP_TOKEN": graph.token,
           "WHATSAPP_APP_SECRET": graph.app_secret, "WHATSAPP_VERIFY_TOKEN": "v", "TELEGRAM_BOT_TOKEN": botapi.token}
    for name in ("a", "b"):
        port = free_port()
        (tmp_path / name).mkdir()
        write_config(tmp_path / name / "config.toml", synapse_users, graph, botapi, prefix, port,
                     database_url=postgres_db, data_dir=data_dir)
        processes.append(Process(tmp_path / name / "config.toml", env))
        hooks.append(f"http://127.0.0.1:{port}/webhooks/whatsapp")
    first, survivor = processes
    # As Meta does: a 'sent' status for every accepted message, to the one webhook URL
    # (the balancer's: here the survivor's, since the other is gone before they all come).
    graph.status_webhook_url, graph.report_sent, graph.retry_statuses_for = hooks[1], True, 180.0
    admin = StaffClient(synapse_users, STAFF["admin"])
    db: Store | None = None
    staff: AdminReacting | None = None
    try:
        await first.start()
        await survivor.start()
        db = await Store.open(postgres_db, create=False)

        async def rows(sql: str) -> list[dict]:
            async with db.reading() as tx:
                return await tx._all(sql)

        async def holders() -> dict[str, int]:
            return {r["name"]: int(r["holder"].split(":")[1]) for r in await rows("SELECT * FROM leases")}
        # The first one started syncs and polls.
        assert await holders() == {"matrix-sync": first.proc.pid, "telegram-polling": first.proc.pid}
        assert any("another bridge process syncs; this one stands by" in line for line in survivor.log)

        staff = AdminReacting(admin, f"#{prefix}-admin:{synapse_users.server_name}")
        await staff.start()                         # 👀 on every card as it appears, through the kill
        room, cards, reacted = staff.room, staff.cards, staff.reacted

        wa_ids = [f"62813{70000000 + i}" for i in range(N_WHATSAPP)]
        for user in (TgUser(id=8000000 + i, first_name=f"Tg{i}") for i in range(N_TELEGRAM)):
            botapi.text(user, in_format(f"Aduan dua proses TG {user.id}"))      # polled in batches
        payloads = {w: graph.text(w, in_format(f"Aduan dua proses {w}"), name=f"Warga {w[-4:]}") for w in wa_ids}
        answered: dict[str, int] = {}
        killed = asyncio.Event()
        gate = asyncio.Semaphore(16)

        async def post(i: int, wa_id: str) -> None:
            async with gate:
                try:
                    answered[wa_id] = (await graph.post_webhook(hooks[i % 2], payloads[wa_id]))[0]
                except (aiohttp.ClientError, OSError):
                    answered[wa_id] = 0                  # that process was dead: Meta retries later
                if sum(1 for s in answered.values() if s == 200) >= N_WHATSAPP // 3 and not killed.is_set():
                    killed.set()

        posts = asyncio.gather(*(post(i, w) for i, w in enumerate(wa_ids)))
        await killed.wait()
        await first.kill()
        await posts
        for wa_id, status in list(answered.items()):       # the retries reach the survivor
            while status != 200:
                status = (await graph.post_webhook(hooks[1], payloads[wa_id]))[0]
            answered[wa_id] = status
        by_hook = Counter(i % 2 for i, w in enumerate(wa_ids) if answered[w] == 200)
        assert by_hook[0] >= N_WHATSAPP // 6 and by_hook[1] >= N_WHATSAPP // 2 - 1     # both took their share

        async def progress() -> str:
            cases = await rows("SELECT count(*) AS n FROM cases")
            pending = await rows("SELECT kind, count(*) AS n FROM outbox WHERE state = 'pending' GROUP BY kind")
            return (f"{len(cards())} cards seen, {cases[0]['n']} cases, pending {pending}; "
                    "survivor's log:\n" + "\n".join(survivor.log[-25:]))
        try:
            await until(lambda: len(cards()) >= N, timeout=240, what=f"{N} cards")
            await until(lambda: len(reacted) >= N, timeout=120, what="a 👀 on every card")

            async def all_acted_on() -> bool:
                claims = await rows("SELECT count(*) AS n FROM case_events WHERE kind = 'claim'")
                return claims[0]["n"] >= N
            await until(all_acted_on, timeout=120, what="every 👀 acted on")
        except AssertionError as e:
            raise AssertionError(f"{e}: {await progress()}") from None
        staff.stop()

        # The survivor took the sync and the polling over, and acted on the staff's reactions after the kill.
        assert await holders() == {"matrix-sync": survivor.proc.pid, "telegram-polling": survivor.proc.pid}
        assert any("matrix: this process syncs now" in line for line in survivor.log)
        tg = await rows("SELECT external_id FROM inbound WHERE channel = 'telegram'")
        assert len(tg) == len({r["external_id"] for r in tg}) == N_TELEGRAM
        # One case, one card, one claim per complaint.
        cases = await rows("SELECT c.id, z.address FROM cases c JOIN citizens z ON z.id = c.citizen_id")
        assert len(cases) == N and set(Counter(c["address"] for c in cases).values()) == {1}
        heads = Counter(body(s).splitlines()[0] for s in admin.seen
                        if s.room_id == room and body(s).startswith("📨 Pengaduan baru"))
        assert len(heads) == N and set(heads.values()) == {1}
        posted = await rows("SELECT case_id, count(*) AS n FROM card_posts GROUP BY case_id")
        assert len(posted) == N and {p["n"] for p in posted} == {1}
        claims = await rows("SELECT case_id, count(*) AS n FROM case_events WHERE kind = 'claim' GROUP BY case_id")
        assert len(claims) == N and {c["n"] for c in claims} == {1}
        # One ticket reply each (a send the kill cut short is found taken by its status).
        await until(lambda: len({r["body"]["to"] for r in graph.sent if "ADU-" in str(r["body"])}) == N_WHATSAPP
                    and len({m["chat_id"] for m in botapi.sent if "ADU-" in m["text"]}) == N_TELEGRAM,
                    timeout=120, what="a ticket reply to every citizen")

        async def every_reply_done() -> bool:
            left = await rows("SELECT count(*) AS n FROM outbox WHERE kind = 'channel.text' AND state != 'done'")
            return left[0]["n"] == 0
        await until(every_reply_done, timeout=120, what="every reply's row done")
        replies = Counter(r["body"]["to"] for r in graph.sent if "ADU-" in str(r["body"]))
        assert set(replies.values()) == {1}, [w for w, n in replies.items() if n > 1]
        assert set(Counter(m["chat_id"] for m in botapi.sent if "ADU-" in m["text"]).values()) <= {1, 2}
    finally:
        if staff is not None:
            staff.stop()
        for p in processes:
            await p.stop()
        if db is not None:
            await db.close()
        await admin.stop()
        await botapi.stop()
