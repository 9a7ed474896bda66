"""6. Start-up: the bridge's process from launch to ready (the homeserver already running),
next to the bare aiohttp process; and the demo's second start, next to its Synapse's.
"""
from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH, PY, ROOT, Proc, Row, bridge_config, bridge_proc, fmt_ratio, median, ratio, secs

DEMO_BANNER = "Simulator warga"


async def launch_to_ready(make: Any) -> tuple[float, dict[str, Any]]:
    proc: Proc = make()
    try:
        ready = await proc.wait_ready()
        assert proc.ready_after is not None
        return proc.ready_after, ready
    finally:
        await asyncio.to_thread(proc.stop)


class Demo:
    """``main.py demo`` as a newcomer runs it, on free ports, in its own data folder."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MATRIX_", "WHATSAPP_", "TELEGRAM_"))}
        self.launched = time.perf_counter()
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.log = open(log, "a")
        self.proc = subprocess.Popen([PY, str(ROOT / "main.py"), "demo", "--data-dir", str(data_dir),
                                      "--http-port", "0", "--homeserver-port", "0"],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line))
            self.log.write(line)

    def wait_banner(self, timeout: float) -> float:
        """Seconds from launch to the banner's simulator line."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                at, line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the demo exited ({self.proc.returncode}) before its banner")
                continue
            if DEMO_BANNER in line:
                return at - self.launched
        raise TimeoutError(f"no demo banner within {timeout:g} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)           # Ctrl-C, as a newcomer stops it
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


async def run(ctx: Any) -> list[Row]:
    work: Path = ctx.work
    spec = bridge_config(ctx.hs, ctx.graph, work / "startup", "startup")
    times = 2 if ctx.quick else 5
    first, first_ready = await launch_to_ready(lambda: bridge_proc(spec, work, "startup"))
    again, inside, imports = [], [], []
    for _ in range(times):
        t, ready = await launch_to_ready(lambda: bridge_proc(spec, work, "startup"))
        again.append(t)
        inside.append(ready["start_s"])
        imports.append(ready["imports_s"])
    bare = [(await launch_to_ready(lambda: Proc([PY, str(BENCH / "bare_proc.py")], work / "bare-start.log")))[0]
            for _ in range(times)]
    b, d = median(again), median(bare)
    ctx.log(f"startup: bridge {secs(b)} (first {secs(first)}), bare {secs(d)}")
    rows = [
        Row("Start-up", f"bridge process, launch → ready, homeserver running (median of {times})", secs(b), secs(d),
            fmt_ratio(ratio(b, d)), "< 2 s", b is not None and b < 2.0,
            f"of which imports {secs(median(imports))}, Bridge.start() {secs(median(inside))}; the very first start "
            f"(new database, rooms created) {secs(first)}; baseline: the bare aiohttp process"),
    ]
    if ctx.quick:
        rows.append(Row("Start-up", "demo's second start", "not run in --quick"))
        return rows
    data = work / "demo"
    demo = Demo(data, work / "demo.log")
    try:
        first_demo = await asyncio.to_thread(demo.wait_banner, 180)
    finally:
        await asyncio.to_thread(demo.stop)
    demo = Demo(data, work / "demo.log")
    try:
        second = await asyncio.to_thread(demo.wait_banner, 120)
    finally:
        await asyncio.to_thread(demo.stop)
    # The homeserver's own start on the same folder: the part of the demo's start that is Synapse's.
    from bridge.homeserver import LocalSynapse
    hs = LocalSynapse(data / "synapse", server_name="localhost")
    t = time.perf_counter()
    await asyncio.to_thread(hs.start, 120)
    synapse_start = time.perf_counter() - t
    await asyncio.to_thread(hs.stop)
    ctx.log(f"startup: demo second start {secs(second)} (first {secs(first_demo)}), Synapse alone {secs(synapse_start)}")
    rows.append(Row("Start-up", "demo's second start, launch → banner", secs(second), secs(synapse_start),
                    fmt_ratio(ratio(second, synapse_start)), "< 10 s", second < 10.0,
                    f"first start {secs(first_demo)}; baseline: its Synapse's own start on the same folder"))
    return rows
