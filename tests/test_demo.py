"""The newcomer's first run: the demo as a process, the simulator in a real browser, Ctrl-C,
the shell commands on the demo's data, and a second start on the same addresses."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import nio
import pytest

from bridge.config import load
from bridge.channels import registry
from bridge.demo import MissingAliasFilter, channel_tables, demo_config, port_or_free, write_config
from tests.harness import BOUNDED
from tests.story import in_format


ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_secrets() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MATRIX_", "WHATSAPP_", "TELEGRAM_"))}


class Demo:
    """``python main.py demo`` in a subprocess, in a temporary folder, on the ports given
    (fixed, as 8008 and 8080 are for a newcomer)."""

    def __init__(self, data_dir: Path, homeserver_port: int, http_port: int) -> None:
        self.data_dir = data_dir
        self.out: "queue.Queue[str]" = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "demo", "--data-dir", str(data_dir),
             "--http-port", str(http_port), "--homeserver-port", str(homeserver_port)],
            cwd=ROOT, env=no_secrets(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.lines: list[str] = []
        self.homeserver = self.simulator = ""
        deadline = time.monotonic() + 120
        while not self.lines or "Ctrl-C" not in self.lines[-1]:            # the banner's last line
            try:
                line = self.out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("demo did not come up:\n" + "\n".join(self.lines)) from None
            self.lines.append(line)
            if m := re.search(r"Homeserver Matrix : (http://\S+)", line):
                self.homeserver = m.group(1)
            if m := re.search(r"Simulator warga   : (http://\S+)", line):
                self.simulator = m.group(1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.put(line.rstrip("\n"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)           # Ctrl-C
        code = self.proc.wait(timeout=60)
        while not self.out.empty():
            self.lines.append(self.out.get())
        return code


def processes_using(path: Path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline}")
    return found


def time_wait_on(port: int) -> int:
    """Connections in TIME_WAIT (state 06) whose local port is ``port`` (what a server that
    closed them leaves behind for a minute)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                local, state = line.split()[1], line.split()[3]
                count += state == "06" and int(local.rsplit(":", 1)[1], 16) == port
    return count


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    d = Demo(tmp_path_factory.mktemp("demo") / "data" / "demo", free_port(), free_port())
    yield d
    d.stop()


async def simulator_send(demo: Demo, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{demo.simulator}api/send", json=body) as r:
            return r.status, await r.json()


async def send_as_citizen(demo: Demo, chat: str, text: str, channel: str = "whatsapp",
                          name: str = "Warga Uji") -> dict:
    status, answer = await simulator_send(demo, {"channel": channel, "chat": chat, "name": name, "text": text})
    assert status == 200, answer
    return answer


async def chat_of(demo: Demo, chat: str, channel: str = "whatsapp") -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{demo.simulator}api/messages", params={"channel": channel, "chat": chat}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def bot_lines(demo: Demo, chat: str, channel: str = "whatsapp", *, containing: str = "",
                    timeout: float = 15) -> list[str]:
    """The bot's messages in a chat, once one contains ``containing``."""
    deadline = time.monotonic() + timeout
    while True:
        bot = [line["text"] for line in (await chat_of(demo, chat, channel))["lines"] if line["from"] == "bot"]
        if any(containing in text for text in bot):
            return bot
        if time.monotonic() > deadline:
            raise AssertionError(f"the bot did not answer {channel} {chat}: {bot}")
        await asyncio.sleep(0.1)


async def wait_for_admin_card(demo: Demo, action, *needles: str) -> str:
    """Run ``action`` as the demo admin watches their room; the card that has ``needles``."""
    client = nio.AsyncClient(demo.homeserver, "@admin:localhost", config=BOUNDED)
    try:
        assert isinstance(await client.login("pengaduan-demo"), nio.LoginResponse)
        room = await client.room_resolve_alias("#pengaduan-admin:localhost")
        assert isinstance(await client.join(room.room_id), nio.JoinResponse)
        await client.sync(timeout=0)                   # from now on
        await action()
        for _ in range(40):                            # each sync waits on the server for news
            resp = await client.sync(timeout=1000, since=client.next_batch)
            bodies = [getattr(e, "body", "") for r in resp.rooms.join.values() for e in r.timeline.events]
            for body in bodies:
                if body.startswith("📨 Pengaduan baru") and all(n in body for n in needles):
                    return body
        raise AssertionError("no card reached the demo admin")
    finally:
        await client.close()


def test_the_first_start_prints_its_addresses_and_no_alarm(demo: Demo) -> None:
    shown = "\n".join(demo.lines)
    assert "Error validating response" not in shown, shown          # the aliases did not exist yet
    assert not [line for line in demo.lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)], shown
    assert "created #pengaduan-admin:localhost" in shown             # it was a first start


async def test_the_shell_commands_read_the_demo_data_while_it_runs(demo: Demo) -> None:
    await send_as_citizen(demo, "081211110002", in_format("Layanan: KTP-el\nKTP-el saya hilang di jalan"))
    bot = await bot_lines(demo, "6281211110002", containing="ADU-")
    ticket = re.search(r"ADU-\d{4}-\d{6}", bot[0]).group(0)
    config = demo.data_dir / "config.toml"                   # written by the demo, beside its data
    assert f"Perintah shell    : ./run --config {config} case ADU-" in "\n".join(demo.lines)   # and named

    def shell(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", str(config), *args],
                              cwd=ROOT, env=no_secrets(), capture_output=True, text=True, timeout=60)
    case = shell("case", ticket.lower())
    assert case.returncode == 0, case.stderr
    assert ticket in case.stdout and "KTP-el saya hilang di jalan" in case.stdout
    month = datetime.now(ZoneInfo("Asia/Jakarta")).strftime("%Y-%m")
    export = shell("export", "--month", month)
    assert export.returncode == 0, export.stderr
    reports = demo.data_dir / "reports"
    m = re.fullmatch(rf"(\d+) pengaduan ditulis ke {re.escape(str(reports))}/pengaduan-{month}\.csv "
                     rf"dan pengaduan-{month}\.xlsx\n", export.stdout)
    assert m and int(m.group(1)) >= 1, export.stdout
    assert ticket in (reports / f"pengaduan-{month}.csv").read_text(encoding="utf-8-sig")


async def test_a_simulated_message_becomes_a_card_for_the_demo_admin(demo: Demo) -> None:
    async def write() -> None:             # as the page wrote before it knew channels: wa_id
        status, answer = await simulator_send(demo, {"wa_id": "081211110001", "name": "Warga Uji",
                                                     "text": in_format("Akta kelahiran anak saya belum terbit")})
        assert status == 200 and answer["chat"] == "6281211110001", answer
    card = await wait_for_admin_card(demo, write, "Akta kelahiran anak")
    assert "WhatsApp" in card
    assert (await chat_of(demo, "6281211110001"))["wa_id"] == "6281211110001"


async def test_a_telegram_citizen_gets_the_ticket_in_their_chat_and_the_admin_a_card(demo: Demo) -> None:
    async def write() -> None:
        await send_as_citizen(demo, "5123400001", in_format("Kartu keluarga saya hilang saat banjir"),
                              channel="telegram", name="Dewi")
    card = await wait_for_admin_card(demo, write, "Kartu keluarga saya hilang")
    assert "· Telegram" in card and "lewat Telegram" in card, card
    bot = await bot_lines(demo, "5123400001", "telegram", containing="ADU-")
    ticket = re.search(r"ADU-\d{4}-\d{6}", "\n".join(bot)).group(0)
    assert ticket in card
    chat = await chat_of(demo, "5123400001", "telegram")
    assert chat["name"] == "Dewi" and chat["channel"] == "telegram"
    assert [line["from"] for line in chat["lines"]][0] == "citizen"
    # The same id on WhatsApp is another phone: nothing of this chat there.
    assert (await chat_of(demo, "5123400001"))["lines"] == []


async def test_the_simulator_lists_its_channels_and_refuses_in_indonesian(demo: Demo) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{demo.simulator}api/channels") as r:
            assert r.status == 200
            assert await r.json() == [{"name": c.name, "title": c.title} for c in registry.channels() if c.demo()]
    assert "Saluran warga     : WhatsApp, Telegram" in "\n".join(demo.lines)
    refusals = {
        "nomor WhatsApp tidak valid": {"chat": "12345", "text": "halo"},
        "ID pengguna Telegram tidak valid": {"channel": "telegram", "chat": "12ab", "text": "halo"},
        "tidak ada di demo ini": {"channel": "sms", "chat": "081234567890", "text": "halo"},
        "tulis pesan atau lampirkan gambar": {"channel": "telegram", "chat": "5123400002", "text": " "},
        "gambar harus JPEG/PNG/WebP": {"chat": "081234567890", "text": "x", "image": "data:text/html;base64,PGI+"},
    }
    for error, body in refusals.items():
        status, answer = await simulator_send(demo, body)
        assert status == 400 and error in answer["error"], (body, answer)
    assert (await chat_of(demo, "5123400002", "telegram"))["lines"] == []


@pytest.mark.skipif(not CHROMIUM and os.environ.get("CI") != "true",
                    reason="Debian's chromium is not installed (.ci/run installs it)")
async def test_the_simulator_page_in_a_real_browser(demo: Demo, tmp_path: Path) -> None:
    from PIL import Image
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = await browser.new_page(viewport={"width": 420, "height": 800})
            await page.goto(demo.simulator)
            # A first-time visitor reads what the page is and what to write, and sees an example.
            intro = page.locator("#intro")
            assert await intro.is_visible()
            assert "Nama, NIK, Layanan, dan Aduan" in await intro.inner_text()
            box = await intro.bounding_box()
            assert box and box["y"] + box["height"] <= 800                       # without scrolling
            text = page.locator("#text")
            await page.wait_for_function("document.getElementById('text').value.includes('NIK:')")
            example = await text.input_value()
            assert [line.split(":")[0] for line in example.splitlines()] == ["Nama", "NIK", "Layanan", "Aduan"]
            assert (await text.bounding_box())["height"] > 60                     # the whole example shows

            # A name typed first goes with the number then typed, as a visitor fills the fields.
            await page.fill("#name", "Rina <i>Uji</i>")
            await page.fill("#number", "0812 2222 0003")
            await page.fill("#text", in_format("KK saya belum diperbarui <script>alert(1)</script>"))
            await page.click("#send")
            mine = page.locator(".bubble.citizen").last
            await mine.wait_for(timeout=15_000)
            assert "<script>alert(1)</script>" in await mine.inner_text()          # shown as text
            reply = page.locator(".bubble.bot", has_text="ADU-").first
            await reply.wait_for(timeout=15_000)
            assert "Pengaduan Anda sudah kami terima" in await reply.inner_text()

            # Another number is another phone: no name of the first, no chat of the first.
            await page.fill("#number", "0812 2222 0004")
            await page.press("#number", "Tab")
            assert await page.input_value("#name") == ""
            await page.locator(".bubble").first.wait_for(state="detached", timeout=5_000)
            assert "NIK:" in await text.input_value()                              # its example again
            await page.fill("#name", "Budi Santoso")
            await page.fill("#text", "Akta kelahiran anak saya salah nama")
            await page.press("#text", "Enter")
            await page.locator(".bubble.citizen", has_text="Akta kelahiran").wait_for(timeout=15_000)
            assert await page.locator(".bubble", has_text="KK saya").count() == 0
            # Back to the first: its own name and chat; and again to the second.
            await page.fill("#number", "0812 2222 0003")
            await page.press("#number", "Tab")
            assert await page.input_value("#name") == "Rina <i>Uji</i>"
            await page.locator(".bubble.citizen", has_text="KK saya").wait_for(timeout=5_000)
            assert await page.locator(".bubble", has_text="Akta kelahiran").count() == 0
            await page.fill("#number", "0812 2222 0004")
            await page.press("#number", "Tab")
            assert await page.input_value("#name") == "Budi Santoso"
            await page.fill("#number", "0812 2222 0003")
            await page.press("#number", "Tab")
            reply = page.locator(".bubble.bot", has_text="ADU-").first
            await reply.wait_for(timeout=15_000)
            shot = tmp_path / "simulator.png"
            await page.screenshot(path=str(shot))
            box = await reply.bounding_box()

            # Telegram: the picker lists it, the field asks for a user id, the bot answers there.
            assert await page.locator("#channel option").all_inner_texts() == ["WhatsApp", "Telegram"]
            assert "WhatsApp atau Telegram" in await intro.inner_text()
            assert await page.inner_text("#number-label") == "Nomor WhatsApp"
            await page.select_option("#channel", "telegram")
            assert await page.inner_text("#number-label") == "ID pengguna Telegram"
            await page.locator(".bubble").first.wait_for(state="detached", timeout=5_000)
            await page.fill("#number", "5123 400 777")
            await page.press("#number", "Tab")
            await page.fill("#name", "Agus")
            await page.fill("#text", in_format("Surat pindah saya belum selesai <b>tebal</b>"))
            await page.click("#send")
            await page.locator(".bubble.citizen", has_text="<b>tebal</b>").wait_for(timeout=15_000)
            tg_reply = page.locator(".bubble.bot", has_text="ADU-").first
            await tg_reply.wait_for(timeout=20_000)
            assert "Pengaduan Anda sudah kami terima" in await tg_reply.inner_text()
            assert await page.locator(".bubble", has_text="KK saya").count() == 0
            # Back on WhatsApp: the number and chat used there before.
            await page.select_option("#channel", "whatsapp")
            assert await page.input_value("#number") == "0812 2222 0003"
            assert await page.input_value("#name") == "Rina <i>Uji</i>"
            await page.locator(".bubble.citizen", has_text="KK saya").wait_for(timeout=5_000)
        finally:
            await browser.close()
    # What the bridge was told: each number with its own name.
    assert (await chat_of(demo, "6281222220003"))["name"] == "Rina <i>Uji</i>"
    assert (await chat_of(demo, "6281222220004"))["name"] == "Budi Santoso"
    assert (await chat_of(demo, "5123400777", "telegram"))["name"] == "Agus"
    # The screenshot shows the reply: a white bot bubble where the page says it is.
    img = Image.open(shot).convert("RGB")
    x, y = int(box["x"] + 4), int(box["y"] + box["height"] / 2)
    assert img.getpixel((x, y)) == (255, 255, 255)
    assert img.getpixel((5, 5)) != (255, 255, 255)


def test_ctrl_c_stops_everything_and_a_second_run_reuses_the_data_and_addresses(demo: Demo) -> None:
    assert demo.stop() == 0, "\n".join(demo.lines)
    assert not [line for line in demo.lines if "Traceback" in line], "\n".join(demo.lines)
    assert processes_using(demo.data_dir) == []
    key = next((demo.data_dir / "synapse").glob("*.signing.key")).read_bytes()
    homeserver_port = int(demo.homeserver.rsplit(":", 1)[1])
    http_port = int(demo.simulator.split(":")[2].split("/")[0])
    # What made the homeserver move: the first run's connections linger on its port.
    assert time_wait_on(homeserver_port) > 0
    again = Demo(demo.data_dir, homeserver_port, http_port)   # generated on the first run, reused now
    try:
        assert next((demo.data_dir / "synapse").glob("*.signing.key")).read_bytes() == key
        assert (again.homeserver, again.simulator) == (demo.homeserver, demo.simulator)   # Element's login holds
        assert "is taken" not in "\n".join(again.lines)
    finally:
        assert again.stop() == 0
    assert processes_using(demo.data_dir) == []


def test_a_port_in_time_wait_is_free_for_the_demo_a_listening_one_is_not() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as Twisted and asyncio listen
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_or_free(port) == 0                          # someone listens: another port
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()                                            # the server closes first: TIME_WAIT
        client.close()
    assert time_wait_on(port) > 0
    with socket.socket() as plain, pytest.raises(OSError) as taken:
        plain.bind(("127.0.0.1", port))                         # how the demo checked before
    assert taken.value.errno == errno.EADDRINUSE
    assert port_or_free(port) == port                           # as Synapse and aiohttp bind it


def test_only_the_missing_alias_warning_is_silenced(caplog: pytest.LogCaptureFixture) -> None:
    responses = logging.getLogger("nio.responses")
    responses.addFilter(quiet := MissingAliasFilter())
    try:
        with caplog.at_level(logging.WARNING, logger="nio.responses"):
            missing = nio.RoomResolveAliasResponse.from_dict(
                {"errcode": "M_NOT_FOUND", "error": "Room alias not found"}, "#pengaduan-admin:localhost")
            assert isinstance(missing, nio.RoomResolveAliasError)
            assert caplog.records == []
            nio.RoomResolveAliasResponse.from_dict({"errcode": "M_FORBIDDEN", "error": "no"}, "#x:localhost")
            nio.RoomCreateResponse.from_dict({"errcode": "M_NOT_FOUND", "error": "the same code, another call"})
        assert [r.getMessage() for r in caplog.records] == [
            "Error validating response: 'room_id' is a required property"] * 2
    finally:
        responses.removeFilter(quiet)


async def test_the_demo_config_is_one_the_shell_commands_load(tmp_path: Path) -> None:
    base = load(ROOT / "config.toml", offline=True).raw
    base = {**base, "units": [{"name": "capil", "categories": ["Akta \"Kelahiran\""], "kasi": "#k:x", "kabid": "#b:x"}],
            "sla": {**base["sla"], "cuti_bersama": [datetime(2026, 12, 31).date()]}}
    path = tmp_path / "config.toml"
    services = {c.name: service for c in registry.channels() if (service := c.demo())}
    assert set(services) == {"whatsapp", "telegram"}
    for service in services.values():
        await service.start()
    try:
        write_config(path, demo_config(base, "http://127.0.0.1:8008", channel_tables(services), 8080))
    finally:
        for service in services.values():
            await service.stop()
    text = path.read_text(encoding="utf-8")
    assert not [secret for service in services.values() for secret in service.env.values() if secret in text]
    settings = load(path, offline=True)
    assert {name: ch.enabled for name, ch in settings.channels.items()} == {"whatsapp": True, "telegram": True}
    assert settings.database_path == tmp_path / "pengaduan.db"
    assert settings.matrix.homeserver == "http://127.0.0.1:8008" and settings.http.port == 8080
    assert settings.raw["sop"] == base["sop"] and settings.raw["sla"] == base["sla"]
    assert settings.raw["units"] == [{"name": "capil", "categories": ["Akta \"Kelahiran\""],
                                      "kasi": "#pengaduan-kasi-capil:localhost", "kabid": "#pengaduan-kabid-capil:localhost"}]
    from main import demo_dir
    assert demo_dir(str(path), settings.raw) == tmp_path     # main.py demo --config this file: this folder
    assert demo_dir(str(ROOT / "config.toml"), base) == ROOT / "data" / "demo"
