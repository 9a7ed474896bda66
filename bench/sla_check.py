"""How long one SLA check takes with many open cases (issue: 100,000 must not slow the bridge).

    .venv/bin/python bench/sla_check.py [--cases 100000] [--due 100]

Fills a fresh database with open cases whose next alert is spread over the coming weeks,
makes ``--due`` of them due now, and times SlaCheck.run_once (best of 5 when nothing is
due; once when alerts go out). Prints the query plan of the check's read.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.cases import Cases  # noqa: E402
from bridge.clock import ts  # noqa: E402
from bridge.outbox import Outbox  # noqa: E402
from bridge.store import DUE_FOR_ALERT, Store  # noqa: E402
from bridge.workflow import PROFILES  # noqa: E402
from bridge.worktime import DEFAULT_HOURS, SlaPolicy, WorkCalendar  # noqa: E402
from schedules.sla import SlaCheck  # noqa: E402

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Jakarta"))


async def fill(store: Store, n: int) -> None:
    async with store.transaction() as tx:
        await tx.conn.db.executemany(
            "INSERT INTO citizens (channel, address, created_at) VALUES ('whatsapp', ?, ?)",
            [(f"62811{i:08d}", ts(NOW)) for i in range(n)])
        rows = []
        for i in range(n):
            alert = NOW + timedelta(minutes=10 + i % 40000)
            step_due = alert + timedelta(minutes=3)
            rows.append((f"ADU-2026-{i + 1:06d}", i + 1, ts(NOW - timedelta(minutes=20)), ts(alert),
                         ts(step_due - timedelta(minutes=3)), ts(step_due), ts(step_due + timedelta(hours=2))))
        await tx.conn.db.executemany(
            "INSERT INTO cases (ticket, citizen_id, channel, step, holder_role, opened_at, step_entered_at,"
            " next_alert_at, step_warn_at, step_due_at, due_at, warn_at)"
            " VALUES (?, ?, 'whatsapp', 'verifikasi', 'admin', ?, ?3, ?, ?, ?, ?, ?7)", rows)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--due", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = await Store.open(Path(d) / "bench.db")
        t0 = time.perf_counter()
        await fill(store, args.cases)
        print(f"filled {args.cases} open cases in {time.perf_counter() - t0:.1f} s")
        policy = SlaPolicy(WorkCalendar.from_config("Asia/Jakarta", DEFAULT_HOURS, []))
        outbox = Outbox(lambda: NOW)
        check = SlaCheck(store, Cases(PROFILES["mojokerto"], outbox, lambda: NOW, policy), outbox, {}, lambda: NOW)
        async with store.reading() as tx:
            plan = await tx._all("EXPLAIN QUERY PLAN " + DUE_FOR_ALERT, ts(NOW), 500)
        print("query plan:", "; ".join(r["detail"] for r in plan))
        idle = []
        for _ in range(5):
            t0 = time.perf_counter()
            await check.run_once()
            idle.append(time.perf_counter() - t0)
        print(f"check with nothing due: best {min(idle) * 1000:.2f} ms, worst {max(idle) * 1000:.2f} ms")
        async with store.transaction() as tx:
            await tx.conn.db.execute("UPDATE cases SET next_alert_at = ?, step_warn_at = ?, step_due_at = ?"
                                " WHERE id <= ?", (ts(NOW - timedelta(minutes=1)), ts(NOW - timedelta(minutes=4)),
                                                   ts(NOW - timedelta(minutes=1)), args.due))
        t0 = time.perf_counter()
        sent = await check.run_once()
        took = time.perf_counter() - t0
        print(f"check with {args.due} due: {sent} alerts in {took * 1000:.0f} ms "
              f"({took / max(sent, 1) * 1000:.2f} ms an alert)")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
