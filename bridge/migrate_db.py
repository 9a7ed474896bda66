"""``main.py migrate-db --to postgresql://...``: move an office's SQLite data into PostgreSQL.

The two schemas are the same by construction (bridge/migrations.py: one list for both), so
every table is copied as it is stored: value for value (times stay the text bridge.clock.ts
wrote, JSON stays its text), id for id, so tickets, agenda numbers, the audit trail and the
references between rows all mean what they meant. The copy is one transaction on the
target, checked (row counts, highest ids) before it commits: it is all there or, on any
failure, none of it. It goes into an empty database only, never merged into one in use.
The source is only read, in one consistent view.

The citizens' files are not in the database: they stay in ``media/`` beside the SQLite
file, and the PostgreSQL configuration's ``[database] data_dir`` must name the folder that
holds it. Leave it where it is: a file's path mostly follows from its row (bridge/retention.py
``media_path``), but an attachment whose delivery is unfinished keeps the absolute path of
its downloaded file in its progress (bridge/effects.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.db import Conn, PostgresDatabase, SQLiteDatabase
from bridge.store import MEDIA_DIR, Store

log = logging.getLogger(__name__)

CHUNK = 1000        # rows read and written at a time: an office's messages need not fit in memory at once


class CannotCopy(Exception):
    """The copy was refused, or failed; the target is as it was."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]            # its primary key
    self_refs: tuple[str, ...]      # columns referencing its own rows (cases.linked_case_id)


@dataclass(frozen=True)
class Copied:
    source: Path
    target: str                     # the URL without its password
    version: int
    rows: dict[str, int]            # per table, in the order copied
    media_dir: Path
    media_files: int

    def lines(self, config_dir: Path | None = None) -> list[str]:
        """What was copied, and what the office changes in config.toml (``config_dir``: the
        config's folder, for a data_dir relative to it as config.toml writes it)."""
        data_dir = self.media_dir.parent
        if config_dir is not None and data_dir.is_relative_to(config_dir):
            data_dir = data_dir.relative_to(config_dir)
        masked = ":***@" in self.target
        return [f"Disalin dari {self.source} ke {self.target} (skema {self.version}):",
                *(f"  {table}: {n} baris" for table, n in self.rows.items()),
                f"  {MEDIA_DIR}/: {self.media_files} berkas, tetap di {self.media_dir} (tidak ada di basis data)",
                "Ubah config.toml, bagian [database]: hapus path, lalu tulis",
                f'  url = "{self.target}"   ({"*** = sandinya; " if masked else ""}atau DATABASE_URL di lingkungan)',
                f'  data_dir = "{data_dir}"   (folder yang berisi {MEDIA_DIR}/)',
                f"Bridge harus tetap berhenti sampai config.toml diubah: yang ditulisnya ke {self.source.name} "
                "sesudah penyalinan tidak ikut tersalin."]


async def copy_database(source: Store, target: Store) -> Copied:
    """Copy every table of ``source`` (SQLite) into ``target`` (PostgreSQL, empty, same schema)."""
    if not isinstance(source.db, SQLiteDatabase) or source.path is None:
        raise CannotCopy("the source must be a SQLite database")
    if not isinstance(target.db, PostgresDatabase):
        raise CannotCopy("the target must be a PostgreSQL database")
    version, target_version = await source.db.schema_version(), await target.db.schema_version()
    if version != target_version:
        raise CannotCopy(f"{source.path} has schema {version}, {target.db.name} has {target_version}: "
                         "both must be at the same version (run this code's bridge on each once)")
    import asyncpg              # the target is PostgreSQL: it is installed
    rows: dict[str, int] = {}
    async with source.reading() as src, target.transaction() as dst:
        tables = await _tables(src.conn)
        await _check_target(dst.conn, tables, target.db.name)
        for t in tables:
            try:
                rows[t.name] = await _copy_table(src.conn, dst.conn, t)
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                raise CannotCopy(f"copying {t.name} failed, nothing was copied: {e}") from e
            log.info("migrate-db: %s: %d rows", t.name, rows[t.name])
        await _restart_identities(dst.conn)
        await _verify(src.conn, dst.conn, tables)
    media = source.path.parent / MEDIA_DIR
    files = sum(1 for p in media.rglob("*") if p.is_file()) if media.is_dir() else 0
    return Copied(source.path, target.db.name, version, rows, media, files)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _tables(src: Conn) -> list[Table]:
    """The source's tables, in an order that satisfies their foreign keys (a table after
    those it references; a reference to its own rows is set after its rows are in)."""
    names = [r["name"] for r in await src.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        " ORDER BY rowid")]                 # the order they were made in: citizens, cases, ...
    tables: dict[str, Table] = {}
    needs: dict[str, set[str]] = {}
    for name in names:
        info = await src.fetch("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid", name)
        fks = await src.fetch('SELECT "table", "from" FROM pragma_foreign_key_list(?)', name)
        tables[name] = Table(name, tuple(c["name"] for c in info),
                             tuple(c["name"] for c in sorted(info, key=lambda c: c["pk"]) if c["pk"]),
                             tuple(f["from"] for f in fks if f["table"] == name))
        needs[name] = {f["table"] for f in fks if f["table"] != name}
    order: list[str] = []

    def after_its_references(name: str, seen: frozenset[str]) -> None:
        if name in order:
            return
        if name in seen:
            raise CannotCopy(f"no order satisfies the foreign keys of {', '.join(sorted(seen))}")
        for other in sorted(needs[name]):
            if other not in tables:
                raise CannotCopy(f"{name} references {other}, which is not in the source")
            after_its_references(other, seen | {name})
        order.append(name)
    for name in names:
        after_its_references(name, frozenset())
    return [tables[t] for t in order]


async def _check_target(dst: Conn, tables: list[Table], name: str) -> None:
    """The target has the source's tables and columns, and no row in any of them."""
    found: dict[str, set[str]] = {}
    for r in await dst.fetch("SELECT c.table_name, c.column_name FROM information_schema.columns c"
                             " JOIN information_schema.tables t USING (table_schema, table_name)"
                             " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
                             " AND c.table_name != 'schema_version'"):
        found.setdefault(r["table_name"], set()).add(r["column_name"])
    source = {t.name: set(t.columns) for t in tables}
    differ = [f"{t}: only in SQLite: {', '.join(sorted(cols - found[t])) or '-'};"
              f" only in PostgreSQL: {', '.join(sorted(found[t] - cols)) or '-'}"
              for t, cols in source.items() if t in found and cols != found[t]]
    differ += [f"table {t} only in SQLite" for t in sorted(set(source) - set(found))]
    differ += [f"table {t} only in PostgreSQL" for t in sorted(set(found) - set(source))]
    if differ:
        raise CannotCopy("the schemas differ: " + "; ".join(differ))
    # No other writer until this transaction ends (readers go on): the emptiness seen holds.
    await dst.execute(f"LOCK TABLE {', '.join(_quote(t.name) for t in tables)} IN EXCLUSIVE MODE")
    full = [t.name for t in tables if await dst.fetchval(f"SELECT EXISTS (SELECT 1 FROM {_quote(t.name)})")]
    if full:
        raise CannotCopy(f"{name} already holds data (in {', '.join(full)}): a copy goes into an empty "
                         "database only, never into one in use")


async def _copy_table(src: Conn, dst: Conn, t: Table) -> int:
    """The rows of ``t`` in rowid order, a chunk at a time; the number copied."""
    cols = ", ".join(_quote(c) for c in t.columns)
    insert = f"INSERT INTO {_quote(t.name)} ({cols}) VALUES ({', '.join('?' for _ in t.columns)})"
    refs = [t.columns.index(c) for c in t.self_refs]
    keys = [t.columns.index(c) for c in t.key]
    if refs and not keys:
        raise CannotCopy(f"{t.name} references its own rows but has no primary key to set them by")
    later: list[list[Any]] = []      # (self references..., key...) set once every row is in
    last, n = -2**63, 0               # rowids are 64-bit integers: every one is above the least
    while chunk := await src.fetch(f'SELECT rowid AS "_rowid", {cols} FROM {_quote(t.name)}'
                                   ' WHERE rowid > ? ORDER BY rowid LIMIT ?', last, CHUNK):
        values = [[r[c] for c in t.columns] for r in chunk]
        for v in values:
            if any(v[i] is not None for i in refs):
                later.append([v[i] for i in refs] + [v[i] for i in keys])
                for i in refs:
                    v[i] = None
        await dst.executemany(insert, values)
        last, n = chunk[-1]["_rowid"], n + len(chunk)
    if later:
        await dst.executemany(f"UPDATE {_quote(t.name)} SET {', '.join(f'{_quote(c)} = ?' for c in t.self_refs)}"
                              f" WHERE {' AND '.join(f'{_quote(c)} = ?' for c in t.key)}", later)
    return n


async def _restart_identities(dst: Conn) -> None:
    """Each identity column's sequence goes on after the highest id copied: the next case,
    event or message gets a new id, not one of the copied ones."""
    for r in await dst.fetch("SELECT table_name, column_name FROM information_schema.columns"
                             " WHERE table_schema = current_schema() AND is_identity = 'YES'"):
        table, column = _quote(r["table_name"]), _quote(r["column_name"])
        await dst.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max({column}), 0) + 1, false)"
                          f" FROM {table}", table, r["column_name"])


async def _verify(src: Conn, dst: Conn, tables: list[Table]) -> None:
    """Per table the same number of rows, and the same highest id, on both sides (before
    the target commits: a difference leaves it empty)."""
    for t in tables:
        what = f"count(*) AS n{', max(id) AS top' if 'id' in t.columns else ''} FROM {_quote(t.name)}"
        a, b = await src.fetchrow(f"SELECT {what}"), await dst.fetchrow(f"SELECT {what}")
        if a != b:
            raise CannotCopy(f"{t.name}: the copy does not match its source ({b} copied of {a}); nothing was copied")
