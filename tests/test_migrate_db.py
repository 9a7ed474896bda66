"""Moving an office (issue 18): its SQLite data copied into PostgreSQL with nothing lost.

The office is made through the store's own methods, every table with rows (a ticket and
agenda sequence, an audit trail with an agenda number, a file the citizen sent, a
delivery, a rating, a purged case, a case linked to a later one, ...); the copy is
compared with its source row for row, raw (the stored text of every time and JSON value,
ids included), and then used: its sequences go on, its audit trail stays append-only.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.channels.base import Attachment, InboundMessage, StatusUpdate
from bridge.migrate_db import CannotCopy, copy_database
from bridge.retention import cleaned_event, media_path
from bridge.store import Store, Tx
from tests.test_main import config_with_database

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 2, 1, 0, 0, 123456, tzinfo=timezone.utc)    # microseconds: stored text kept exactly
PHOTO = b"\xff\xd8\xff\xe0 foto KTP lama " + bytes(100)
AGENDA = "470/001/416/2026"


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def ticket(tx: Tx) -> str:
    return f"ADU-2026-{await tx.next_in_sequence('ticket/2026'):06d}"


async def make_office(db: Path) -> None:
    """An office on SQLite with a row in every table, made as the bridge makes them."""
    store = await Store.open(db)
    try:
        async with store.transaction() as tx:
            siti = await tx.upsert_citizen("whatsapp", "6281100000011", name="Siti Aminah", user_id="ID.11",
                                           username="siti", at=T0)
            budi = await tx.upsert_citizen("telegram", "5550012", name="Budi Nur'aini 🙏", user_id=None, at=T0)
            eko = await tx.upsert_citizen("whatsapp", "6281100000015", name="Eko", user_id=None, at=later(1))

            # Siti's complaint: answered with an agenda number, her photo, delivered, rated.
            first = await tx.create_case(ticket=await ticket(tx), citizen_id=siti, channel="whatsapp",
                                         summary="KTP-el saya hilang di pasar", step="verifikasi",
                                         holder_role="admin", opened_at=T0, due_at=later(14 * 24 * 60),
                                         step_due_at=later(24 * 60), category="KTP-el")
            await tx.update_case(first, citizen_name="Siti Aminah", nik="3402124501900003", unit="capil")
            msg = InboundMessage("whatsapp", "wamid.in1", "6281100000011", T0, "image", "Ini foto KTP lama saya",
                                 name="Siti Aminah", attachments=(Attachment("image", "media-1", "image/jpeg"),))
            assert await tx.insert_inbound(msg, later(0))
            inbound = (await tx.pending_inbound())[0][0]
            await tx.finish_inbound(inbound, case_id=first)
            await tx.add_event(first, at=T0, actor="citizen", kind="opened", to_step="verifikasi",
                               note="KTP-el saya hilang di pasar", data={"nik": "3402124501900003"})
            files = await tx.enqueue("matrix.attachment", "matrix:admin", {
                "room": "admin", "channel": "whatsapp", "caption": "Ini foto KTP lama saya",
                "attachment": Attachment("image", "media-1", "image/jpeg").to_dict()}, at=later(1), case_id=first)
            await tx.outbox_progress(files, {"path": "media/whatsapp/x", "size": len(PHOTO), "mxc": "mxc://l/1"})
            await tx.outbox_done(files, at=later(2), result={"event_id": "$photo"})
            agenda = f"470/{await tx.next_in_sequence('agenda/2026'):03d}/416/2026"
            assert agenda == AGENDA
            await tx.update_case(first, agenda_number=agenda, approved_by="@kabid:localhost",
                                 approved_at=later(60), approved_role="kabid", answer_draft="Silakan ambil di loket 3",
                                 drafted_by="@admin:localhost", confidential=True)
            await tx.add_event(first, at=later(60), actor="@kabid:localhost", role="kabid", kind="approved",
                               from_step="persetujuan", to_step="kirim", data={"agenda_number": agenda})
            answer = await tx.enqueue("channel.text", "whatsapp:6281100000011", {
                "channel": "whatsapp", "address": "6281100000011", "text": "Silakan ambil di loket 3",
                "purpose": "answer"}, at=later(70), case_id=first)
            await tx.outbox_done(answer, at=later(71), result={"external_id": "wamid.out1"})
            await tx.record_delivery("whatsapp", "wamid.out1", outbox_id=answer, case_id=first, at=later(71),
                                     purpose="answer")
            await tx.apply_status(StatusUpdate("whatsapp", "wamid.out1", "delivered", later(72)))
            await tx.update_case(first, state="closed", closed_at=later(72), answered_at=later(72),
                                 answer_sent_at=later(71), outcome="answered", next_alert_at=None)
            await tx.add_event(first, at=later(72), actor="bot", kind="closed", from_step="kirim")
            await tx.rate(first, 5, later(80))
            await tx.rating_comment(first, "Pelayanan cepat")
            await tx.save_card(first, "admin", "!admin:localhost", "$card1", T0)
            await tx.save_card(first, "admin", "!admin:localhost", "$card2", later(60))   # card_posts keeps both
            await tx.add_card_reaction("$card2", "verify", "$reaction1")

            # Budi's complaint: rejected, then purged (retention); his second one links back to it.
            old = await tx.create_case(ticket=await ticket(tx), citizen_id=budi, channel="telegram",
                                       summary="Pajak motor saya terlalu mahal", step="verifikasi",
                                       holder_role="admin", opened_at=later(5), due_at=None, step_due_at=None)
            await tx.add_event(old, at=later(5), actor="citizen", kind="opened", note="Pajak motor", data={"x": 1})
            await tx.update_case(old, state="closed", closed_at=later(30), outcome="rejected")
            await tx.add_event(old, at=later(30), actor="@admin:localhost", role="admin", kind="rejected",
                               note="Bukan kewenangan kami", data={"reason": "Bukan kewenangan kami"})
            await tx.hold_message(budi, old, {"channel": "telegram", "text": "ditahan"}, later(31))
            open_case = await tx.create_case(ticket=await ticket(tx), citizen_id=budi, channel="telegram",
                                             summary="Akta salah tulis", step="verifikasi", holder_role="admin",
                                             opened_at=later(40), due_at=later(100), step_due_at=later(50),
                                             linked_case_id=old)
            await tx.add_event(open_case, at=later(40), actor="citizen", kind="opened", to_step="verifikasi")
            await tx.hold_message(budi, open_case, {"channel": "telegram", "text": "menunggu jendela"}, later(41))
            await tx.conn.execute("UPDATE cases SET next_alert_at = ? WHERE id = ?", "2026-11-02T02:00:00.000000Z",
                                  open_case)
            # A link to a later case (update_case allows it): the copy must not depend on the order of ids.
            await tx.update_case(first, linked_case_id=open_case)

            # Eko only talks: a conversation, a message of no case, one released held message.
            await tx.set_conversation(eko, "guided", {"step": "nama", "answers": {"Nama": "Eko"}},
                                      at=later(2), expires_at=later(24 * 60))
            assert await tx.insert_inbound(InboundMessage("whatsapp", "wamid.in2", "6281100000015", later(2),
                                                          "text", "Halo, ini kantor Dukcapil?"), later(2))
            await tx.hold_message(eko, None, {"channel": "whatsapp", "text": "halo"}, later(3))
            await tx.release_held(eko, later(4))
            await tx.enqueue("channel.text", "whatsapp:6281100000015", {"channel": "whatsapp", "text": "Halo"},
                             at=later(3))
            await tx.apply_status(StatusUpdate("whatsapp", "wamid.early", "sent", later(3), ref="ref-1"))

            await tx.set_state("sync_token", "s72_1")
            assert await tx.mark_handled("$staff-event", later(5))
            await tx.save_cursor("telegram", "1001", later(6))
            assert await tx.take_lease("matrix-sync", "host:1:abc", now=later(6), seconds=15)
        async with store.transaction() as tx:
            assert await tx.purge_case(old, later(60 * 24 * 800))
            for e in await tx.case_events(old):
                await tx.clean_event(e["id"], *cleaned_event(e))
    finally:
        await store.close()
    path = media_path(db.parent / "media", "whatsapp", "media-1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PHOTO)


async def dump(store: Store) -> dict[str, list[dict]]:
    """Every row of every table, as stored (no datetimes made), in primary-key order."""
    async with store.reading() as tx:
        if tx.pg:
            keys = await tx.conn.fetch(
                "SELECT t.relname AS name, array_agg(a.attname ORDER BY k.n) AS pk FROM pg_index i"
                " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace"
                " CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
                " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
                " WHERE i.indisprimary AND s.nspname = current_schema() AND t.relname != 'schema_version'"
                " GROUP BY t.relname")
            pks = {r["name"]: list(r["pk"]) for r in keys}
        else:
            names = [r["name"] for r in await tx.conn.fetch(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")]
            pks = {t: [c["name"] for c in sorted(await tx.conn.fetch("SELECT name, pk FROM pragma_table_info(?)", t),
                                                 key=lambda c: c["pk"]) if c["pk"]] for t in names}
        return {t: await tx.conn.fetch(f"SELECT * FROM {t} ORDER BY {', '.join(pk)}") for t, pk in sorted(pks.items())}


async def row_counts(store: Store) -> dict[str, int]:
    return {t: len(rows) for t, rows in (await dump(store)).items()}


@pytest.fixture
async def office(tmp_path: Path) -> Path:
    db = tmp_path / "data" / "pengaduan.db"
    await make_office(db)
    return db


async def test_every_row_of_every_table_is_copied_as_it_was(office: Path, postgres_db: str, monkeypatch) -> None:
    monkeypatch.setattr("bridge.migrate_db.CHUNK", 2)      # tables of one chunk, of two exactly, of more
    source = await Store.open(office, create=False)
    target = await Store.open(postgres_db)
    try:
        before = await dump(source)
        empty = [t for t, r in before.items() if not r]
        assert not empty, f"tables with no row in the test's office (give them one): {empty}"
        done = await copy_database(source, target)
        after = await dump(target)
        assert after == before
        assert done.rows == {t: len(r) for t, r in before.items()}
        order = list(done.rows)         # each table after those it references
        assert order[:3] == ["citizens", "cases", "case_events"] and order.index("outbox") < order.index("deliveries")
        assert done.media_dir == office.parent / "media" and done.media_files == 1

        # What the office relies on, read back the store's way.
        async with target.reading() as tx:
            first = await tx.get_case_by_ticket("ADU-2026-000001")
            assert first["agenda_number"] == AGENDA and first["opened_at"] == T0
            assert [json.loads(e["data"] or "{}").get("agenda_number") for e in await tx.case_events(first["id"])] \
                == [None, AGENDA, None]
            assert (await tx.case_files(first["id"]))[0]["ref"] == "media-1"
            assert (await tx.get_case(first["linked_case_id"]))["ticket"] == "ADU-2026-000003"
            assert (await tx.get_case_by_ticket("ADU-2026-000002"))["purged_at"] is not None
            assert (await tx.rating_of(first["id"]))["comment"] == "Pelayanan cepat"
            assert await tx.get_state("sync_token") == "s72_1"
    finally:
        await source.close()
        await target.close()


async def test_the_copy_goes_on_where_the_office_stopped(office: Path, postgres_db: str) -> None:
    source = await Store.open(office, create=False)
    target = await Store.open(postgres_db)
    try:
        await copy_database(source, target)
        copied = await dump(target)
        async with target.transaction() as tx:
            assert await tx.next_in_sequence("ticket/2026") == 4          # the tickets go on, none given twice
            assert await tx.next_in_sequence("agenda/2026") == 2
            citizen = await tx.upsert_citizen("whatsapp", "6281100000099", name=None, user_id=None, at=later(900))
            case = await tx.create_case(ticket="ADU-2026-000004", citizen_id=citizen, channel="whatsapp",
                                        summary="baru", step="verifikasi", holder_role="admin",
                                        opened_at=later(900), due_at=None, step_due_at=None)
            event = await tx.add_event(case, at=later(900), actor="citizen", kind="opened")
            row = await tx.enqueue("channel.text", "whatsapp:6281100000099", {"text": "x"}, at=later(900))
            held = await tx.hold_message(citizen, case, {"text": "y"}, later(900))
        top = {t: max(r["id"] for r in copied[t])
               for t in ("citizens", "cases", "case_events", "outbox", "held_messages")}
        assert citizen == top["citizens"] + 1 and case == top["cases"] + 1 and event == top["case_events"] + 1
        assert row == top["outbox"] + 1 and held == top["held_messages"] + 1

        for sql in ("UPDATE case_events SET note = 'x' WHERE case_id = 1", "DELETE FROM case_events WHERE id = 1"):
            with pytest.raises(Exception, match="append-only"):
                async with target.transaction() as tx:
                    await tx.conn.execute(sql)
        with pytest.raises(Exception, match="only a closed case is purged"):
            async with target.transaction() as tx:
                await tx.conn.execute("UPDATE cases SET purged_at = NULL WHERE ticket = 'ADU-2026-000002'")

        # A second copy into the database, now in use, is refused and changes nothing.
        now = await dump(target)
        with pytest.raises(CannotCopy, match=r"already holds data \(in citizens, cases, case_events, .*\): "
                                             "a copy goes into an empty database only"):
            await copy_database(source, target)
        assert await dump(target) == now
    finally:
        await source.close()
        await target.close()


async def test_a_row_the_target_refuses_leaves_it_empty(office: Path, postgres_db: str) -> None:
    """One transaction: the tables copied before the failing one are not left behind."""
    with sqlite3.connect(office) as conn:          # SQLite keeps text in an INTEGER column; PostgreSQL will not
        conn.execute("UPDATE outbox SET attempts = 'many' WHERE id = 1")
    conn.close()
    source = await Store.open(office, create=False)
    target = await Store.open(postgres_db)
    try:
        with pytest.raises(CannotCopy, match="copying outbox failed, nothing was copied"):
            await copy_database(source, target)
        assert set((await row_counts(target)).values()) == {0}
    finally:
        await source.close()
        await target.close()


async def test_only_sqlite_into_postgresql_of_the_same_schema(office: Path, tmp_path: Path, postgres_db: str) -> None:
    source = await Store.open(office, create=False)
    target = await Store.open(postgres_db)
    other = await Store.open(tmp_path / "other" / "db.sqlite")
    try:
        with pytest.raises(CannotCopy, match="the source must be a SQLite database"):
            await copy_database(target, target)
        with pytest.raises(CannotCopy, match="the target must be a PostgreSQL database"):
            await copy_database(source, other)
        async with other.transaction() as tx:
            await tx.conn.execute("PRAGMA user_version = 9")       # as if made by older code
        with pytest.raises(CannotCopy, match=r"db.sqlite has schema 9, .* has \d+: both must be at the same version"):
            await copy_database(other, target)
        assert set((await row_counts(target)).values()) == {0}
    finally:
        for s in (source, target, other):
            await s.close()


def main_py(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python main.py ARGS`` as an operator's shell runs it: no secrets, only ``env``."""
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, cwd=ROOT)


def test_main_migrate_db_copies_and_says_what_to_change(office: Path, tmp_path: Path, postgres_db: str) -> None:
    config = config_with_database(tmp_path, office)
    url = postgres_db.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")   # trust: not asked for
    hidden = postgres_db.replace("postgresql://postgres@", "postgresql://postgres:***@")
    counts = asyncio.run(_counts(office))

    out = main_py("--config", str(config), "migrate-db", "--to", url)
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"Disalin dari {office} ke {hidden} (skema {counts.pop('version')}):"
    assert {f"  {t}: {n} baris" for t, n in counts.items()} <= set(lines)
    assert f"  media/: 1 berkas, tetap di {office.parent / 'media'} (tidak ada di basis data)" in lines
    assert f'  url = "{hidden}"   (*** = sandinya; atau DATABASE_URL di lingkungan)' in lines
    assert '  data_dir = "data"   (folder yang berisi media/)' in lines
    assert lines[-1].startswith("Bridge harus tetap berhenti sampai config.toml diubah")

    again = main_py("--config", str(config), "migrate-db", "--to", url)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.splitlines()[-1].startswith(
        f"error: migrate-db: {hidden} already holds data (in citizens, cases, ")
    assert "s3cret" not in again.stderr


def test_main_migrate_db_takes_database_url_as_its_target(office: Path, tmp_path: Path, postgres_db: str) -> None:
    config = config_with_database(tmp_path, office)
    out = main_py("--config", str(config), "migrate-db", env={"DATABASE_URL": postgres_db})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Disalin dari {office} ke {postgres_db} ")
    assert f'  url = "{postgres_db}"   (atau DATABASE_URL di lingkungan)' in out.stdout.splitlines()

    async def copied() -> int:
        target = await Store.open(postgres_db, create=False)
        try:
            return sum((await row_counts(target)).values())
        finally:
            await target.close()
    assert asyncio.run(copied()) == sum(v for k, v in asyncio.run(_counts(office)).items() if k != "version")


async def _counts(db: Path) -> dict[str, int]:
    store = await Store.open(db, create=False)
    try:
        return {**await row_counts(store), "version": await store.db.schema_version()}
    finally:
        await store.close()


def test_main_migrate_db_refuses_without_a_target_or_a_sqlite_source(tmp_path: Path) -> None:
    db = tmp_path / "data" / "pengaduan.db"
    config = config_with_database(tmp_path, db)
    out = main_py("--config", str(config), "migrate-db")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "error: migrate-db: give the PostgreSQL database, --to postgresql://..., or set DATABASE_URL\n"

    out = main_py("--config", str(config), "migrate-db", "--to", f"sqlite:///{tmp_path}/x.db")
    assert out.returncode == 2 and out.stderr.startswith("error: migrate-db: the target is a postgresql:// URL")

    out = main_py("--config", str(config), "migrate-db", "--to", "postgresql://u:pw@127.0.0.1:1/x")
    assert out.returncode == 2 and out.stderr == f"error: no database at {db}\n"     # none made either
    assert not db.exists()

    pg = tmp_path / "pg"
    pg.mkdir()
    (pg / "config.toml").write_text(config.read_text().replace(f'path = "{db}"',
                                                               'url = "postgresql://u:pw@127.0.0.1:1/x"'))
    out = main_py("--config", str(pg / "config.toml"), "migrate-db", "--to", "postgresql://u:pw@127.0.0.1:1/y")
    assert out.returncode == 2
    assert out.stderr == ("error: migrate-db copies the config's SQLite database ([database] path), "
                          "and this config's [database] url is PostgreSQL already\n")
