"""The local demo: everything on one machine, no WhatsApp account, no Matrix server.

A Synapse homeserver from the ``matrix-synapse`` package (data under ``data/demo/``,
generated on the first run and reused after), the bot and four staff accounts, the role
rooms, the bridge, and the citizen simulator that plays Meta's part. The SOP, SLA and
units come from config.toml; only the Matrix, WhatsApp, HTTP and database settings are
the demo's own.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

from bridge.app import Bridge
from bridge.config import ROLES, Settings, from_dict
from bridge.homeserver import LocalSynapse
from bridge.simulator import Simulator
from bridge.simulator.graph import FakeGraph

log = logging.getLogger(__name__)

SERVER = "localhost"
BOT = "pengaduan"
PASSWORD = "pengaduan-demo"      # demo accounts only: printed for Element
STAFF = {role: role for role in ROLES}     # @admin:localhost, @kasi:localhost, ...
DEMO_ENV = {"MATRIX_PASSWORD": PASSWORD, "WHATSAPP_TOKEN": "demo-token",
            "WHATSAPP_APP_SECRET": "demo-app-secret", "WHATSAPP_VERIFY_TOKEN": "demo-verify"}


def port_or_free(wanted: int, host: str = "127.0.0.1") -> int:
    """``wanted`` when it is free (a stable address for Element), else any free port."""
    if wanted:
        with socket.socket() as s:
            try:
                s.bind((host, wanted))
                return wanted
            except OSError:
                pass
    return 0


def demo_settings(base: dict[str, Any], synapse: LocalSynapse, graph: FakeGraph, data_dir: Path,
                  http_port: int) -> Settings:
    data = {k: v for k, v in base.items() if k in ("sop", "sla", "units", "logging")}
    data.update({
        "matrix": {"homeserver": synapse.url, "user_id": f"@{BOT}:{SERVER}", "device_name": "pengaduan-demo"},
        "rooms": {**{role: f"#pengaduan-{role}:{SERVER}" for role in ROLES}, "create": True},
        "staff": {role: [f"@{user}:{SERVER}"] for role, user in STAFF.items()},
        "whatsapp": {"enabled": True, "graph_url": graph.url, "api_version": graph.api_version,
                     "phone_number_id": graph.phone_number_id},
        "http": {"host": "127.0.0.1", "port": http_port},
        "database": {"path": str(data_dir / "pengaduan.db")},
    })
    # [[units]] rooms are aliases on the demo server too.
    for unit in data.get("units", []):
        for role in ("kasi", "kabid"):
            unit[role] = f"#pengaduan-{role}-{unit['name']}:{SERVER}"
    return from_dict(data, DEMO_ENV, base_dir=data_dir)


async def run_demo(base: dict[str, Any], data_dir: Path, stop: asyncio.Event, *,
                   http_port: int = 8080, homeserver_port: int = 8008) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    synapse = LocalSynapse(data_dir / "synapse", server_name=SERVER, port=port_or_free(homeserver_port) or None)
    await asyncio.to_thread(synapse.start)
    graph = FakeGraph(token=DEMO_ENV["WHATSAPP_TOKEN"], app_secret=DEMO_ENV["WHATSAPP_APP_SECRET"])
    simulator = Simulator(graph)
    bridge: Bridge | None = None
    try:
        for user in (BOT, *STAFF.values()):
            await asyncio.to_thread(synapse.register, user, PASSWORD)
        await graph.start()
        settings = demo_settings(base, synapse, graph, data_dir, port_or_free(http_port))
        bridge = Bridge(settings, extra_routes=simulator.routes())
        await bridge.start()
        assert bridge.http is not None
        simulator.webhook_url = f"{bridge.http.url}/webhooks/whatsapp"
        print(banner(synapse.url, bridge.http.url), flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
        if bridge is not None:
            await bridge.stop()
        await graph.stop()
        await asyncio.to_thread(synapse.stop)


def banner(homeserver: str, bridge_url: str) -> str:
    logins = ", ".join(f"@{user}:{SERVER}" for user in STAFF.values())
    return "\n".join([
        "",
        "Demo pengaduan berjalan (tanpa kredensial: homeserver dan WhatsApp lokal).",
        f"  Homeserver Matrix : {homeserver}   (Element: ganti homeserver ke alamat ini)",
        f"  Login petugas     : {logins}",
        f"  Kata sandi        : {PASSWORD}",
        f"  Simulator warga   : {bridge_url}/demo/",
        "  Ctrl-C untuk berhenti.",
        "",
    ])
