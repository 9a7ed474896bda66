"""The baseline web server: aiohttp with one handler that answers 200, nothing else.

    python bench/bare_proc.py

Same shape as bench/bridge_proc.py (own process, one event loop, loopback, a free port,
one JSON line on stdout when ready), so wrk meets the same stack minus the bridge.
"""
from __future__ import annotations

import time

T0 = time.perf_counter()

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
from pathlib import Path  # noqa: E402

from aiohttp import web  # noqa: E402

IMPORTED = time.perf_counter()


async def ok(request: web.Request) -> web.Response:
    return web.Response()


def vm() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


async def rss(request: web.Request) -> web.Response:
    return web.json_response(vm())


async def serve() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.perf_counter()
    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", ok)
    app.router.add_get("/bench/rss", rss)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    print(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid(), "imports_s": IMPORTED - T0,
                      "start_s": time.perf_counter() - started, **vm()}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
