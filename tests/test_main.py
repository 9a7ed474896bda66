"""`python main.py --config config.toml` as an operator runs it: start, work, stop cleanly."""
from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.store import Store
from tests.bridge_process import write_config
from tests.harness import PASSWORD, STAFF, StaffClient, new_prefix
from tests.story import in_format

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_runs_until_a_signal_then_stops_cleanly(synapse_users, graph, tmp_path, sig) -> None:
    prefix = new_prefix()
    config = tmp_path / "config.toml"
    write_config(config, synapse_users, graph, None, prefix, 0)
    env = {"PATH": "/usr/bin:/bin", "MATRIX_PASSWORD": PASSWORD, "WHATSAPP_TOKEN": graph.token,
           "WHATSAPP_APP_SECRET": graph.app_secret, "WHATSAPP_VERIFY_TOKEN": "v"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), "--config", str(config), cwd=tmp_path, env=env,
        stderr=asyncio.subprocess.PIPE)
    log: list[str] = []
    try:
        port = await asyncio.wait_for(_listening_port(proc, log), 60)
        admin = StaffClient(synapse_users, STAFF["admin"])
        await admin.start()
        try:
            room_id = (await admin.client.room_resolve_alias(f"#{prefix}-admin:{synapse_users.server_name}")).room_id
            await admin.join(room_id)
            status, _ = await graph.post_webhook(f"http://127.0.0.1:{port}/webhooks/whatsapp",
                                                 graph.text("6281299990000", in_format("Aduan lewat proses nyata")))
            assert status == 200
            await admin.wait_for(lambda s: "Aduan lewat proses nyata" in getattr(s.event, "body", ""))
        finally:
            await admin.stop()
        proc.send_signal(sig)
        rest = await asyncio.wait_for(proc.stderr.read(), 30)
        log.extend(rest.decode().splitlines())
        assert await proc.wait() == 0, "\n".join(log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "\n".join(log)
    assert "bridge: stopped" in text
    for bad in ("Traceback", "Task was destroyed", "Unclosed", "Exception ignored"):
        assert bad not in text, text
    assert (tmp_path / "data" / "bridge.db").exists()          # folder created, path relative to config
    assert "6281299990000" not in text                           # phone numbers masked in logs


async def _listening_port(proc: asyncio.subprocess.Process, log: list[str]) -> int:
    while True:
        line = (await proc.stderr.readline()).decode()
        if not line:
            raise AssertionError("bridge exited before listening:\n" + "\n".join(log))
        log.append(line.rstrip())
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))


def main_py(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python main.py ARGS`` as an operator's shell runs it: no MATRIX_* or WHATSAPP_*."""
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, cwd=cwd)


def config_with_database(tmp_path: Path, db: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text().replace('path = "data/pengaduan.db"', f'path = "{db}"'))
    return config


def test_shell_commands_that_read_the_database_need_no_secrets(tmp_path) -> None:
    import csv
    db = tmp_path / "data" / "db.sqlite"
    config = config_with_database(tmp_path, db)

    async def made_by_the_bridge() -> None:
        await (await Store.open(db)).close()
    asyncio.run(made_by_the_bridge())

    out = main_py("--config", str(config), "export", "--month", "2026-11", cwd=ROOT)
    assert out.returncode == 0, out.stderr
    reports = tmp_path / "data" / "reports"                        # beside the database, not here
    assert out.stdout == f"0 pengaduan ditulis ke {reports / 'pengaduan-2026-11.csv'} dan pengaduan-2026-11.xlsx\n"
    assert (reports / "pengaduan-2026-11.xlsx").is_file() and not (ROOT / "pengaduan-2026-11.csv").exists()
    with open(reports / "pengaduan-2026-11.csv", encoding="utf-8-sig") as f:
        assert next(csv.reader(f))[0] == "Nomor tiket"
    elsewhere = main_py("--config", str(config), "export", "--month", "2026-11", "--out", str(tmp_path / "out"))
    assert elsewhere.returncode == 0 and str(tmp_path / "out" / "pengaduan-2026-11.csv") in elsewhere.stdout
    bad = main_py("--config", str(config), "export", "--month", "November")
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr
    missing = main_py("--config", str(config), "case", "ADU-2026-000001")
    assert missing.returncode == 1 and "no case" in missing.stderr


@pytest.mark.parametrize("command", [["case", "ADU-2026-000001"], ["export", "--month", "2026-11"]])
def test_a_read_command_never_makes_a_database(tmp_path, command) -> None:
    db = tmp_path / "data" / "pengaduan.db"
    config = config_with_database(tmp_path, db)
    out = main_py("--config", str(config), *command, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == f"error: no database at {db}\n"                  # one line, naming the path
    assert out.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
    # Beside a config whose database is missing, the demo's: the line points at it.
    (tmp_path / "data" / "demo").mkdir(parents=True)
    (tmp_path / "data" / "demo" / "config.toml").write_text("")
    out = main_py("--config", str(config), *command, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr == (f"error: no database at {db} "
                                                  "(the local demo's data: --config data/demo/config.toml)\n")
    assert not db.exists()
