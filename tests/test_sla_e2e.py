"""SLA alerts reach people in Matrix: the breach in the pimpinan room, !sla in a thread."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tests import queries as q
from tests.harness import FakeClock
from tests.story import body, bot_says, command, complaint

WIB = ZoneInfo("Asia/Jakarta")


async def test_a_breach_reaches_the_pimpinan_room_once_across_a_restart(make_env) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 8, 0, tzinfo=WIB))          # Monday morning
    env = await make_env({"sla": {"check_seconds": 0.2}}, clock=clock)
    card = await complaint(env, "6281234500010", "Akta kematian ayah saya belum terbit")
    await command(env, "admin", card, "!sla")
    said = await bot_says(env.admin, card, f"SLA {card.ticket}")
    assert "Langkah ini: sisa 15 menit" in said and "Total: sisa 2 jam" in said

    await command(env, "admin", card, "!ambil")
    await bot_says(env.admin, card, "Diambil oleh")
    clock.set(datetime(2026, 11, 23, 8, 20, tzinfo=WIB))                # 5 minutes late
    pimpinan = await env.staff_member("pimpinan")
    room = env.bridge.matrix.rooms["pimpinan"]
    alert = await pimpinan.wait_for(lambda s: s.room_id == room and body(s).startswith(f"🚨 Lewat SLA {card.ticket}"),
                                    what="the breach alert")     # fired by APScheduler's interval job
    text = body(alert)
    assert "Verifikasi pengaduan" in text and "terlambat 5 menit" in text and env.admin.user_id in text
    assert f"https://matrix.to/#/{card.room_id}/{card.event_id}" in text
    # In the thread, the holder is mentioned on purpose.
    in_thread = await env.admin.wait_for(lambda s: body(s).startswith("🚨 Lewat SLA")
                                         and s.room_id == card.room_id)
    assert in_thread.event.source["content"]["m.mentions"] == {"user_ids": [env.admin.user_id]}
    # !sla in the room (outside a thread): the room's open cases by time left.
    await env.admin.say(card.room_id, "!sla")
    listing = await env.admin.wait_for(lambda s: body(s).startswith("Kasus ruang ini menurut sisa waktu"))
    assert f"{card.ticket} · Verifikasi pengaduan: lewat 5 menit" in body(listing)

    await env.restart_bridge()
    assert await env.bridge.sla.run_once() == 0
    async with env.bridge.store.reading() as tx:
        breaches = [r for r in await q.outbox_rows(tx, kind="matrix.notice")
                    if r["payload"]["room"] == "pimpinan" and "Lewat SLA" in r["payload"]["content"]["body"]]
    assert len(breaches) == 1
