"""5. Two processes on PostgreSQL next to one on SQLite: ingest and a burst, same run.

Both set-ups run here, one after the other, on this machine: one bridge process on SQLite
(the default), and two bridge processes sharing one PostgreSQL database (a throwaway server
from Debian's postgresql, as the tests start it: tests/postgres.py, fsync off). No load
balancer: each process gets its share from its own client.

- Burst, first, on a quiet bridge: BURST complaints posted at once (16 at a time,
  alternately to each process) from the first post until every one of them has its card in
  Matrix (a card_posts row is written when Synapse has taken the card), read from the
  database every 50 ms.
- Ingest: wrk against the WhatsApp webhook, 32 connections in all (one wrk -c32 against the
  single process; one wrk -c16 against each of the two, side by side, each with its own
  messages). Webhooks a second (the sum) and the p99 (the worse of the two).

On a 2-core machine the two processes, PostgreSQL, wrk and Synapse share two cores: the
figures say what a second process costs or brings there, not on a server with cores to spare.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import Row, bridge_config, bridge_proc, complaint_text, db_count, fmt_ratio, ms, ratio, secs
from bench.ingest import LUA, make_bodies, wrk

BURST = 300
BURST_QUICK = 30


async def run(ctx: Any) -> list[Row]:
    from tests.postgres import PostgresServer, find_bin_dir
    if find_bin_dir() is None:
        return [Row("Processes", "not run", "PostgreSQL is not installed (.ci/run installs it)", met=False)]
    seconds = 3 if ctx.quick else 10
    count = 3_000 if ctx.quick else 150_000
    burst_n = BURST_QUICK if ctx.quick else BURST
    work: Path = ctx.work / "processes"
    work.mkdir()
    lua = work / "webhooks.lua"
    lua.write_text(LUA)
    run_id = str(int(time.time()))
    bodies = [work / f"bodies{i}.txt" for i in range(3)]
    for i, path in enumerate(bodies):        # each client its own messages: no repeats across processes
        make_bodies(ctx.graph, path, count, f"{run_id}p{i}")

    # One process on SQLite.
    spec = bridge_config(ctx.hs, ctx.graph, work / "sqlite", "procsq")
    one = bridge_proc(spec, work, "sqlite")
    await one.wait_ready()
    db = Path(spec["data"]["database"]["path"])
    try:
        single_burst = await _burst(ctx, [one.ready["url"]], lambda sql: _sqlite(db, sql), burst_n, "sq")
        single = await wrk(one.ready["url"], bodies[0], lua, seconds)
    finally:
        one.stop()
    ctx.log(f"processes: one on SQLite {single['rate']:.0f}/s p99 {single['p99_us'] / 1000:.1f} ms, "
            f"burst {secs(single_burst)}")

    # Two processes on one PostgreSQL database.
    with PostgresServer(work / "pg") as pg:
        url = pg.create_database_sync("bench")
        import asyncpg
        conn = await asyncpg.connect(url)
        procs = []
        try:
            for i in range(2):
                spec = bridge_config(ctx.hs, ctx.graph, work / f"pg{i}", "procpg",
                                     overrides={"database": {"url": url, "data_dir": str(work / "pgdata")}})
                spec["data"]["database"].pop("path")
                procs.append(bridge_proc(spec, work, f"pg{i}"))
                await procs[-1].wait_ready()          # one after the other: the first makes the schema

            async def count_pg(sql: str) -> int:
                return int(await conn.fetchval(sql))
            two_burst = await _burst(ctx, [p.ready["url"] for p in procs], count_pg, burst_n, "pg")
            halves = await asyncio.gather(*(wrk(p.ready["url"], bodies[1 + i], lua, seconds)
                                            for i, p in enumerate(procs)))
        finally:
            for p in procs:
                p.stop()
            await conn.close()
    rate = sum(h["rate"] for h in halves)
    p99 = max(h["p99_us"] for h in halves)
    errors = sum(h["non2xx"] + h["connect"] + h["read"] + h["write"] + h["timeout"] for h in halves)
    ctx.log(f"processes: two on PostgreSQL {rate:.0f}/s p99 {p99 / 1000:.1f} ms, burst {secs(two_burst)}")
    return [
        Row("Processes", f"ingest: webhooks a second, two processes on PostgreSQL (2 × wrk -c16, {seconds} s)",
            f"{rate:,.0f}/s", f"{single['rate']:,.0f}/s", fmt_ratio(ratio(rate, single["rate"])),
            note=(f"errors {errors}; " if errors else "") + "baseline: one process on SQLite, wrk -c32, same run"),
        Row("Processes", "ingest: p99 latency", ms(p99 / 1e6), ms(single["p99_us"] / 1e6),
            fmt_ratio(ratio(p99, single["p99_us"])), note="the worse of the two processes' p99"),
        Row("Processes", f"burst: {burst_n} complaints to {burst_n} cards in Matrix", secs(two_burst),
            secs(single_burst), fmt_ratio(ratio(two_burst, single_burst)),
            note="posted 16 at a time, alternately to each process; baseline: one process on SQLite"),
    ]


def _sqlite(db: Path, sql: str) -> int:
    return db_count(db, sql)


async def _count(count: Any, sql: str) -> int:
    result = count(sql)
    return await result if asyncio.iscoroutine(result) else result


async def _burst(ctx: Any, urls: list[str], count: Any, n: int, tag: str) -> float | None:
    """Seconds from the first post until all ``n`` complaints have their card (None: not in 240 s)."""
    before = await _count(count, "SELECT count(*) FROM card_posts")
    hooks = [f"{u}/webhooks/whatsapp" for u in urls]
    payloads = [ctx.graph.text(f"6288{tag == 'pg':d}{i:08d}", complaint_text(f"bm-procs-{tag}-{i}"),
                               name="Warga Bench") for i in range(n)]
    gate = asyncio.Semaphore(16)
    t0 = time.perf_counter()

    async def post(i: int) -> None:
        async with gate:
            status = 0
            while status != 200:
                status = (await ctx.graph.post_webhook(hooks[i % len(hooks)], payloads[i]))[0]
    await asyncio.gather(*(post(i) for i in range(n)))
    while time.perf_counter() - t0 < 240:
        if await _count(count, "SELECT count(*) FROM card_posts") - before >= n:
            return time.perf_counter() - t0
        await asyncio.sleep(0.05)
    return None
