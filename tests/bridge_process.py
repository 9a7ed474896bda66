"""The bridge as an operator runs it, ``main.py --config config.toml`` in its own process,
for the tests that kill it or watch its memory: its config, its start, its log, its end."""
from __future__ import annotations

import asyncio
import signal
from collections import Counter
import socket
import sys
from pathlib import Path

from bridge.simulator.telegram import FakeBotApi
from bridge.store import Store
from tests.harness import BOT, STAFF, StaffClient, user_id
from tests.story import body

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, synapse, graph, botapi: FakeBotApi | None, prefix: str, port: int, *,
                 database_url: str | None = None, data_dir: Path | None = None) -> None:
    """config.toml for a bridge process on the test's homeserver and fakes (Telegram when
    ``botapi`` is given); the database is data/bridge.db beside it, or ``database_url``
    (PostgreSQL, with media/ in ``data_dir``)."""
    database = (f'url = "{database_url}"\ndata_dir = "{data_dir}"' if database_url
                else 'path = "data/bridge.db"')
    server = synapse.server_name
    rooms = "\n".join(f'{r} = "#{prefix}-{r}:{server}"' for r in STAFF)
    telegram_table = (f'[telegram]\nenabled = true\napi_url = "{botapi.url}"\npoll_timeout = 1\n'
                      if botapi else "")
    staff = "\n".join(f'{r} = ["{user_id(synapse, lp)}"]' for r, lp in STAFF.items())
    path.write_text(f"""
[matrix]
homeserver = "{synapse.url}"
user_id = "{user_id(synapse, BOT)}"
[rooms]
{rooms}
create = true
[staff]
{staff}
[whatsapp]
graph_url = "{graph.url}"
api_version = "{graph.api_version}"
phone_number_id = "{graph.phone_number_id}"
{telegram_table}[http]
host = "127.0.0.1"
port = {port}
[database]
{database}
""")


class Process:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config, self.env = config, env
        self.proc: asyncio.subprocess.Process | None = None
        self.log: list[str] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), "--config", str(self.config), cwd=self.config.parent,
            env=self.env, stderr=asyncio.subprocess.PIPE)
        while True:
            line = (await asyncio.wait_for(self.proc.stderr.readline(), 60)).decode()
            if not line:
                raise AssertionError("the bridge exited before listening:\n" + "\n".join(self.log[-30:]))
            self.log.append(line.rstrip())
            if "bridge: running" in line:
                break
        self._drain = asyncio.create_task(self._read_rest())

    async def _read_rest(self) -> None:
        assert self.proc and self.proc.stderr
        async for line in self.proc.stderr:
            self.log.append(line.decode().rstrip())

    def rss_kb(self) -> int:
        """The process's resident memory now (VmRSS), in KiB."""
        assert self.proc
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    def open_fds(self) -> int:
        assert self.proc
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))

    async def kill(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self._drain

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 60)
            await self._drain


class AdminReacting:
    """The admin in Element through a crash: joins the admin room (``alias``), sees each new
    card there and reacts 👀 to it once (again if the homeserver refused it), until ``stop()``."""

    def __init__(self, admin: StaffClient, alias: str) -> None:
        self.admin, self.alias = admin, alias
        self.room = ""
        self.reacted: Counter[str] = Counter()         # ticket -> 👀 sent
        self._task: asyncio.Task[None] | None = None

    def cards(self) -> dict[str, str]:
        """ticket -> the card's event id, for every new-complaint card the admin has seen."""
        return {body(s).split()[3]: s.event.event_id for s in self.admin.seen
                if s.room_id == self.room and body(s).startswith("📨 Pengaduan baru")}

    async def start(self) -> None:
        await self.admin.start()
        self.room = (await self.admin.client.room_resolve_alias(self.alias)).room_id
        await self.admin.join(self.room)
        self._task = asyncio.create_task(self._react())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _react(self) -> None:
        while True:
            for ticket, event_id in list(self.cards().items()):
                if ticket not in self.reacted:
                    self.reacted[ticket] += 1
                    try:
                        await self.admin.react(self.room, event_id, "👀")
                    except AssertionError:
                        self.reacted[ticket] -= 1
            await asyncio.sleep(0.05)


async def read_db(db: Path | str, sql: str) -> list[dict]:
    store = await Store.open(db, create=False)
    try:
        async with store.reading() as tx:
            return await tx._all(sql)
    finally:
        await store.close()
