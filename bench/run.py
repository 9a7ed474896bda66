"""The bench: how fast and how small the bridge is, next to the parts underneath it.

    bench/run [--quick] [--only startup,ingest,card,staff,scale,processes,burst] [--out FILE] [--profile]

Runs each measure next to its baseline, in the same run on the same machine, loopback
only, and writes a Markdown table (bench/results.md by default; --quick writes into its
work folder unless --out is given) and prints it. See bench/README.md for the method.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH, Row, busy_neighbours, cpu_snapshot, load_average, machine, start_synapse  # noqa: E402

PHASES = ("startup", "ingest", "card", "staff", "scale", "processes", "burst")   # the burst last: it takes what is left
FAILED = "phase failed"
BUDGET = 570.0                     # seconds: the whole run stays under 10 minutes


@dataclass
class Context:
    quick: bool
    work: Path
    hs: Any = None
    graph: Any = None
    profile: Path | None = None
    started: float = field(default_factory=time.monotonic)
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def left(self) -> float:
        return BUDGET - (time.monotonic() - self.started)


def table(rows: list[Row], info: dict[str, str], took: float, quick: bool, noise: tuple[float, list[str]],
          loads: list[str]) -> str:
    lines = ["# Bench results", ""]
    lines.append(f"Measured {info['date']}, code {info['source']}, on {info['cpu']}, {info['cores']} cores, {info['memory']} RAM, "
                 f"Linux {info['kernel']}; Python {info['python']}, SQLite {info['sqlite']}, "
                 f"aiohttp {info['aiohttp']}, matrix-nio {info['matrix-nio']}, Synapse {info['synapse']}, "
                 f"wrk {info['wrk']}. `bench/run{' --quick' if quick else ''}` took {took:.0f} s; load average "
                 f"{' → '.join(loads)} (start → end).")
    if quick:
        lines += ["", "**Quick (smoke) run: tiny counts, the figures mean nothing.**"]
    share, busiest = noise
    if share >= 0.05:
        lines += ["", f"**Noise:** other processes used {share:.0%} of one core during the run (of the machine's "
                      f"{info['cores']}), so the figures are worse than the machine can do: " + "; ".join(busiest)]
    else:
        lines += ["", f"Other processes used {share:.0%} of one core during the run."]
    lines += ["", "| measure | bridge | baseline | ratio | target | met? |", "|---|---|---|---|---|---|"]
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            lines.append(f"| **{section}** | | | | | |")
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.measure} | {r.bridge} | {r.baseline} | {r.ratio} | {r.target} | {met} |")
    notes = [f"- {r.section} · {r.measure}: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run of seconds: tiny counts")
    ap.add_argument("--only", help="comma-separated: " + ",".join(PHASES))
    ap.add_argument("--out", type=Path, help="the Markdown table (default bench/results.md; --quick: work folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, databases)")
    ap.add_argument("--profile", action="store_true",
                    help="record the bridge with py-spy during ingest and the burst (if py-spy is installed)")
    args = ap.parse_args()
    only = [p.strip() for p in args.only.split(",")] if args.only else list(PHASES)
    unknown = [p for p in only if p not in PHASES]
    if unknown:
        ap.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("nio").setLevel(logging.ERROR)

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    ctx = Context(quick=args.quick, work=work)
    if args.profile:
        ctx.profile = work / "profiles"
        ctx.profile.mkdir()
    out = args.out or (work / "results.md" if args.quick else BENCH / "results.md")
    before = cpu_snapshot()
    load_start = load_average()
    rows: list[Row] = []
    from bench import ingest, latency, processes, scale, startup
    runners = {"startup": startup.run, "ingest": ingest.run, "card": latency.card, "staff": latency.staff,
               "burst": latency.burst, "scale": scale.run, "processes": processes.run}
    try:
        ctx.log(f"work folder {work}; starting Synapse")
        ctx.hs = await asyncio.to_thread(start_synapse, work / "synapse")
        from bridge.simulator.graph import FakeGraph
        ctx.graph = FakeGraph(enforce_window=False)
        await ctx.graph.start()
        for phase in (p for p in PHASES if p in only):
            if ctx.left() < 20:
                rows.append(Row(phase, "not run", "out of time (the run's budget is 10 minutes)", met=False))
                continue
            ctx.log(f"--- {phase}")
            try:
                rows += await asyncio.wait_for(runners[phase](ctx), max(20.0, ctx.left()))
            except Exception as e:
                traceback.print_exc()
                rows.append(Row(phase, FAILED, f"{e.__class__.__name__}: {str(e)[:200]}", met=False))
    finally:
        if ctx.graph is not None:
            await ctx.graph.stop()
        if ctx.hs is not None:
            await asyncio.to_thread(ctx.hs.stop)
    took = time.monotonic() - ctx.started
    noise = busy_neighbours(before, took)
    text = table(rows, machine(), took, args.quick, noise, [load_start, load_average()])
    out.write_text(text)
    print()
    print(text)
    print(f"written to {out}")
    if args.keep or args.profile:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    # A target not met is a result; a phase that could not run is a failure of the bench.
    return 1 if any(r.measure == FAILED for r in rows) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
