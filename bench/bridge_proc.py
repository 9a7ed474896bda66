"""The bridge in its own process, as main.py runs it, for the bench.

    python bench/bridge_proc.py SPEC.json [--cprofile OUT.prof]

SPEC.json: {"data": <config as config.toml gives it>, "env": <secrets>, "base_dir": ...}
(bench/common.py: bridge_config). Logging is main.py's (INFO, text, masked), to stderr, as
in production. When the bridge is ready it prints one JSON line on stdout: its URL, rooms,
pid, and how long the imports and ``Bridge.start()`` took. SIGTERM stops it.

Besides the bridge's own routes it serves a few for the bench only, each timed inside
this process: ``/bench/sla?n=5`` (the SLA check), ``/bench/sla_read`` (only the check's
read), ``/bench/digest?n=3`` (the daily digest's figures and text), ``/bench/rss``.
"""
from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web  # noqa: E402

from bridge.app import Bridge  # noqa: E402
from bridge.config import from_dict  # noqa: E402
from main import setup_logging  # noqa: E402
from schedules import digest as digest_mod  # noqa: E402

IMPORTED = time.perf_counter()


def vm(pid: str = "self") -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def bench_routes(holder: dict[str, Bridge]) -> list[web.RouteDef]:
    async def sla(request: web.Request) -> web.Response:
        bridge = holder["bridge"]
        took, sent = [], []
        for _ in range(min(int(request.query.get("n", "5")), 50)):
            t = time.perf_counter()
            sent.append(await bridge.sla.run_once())
            took.append(time.perf_counter() - t)
        return web.json_response({"seconds": took, "sent": sent})

    async def sla_read(request: web.Request) -> web.Response:
        bridge = holder["bridge"]
        assert bridge.store is not None
        took = []
        for _ in range(min(int(request.query.get("n", "5")), 50)):
            t = time.perf_counter()
            async with bridge.store.reading() as tx:
                await tx.cases_due_for_alert(bridge.clock())
            took.append(time.perf_counter() - t)
        return web.json_response({"seconds": took})

    async def digest(request: web.Request) -> web.Response:
        bridge = holder["bridge"]
        assert bridge.store is not None
        took, size = [], 0
        for _ in range(min(int(request.query.get("n", "3")), 20)):
            t = time.perf_counter()
            async with bridge.store.reading() as tx:
                d = await digest_mod.build(tx, bridge.profile, bridge.settings.sla.calendar, bridge.clock())
            size = len(digest_mod.render(d, bridge.profile).notice()["body"])
            took.append(time.perf_counter() - t)
        return web.json_response({"seconds": took, "received": d.received, "chars": size})

    async def rss(request: web.Request) -> web.Response:
        return web.json_response(vm())

    return [web.get("/bench/sla", sla), web.get("/bench/sla_read", sla_read),
            web.get("/bench/digest", digest), web.get("/bench/rss", rss)]


async def serve(spec: dict) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.perf_counter()
    settings = from_dict(spec["data"], spec["env"], base_dir=Path(spec["base_dir"]))
    holder: dict[str, Bridge] = {}
    bridge = Bridge(settings, extra_routes=bench_routes(holder))
    holder["bridge"] = bridge
    await bridge.start()
    bridge.freeze_what_start_made()
    ready = time.perf_counter()
    assert bridge.http is not None and bridge.matrix is not None
    print(json.dumps({"url": bridge.http.url, "pid": os.getpid(), "rooms": bridge.matrix.rooms,
                      "imports_s": IMPORTED - T0, "start_s": ready - started, **vm()}), flush=True)
    try:
        await stop.wait()
    finally:
        await bridge.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--cprofile", help="write a cProfile of the whole run here")
    args = ap.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    setup_logging()
    if args.cprofile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
        try:
            asyncio.run(serve(spec))
        finally:
            prof.disable()
            prof.dump_stats(args.cprofile)
    else:
        asyncio.run(serve(spec))


if __name__ == "__main__":
    main()
