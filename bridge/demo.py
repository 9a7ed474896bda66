"""The local demo: everything on one machine, no account at any chat service, no Matrix server.

A Synapse homeserver from the ``matrix-synapse`` package (data under ``data/demo/``,
generated on the first run and reused after), the bot and four staff accounts, the role
rooms, the bridge, a local fake of each citizen channel's service (what each channel's
``demo()`` in the registry gives: this module names none), and the citizen simulator
that writes as citizens through them. The SOP, SLA and units come from config.toml; only
the Matrix, channel, HTTP and database settings are the demo's own. The demo writes
them, with the rest, to ``config.toml`` in its data folder, so that the shell commands
read the demo's database: ``./run --config data/demo/config.toml case ADU-…``.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import socket
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import nio

from bridge.app import Bridge
from bridge.channels import registry
from bridge.channels.base import DemoService
from bridge.config import ROLES, from_dict
from bridge.homeserver import LocalSynapse
from bridge.simulator import Simulator

log = logging.getLogger(__name__)

SERVER = "localhost"
BOT = "pengaduan"
PASSWORD = "pengaduan-demo"      # demo accounts only: printed for Element
STAFF = {role: role for role in ROLES}     # @admin:localhost, @kasi:localhost, ...


def port_or_free(wanted: int, host: str = "127.0.0.1", what: str = "port") -> int:
    """``wanted`` when it is free (a stable address for Element), else 0: any free port.

    Checked as the servers bind it, with SO_REUSEADDR (Twisted's listenTCP for Synapse and
    asyncio's create_server for the bridge set it, and so do the connections they accept):
    a port whose last connections linger in TIME_WAIT, as after every stop of the demo
    (Synapse closes each admin API request's connection), is free to them; a plain bind
    calls it taken for a minute, which moved the homeserver to another port and broke an
    Element login made on the first start."""
    if not wanted:
        return 0
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, wanted))
            return wanted
        except OSError as e:
            log.warning("demo: %s %s:%d is taken (%s); another free port is used", what, host, wanted,
                        e.strerror)
            return 0


class MissingAliasFilter(logging.Filter):
    """Drops matrix-nio's warning for an alias that does not exist (yet).

    nio checks each answer against the success schema first, so a 404 (M_NOT_FOUND) to
    ``room_resolve_alias`` logs "Error validating response: 'room_id' is a required
    property" at WARNING, before the caller gets the error and, on a first start, creates
    the room. Only that record goes: the same warning for any other response or error
    still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Error validating response"):
            return True
        frame = inspect.currentframe()
        try:
            while frame is not None:             # up to nio's validating wrapper of from_dict
                local = frame.f_locals
                if local.get("cls") is nio.RoomResolveAliasResponse and isinstance(local.get("parsed_dict"), dict):
                    return local["parsed_dict"].get("errcode") != "M_NOT_FOUND"
                frame = frame.f_back
            return True
        finally:
            del frame                            # no reference cycle through this frame


def channel_tables(services: dict[str, DemoService]) -> dict[str, dict[str, Any]]:
    """Every known channel's config table: its demo service's, enabled, or disabled when it
    has no part in the demo."""
    return {cls.name: {"enabled": True, **services[cls.name].config()} if cls.name in services
            else {"enabled": False} for cls in registry.channels()}


def demo_config(base: dict[str, Any], homeserver: str, channels: dict[str, dict[str, Any]],
                http_port: int) -> dict[str, Any]:
    """The demo's config: SOP, SLA, units and logging of ``base``, the rest the demo's own;
    ``channels`` the channels' tables (see ``channel_tables``)."""
    data: dict[str, Any] = {
        "matrix": {"homeserver": homeserver, "user_id": f"@{BOT}:{SERVER}", "device_name": "pengaduan-demo"},
        "rooms": {**{role: f"#pengaduan-{role}:{SERVER}" for role in ROLES}, "create": True},
        "staff": {role: [f"@{user}:{SERVER}"] for role, user in STAFF.items()},
        **channels,
        "http": {"host": "127.0.0.1", "port": http_port},
        "database": {"path": "pengaduan.db"},          # beside the demo's config.toml
        "demo": {"data_dir": "."},                      # main.py demo: this folder is the demo's
    }
    data.update({k: v for k, v in base.items() if k in ("sop", "sla", "units", "logging")})
    # [[units]] rooms are aliases on the demo server too.
    data["units"] = [{**unit, **{role: f"#pengaduan-{role}-{unit['name']}:{SERVER}" for role in ("kasi", "kabid")}}
                     for unit in data.get("units", [])]
    if not data["units"]:
        del data["units"]
    return data


def demo_env(services: dict[str, DemoService]) -> dict[str, str]:
    """The demo's secrets: its Matrix password and each channel service's own."""
    env: dict[str, str] = {}
    for service in services.values():
        env.update(service.env)
    return {**env, "MATRIX_PASSWORD": PASSWORD}


def write_config(path: Path, data: dict[str, Any]) -> None:
    """``data`` as TOML: the scalars and lists first, then a [table] per table."""
    lines = [
        "# The local demo's settings, written by the demo at every start: change the SOP, SLA and",
        "# units in the config.toml the demo was started with, not here. The shell commands read",
        "# the demo's database with this file, e.g.",
        f"#   ./run --config {_shown(path)} case ADU-2026-000001",
        f"#   ./run --config {_shown(path)} export --month 2026-11",
    ]
    lines += [f"{_key(k)} = {_toml(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_key(name)}]", *(f"{_key(k)} = {_toml(v)}" for k, v in table.items())]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml(key)


def _toml(value: Any) -> str:
    """One TOML value on one line (tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):         # Python's 0.8, 1e+20, inf, nan are TOML's too
        return repr(value)
    if isinstance(value, str):                   # JSON's escapes are TOML's; DEL must be escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise TypeError(f"no TOML for {value!r}")


async def run_demo(base: dict[str, Any], data_dir: Path, stop: asyncio.Event, *,
                   http_port: int = 8080, homeserver_port: int = 8008) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    synapse = LocalSynapse(data_dir / "synapse", server_name=SERVER,
                           port=port_or_free(homeserver_port, what="homeserver port") or None)
    await asyncio.to_thread(synapse.start)
    services = {cls.name: service for cls in registry.channels() if (service := cls.demo()) is not None}
    started: list[DemoService] = []
    simulator = Simulator(services)
    bridge: Bridge | None = None
    quiet = MissingAliasFilter()                 # the first start creates the role rooms' aliases
    logging.getLogger("nio.responses").addFilter(quiet)
    try:
        for user in (BOT, *STAFF.values()):
            await asyncio.to_thread(synapse.register, user, PASSWORD)
        for service in services.values():
            await service.start()
            started.append(service)
        tables = channel_tables(services)
        settings = from_dict(demo_config(base, synapse.url, tables, port_or_free(http_port, what="simulator port")),
                             demo_env(services), base_dir=data_dir)
        bridge = Bridge(settings, extra_routes=simulator.routes())
        await bridge.start()
        bridge.freeze_what_start_made()
        assert bridge.http is not None
        for name, service in services.items():
            service.connect(bridge.http.url, simulator.on_bot_message(name))
        # For the shell commands: the ports the demo got, the database beside this file.
        write_config(data_dir / "config.toml", demo_config(base, synapse.url, tables, bridge.http.port))
        print(banner(synapse.url, bridge.http.url, data_dir / "config.toml",
                     [service.title for service in services.values()]), flush=True)
        await stop.wait()
    finally:
        logging.getLogger("nio.responses").removeFilter(quiet)
        await simulator.stop()
        if bridge is not None:
            await bridge.stop()
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:                    # the others still stop, and so does Synapse
                log.exception("demo: %s did not stop cleanly", service.title)
        await asyncio.to_thread(synapse.stop)


def banner(homeserver: str, bridge_url: str, config: Path, channels: list[str]) -> str:
    logins = ", ".join(f"@{user}:{SERVER}" for user in STAFF.values())
    local = ", ".join(["homeserver", *channels[:-1]]) + (f" dan {channels[-1]}" if channels else "")
    return "\n".join([
        "",
        f"Demo pengaduan berjalan (tanpa kredensial: {local} lokal).",
        f"  Homeserver Matrix : {homeserver}   (Element: ganti homeserver ke alamat ini)",
        f"  Login petugas     : {logins}",
        f"  Kata sandi        : {PASSWORD}",
        f"  Saluran warga     : {', '.join(channels) or '(tidak ada)'} (tiruan lokal, tanpa akun)",
        f"  Simulator warga   : {bridge_url}/demo/",
        f"  Perintah shell    : ./run --config {_shown(config)} case ADU-…  (juga: export --month YYYY-MM)",
        "  Ctrl-C untuk berhenti.",
        "",
    ])


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it (./run's folder), else whole."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
