"""What the homeserver makes of a card, without the bridge: direct sends of short messages
(the burst's baseline) against direct sends of a card's content, in turns, in one room.

    .venv/bin/python bench/card_cost.py [--n 1000] [--order small,card,small,card]

The bot's second device sends ``n`` messages of each kind in turn, 32 at a time, into the
Admin room, timed until the Admin staff client has seen them all (as bench/latency.py's
burst does). A card (about 1 KB of text and HTML) costs Synapse more than a one-line
message, and every block is slower than the one before it in the same room: both are
part of the burst's ratio whatever the bridge does (see bench/results.md's notes). The
bridge process is only there to make the rooms; it stays idle.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CARD, CARD_MARK as MARK, Seen, marker_of, start_synapse  # noqa: E402
from bench.latency import Lab  # noqa: E402
from bench.run import Context  # noqa: E402

def content(kind: str, marker: str) -> dict[str, Any]:
    if kind == "small":
        return {"msgtype": "m.text", "body": f"Pesan langsung ({marker})"}
    card = copy.deepcopy(CARD)
    card["body"] = card["body"].replace(MARK, marker)
    card["formatted_body"] = card["formatted_body"].replace(MARK, marker)
    return card


async def block(lab: Lab, kind: str, prefix: str, n: int, conc: int = 32) -> float:
    admin, room, observer = lab.staff["admin"], lab.rooms["admin"], lab.observer
    assert observer is not None
    got: dict[str, float] = {}
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def hook(s: Seen) -> bool:
        m = marker_of(s)
        if m and m.startswith(prefix) and m not in got:
            got[m] = s.at
            if len(got) == n and not done.done():
                done.set_result(None)
        return done.done()
    admin.hooks.append(hook)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> None:
        async with sem:
            await observer.send(room, content(kind, f"{prefix}{i}"))
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.wait_for(done, 300)
    return max(got.values()) - t0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="messages a block (default 1000)")
    ap.add_argument("--order", default="small,card,small,card", help="the blocks, in turn (small, card)")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.order.split(",")]
    if not set(kinds) <= {"small", "card"}:
        ap.error("--order: small or card")
    work = Path(tempfile.mkdtemp(prefix="card-cost-"))
    ctx = Context(quick=False, work=work)
    ctx.hs = await asyncio.to_thread(start_synapse, work / "synapse")
    from bridge.simulator.graph import FakeGraph
    ctx.graph = FakeGraph(enforce_window=False)
    await ctx.graph.start()
    lab = await Lab(ctx, "cost").open()
    try:
        for i, kind in enumerate(kinds):
            # Markers as bench/common.MARKER reads them: bm-<letters>-<number>.
            took = await block(lab, kind, f"bm-{kind}{chr(97 + i)}-", args.n)
            print(f"block {i + 1}: {args.n} {kind:5s} {took:6.2f} s  {args.n / took:5.0f}/s", flush=True)
    finally:
        await lab.close()
        await ctx.graph.stop()
        await asyncio.to_thread(ctx.hs.stop)


if __name__ == "__main__":
    asyncio.run(main())
