"""What the bench's measurements share: the homeserver, the bridge as its own process,
Matrix clients that time what they see, the table's rows, and the machine's particulars.

Everything runs on loopback. Every wait has a deadline and every loop a count: a phase
that cannot finish says so in its row instead of hanging the run.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import nio

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PY = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.config import ROLES  # noqa: E402
from bridge.homeserver import LocalSynapse  # noqa: E402

BOT = "pengaduan"
PASSWORD = "bench-password-1"
STAFF = {"admin": "staff_admin", "kasi": "staff_kasi", "kabid": "staff_kabid", "pimpinan": "staff_pimpinan"}
NIK = "3402124501900003"
# Our clients give up instead of retrying forever (nio's default).
BOUNDED = nio.AsyncClientConfig(max_timeouts=3, max_limit_exceeded=3, request_timeout=60)
# A sync returns at most this many events a room; more is a gap, fetched back (see Watcher).
SYNC_FILTER = {"room": {"timeline": {"limit": 200}}, "presence": {"not_types": ["*"]}}


# -- a card, as the bridge posts it ------------------------------------------------------
CARD_MARK = "bm-burst-0"
# A card as the bridge posts it for a complaint (bridge/messages.py: card), its marker replaced per send
# (bench/card_cost.py; the burst when the card phase did not run).
CARD: dict[str, Any] = {
    "msgtype": "m.text",
    "body": "📨 Pengaduan baru ADU-2026-000001\nPemohon: Siti Aminah · WhatsApp 6287900000000\n"
            "Diterima: 30-11-2026 11:55 WIB · selesai paling lambat 30-11-2026 13:55 WIB\n"
            "Langkah: Verifikasi pengaduan (Admin WA), tenggat 12:10\nNIK: 3402124501900003\nLayanan: Lainnya\n\n"
            f"KTP-el belum jadi sejak 3 bulan ({CARD_MARK})\n\nRiwayat:\n"
            "30-11-2026 11:55 WIB Pengaduan diterima oleh sistem: Pengaduan diterima lewat WhatsApp",
    "format": "org.matrix.custom.html",
    "formatted_body": "<h4>📨 Pengaduan baru <code>ADU-2026-000001</code></h4><p><b>Pemohon:</b> Siti Aminah · "
                      "WhatsApp 6287900000000<br><b>Diterima:</b> 30-11-2026 11:55 WIB · selesai paling lambat "
                      "30-11-2026 13:55 WIB<br><b>Langkah:</b> Verifikasi pengaduan (Admin WA), tenggat 12:10<br>"
                      "<b>NIK:</b> 3402124501900003<br><b>Layanan:</b> Lainnya</p><blockquote>KTP-el belum jadi "
                      f"sejak 3 bulan ({CARD_MARK})</blockquote><p><b>Riwayat:</b></p><ol><li>30-11-2026 11:55 WIB "
                      "Pengaduan diterima oleh sistem: Pengaduan diterima lewat WhatsApp</li></ol>",
    "m.mentions": {},
    "id.pengaduan.ticket": "ADU-2026-000001",
}


# -- the table ----------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table: the bridge's figure next to its baseline's."""

    section: str
    measure: str
    bridge: str
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: bool | None = None          # None: no target, or not measured
    note: str = ""


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.1f} ms"


def secs(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of ``values``, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# -- the machine --------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        mem = f"{kb / 1024 / 1024:.0f} GB"
    except (OSError, TypeError):
        pass
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5).stdout.split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        wrk = "missing"
    import aiohttp
    from importlib.metadata import version
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": str(os.cpu_count()), "memory": mem, "kernel": platform.release(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "aiohttp": aiohttp.__version__, "matrix-nio": version("matrix-nio"),
            "synapse": version("matrix-synapse"), "wrk": wrk, "source": source_version()}


def source_version() -> str:
    """The commit measured, and whether the bridge's code differs from it; $BENCH_COMMIT
    names it for a copy without .git (e.g. one made with git archive)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "bridge", "schedules",
                                "main.py", "requirements.txt"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes to the bridge" if dirty.strip() else "")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a process."""
    try:
        fields = (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> dict[int, tuple[float, str]]:
    """CPU seconds used so far by every process that is not this one or its descendants."""
    stats = {int(pid): st for pid in os.listdir("/proc") if pid.isdigit() and (st := _stat(pid)) is not None}
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    out = {}
    for pid, (_, cpu) in stats.items():
        if pid in mine:
            continue
        try:
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        out[pid] = (cpu, cmd or f"pid {pid}")
    return out


def busy_neighbours(before: dict[int, tuple[float, str]], seconds: float) -> tuple[float, list[str]]:
    """What other processes used of the CPU since ``before``: (share of one core, the top three)."""
    after = cpu_snapshot()
    used = sorted(((after[pid][0] - cpu, cmd) for pid, (cpu, cmd) in before.items() if pid in after),
                  reverse=True)
    total = sum(u for u, _ in used)
    return total / max(seconds, 1e-9), [f"{cmd[:70]} ({u:.0f} CPU s)" for u, cmd in used[:3] if u >= 1]


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each thread of a process (its main thread's id is ``pid``)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        st = _stat(f"{pid}/task/{tid}")
        if st is not None:
            out[int(tid)] = st[1]
    return out


def cpu_split(pid: int, before: dict[int, float], seconds: float) -> tuple[float, float]:
    """Since ``before`` (thread_cpu): (the main thread's share of one core, the other threads')."""
    after = thread_cpu(pid)
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    rest = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items() if tid != pid)
    return main / max(seconds, 1e-9), rest / max(seconds, 1e-9)


def rss_of(pid: int) -> dict[str, float]:
    """VmHWM (peak) and VmRSS of a process, in MB."""
    out = {}
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith(("VmHWM", "VmRSS")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


# -- the homeserver -----------------------------------------------------------------------
def start_synapse(data_dir: Path) -> LocalSynapse:
    """A throw-away Synapse (its start is not measured) with the bot and the staff."""
    hs = LocalSynapse(data_dir)
    hs.start(timeout=120)
    for localpart in (BOT, *STAFF.values()):
        hs.register(localpart, PASSWORD)
    return hs


def user_id(server: str, localpart: str) -> str:
    return f"@{localpart}:{server}"


def bridge_config(hs: LocalSynapse, graph: Any, data_dir: Path, prefix: str, *,
                  profile: str = "mojokerto", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What bench/bridge_proc.py reads: the config data (as config.toml would give it), the
    secrets, and where the database goes. Rooms are the prefix's own (created on first start)."""
    server = hs.server_name
    data: dict[str, Any] = {
        "matrix": {"homeserver": hs.url, "user_id": user_id(server, BOT), "device_name": f"bench-{prefix}"},
        "rooms": {**{role: f"#{prefix}-{role}:{server}" for role in ROLES}, "create": True},
        "staff": {role: [user_id(server, lp)] for role, lp in STAFF.items()},
        "whatsapp": {"enabled": True, "graph_url": graph.url, "api_version": graph.api_version,
                     "phone_number_id": graph.phone_number_id},
        "telegram": {"enabled": False},
        "http": {"host": "127.0.0.1", "port": 0},
        "database": {"path": str(data_dir / "pengaduan.db")},
        "sop": {"profile": profile},
    }
    for table, values in (overrides or {}).items():
        data.setdefault(table, {}).update(values)
    env = {"MATRIX_PASSWORD": PASSWORD, "WHATSAPP_TOKEN": graph.token, "WHATSAPP_APP_SECRET": graph.app_secret,
           "WHATSAPP_VERIFY_TOKEN": "verify-me"}
    return {"data": data, "env": env, "base_dir": str(data_dir)}


# -- processes ----------------------------------------------------------------------------
class Proc:
    """A server of the bench in its own process (the bridge, or the bare handler): launched,
    ready when it prints one JSON line, stopped with SIGTERM (SIGKILL after a deadline)."""

    def __init__(self, argv: list[str], log: Path, ready_timeout: float = 120,
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self.launched = time.perf_counter()
        self._log_file = open(log, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log_file,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                     start_new_session=True)
        self.ready: dict[str, Any] = {}
        self.ready_after: float | None = None      # launch -> ready line, seconds
        self._ready_timeout = ready_timeout

    async def wait_ready(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline),
                                          self._ready_timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.proc.args} not ready in {self._ready_timeout:g} s; see {self.log}") from None
        if not line:
            self.stop()
            raise RuntimeError(f"{self.proc.args} exited before it was ready; see {self.log}:\n"
                               + self.log.read_text(errors="replace")[-3000:])
        self.ready_after = time.perf_counter() - self.launched
        self.ready = json.loads(line)
        return self.ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log_file.close()
        return self.proc.returncode


def bridge_proc(spec: dict[str, Any], work: Path, name: str, *, extra_argv: list[str] = ()) -> Proc:
    """bench/bridge_proc.py on ``spec`` (see bridge_config), its log in ``work``."""
    path = work / f"{name}.json"
    path.write_text(json.dumps(spec))
    return Proc([PY, str(BENCH / "bridge_proc.py"), str(path), *extra_argv], work / f"{name}.log")


async def http_json(session: Any, url: str, timeout: float = 120) -> Any:
    import aiohttp
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        r.raise_for_status()
        return await r.json()


# -- Matrix clients -----------------------------------------------------------------------
@dataclass
class Seen:
    room_id: str
    event: Any
    at: float                      # perf_counter when the sync that brought it returned


Hook = Callable[[Seen], bool]       # True: done, remove the hook


@dataclass
class Watcher:
    """A Matrix client (a staff member in Element, or a second device of the bot) that syncs
    in a loop and times each event's arrival: the moment the sync that carried it returned.

    A sync whose timeline in a room is ``limited`` left events out: they are fetched back
    (and given that sync's arrival time), so a burst loses nothing from view."""

    homeserver: str
    user: str
    password: str = PASSWORD
    client: nio.AsyncClient = field(init=False)
    hooks: list[Hook] = field(default_factory=list)
    gaps: int = 0
    recent: deque[Seen] = field(default_factory=lambda: deque(maxlen=1000))
    _task: asyncio.Task[None] | None = None
    _since: str | None = None

    def __post_init__(self) -> None:
        self.client = nio.AsyncClient(self.homeserver, self.user, config=BOUNDED)

    async def start(self, rooms: list[str] = ()) -> None:
        resp = await self.client.login(self.password, device_name="bench")
        if not isinstance(resp, nio.LoginResponse):
            raise RuntimeError(f"login of {self.user} failed: {resp}")
        for room_id in rooms:
            joined = await self.client.join(room_id)
            if not isinstance(joined, nio.JoinResponse):
                raise RuntimeError(f"{self.user} cannot join {room_id}: {joined}")
        first = await self.client.sync(timeout=0, sync_filter=SYNC_FILTER)
        if not isinstance(first, nio.SyncResponse):
            raise RuntimeError(f"first sync of {self.user} failed: {first}")
        self._since = first.next_batch
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        failures = 0
        while True:
            resp = await self.client.sync(timeout=30_000, since=self._since, sync_filter=SYNC_FILTER)
            at = time.perf_counter()
            if not isinstance(resp, nio.SyncResponse):
                failures += 1
                if failures > 20:
                    raise RuntimeError(f"sync of {self.user} keeps failing: {resp}")
                await asyncio.sleep(0.5)
                continue
            failures = 0
            for room_id, info in resp.rooms.join.items():
                events = list(info.timeline.events)
                if info.timeline.limited and info.timeline.prev_batch:
                    self.gaps += 1
                    events = await self._gap(room_id, info.timeline.prev_batch, self._since) + events
                for event in events:
                    self._seen(Seen(room_id, event, at))
            self._since = resp.next_batch

    async def _gap(self, room_id: str, prev_batch: str, since: str | None) -> list[Any]:
        gap: list[Any] = []
        start = prev_batch
        for _ in range(200):
            resp = await self.client.room_messages(room_id, start=start, end=since,
                                                   direction=nio.MessageDirection.back, limit=500)
            if not isinstance(resp, nio.RoomMessagesResponse) or not resp.chunk:
                break
            gap.extend(resp.chunk)
            if not resp.end or resp.end == start:
                break
            start = resp.end
        return list(reversed(gap))

    def _seen(self, seen: Seen) -> None:
        self.recent.append(seen)
        for hook in list(self.hooks):
            if hook(seen):
                self.hooks.remove(hook)

    def expect(self, predicate: Callable[[Seen], bool], *, past: bool = False) -> asyncio.Future[Seen]:
        """The first event from now on that matches (``past``: or one of the recent ones)."""
        fut: asyncio.Future[Seen] = asyncio.get_running_loop().create_future()
        if past:
            for seen in self.recent:
                if predicate(seen):
                    fut.set_result(seen)
                    return fut

        def hook(seen: Seen) -> bool:
            if not fut.done() and predicate(seen):
                fut.set_result(seen)
            return fut.done()
        self.hooks.append(hook)
        return fut

    async def wait_for(self, predicate: Callable[[Seen], bool], timeout: float, what: str, *,
                       past: bool = False) -> Seen:
        return await until(self.expect(predicate, past=past), timeout, f"{self.user} to see {what}")

    async def send(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        resp = await self.client.room_send(room_id, event_type, content)
        if not isinstance(resp, nio.RoomSendResponse):
            raise RuntimeError(f"{self.user}: send failed: {resp}")
        return resp.event_id

    async def say(self, room_id: str, body: str, thread: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if thread:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread, "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": thread}}
        return await self.send(room_id, content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        return await self.send(room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id,
                                                          "key": key}}, "m.reaction")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self.client.close()


def body_of(seen: Seen) -> str:
    return getattr(seen.event, "body", "") or ""


def is_card(seen: Seen, room_id: str) -> bool:
    return seen.room_id == room_id and body_of(seen).startswith("📨 Pengaduan baru")


def thread_root(seen: Seen) -> str | None:
    rel = seen.event.source.get("content", {}).get("m.relates_to", {})
    return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None


def complaint_text(marker: str, name: str = "Siti Aminah") -> str:
    """A complaint in the office's format, which opens a case at once; ``marker`` in the
    Aduan (the card shows it) tells the bench which card is whose."""
    return f"Nama: {name}\nNIK: {NIK}\nLayanan: Lainnya\nAduan: KTP-el belum jadi sejak 3 bulan ({marker})"


MARKER = re.compile(r"\((bm-[a-z]+-\d+)\)")


def marker_of(seen: Seen) -> str | None:
    m = MARKER.search(body_of(seen))
    return m.group(1) if m else None


def db_count(db_path: Path, sql: str, *args: Any) -> int:
    con = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute(sql, args).fetchone()[0])
    finally:
        con.close()


async def until(fut: Any, timeout: float, what: str) -> Any:
    """``fut``'s result, or TimeoutError naming ``what``; the future is cancelled on timeout."""
    try:
        return await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}") from None


class Deadline:
    """A phase's time budget: ``left()`` seconds remain (never below ``floor``)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, floor: float = 1.0) -> float:
        return max(floor, self.end - time.monotonic())

    @property
    def over(self) -> bool:
        return time.monotonic() >= self.end
