"""Backups: ``main.py backup DEST`` copies the database (SQLite's online backup) and media/
while the bridge writes, and the README's restore steps give back the cases and their files."""
from __future__ import annotations

import asyncio
import shutil
import sqlite3
import stat
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import nio
import pytest

from bridge.backup import backup
from bridge.retention import media_path
from bridge.store import Store
from tests.harness import in_thread_of, until
from tests.story import complaint, in_format
from tests.test_main import ROOT, config_with_database, main_py

WIB = ZoneInfo("Asia/Jakarta")
PHOTO = b"\xff\xd8\xff\xe0 foto akta kelahiran " + bytes(500)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_owner_only(folder: Path) -> None:
    assert mode(folder) == 0o700
    for p in folder.rglob("*"):
        assert mode(p) == (0o700 if p.is_dir() else 0o600), p


@pytest.mark.sqlite_only          # main.py backup copies a SQLite file (PostgreSQL: pg_dump)
async def test_a_backup_while_the_bridge_writes_restores_the_case_and_its_files(make_env, tmp_path: Path) -> None:
    env = await make_env()
    citizen = "6281234500321"
    card = await complaint(env, citizen, "Akta kelahiran anak saya salah tulis", name="Rina Marlina")
    media_id = env.graph.add_media(PHOTO, "image/jpeg")
    await env.send(env.graph.image(citizen, media_id, caption="Foto akta yang salah"))
    await env.admin.wait_for(lambda s: isinstance(s.event, nio.RoomMessageImage)
                             and in_thread_of(card.event_id)(s.event), what="the photo in the thread")
    kept = media_path(env.settings.data_dir / "media", "whatsapp", media_id)
    assert kept.read_bytes() == PHOTO

    # `main.py backup` as the operator's cron runs it, while complaints keep coming in.
    config = config_with_database(tmp_path, env.settings.database_path)
    dest = tmp_path / "backup"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), "--config", str(config), "backup", str(dest),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    sent = 0

    async def keep_writing() -> None:
        nonlocal sent
        while proc.returncode is None:
            sent += 1
            status, _ = await env.send(env.graph.text(f"62812{sent:08d}", in_format(f"Aduan nomor {sent}"),
                                                      name=f"Warga {sent}"))
            assert status == 200
    writer = asyncio.create_task(keep_writing())
    out, err = await proc.communicate()
    await writer
    assert proc.returncode == 0, err.decode()
    assert sent >= 2                                    # complaints came in while it ran
    lines = out.decode().splitlines()
    folder = Path(lines[0].removeprefix("Cadangan ditulis ke "))
    assert folder.parent == dest and folder.name.startswith("pengaduan-") and len(lines) == 3
    assert lines[1].startswith("  pengaduan.db: ") and " pengaduan, " in lines[1]
    assert lines[2].startswith("  media/: 1 berkas, ")
    assert sorted(p.name for p in folder.iterdir()) == ["media", "pengaduan.db"]
    assert_owner_only(folder)

    # The copy is one consistent moment: it passes the check, and every case has its audit row.
    with sqlite3.connect(folder / "pengaduan.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM cases c WHERE NOT EXISTS (SELECT 1 FROM case_events e"
                          " WHERE e.case_id = c.id AND e.kind = 'opened')").fetchone() == (0,)
        copied = db.execute("SELECT count(*) FROM cases").fetchone()[0]
    db.close()
    assert 1 <= copied <= 1 + sent and f"  pengaduan.db: {copied} pengaduan, " in lines[1]

    # Restore (README): the bridge stopped, the copy put where [database] path says, started again.
    await env.stop_bridge()
    restored = tmp_path / "restored"
    (restored / "data").mkdir(parents=True)
    shutil.copy2(folder / "pengaduan.db", restored / "data" / "pengaduan.db")
    shutil.copytree(folder / "media", restored / "data" / "media")
    restored_config = config_with_database(restored, restored / "data" / "pengaduan.db")
    shown = main_py("--config", str(restored_config), "case", card.ticket)
    assert shown.returncode == 0, shown.stderr
    assert "Akta kelahiran anak saya salah tulis" in shown.stdout and "Rina Marlina" in shown.stdout
    assert "Foto akta yang salah (Lampiran: " in shown.stdout
    assert media_path(restored / "data" / "media", "whatsapp", media_id).read_bytes() == PHOTO
    # ... and a bridge starts on it: the store opens the restored file as its own.
    store = await Store.open(restored / "data" / "pengaduan.db")
    try:
        async with store.reading() as tx:
            assert (await tx.get_case_by_ticket(card.ticket))["summary"] == "Akta kelahiran anak saya salah tulis"
    finally:
        await store.close()


async def test_the_copy_is_consistent_under_continuous_writes(tmp_path: Path) -> None:
    """The online backup in one step: a snapshot, never torn by the writes going on beside it."""
    store = await Store.open(tmp_path / "data" / "pengaduan.db")
    (tmp_path / "data" / "media" / "whatsapp").mkdir()
    (tmp_path / "data" / "media" / "whatsapp" / "abc").write_bytes(b"file")
    stop = asyncio.Event()
    written = 0

    async def writes() -> None:
        nonlocal written
        while not stop.is_set():
            async with store.transaction() as tx:         # two rows that always go together
                n = await tx.next_in_sequence("a")
                await tx.set_state(f"pair/{n}", "x" * 2000)
            written += 1
            await asyncio.sleep(0)
    task = asyncio.create_task(writes())
    try:
        await until(lambda: written >= 20, what="writes before the backup")
        now = datetime(2026, 11, 23, 9, 15, 30, tzinfo=WIB)
        done = await asyncio.to_thread(backup, store.path, tmp_path / "backup", now=now, tz=WIB)
        again = await asyncio.to_thread(backup, store.path, tmp_path / "backup", now=now, tz=WIB)
    finally:
        stop.set()
        await task
        await store.close()
    assert done.folder == tmp_path / "backup" / "pengaduan-20261123-091530"
    assert again.folder == tmp_path / "backup" / "pengaduan-20261123-091530-2"      # never over an earlier one
    assert (done.media_files, done.media_bytes, done.cases) == (1, 4, 0)
    assert (done.folder / "media" / "whatsapp" / "abc").read_bytes() == b"file"
    assert_owner_only(done.folder)
    assert mode(tmp_path / "backup") == 0o700
    with sqlite3.connect(done.database) as db:
        (seq,) = db.execute("SELECT value FROM sequences WHERE name = 'a'").fetchone()
        (pairs,) = db.execute("SELECT count(*) FROM matrix_state WHERE key LIKE 'pair/%'").fetchone()
    db.close()
    assert seq == pairs and 20 <= seq <= written


def test_main_backup_needs_a_database(tmp_path: Path) -> None:
    config = config_with_database(tmp_path, tmp_path / "data" / "pengaduan.db")
    out = main_py("--config", str(config), "backup", str(tmp_path / "backup"))
    assert out.returncode == 2 and out.stderr == f"error: no database at {tmp_path / 'data' / 'pengaduan.db'}\n"
    assert not (tmp_path / "backup").exists() and not (tmp_path / "data").exists()
