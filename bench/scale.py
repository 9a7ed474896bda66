"""5. State at scale: the bridge on a database with 10,000 and 100,000 cases.

The database is made by the bridge's own migrations, then filled here with rows shaped
like the ones the bridge writes (copied from a case walked through the Mojokerto SOP):
the cases lie over n / 10,000 calendar months ending now (10,000 a month; the current
month runs to now). The newest 30 % are open, spread over the SOP's staff steps, their
next SLA alert in the coming weeks (none due, as bench/sla_check.py does); the rest are
closed with the whole event trail, one in two rated. Every case has its citizen, its
inbound message and its cards. The outbox's done rows are left out.

Then the bridge runs on it in its own process and is asked, each timed in its process
(bench/bridge_proc.py's /bench routes) or from a staff client: the SLA check (nothing
due, then 100 due), `!daftar` in the Admin and Pimpinan rooms, the daily digest's
figures, /metrics; then its peak RSS. The monthly export runs as the shell command
(``main.py export``) on the month of 10,000 cases.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from bench.common import (BOT, PY, ROOT, STAFF, Row, Watcher, body_of, bridge_config, bridge_proc, fmt_ratio,
                          http_json, marker_of, median, ms, ratio, rss_of, secs, until, user_id)
from bridge.clock import ts

TZ = ZoneInfo("Asia/Jakarta")
PER_MONTH = 10_000
EXPORT_LIMIT = 30.0                # seconds: three times the target, then the export is stopped
OPEN_SHARE = 0.30
OPEN_STEPS = [("verifikasi", "admin"), ("draf", "admin"), ("final", "kasi"), ("paraf", "kabid"), ("cek", "admin"),
              ("kirim", "admin")]
# The Mojokerto trail after "opened": (kind, actor role, from step, to step).
TRAIL = [("claim", "admin", "verifikasi", "verifikasi"), ("verify", "admin", "verifikasi", "draf"),
         ("answer", "admin", "draf", "final"), ("verify", "kasi", "final", "paraf"),
         ("approve", "kabid", "paraf", "cek"), ("verify", "admin", "cek", "kirim"),
         ("send", "admin", "kirim", "selesai")]
ENTERS = {to: n + 1 for n, (_, _, _, to) in enumerate(TRAIL)}   # trail events that lead into a step


def month_starts(now: datetime, months: int) -> list[datetime]:
    """The first moments (office time) of the ``months`` months ending with now's, oldest first."""
    local = now.astimezone(TZ)
    y, m = local.year, local.month
    out = []
    for _ in range(months):
        out.append(datetime(y, m, 1, tzinfo=TZ))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return list(reversed(out))


def fill(db_path: Path, n: int, now: datetime, seed: int = 17) -> str:
    """Fill the (migrated, empty) database with ``n`` cases; returns the month "YYYY-MM" that
    has PER_MONTH of them (the current one)."""
    rnd = random.Random(seed)
    months = max(1, n // PER_MONTH)
    starts = month_starts(now, months)
    per = n // months
    opened: list[datetime] = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else now - timedelta(hours=1)
        span = (end - start).total_seconds()
        opened += [start + timedelta(seconds=rnd.random() * span) for _ in range(per if k else n - per * (months - 1))]
    opened.sort()
    n_open = int(n * OPEN_SHARE)
    staff = {role: f"@{lp}:localhost" for role, lp in STAFF.items()}
    citizens, cases, events, inbound, cards, posts, ratings = [], [], [], [], [], [], []
    message = json.dumps({"channel": "whatsapp", "kind": "text", "text": "Nama: Warga\nNIK: 3402124501900003\n"
                          "Layanan: Lainnya\nAduan: KTP-el saya belum jadi sejak 3 bulan", "name": "Warga",
                          "attachments": []})
    event_id = 0
    for i, at in enumerate(opened):
        cid = i + 1
        year = at.astimezone(TZ).year
        ticket = f"ADU-{year}-{cid:06d}"
        address = f"6281{cid:09d}"
        citizens.append((cid, "whatsapp", address, f"Warga {cid}", ts(at), ts(at)))
        inbound.append((cid, "whatsapp", f"wamid.FILL{cid:09d}", address, "text", ts(at), ts(at), message, "done", cid))
        is_open = i >= n - n_open
        if is_open:
            step, role = OPEN_STEPS[i % len(OPEN_STEPS)]
            steps_done = ENTERS.get(step, 0) if step != "verifikasi" else 0
        else:
            step, role, steps_done = "selesai", "admin", len(TRAIL)
        t = at
        event_id += 1
        events.append((event_id, cid, ts(t), "bot", None, "opened", None, "verifikasi",
                       "Pengaduan diterima lewat WhatsApp", json.dumps({"inbound": f"wamid.FILL{cid:09d}"})))
        for kind, r, frm, to in TRAIL[:steps_done]:
            t += timedelta(minutes=2 + rnd.random() * 38)
            event_id += 1
            data = json.dumps({"agenda_number": f"470/{cid}/416-314/{year}"}) if kind == "approve" else None
            events.append((event_id, cid, ts(t), staff[r], r, kind, frm, to,
                           "KTP-el Anda sudah dicetak." if kind == "answer" else None, data))
        entered = t
        card_posted = at + timedelta(seconds=1)
        cards.append((cid, "admin", "!fill-admin:localhost", f"$fill-{cid}-admin", ts(card_posted)))
        posts.append((f"$fill-{cid}-admin", cid, "admin", "!fill-admin:localhost", ts(card_posted)))
        if steps_done >= ENTERS["final"]:
            for room in ("kasi", "kabid"):
                cards.append((cid, room, f"!fill-{room}:localhost", f"$fill-{cid}-{room}", ts(card_posted)))
                posts.append((f"$fill-{cid}-{room}", cid, room, f"!fill-{room}:localhost", ts(card_posted)))
        if is_open:
            alert = now + timedelta(minutes=10 + i % 40_000)
            step_due = alert + timedelta(minutes=3)
            cases.append((cid, ticket, cid, "whatsapp", "Lainnya", "KTP-el saya belum jadi sejak 3 bulan", "open",
                          step, role, ts(at), ts(entered), ts(step_due + timedelta(hours=2)), ts(step_due),
                          None, None, None, ts(alert), ts(step_due - timedelta(minutes=3)),
                          ts(step_due + timedelta(hours=2)), "Warga", None))
        else:
            t += timedelta(minutes=1)
            event_id += 1
            events.append((event_id, cid, ts(t), "citizen", None, "answer_delivered", "selesai", "selesai",
                           "delivered", None))
            cases.append((cid, ticket, cid, "whatsapp", "Lainnya", "KTP-el saya belum jadi sejak 3 bulan", "closed",
                          "selesai", "admin", ts(at), ts(t), ts(at + timedelta(hours=2)), None, ts(t), "dijawab",
                          f"470/{cid}/416-314/{year}", None, None, ts(at + timedelta(minutes=96)), "Warga", ts(t)))
            if i % 2:
                ratings.append((cid, 1 + i % 5, None, ts(t + timedelta(hours=1))))
    con = sqlite3.connect(db_path)
    try:
        con.execute("PRAGMA synchronous = OFF")
        with con:
            con.executemany("INSERT INTO citizens (id, channel, address, name, created_at, last_inbound_at)"
                            " VALUES (?, ?, ?, ?, ?, ?)", citizens)
            con.executemany("INSERT INTO cases (id, ticket, citizen_id, channel, category, summary, state, step,"
                            " holder_role, opened_at, step_entered_at, due_at, step_due_at, closed_at, outcome,"
                            " agenda_number, next_alert_at, step_warn_at, warn_at, citizen_name, answered_at)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", cases)
            con.executemany("INSERT INTO inbound (id, channel, external_id, address, kind, sent_at, received_at,"
                            " message, state, case_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inbound)
            con.executemany("INSERT INTO case_events (id, case_id, at, actor, role, kind, from_step, to_step, note,"
                            " data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", events)
            con.executemany("INSERT INTO cards (case_id, room_key, room_id, event_id, posted_at)"
                            " VALUES (?, ?, ?, ?, ?)", cards)
            con.executemany("INSERT INTO card_posts (event_id, case_id, room_key, room_id, posted_at)"
                            " VALUES (?, ?, ?, ?, ?)", posts)
            con.executemany("INSERT INTO ratings (case_id, score, comment, rated_at) VALUES (?, ?, ?, ?)", ratings)
            for year in {c[1][4:8] for c in cases}:
                con.execute("INSERT OR REPLACE INTO sequences (name, value) VALUES (?, ?)", (f"ticket/{year}", n))
        con.execute("ANALYZE")
    finally:
        con.close()
    return starts[-1].strftime("%Y-%m")


def make_due(db_path: Path, now: datetime, count: int) -> None:
    """``count`` open cases whose step deadline passed a minute ago: the next check alerts them."""
    con = sqlite3.connect(db_path, timeout=30)
    try:
        with con:
            con.execute("UPDATE cases SET next_alert_at = ?, step_warn_at = ?, step_due_at = ? WHERE id IN"
                        " (SELECT id FROM cases WHERE state = 'open' ORDER BY id LIMIT ?)",
                        (ts(now - timedelta(minutes=1)), ts(now - timedelta(minutes=4)),
                         ts(now - timedelta(minutes=1)), count))
    finally:
        con.close()


# Runs its arguments as a child and prints the child's peak RSS (kB), exit code and seconds. A
# fresh small process in between, because a child's ru_maxrss also counts what the process it
# was forked from had resident before exec (here: the bench, after filling 100,000 cases).
_RSS_WRAPPER = ("import os, sys, time\n"
                "t = time.perf_counter()\n"
                "pid = os.fork()\n"
                "if pid == 0:\n"
                "    os.execv(sys.argv[1], sys.argv[1:])\n"
                "_, status, usage = os.wait4(pid, 0)\n"
                "print(usage.ru_maxrss, os.waitstatus_to_exitcode(status), time.perf_counter() - t)\n")


def export(config: Path, month: str, out: Path, limit: float) -> tuple[float | None, float | None, int | None]:
    """``main.py export`` as the shell runs it: (seconds, or None when stopped at ``limit``;
    its peak RSS in MB; its exit code)."""
    proc = subprocess.Popen([PY, "-c", _RSS_WRAPPER, PY, str(ROOT / "main.py"), "--config", str(config), "export",
                             "--month", month, "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out_text, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, None, None
    maxrss, code, took = out_text.strip().splitlines()[-1].split()   # after the export's own line
    return float(took), int(maxrss) / 1024, int(code)


async def daftar(staffer: Watcher, observer: Watcher, room: str, samples: int) -> tuple[list[float], list[float]]:
    """``!daftar`` said in the room until the bot's list arrives; alternating with a direct
    message from the bot's second device to the same staff client."""
    bridge_s, direct_s = [], []
    for i in range(samples):
        reply = staffer.expect(lambda s: s.room_id == room and body_of(s).startswith(("Kasus terbuka (",
                                                                                       "Tidak ada kasus")))
        t = time.perf_counter()
        await staffer.say(room, "!daftar")
        seen = await until(reply, 60, "the bot's !daftar list")
        bridge_s.append(seen.at - t)
        marker = f"bm-daftar-{i}"
        direct = staffer.expect(lambda s, m=marker: s.room_id == room and marker_of(s) == m)
        t = time.perf_counter()
        await observer.say(room, f"Pesan langsung ({marker})")
        seen = await until(direct, 60, "the direct message")
        direct_s.append(seen.at - t)
    return bridge_s, direct_s


async def one_size(ctx: Any, n: int) -> list[Row]:
    work: Path = ctx.work
    prefix = f"scale{n}"
    spec = bridge_config(ctx.hs, ctx.graph, work / prefix, prefix)
    db = Path(spec["data"]["database"]["path"])
    from bridge.store import Store
    store = await Store.open(db)          # the bridge's schema, by its migrations
    await store.close()
    now = datetime.now(timezone.utc)
    t = time.perf_counter()
    month = await asyncio.to_thread(fill, db, n, now)
    ctx.log(f"scale: {n:,} cases filled in {time.perf_counter() - t:.1f} s "
            f"({db.stat().st_size / 1e6:.0f} MB); export month {month}")
    proc = bridge_proc(spec, work, prefix)
    await proc.wait_ready()
    section = f"State at scale: {n:,} cases"
    samples = 2 if ctx.quick else 5
    watchers: list[Watcher] = []
    try:
        rooms = proc.ready["rooms"]
        hs = ctx.hs
        admin = Watcher(hs.url, user_id(hs.server_name, STAFF["admin"]))
        pimpinan = Watcher(hs.url, user_id(hs.server_name, STAFF["pimpinan"]))
        observer = Watcher(hs.url, user_id(hs.server_name, BOT))
        await admin.start(rooms=[rooms["admin"]])
        await pimpinan.start(rooms=[rooms["pimpinan"]])
        await observer.start()
        watchers = [admin, pimpinan, observer]
        url = proc.ready["url"]
        async with aiohttp.ClientSession() as s:
            sla = await http_json(s, f"{url}/bench/sla?n={samples}")
            sla_read = await http_json(s, f"{url}/bench/sla_read?n={samples}")
            digest = await http_json(s, f"{url}/bench/digest?n={min(samples, 3)}")
            t = time.perf_counter()
            async with s.get(f"{url}/metrics") as r:
                await r.read()
            metrics_s = time.perf_counter() - t
            d_admin, direct_admin = await daftar(admin, observer, rooms["admin"], samples)
            d_pim, direct_pim = await daftar(pimpinan, observer, rooms["pimpinan"], samples)
            await asyncio.to_thread(make_due, db, datetime.now(timezone.utc), 100)
            due = await http_json(s, f"{url}/bench/sla?n=1")
        rss = rss_of(proc.pid)
        ready_rss = proc.ready.get("VmRSS", 0)
        start_s = proc.ready_after
    finally:
        for w in watchers:
            await w.stop()
        proc.stop()
    # The export, as the shell command, on the month of PER_MONTH cases.
    from bridge.demo import write_config
    config = work / f"{prefix}.toml"
    write_config(config, spec["data"])
    limit = EXPORT_LIMIT if ctx.left() > 120 else 10.0
    took, export_rss, code = await asyncio.to_thread(export, config, month, work / f"{prefix}-reports", limit)
    per_month = n if n < PER_MONTH else PER_MONTH
    ctx.log(f"scale {n:,}: sla {ms(median(sla['seconds']))}, daftar {ms(median(d_admin))}, digest "
            f"{ms(median(digest['seconds']))}, export {secs(took)}, rss {rss.get('VmHWM', 0):.0f} MB")
    big = n >= 100_000
    sla_b, sla_base = median(sla["seconds"]), median(sla_read["seconds"])
    rows = [
        Row(section, "SLA check, nothing due", ms(sla_b), ms(sla_base), fmt_ratio(ratio(sla_b, sla_base)),
            "< 50 ms", sla_b < 0.050, f"median of {samples}, worst {ms(max(sla['seconds']))}; baseline: the "
            f"check's own read (the index range) alone" if not big else ""),
        Row(section, "SLA check, 100 due (alerts written)", ms(due["seconds"][0]), note=f"{due['sent'][0]} alerts"),
    ]
    for room, b, d in (("Admin", d_admin, direct_admin), ("Pimpinan", d_pim, direct_pim)):
        rows.append(Row(section, f"`!daftar` in the {room} room, median of {samples}", ms(median(b)), ms(median(d)),
                        fmt_ratio(ratio(median(b), median(d))), "< 200 ms", median(b) < 0.200,
                        "" if big or room == "Pimpinan" else
                        "from sending the command to the bot's list in the same client's sync; baseline: a "
                        "direct message from the bot's second device to that client"))
    rows += [
        Row(section, "daily digest (figures and text)", ms(median(digest["seconds"])),
            note=f"{digest['received']:,} cases received in its 24 hours"),
        Row(section, f"monthly export of a {per_month:,}-case month (`main.py export`)",
            secs(took) if took is not None else f"> {limit:.0f} s (stopped)", "—", "—", "< 10 s",
            took is not None and took < 10.0 and code == 0,
            (f"the process's peak RSS {export_rss:.0f} MB" if export_rss else "")
            + (f"; exit code {code}" if code else "")),
        Row(section, "GET /metrics", ms(metrics_s)),
        Row(section, "bridge's peak RSS (VmHWM) after all of the above", f"{rss.get('VmHWM', 0):.0f} MB",
            f"{ready_rss:.0f} MB", "—", "< 150 MB" if big else "—",
            (rss.get("VmHWM", 0) < 150) if big else None,
            f"baseline: its RSS when ready; start-up on this database {secs(start_s)}" if not big else
            f"start-up on this database {secs(start_s)}"),
    ]
    return rows


async def run(ctx: Any) -> list[Row]:
    rows: list[Row] = []
    for n in ((300, 1_000) if ctx.quick else (10_000, 100_000)):
        rows += await one_size(ctx, n)
    return rows
