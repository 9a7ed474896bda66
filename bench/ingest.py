"""1. Ingest: wrk against the bridge's WhatsApp webhook, next to a bare aiohttp handler.

Both servers run in their own process; wrk (1 thread, 32 connections) posts signed
notifications, each one complaint from its own citizen with its own message id. Lua in
wrk has no HMAC, so the bodies and their X-Hub-Signature-256 are made here beforehand,
one line each, and the script sends them in turn. Afterwards the bridge's database says
how many were stored: every message answered 200 must be there, once.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench import spy
from bench.common import (BENCH, PY, Proc, Row, bridge_config, bridge_proc, complaint_text, db_count, fmt_ratio,
                          ms, ratio, rss_of, thread_cpu, cpu_split)

CONNECTIONS = 32
LUA = r"""
-- Sends the pre-signed bodies of BODIES in turn (one "signature<TAB>body" a line).
local reqs, n, i, laps = {}, 0, 0, 0
function init(args)
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    n = n + 1
    reqs[n] = wrk.format("POST", "/webhooks/whatsapp",
      {["Content-Type"] = "application/json", ["User-Agent"] = "facebookexternalua",
       ["X-Hub-Signature-256"] = line:sub(1, tab - 1)}, line:sub(tab + 1))
  end
end
function request()
  i = i + 1
  if i > n then i = 1; laps = laps + 1 end
  issued = laps * n + i
  return reqs[i]
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local issued = 0
  for _, t in ipairs(threads) do issued = issued + (t:get("issued") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d,' ..
    ' "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "issued": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, issued))
end
"""


def make_bodies(graph: Any, path: Path, count: int, run: str) -> list[str]:
    """``count`` signed notifications, each a complaint from its own number with its own id."""
    template = graph.encode(graph.text("@@WA@@", complaint_text("@@MK@@"), msg_id="@@ID@@", name="Warga Bench"))
    secret = graph.app_secret.encode()
    ids = []
    with open(path, "wb") as f:
        for i in range(count):
            mid = f"wamid.BENCH{run}{i:08d}"
            body = (template.replace(b"@@WA@@", b"6289%09d" % i).replace(b"@@ID@@", mid.encode())
                    .replace(b"@@MK@@", b"bm-ingest-%d" % i))
            sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
            f.write(b"sha256=" + sig.encode() + b"\t" + body + b"\n")
            ids.append(mid)
    return ids


async def wrk(url: str, bodies: Path, lua: Path, seconds: int) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "-s", str(lua),
            f"{url}/webhooks/whatsapp", "--", str(bodies)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("WRKJSON "):
            result = json.loads(line[len("WRKJSON "):])
            result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
            result["ok"] = result["requests"] - result["non2xx"]
            return result
    raise RuntimeError(f"wrk gave no result:\n{text}")


async def sqlite_ceiling(work: Path, count: int) -> tuple[float, float]:
    """One-INSERT transactions a second, as the bridge makes them (aiosqlite: BEGIN IMMEDIATE,
    INSERT, COMMIT, each a hop to its thread) and with sqlite3 in the calling thread; WAL,
    synchronous NORMAL, a 600-byte row, as the inbound table's."""
    import aiosqlite
    path = work / "ceiling.db"
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        t = time.perf_counter()
        for _ in range(count):
            await db.execute("BEGIN IMMEDIATE")
            async with db.execute("INSERT INTO t (v) VALUES (?)", ("x" * 600,)):
                pass
            await db.commit()
        hopping = count / (time.perf_counter() - t)
    finally:
        await db.close()
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA synchronous = NORMAL")
        t = time.perf_counter()
        for _ in range(count):
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO t (v) VALUES (?)", ("x" * 600,))
            con.execute("COMMIT")
        direct = count / (time.perf_counter() - t)
    finally:
        con.close()
    return hopping, direct


async def commit_rounds(work: Path, seconds: float) -> dict[str, dict[str, float]]:
    """Rounds of 15 complaints' inbound rows, one after the other for ``seconds`` (1 ms
    between them, the event loop's share of a round), each a transaction of its own: through
    the bridge's store (``Tx.insert_inbound_many`` in a transaction, as the webhooks store them; its checkpoints
    beside the writer), and through plain sqlite3 into the same schema with SQLite's own
    checkpoints (every 1,000 pages of log, inside a commit). The p50 and p99 of a round's
    commit, and the rows a second."""
    from datetime import datetime, timezone

    from bridge.channels.base import InboundMessage
    from bridge.store import Store, _insert_inbound

    now = datetime.now(timezone.utc)
    text = complaint_text(0) + " " + "x" * 300
    out: dict[str, dict[str, float]] = {}
    for who in ("bridge", "sqlite"):
        path = work / f"commits-{who}.db"
        store = await Store.open(path)
        con: sqlite3.Connection | None = None
        if who == "sqlite":
            await store.close()                               # it made the schema
            con = sqlite3.connect(path, isolation_level=None)
            con.execute("PRAGMA synchronous = NORMAL")
        took: list[float] = []
        n = 0
        end = time.perf_counter() + seconds
        try:
            while time.perf_counter() < end and n < 10_000_000:
                items = [(InboundMessage(channel="whatsapp", external_id=f"wamid.C{n + i}", address=f"6289{n + i:09d}",
                                         at=now, kind="text", text=text), now) for i in range(15)]
                t = time.perf_counter()
                if con is None:
                    async with store.transaction() as tx:
                        await tx.insert_inbound_many(items)
                else:
                    con.execute("BEGIN IMMEDIATE")
                    _insert_inbound(con, items)
                    con.execute("COMMIT")
                took.append(time.perf_counter() - t)
                n += 15
                await asyncio.sleep(0.001)
        finally:
            if con is None:
                await store.close()
            else:
                con.close()
        took.sort()
        out[who] = {"p50": took[len(took) // 2], "p99": took[int(len(took) * 0.99)], "rate": n / seconds}
    return out


def per_request(cpu: tuple[float, float], res: dict[str, Any]) -> str:
    """CPU time a request took, µs: the event loop thread's + the other threads'."""
    n = max(res["requests"], 1) / (res["duration_us"] / 1e6)
    return f"{cpu[0] / n * 1e6:.0f} + {cpu[1] / n * 1e6:.0f} µs"


async def run(ctx: Any) -> list[Row]:
    seconds = 3 if ctx.quick else 10
    count = 3_000 if ctx.quick else 150_000        # more than the bridge can take in `seconds`
    work: Path = ctx.work
    lua = work / "webhooks.lua"
    lua.write_text(LUA)
    run_id = str(int(time.time()))
    bodies = work / "bodies.txt"
    t = time.perf_counter()
    make_bodies(ctx.graph, bodies, count, run_id)
    ctx.log(f"ingest: {count} signed bodies in {time.perf_counter() - t:.1f} s")

    # The bare handler first (the bridge leaves a backlog behind that would load the machine).
    bare = Proc([PY, str(BENCH / "bare_proc.py")], work / "bare.log")
    await bare.wait_ready()
    try:
        cpu0 = thread_cpu(bare.pid)
        base = await wrk(bare.ready["url"], bodies, lua, seconds)
        base_cpu = cpu_split(bare.pid, cpu0, base["duration_us"] / 1e6)
        base_rss = rss_of(bare.pid)
    finally:
        bare.stop()
    ctx.log(f"ingest: bare handler {base['rate']:.0f}/s p99 {base['p99_us'] / 1000:.1f} ms")

    spec = bridge_config(ctx.hs, ctx.graph, work / "ingest", "ingest")
    bridge = bridge_proc(spec, work, "ingest")
    await bridge.wait_ready()
    db = Path(spec["data"]["database"]["path"])
    profile = spy.start(ctx, bridge.pid, "ingest", seconds)
    try:
        cpu0 = thread_cpu(bridge.pid)
        res = await wrk(bridge.ready["url"], bodies, lua, seconds)
        cpu = cpu_split(bridge.pid, cpu0, res["duration_us"] / 1e6)
        spy.stop(ctx, profile, "ingest")
        rss = rss_of(bridge.pid)
        like = f"wamid.BENCH{run_id}%"
        stored = db_count(db, "SELECT count(*) FROM inbound WHERE external_id LIKE ?", like)
        distinct = db_count(db, "SELECT count(DISTINCT external_id) FROM inbound WHERE external_id LIKE ?", like)
        backlog = db_count(db, "SELECT count(*) FROM inbound WHERE state = 'new'")
        await asyncio.sleep(5)
        backlog_later = db_count(db, "SELECT count(*) FROM inbound WHERE state = 'new'")
        cases = db_count(db, "SELECT count(*) FROM cases")
    finally:
        bridge.stop()
    ctx.log(f"ingest: bridge {res['rate']:.0f}/s p99 {res['p99_us'] / 1000:.1f} ms; stored {stored} of {res['ok']} "
            f"answered 200; CPU: event loop thread {cpu[0]:.0%}, other threads {cpu[1]:.0%} "
            f"(bare: {base_cpu[0]:.0%}, {base_cpu[1]:.0%}); a request: {per_request(cpu, res)} "
            f"(bare: {per_request(base_cpu, base)})")

    unique_ok = min(res["ok"], count)
    # Answered 200 → stored; in flight when wrk stopped may be stored without wrk counting it.
    exactly_once = (distinct == stored and stored >= unique_ok
                    and stored <= min(res["issued"], count) and res["issued"] <= count)
    errors = res["non2xx"] + res["connect"] + res["read"] + res["write"] + res["timeout"]
    r = ratio(res["rate"], base["rate"])
    drained = (backlog - backlog_later) / 5
    rows = [
        Row("Ingest", f"webhooks a second (wrk -t1 -c{CONNECTIONS}, {seconds} s)", f"{res['rate']:,.0f}/s",
            f"{base['rate']:,.0f}/s", fmt_ratio(r), "≥ 0.35×", r is not None and r >= 0.35,
            (f"errors {errors}; " if errors else "") + f"CPU during wrk (share of one core): the bridge's event loop "
            f"thread {cpu[0]:.0%}, its other threads (aiosqlite's, where SQLite runs) {cpu[1]:.0%}; the bare handler's "
            f"{base_cpu[0]:.0%}"),
        Row("Ingest", "p99 latency", ms(res["p99_us"] / 1e6), ms(base["p99_us"] / 1e6),
            fmt_ratio(ratio(res["p99_us"], base["p99_us"])), "< 10 ms", res["p99_us"] < 10_000,
            f"p50 {ms(res['p50_us'] / 1e6)} vs {ms(base['p50_us'] / 1e6)}"),
        Row("Ingest", "accepted messages stored exactly once", f"{stored:,} stored / {res['ok']:,} answered 200",
            "—", "—", "all, once", exactly_once,
            f"{distinct:,} distinct ids; {res['issued']:,} sent of {count:,} unique bodies"),
        Row("Ingest", "intake after the run (complaints → cases)", f"{drained:.0f}/s",
            note=f"{backlog:,} stored messages were not yet processed when wrk stopped; 5 s later {cases:,} cases"),
        Row("Ingest", "peak RSS during ingest", f"{rss.get('VmHWM', 0):.0f} MB", f"{base_rss.get('VmHWM', 0):.0f} MB",
            fmt_ratio(ratio(rss.get("VmHWM"), base_rss.get("VmHWM")))),
    ]
    hopping, direct = await sqlite_ceiling(work, 300 if ctx.quick else 3000)
    rows.append(Row("Ingest", "underneath: one-INSERT transactions a second, nothing else running",
                    f"{hopping:,.0f}/s", f"{direct:,.0f}/s", fmt_ratio(ratio(hopping, direct)),
                    note="bridge column: through aiosqlite (BEGIN IMMEDIATE, INSERT, COMMIT, each a hop to the "
                         "connection's thread), as the store's transactions ran before they moved to the event "
                         "loop's own connection; baseline: sqlite3 in the calling thread"))
    rounds = await commit_rounds(work, 1 if ctx.quick else 5)
    b, q = rounds["bridge"], rounds["sqlite"]
    rows.append(Row("Ingest", "underneath: a round of 15 webhooks' rows committed, p99, rounds that never pause",
                    ms(b["p99"]), ms(q["p99"]), fmt_ratio(ratio(b["p99"], q["p99"])),
                    note=f"p50 {ms(b['p50'])} vs {ms(q['p50'])}, {b['rate']:,.0f} vs {q['rate']:,.0f} rows a second; "
                         "bridge column: the bridge's store, as the webhooks store them, its checkpoints beside the writer; baseline: "
                         "sqlite3 with SQLite's own checkpoints (inside the commit that passes 1,000 pages of log)"))
    ctx.extra["ingest"] = {"bridge": res, "bare": base, "stored": stored, "backlog": backlog}
    return rows
