"""Sampling profiles of the bridge's process during a phase (``bench/run --profile``).

Uses py-spy when it is there (on PATH, beside the venv's python, or named by $PY_SPY; it
is not one of the project's requirements: ``pip install --target /tmp/pyspy py-spy`` and
``PY_SPY=/tmp/pyspy/bin/py-spy``). Records collapsed stacks ("raw"), from which
``summary`` lists where the time went: the functions most often on the CPU (own time) and
the bridge's and libraries' functions most often on the stack (total time).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    env = os.environ.get("PY_SPY")
    if env and Path(env).exists():
        return env
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def start(ctx: Any, pid: int, name: str, seconds: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    exe = py_spy()
    if not ctx.profile or not exe or not pid:
        return None
    out = ctx.profile / f"{name}.txt"
    # $PY_SPY_ARGS replaces the sampling options, e.g. "--gil" (only the thread holding the GIL,
    # the process paused for each sample: exact stacks, a slower bridge).
    opts = os.environ.get("PY_SPY_ARGS", "--nonblocking").split()
    proc = subprocess.Popen([exe, "record", "-p", str(pid), "-o", str(out), "-d", str(seconds), "-r", "200",
                             "--format", "raw", *opts],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, out


def stop(ctx: Any, spy: tuple[subprocess.Popen[bytes], Path] | None, name: str) -> None:
    if spy is None:
        return
    proc, out = spy
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)            # py-spy writes what it has on Ctrl-C
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return
    if out.exists():
        text = summary(out)
        (ctx.profile / f"{name}-summary.txt").write_text(text)
        ctx.log(f"profile of {name}: {out}\n{text}")


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/bridge/", "/schedules/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1] if marker != "/bridge/" else "bridge/" + path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def summary(path: Path, top: int = 12) -> str:
    """Where the samples were, by thread: the event loop's, aiosqlite's worker threads
    (SQLite itself runs there), other threads; then for the event loop the functions most
    often on the CPU (own time) and on the stack (total time)."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    worker_own: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        samples += n
        if any("_connection_worker_thread" in f for f in frames):
            threads["aiosqlite worker threads (SQLite runs here)"] += n
            worker_own[frames[-1]] += n
        elif frames[0].startswith("Thread._bootstrap"):
            threads["other threads"] += n
        else:
            threads["event loop thread"] += n
            own[frames[-1]] += n
            for f in set(frames):
                total[f] += n
    if not samples:
        return "no samples"
    lines = [f"{samples} samples (non-idle threads, 200 a second)"]
    lines += [f"  {c / samples:6.1%}  {t}" for t, c in threads.most_common()]
    loop = threads["event loop thread"] or 1
    lines.append("event loop thread, own time (share of its samples):")
    lines += [f"  {c / loop:6.1%}  {f}" for f, c in own.most_common(top)]
    lines.append("event loop thread, on the stack (bridge/, aiosqlite, nio, aiohttp, json, logging):")
    keep = [(f, c) for f, c in total.most_common()
            if any(k in f for k in ("bridge/", "aiosqlite", "nio/", "aiohttp", "json", "logging", "schedules/"))]
    lines += [f"  {c / loop:6.1%}  {f}" for f, c in keep[:top]]
    worker = sum(worker_own.values()) or 1
    lines.append("aiosqlite worker threads, own time:")
    lines += [f"  {c / worker:6.1%}  {f}" for f, c in worker_own.most_common(5)]
    return "\n".join(lines)
