"""The bridge's storage: the only module that speaks SQL.

The database is SQLite (a file: bridge.db.SQLiteDatabase, one writer under a lock, one
WAL reader) or PostgreSQL (bridge.db.PostgresDatabase, a pool), as ``Store.open`` is told
by a path or a URL. Its statements run on a bridge.db.Conn and are written once for both;
where the two dialects differ (JSON, a list passed as one parameter, a purged row's new
key) a ``Tx`` helper gives each its own words. Callers use ``async with
store.transaction() as tx`` or ``async with store.reading() as tx`` and call the query
methods of ``Tx``; nothing above this module knows which database it talks to. Rows come
back as dicts of typed values: times are aware datetimes (stored as text in the
fixed-width UTC form of bridge.clock.ts on both, so that text order is time order and the
SQL stays one). Neither context nests in one task (each holds its lock): finish one
before opening the next.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import sqlite3
import stat
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Sequence

from bridge.channels.base import STATUS_ORDER, InboundMessage, StatusUpdate
from bridge.clock import parse_ts, ts
from bridge.db import (POSTGRESQL, SQLITE, Conn, Database, DatabaseUnavailable, PostgresDatabase, SQLiteConn,
                       SQLiteDatabase, SQLiteHereConn, parse_url)
from bridge.migrations import UPGRADES

log = logging.getLogger(__name__)

Row = dict[str, Any]

# The SLA check's read: a range on the partial index cases_next_alert, whatever the number of open cases.
DUE_FOR_ALERT = ("SELECT * FROM cases WHERE next_alert_at IS NOT NULL AND next_alert_at <= ?"
                 " ORDER BY next_alert_at LIMIT ?")


MEDIA_DIR = "media"     # beside the database: the citizens' files (bridge/effects.py keeps them there)


class NoDatabase(Exception):
    """``Store.open(where, create=False)``: no database there, or not one this code reads;
    and on PostgreSQL, a server that cannot be reached or refuses us (either way)."""


class Store:
    def __init__(self, path: Path | None, db: SQLiteDatabase | PostgresDatabase) -> None:
        self.path = path            # the SQLite file; None on PostgreSQL
        self.db = db

    @classmethod
    async def open(cls, where: Path | str, *, create: bool = True) -> "Store":
        """The database ``where`` says: a SQLite file's path (or a ``sqlite:///`` URL), made
        with its folder, or a ``postgresql://`` URL (the database must exist); upgraded to
        the latest schema.

        ``create=False`` is for the shell's read commands (case, export): the database must
        exist and have the latest schema (``NoDatabase`` otherwise); it is opened read-only
        and nothing is written, so a command run against the wrong config changes nothing."""
        dialect, target = parse_url(where) if isinstance(where, str) and "://" in where else (SQLITE, str(where))
        path = Path(target) if dialect != POSTGRESQL else None
        if not create:
            return await cls._open_existing(path, target)
        db: SQLiteDatabase | PostgresDatabase
        if path is None:
            db = await _postgresql(target)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _owner_only(path)
            db = await SQLiteDatabase.open(path)
        try:
            await _migrate(db)
        except BaseException:
            await db.close()           # not left to the garbage collector, at a moment of its choosing
            raise
        return cls(path, db)

    @classmethod
    async def _open_existing(cls, path: Path | None, target: str) -> "Store":
        db: SQLiteDatabase | PostgresDatabase
        if path is None:
            db = await _postgresql(target, read_only=True)       # every transaction read-only
            where = db.name
        else:
            if not path.is_file():
                raise NoDatabase(f"no database at {path}")
            db = await SQLiteDatabase.open(path, read_only=True)      # a transaction on it fails: read-only
            where = str(path)
        try:
            current = await db.schema_version()
        except BaseException:
            await db.close()
            raise
        if current != max(UPGRADES):
            await db.close()
            raise NoDatabase(f"{where} has schema {current}, this code reads {max(UPGRADES)}"
                             + (": start the bridge once to upgrade it" if current < max(UPGRADES) else ""))
        return cls(path, db)

    async def close(self) -> None:
        await self.db.close()

    @property
    def shared(self) -> bool:
        """Whether other bridge processes may use this database too (PostgreSQL): then each
        piece of work is claimed before it is done (``try_lock``, ``Tx.claim``)."""
        return self.db.shared

    async def try_lock(self, key: str) -> bool:
        """Claim ``key`` across processes until ``unlock`` (or this process's end): False while
        another process holds it. On SQLite, one process: always True."""
        return await self.db.try_lock(key)

    async def unlock(self, key: str) -> None:
        await self.db.unlock(key)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator["Tx"]:
        """One atomic unit of work; commits on success, rolls back on any exception."""
        _not_within(self, "transaction")
        async with self.db.transaction() as conn:
            with _holding(self, "transaction"):
                yield Tx(conn, writing=True)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator["Tx"]:
        """A consistent read-only view of committed data."""
        _not_within(self, "reading")
        async with self.db.reading() as conn:
            with _holding(self, "reading"):
                yield Tx(conn)

    async def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database file and empty it (TRUNCATE), so that
        earlier page images (of purged rows, say) leave the -wal file too. False when a
        reader of another process kept it from finishing (the next one will). PostgreSQL
        recycles its own log: nothing to do there."""
        return await self.db.checkpoint()

    async def vacuum(self) -> None:
        """Rebuild the file (``purge --vacuum``): no free page keeps anything written before
        ``secure_delete`` was on. Holds the write lock for as long as it takes. On
        PostgreSQL a plain VACUUM, which frees the dead rows' space for reuse."""
        await self.db.vacuum()


def _outbox_row(row: Row) -> Row:
    """An outbox row with its payload and progress parsed (progress {} when none)."""
    row["payload"] = json.loads(row["payload"])
    row["progress"] = json.loads(row["progress"]) if row["progress"] else {}
    return row


async def _postgresql(url: str, *, read_only: bool = False) -> PostgresDatabase:
    try:
        return await PostgresDatabase.open(url, read_only=read_only)
    except DatabaseUnavailable as e:
        raise NoDatabase(str(e)) from None


# What the current task holds open, by store: one more of the same in it would wait for itself.
_HELD: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar("store_held",
                                                                                  default=frozenset())


def _not_within(store: "Store", what: str) -> None:
    if (id(store), what) in _HELD.get():
        raise RuntimeError(f"store.{what}() inside another in the same task would wait for itself forever: "
                           "read what is needed first, then open the next one")


@contextmanager
def _holding(store: "Store", what: str) -> Iterator[None]:
    token = _HELD.set(_HELD.get() | {(id(store), what)})
    try:
        yield
    finally:
        _HELD.reset(token)


def _owner_only(path: Path) -> None:
    """The database and the media folder beside it readable by their owner only: the file
    made 0600 before SQLite opens it (SQLite gives its -wal and -shm the database's mode),
    the folder 0700; found wider (a database from before), they are narrowed."""
    if not path.exists():
        # An empty file is a new database to SQLite; made here so that it is never wider.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    media = path.parent / MEDIA_DIR
    media.mkdir(mode=0o700, exist_ok=True)
    for p, mode in ((path, 0o600), (Path(f"{path}-wal"), 0o600), (Path(f"{path}-shm"), 0o600), (media, 0o700)):
        try:
            if stat.S_IMODE(p.stat().st_mode) != mode:
                p.chmod(mode)
                log.info("database: %s made readable by its owner only (%o)", p, mode)
        except FileNotFoundError:      # no such file (yet, or any more: SQLite removes -wal and -shm)
            pass
        except PermissionError:
            log.warning("database: cannot make %s readable by its owner only: not its owner", p)


async def _migrate(db: Database) -> None:
    current = await db.schema_version()
    latest = max(UPGRADES)
    if current > latest:
        raise RuntimeError(f"database schema {current} is newer than this code knows ({latest})")
    for version in range(current + 1, latest + 1):
        log.info("database: upgrading schema to version %d", version)
        await db.upgrade(version, UPGRADES[version])


# -- plain sqlite3: a few statements for all of the webhooks' messages (Tx.insert_inbound_many).
_INBOUND_ROWS = 500        # rows of one statement below: 7 parameters each, far under SQLite's 32,766


def _insert_inbound(conn: sqlite3.Connection, items: Sequence[tuple[InboundMessage, datetime]]) -> set[tuple[str, str]]:
    """Insert the messages not seen before, a few statements for all of them (not one a row:
    each step lets go of the GIL and must get it back); returns the keys stored now."""
    new: set[tuple[str, str]] = set()
    for i in range(0, len(items), _INBOUND_ROWS):
        chunk = items[i:i + _INBOUND_ROWS]
        keys = [(m.channel, m.external_id) for m, _ in chunk]
        known = {(r[0], r[1]) for r in conn.execute(
            "SELECT i.channel, i.external_id FROM (VALUES " + ", ".join(["(?, ?)"] * len(keys)) + ") AS k"
            " JOIN inbound i ON i.channel = k.column1 AND i.external_id = k.column2", [v for k in keys for v in k])}
        conn.execute(
            "INSERT INTO inbound (channel, external_id, address, kind, sent_at, received_at, message) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)) + " ON CONFLICT (channel, external_id) DO NOTHING",
            [v for m, at in chunk for v in (m.channel, m.external_id, m.address, m.kind, ts(m.at), ts(at),
                                            m.to_json())])
        new.update(k for k in keys if k not in known)
    return new


# Times are stored as text (bridge.clock.ts: UTC, fixed width, so text order is time order)
# and cross this module's boundary as aware datetimes: every column named "at", "*_at" or
# "waiting_since" (and any result column so named) is read back as one.
def _is_time(column: str) -> bool:
    return column == "at" or column.endswith("_at") or column == "waiting_since"


def _typed(row: Row | None) -> Row | None:
    if row is not None:
        for c, v in row.items():
            if v is not None and _is_time(c):
                row[c] = parse_ts(v)
    return row


class Tx:
    """The queries, run on the connection of one transaction (or read view): a
    bridge.db.Conn, so that the same SQL can serve SQLite and PostgreSQL."""

    def __init__(self, conn: Conn, *, writing: bool = False) -> None:
        self.conn = conn
        self.pg = conn.dialect == POSTGRESQL
        # On PostgreSQL transactions run side by side (READ COMMITTED): a transaction that
        # reads a case to change it locks its row, so that another one changing the same
        # case waits for it, as every write transaction waits for the one before on SQLite.
        self._for_update = " FOR UPDATE" if self.pg and writing else ""

    # -- where the two dialects differ ---------------------------------------------------
    def _json(self, column: str, *path: str) -> str:
        """The value at ``path`` (keys) in a column of JSON text, as text (NULL: not there)."""
        if self.pg:
            return f"({column}::jsonb #>> '{{{','.join(path)}}}')"
        return f"json_extract({column}, '$.{'.'.join(path)}')"

    def _each(self, param: str, *, integers: bool = False) -> str:
        """A query of the values of a JSON list given as the parameter ``param`` (``?``, ``?3``):
        ``x IN {self._each('?')}``."""
        if self.pg:
            return f"(SELECT value{'::integer' if integers else ''} FROM jsonb_array_elements_text({param}::jsonb))"
        return f"(SELECT value FROM json_each({param}))"

    def _greatest(self, a: str, b: str) -> str:
        return f"greatest({a}, {b})" if self.pg else f"max({a}, {b})"

    async def _one(self, sql: str, *args: Any) -> Row | None:
        return _typed(await self.conn.fetchrow(sql, *args))

    async def _all(self, sql: str, *args: Any) -> list[Row]:
        rows = await self.conn.fetch(sql, *args)
        if rows:
            times = [c for c in rows[0] if _is_time(c)]
            for r in rows:
                for c in times:
                    if r[c] is not None:
                        r[c] = parse_ts(r[c])
        return rows

    async def _insert(self, sql: str, *args: Any) -> int:
        """An INSERT of one row; its id."""
        return await self.conn.fetchval(sql + " RETURNING id", *args)

    # -- claims across processes (PostgreSQL) ---------------------------------------------
    async def claim(self, key: str) -> bool:
        """Claim ``key`` until this transaction ends: False while another process's
        transaction holds it. On SQLite every write transaction is alone: always True."""
        return not self.pg or await self.conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0))",
                                                       key)

    async def wait_for(self, key: str) -> None:
        """Hold ``key`` until this transaction ends, waiting while another transaction holds
        it (SQLite: every write transaction is alone already)."""
        if self.pg:
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", key)

    # -- inbound ---------------------------------------------------------------------
    async def inbound_state(self, inbound_id: int) -> str | None:
        return await self.conn.fetchval("SELECT state FROM inbound WHERE id = ?", inbound_id)

    async def outbox_head(self, target: str) -> Row | None:
        """The target's first pending row (the one to deliver next), as due_outbox gives it."""
        row = await self._one("SELECT * FROM outbox WHERE state = 'pending' AND target = ? ORDER BY id LIMIT 1",
                              target)
        return _outbox_row(row) if row is not None else None

    async def insert_inbound(self, msg: InboundMessage, received_at: datetime) -> bool:
        """Store one inbound message; False when (channel, external id) was seen before."""
        return await self.conn.execute(
            "INSERT INTO inbound (channel, external_id, address, kind, sent_at, received_at, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, external_id) DO NOTHING",
            msg.channel, msg.external_id, msg.address, msg.kind, ts(msg.at), ts(received_at),
            msg.to_json(),
        ) == 1

    async def insert_inbound_many(self, items: Sequence[tuple[InboundMessage, datetime]]) -> set[tuple[str, str]]:
        """Store inbound messages (each with when it arrived); returns the (channel, external
        id) stored now, the others were seen before. One statement for the whole batch on
        PostgreSQL; on SQLite a few statements for all of them, at once on the event loop's
        connection (or in one hop to the writer's thread, when it has the transaction)."""
        if isinstance(self.conn, SQLiteHereConn):
            return _insert_inbound(self.conn.db, items)
        if isinstance(self.conn, SQLiteConn):
            return await self.conn.db._execute(_insert_inbound, self.conn.db._conn, items)
        rows = await self.conn.fetch(
            "INSERT INTO inbound (channel, external_id, address, kind, sent_at, received_at, message)"
            " SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])"
            " ON CONFLICT (channel, external_id) DO NOTHING RETURNING channel, external_id",
            *map(list, zip(*[(m.channel, m.external_id, m.address, m.kind, ts(m.at), ts(at),
                              m.to_json()) for m, at in items])))
        return {(r["channel"], r["external_id"]) for r in rows}

    async def save_cursor(self, channel: str, position: str, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO channel_cursors (channel, position, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (channel) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            channel, position, ts(at))

    async def get_cursor(self, channel: str) -> tuple[str, datetime] | None:
        """The stored position and when it was stored."""
        row = await self._one("SELECT position, updated_at FROM channel_cursors WHERE channel = ?", channel)
        return (row["position"], row["updated_at"]) if row else None

    async def pending_inbound(self, limit: int = 100) -> list[tuple[int, InboundMessage]]:
        rows = await self._all(
            "SELECT id, message FROM inbound WHERE state = 'new' ORDER BY id LIMIT ?", limit)
        return [(r["id"], InboundMessage.from_json(r["message"])) for r in rows]

    async def inbound_attempt_failed(self, inbound_id: int, error: str, *, max_attempts: int) -> int:
        """Count a failed processing of a stored message; at ``max_attempts`` it is set aside
        (state 'failed'). Returns the attempts so far."""
        row = await self._one(
            "UPDATE inbound SET attempts = attempts + 1, last_error = ?,"
            " state = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE state END"
            " WHERE id = ? AND state = 'new' RETURNING attempts", error[:500], max_attempts, inbound_id)
        return row["attempts"] if row else 0

    async def failed_inbound_count(self) -> int:
        return (await self._one("SELECT count(*) AS n FROM inbound WHERE state = 'failed'"))["n"]

    async def finish_inbound(self, inbound_id: int, *, case_id: int | None, state: str = "done") -> None:
        await self.conn.execute("UPDATE inbound SET state = ?, case_id = ? WHERE id = ?",
                                state, case_id, inbound_id)

    async def link_inbound(self, channel: str, external_ids: Sequence[str], case_id: int) -> None:
        """The messages a complaint was made of (the conversation's, its evidence) belong to its case."""
        await self.conn.executemany("UPDATE inbound SET case_id = ? WHERE channel = ? AND external_id = ?",
                                    [(case_id, channel, e) for e in external_ids])

    async def case_messages(self, case_id: int) -> list[tuple[int, InboundMessage]]:
        rows = await self._all("SELECT id, message FROM inbound WHERE case_id = ? ORDER BY id", case_id)
        return [(r["id"], InboundMessage.from_json(r["message"])) for r in rows]

    # -- citizens --------------------------------------------------------------------
    async def upsert_citizen(self, channel: str, address: str, *, name: str | None,
                             user_id: str | None, at: datetime, username: str | None = None) -> int:
        """The citizen of a message, made or brought up to date. One person is one citizen:
        one known by a business-scoped user id who now comes with a number as well (or
        the other way round) keeps their row, now keyed on the number."""
        if user_id and user_id != address:
            known = await self._one("SELECT id, address FROM citizens WHERE channel = ? AND address = ?",
                                    channel, address)
            by_user = await self._one("SELECT id, address FROM citizens WHERE channel = ? AND user_id = ?"
                                      " ORDER BY id LIMIT 1", channel, user_id)
            if known is None and by_user is not None and by_user["address"] == user_id:
                await self.conn.execute("UPDATE citizens SET address = ? WHERE id = ?", address, by_user["id"])
        row = await self._one(
            "INSERT INTO citizens (channel, address, name, user_id, username, created_at, last_inbound_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, address) DO UPDATE SET"
            "   name = coalesce(excluded.name, citizens.name), user_id = coalesce(excluded.user_id, citizens.user_id),"
            "   username = coalesce(excluded.username, citizens.username),"
            "   last_inbound_at = "
            + self._greatest("coalesce(citizens.last_inbound_at, '')", "excluded.last_inbound_at") +
            " RETURNING id",
            channel, address, name, user_id, username, ts(at), ts(at))
        return row["id"]

    async def relink_citizen(self, channel: str, old: str, *, address: str | None = None,
                             user_id: str | None = None) -> bool:
        """A citizen changed number or user id (a system message): the same person, new keys."""
        return await self.conn.execute(
                "UPDATE citizens SET address = coalesce(?, address), user_id = coalesce(?, user_id)"
                " WHERE channel = ? AND (address = ? OR user_id = ?)"
                " AND NOT EXISTS (SELECT 1 FROM citizens c2 WHERE c2.channel = ? AND c2.address = ?)",
                address, user_id, channel, old, old, channel, address or "") >= 1

    async def citizen_by_address(self, channel: str, address: str) -> Row | None:
        return await self._one("SELECT * FROM citizens WHERE channel = ? AND address = ?", channel, address)

    async def get_citizen(self, citizen_id: int) -> Row | None:
        return await self._one("SELECT * FROM citizens WHERE id = ?", citizen_id)

    # -- sequences -------------------------------------------------------------------
    async def next_in_sequence(self, name: str) -> int:
        """The next number of a gapless sequence; the transaction makes it unique."""
        row = await self._one(
            "INSERT INTO sequences (name, value) VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET value = sequences.value + 1 RETURNING value", name)
        return row["value"]

    # -- cases -----------------------------------------------------------------------
    async def open_case_of(self, citizen_id: int) -> Row | None:
        """The citizen's newest open case."""
        return await self._one("SELECT * FROM cases WHERE citizen_id = ? AND state != 'closed'"
                               f" ORDER BY id DESC LIMIT 1{self._for_update}", citizen_id)

    async def open_cases_of(self, citizen_id: int) -> list[Row]:
        """The citizen's open cases, newest first."""
        return await self._all("SELECT * FROM cases WHERE citizen_id = ? AND state != 'closed'"
                               f" ORDER BY id DESC{self._for_update}", citizen_id)

    async def case_of_message(self, channel: str, external_id: str) -> int | None:
        """The case a message belongs to: one the citizen sent, or one we sent them."""
        row = await self._one(
            "SELECT case_id FROM inbound WHERE channel = ? AND external_id = ? AND case_id IS NOT NULL"
            " UNION ALL SELECT case_id FROM deliveries WHERE channel = ? AND external_id = ? AND case_id IS NOT NULL"
            " LIMIT 1", channel, external_id, channel, external_id)
        return row["case_id"] if row else None

    # -- the citizen's conversation ------------------------------------------------------
    async def get_conversation(self, citizen_id: int) -> Row | None:
        row = await self._one("SELECT * FROM conversations WHERE citizen_id = ?", citizen_id)
        if row:
            row["data"] = json.loads(row["data"])
        return row

    async def set_conversation(self, citizen_id: int, state: str, data: dict[str, Any], *, at: datetime,
                               expires_at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO conversations (citizen_id, state, data, updated_at, expires_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (citizen_id) DO UPDATE SET state = excluded.state, data = excluded.data,"
            " updated_at = excluded.updated_at, expires_at = excluded.expires_at",
            citizen_id, state, json.dumps(data, ensure_ascii=False), ts(at), ts(expires_at))

    async def end_conversation(self, citizen_id: int) -> None:
        await self.conn.execute("DELETE FROM conversations WHERE citizen_id = ?", citizen_id)

    async def expired_conversations(self, now: datetime, limit: int = 100) -> list[Row]:
        rows = await self._all("SELECT * FROM conversations WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
                               ts(now), limit)
        for r in rows:
            r["data"] = json.loads(r["data"])
        return rows

    async def end_conversation_if(self, citizen_id: int, updated_at: datetime) -> bool:
        """End a conversation unless it moved since ``updated_at`` (the expiry's claim)."""
        return await self.conn.execute("DELETE FROM conversations WHERE citizen_id = ? AND updated_at = ?",
                                       citizen_id, ts(updated_at)) == 1

    # -- messages waiting for the 24-hour window ---------------------------------------
    async def hold_message(self, citizen_id: int, case_id: int | None, payload: dict[str, Any],
                           at: datetime) -> int:
        return await self._insert(
            "INSERT INTO held_messages (citizen_id, case_id, payload, held_at) VALUES (?, ?, ?, ?)",
            citizen_id, case_id, json.dumps(payload, ensure_ascii=False), ts(at))

    async def release_held(self, citizen_id: int, at: datetime) -> list[Row]:
        """The citizen's held messages, in order, marked released (their window is open)."""
        rows = await self._all(
            "UPDATE held_messages SET released_at = ? WHERE citizen_id = ? AND released_at IS NULL RETURNING *",
            ts(at), citizen_id)
        rows.sort(key=lambda r: r["id"])
        for r in rows:
            r["payload"] = json.loads(r["payload"])
        return rows

    async def answer_on_its_way(self, case_id: int) -> bool:
        """An answer of the case waits for the window, or to be sent."""
        purpose = self._json("payload", "purpose")
        row = await self._one(
            "SELECT (SELECT count(*) FROM held_messages WHERE case_id = ? AND released_at IS NULL"
            f"        AND {purpose} = 'answer')"
            " + (SELECT count(*) FROM outbox WHERE case_id = ? AND kind = 'channel.text' AND state = 'pending'"
            f"        AND {purpose} = 'answer') AS n", case_id, case_id)
        return row["n"] > 0

    # -- ratings ---------------------------------------------------------------------
    async def rate(self, case_id: int, score: int, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO ratings (case_id, score, rated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (case_id) DO UPDATE SET score = excluded.score, rated_at = excluded.rated_at",
            case_id, score, ts(at))

    async def rating_comment(self, case_id: int, comment: str) -> None:
        await self.conn.execute("UPDATE ratings SET comment = ? WHERE case_id = ?", comment[:1000], case_id)

    async def ratings_between(self, start: datetime, end: datetime) -> list[Row]:
        return await self._all("SELECT * FROM ratings WHERE rated_at >= ? AND rated_at < ? ORDER BY rated_at",
                               ts(start), ts(end))

    async def ratings_of_cases_opened_between(self, start: datetime, end: datetime) -> dict[int, Row]:
        rows = await self._all("SELECT r.* FROM ratings r JOIN cases c ON c.id = r.case_id"
                               " WHERE c.opened_at >= ? AND c.opened_at < ?", ts(start), ts(end))
        return {r["case_id"]: r for r in rows}

    async def create_case(self, *, ticket: str, citizen_id: int, channel: str, summary: str,
                          step: str, holder_role: str, opened_at: datetime,
                          due_at: datetime | None, step_due_at: datetime | None,
                          category: str | None = None, linked_case_id: int | None = None) -> int:
        return await self._insert(
            "INSERT INTO cases (ticket, citizen_id, channel, category, summary, step, holder_role,"
            " opened_at, step_entered_at, due_at, step_due_at, linked_case_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ticket, citizen_id, channel, category, summary, step, holder_role, ts(opened_at),
            ts(opened_at), ts(due_at) if due_at else None, ts(step_due_at) if step_due_at else None,
            linked_case_id)

    async def get_case(self, case_id: int) -> Row | None:
        return await self._one(f"SELECT * FROM cases WHERE id = ?{self._for_update}", case_id)

    async def get_case_by_ticket(self, ticket: str) -> Row | None:
        return await self._one(f"SELECT * FROM cases WHERE ticket = ?{self._for_update}", ticket)

    _CASE_FIELDS = frozenset({
        "category", "state", "step", "holder_role", "assignee", "answer_draft", "approved_by",
        "approved_at", "approved_role", "agenda_number", "outcome", "step_entered_at", "due_at",
        "step_due_at", "closed_at", "linked_case_id", "unit", "waiting_since", "answered_at",
        "step_warn_at", "warn_at", "step_alerts", "total_alerts", "next_alert_at", "answer_sent_at", "drafted_by",
        "citizen_name", "nik", "nik_problem", "confidential"})

    async def update_case(self, case_id: int, **fields: Any) -> None:
        unknown = set(fields) - self._CASE_FIELDS
        if unknown:
            raise ValueError(f"not case fields: {unknown}")
        values = [ts(v) if isinstance(v, datetime) else v for v in fields.values()]
        await self.conn.execute(f"UPDATE cases SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                                *values, case_id)

    async def last_answered_case_of(self, citizen_id: int, since: datetime) -> Row | None:
        return await self._one(
            "SELECT * FROM cases WHERE citizen_id = ? AND state = 'closed' AND answered_at >= ?"
            " ORDER BY answered_at DESC LIMIT 1", citizen_id, ts(since))

    async def open_cases_held_by(self, role: str | None, unit: str | None) -> list[Row]:
        """Open cases of a role (None: every role), soonest step deadline first."""
        return await self._all(
            "SELECT * FROM cases WHERE state != 'closed' AND (CAST(? AS TEXT) IS NULL OR holder_role = ?)"
            " AND (CAST(? AS TEXT) IS NULL OR unit = ?) ORDER BY step_due_at, id LIMIT 200", role, role, unit, unit)

    async def cases_due_for_alert(self, now: datetime, limit: int = 500) -> list[Row]:
        """Open cases whose next SLA alert is due: one range read on cases_next_alert."""
        return await self._all(DUE_FOR_ALERT, ts(now), limit)

    async def raise_alert_level(self, case_id: int, scope: str, old: int, new: int) -> bool:
        """Claim an alert: only one check (or process) moves a level, so each alert goes once."""
        column = {"step": "step_alerts", "total": "total_alerts"}[scope]
        return await self.conn.execute(f"UPDATE cases SET {column} = ? WHERE id = ? AND {column} = ?",
                                       new, case_id, old) == 1

    # -- reports ---------------------------------------------------------------------
    async def count_opened(self, start: datetime, end: datetime) -> int:
        row = await self._one("SELECT count(*) AS n FROM cases WHERE opened_at >= ? AND opened_at < ?",
                              ts(start), ts(end))
        return row["n"]

    async def cases_opened_between(self, start: datetime, end: datetime) -> list[Row]:
        """The cases received in [start, end), by ticket (the monthly export)."""
        return await self._all("SELECT * FROM cases WHERE opened_at >= ? AND opened_at < ? ORDER BY ticket",
                               ts(start), ts(end))

    async def events_of_cases_opened_between(self, start: datetime, end: datetime) -> list[Row]:
        """Every event of the cases received in [start, end), in order per case."""
        return await self._all(
            "SELECT e.* FROM case_events e JOIN cases c ON c.id = e.case_id"
            " WHERE c.opened_at >= ? AND c.opened_at < ? ORDER BY e.case_id, e.id", ts(start), ts(end))

    async def closed_between(self, start: datetime, end: datetime) -> list[Row]:
        return await self._all("SELECT * FROM cases WHERE closed_at >= ? AND closed_at < ? ORDER BY closed_at",
                               ts(start), ts(end))

    async def open_counts(self) -> list[Row]:
        return await self._all("SELECT step, holder_role, state, count(*) AS n,"
                               " sum(CASE WHEN step_alerts >= 2 OR total_alerts >= 2 THEN 1 ELSE 0 END) AS breached"
                               " FROM cases WHERE state != 'closed' GROUP BY step, holder_role, state")

    async def counts_by(self, table: str, column: str) -> dict[str, int]:
        """Row counts of cases or inbound by channel (for /metrics)."""
        assert (table, column) in (("cases", "channel"), ("inbound", "channel"))
        rows = await self._all(f"SELECT {column} AS k, count(*) AS n FROM {table} GROUP BY {column}")
        return {r["k"]: r["n"] for r in rows}

    async def count_events(self, kind_like: str) -> int:
        row = await self._one("SELECT count(*) AS n FROM case_events WHERE kind LIKE ?", kind_like)
        return row["n"]

    async def oldest_open(self, limit: int) -> list[Row]:
        return await self._all("SELECT * FROM cases WHERE state != 'closed' ORDER BY opened_at LIMIT ?", limit)

    async def events_of_cases_active_between(self, start: datetime, end: datetime) -> list[Row]:
        """Every event of the cases that had an event in the window, in order per case."""
        return await self._all(
            "SELECT * FROM case_events WHERE case_id IN"
            " (SELECT DISTINCT case_id FROM case_events WHERE at >= ? AND at < ?) ORDER BY case_id, id",
            ts(start), ts(end))

    async def add_event(self, case_id: int, *, at: datetime, actor: str, kind: str,
                        role: str | None = None, from_step: str | None = None,
                        to_step: str | None = None, note: str | None = None,
                        data: dict[str, Any] | None = None) -> int:
        return await self._insert(
            "INSERT INTO case_events (case_id, at, actor, role, kind, from_step, to_step, note, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            case_id, ts(at), actor, role, kind, from_step, to_step, note,
            json.dumps(data, ensure_ascii=False) if data else None)

    async def case_events(self, case_id: int) -> list[Row]:
        return await self._all("SELECT * FROM case_events WHERE case_id = ? ORDER BY id", case_id)

    # -- outbox ----------------------------------------------------------------------
    async def enqueue(self, kind: str, target: str, payload: dict[str, Any], *, at: datetime,
                      case_id: int | None = None) -> int:
        return await self._insert(
            "INSERT INTO outbox (kind, target, payload, case_id, next_try_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            kind, target, json.dumps(payload, ensure_ascii=False), case_id, ts(at), ts(at))

    async def due_outbox(self, now: datetime, limit: int, *, busy: Sequence[str] = (),
                         background: Sequence[str] = (), part: str | None = None) -> list[Row]:
        """The oldest pending row of each target, where that row is due now; the first
        ``limit`` of them in the order they became due, returned oldest first. Left out: the
        ``busy`` targets (being delivered). ``part``: only the "background" rows (a kind in
        ``background`` with no row of another kind waiting behind it in its target), or only
        the "foreground" ones (all others); None: both.

        Only pending rows are read (the partial indexes), never the done ones, and the scan
        stops at ``limit``."""
        kinds = self._each("?")
        back = (f"(o.kind IN {kinds} AND NOT EXISTS (SELECT 1 FROM outbox l"
                " WHERE l.state = 'pending' AND l.target = o.target AND l.id > o.id"
                f" AND l.kind NOT IN {kinds}))")
        which = {None: "TRUE", "background": back, "foreground": f"NOT {back}"}[part]
        background_args = [json.dumps(list(background))] * 2 if part else []
        rows = await self._all(
            "WITH p AS MATERIALIZED (SELECT id FROM outbox WHERE state = 'pending' AND next_try_at <= ?"
            "                        ORDER BY next_try_at, id)"
            " SELECT o.* FROM p JOIN outbox o ON o.id = p.id"
            " WHERE NOT EXISTS (SELECT 1 FROM outbox e WHERE e.state = 'pending' AND e.target = o.target"
            "                   AND e.id < o.id)"
            f"   AND o.target NOT IN {self._each('?')}"
            f"  AND {which}"
            " LIMIT ?",
            ts(now), json.dumps(list(busy)), *background_args, limit)
        rows.sort(key=lambda r: r["id"])
        for r in rows:
            _outbox_row(r)
        return rows

    async def outbox_payload(self, row_id: int) -> dict[str, Any] | None:
        row = await self._one("SELECT payload FROM outbox WHERE id = ?", row_id)
        return json.loads(row["payload"]) if row else None

    async def next_outbox_due(self, after: datetime | None = None) -> datetime | None:
        """When the first pending row is due (``after``: the first one due later than that)."""
        if after is None:
            row = await self._one("SELECT min(next_try_at) AS next_try_at FROM outbox WHERE state = 'pending'")
        else:
            row = await self._one("SELECT min(next_try_at) AS next_try_at FROM outbox WHERE state = 'pending'"
                                  " AND next_try_at > ?", ts(after))
        return row["next_try_at"]

    async def last_card_row(self, case_id: int, room_key: str) -> int | None:
        """The outbox row of the case's latest card in that room (posted or not yet)."""
        row = await self._one("SELECT id FROM outbox WHERE case_id = ? AND kind = 'matrix.card'"
                              f" AND {self._json('payload', 'room')} = ? ORDER BY id DESC LIMIT 1", case_id, room_key)
        return row["id"] if row else None

    async def outbox_supersede(self, target: str, by: int, *, kind: str, key: str, value: int | None,
                               at: datetime) -> int:
        """The pending rows of ``kind`` in ``target`` before row ``by`` whose payload has this
        ``key`` value (a row id, or none) are done without being delivered: ``by`` says all
        they said, and later."""
        assert key.isidentifier(), key
        same = f"CAST({self._json('payload', key)} AS INTEGER) = ?" if value is not None else \
            f"{self._json('payload', key)} IS NULL"
        return await self.conn.execute(
            "UPDATE outbox SET state = 'done', done_at = ?, result = ?"
            f" WHERE state = 'pending' AND target = ? AND id < ? AND kind = ? AND {same}",
            ts(at), json.dumps({"superseded_by": by}), target, by, kind, *([value] if value is not None else []))

    async def outbox_outcome(self, row_id: int) -> Row | None:
        """A row's state and result (its result parsed), or None when there is no such row."""
        row = await self._one("SELECT state, result FROM outbox WHERE id = ?", row_id)
        if row is not None:
            row["result"] = json.loads(row["result"]) if row["result"] else {}
        return row

    async def outbox_due_now(self, kind_prefix: str, at: datetime) -> int:
        """Make the pending rows of these kinds due at ``at`` (their service is back)."""
        return await self.conn.execute(
            "UPDATE outbox SET next_try_at = ? WHERE state = 'pending' AND kind LIKE ? AND next_try_at > ?",
            ts(at), kind_prefix + "%", ts(at))

    async def outbox_done(self, row_id: int, *, at: datetime, result: dict[str, Any] | None) -> None:
        await self.conn.execute(
            "UPDATE outbox SET state = 'done', done_at = ?, attempts = attempts + 1, result = ?"
            " WHERE id = ? AND state = 'pending'",
            ts(at), json.dumps(result, ensure_ascii=False) if result else None, row_id)

    async def outbox_retry(self, row_id: int, *, next_try: datetime, error: str) -> int:
        row = await self._one(
            "UPDATE outbox SET attempts = attempts + 1, next_try_at = ?, last_error = ?"
            " WHERE id = ? AND state = 'pending' RETURNING attempts", ts(next_try), error, row_id)
        return row["attempts"] if row else 0

    async def outbox_dead(self, row_id: int, *, at: datetime, error: str) -> None:
        await self.conn.execute(
            "UPDATE outbox SET state = 'dead', done_at = ?, attempts = attempts + 1, last_error = ?"
            " WHERE id = ? AND state = 'pending'", ts(at), error, row_id)

    async def outbox_progress(self, row_id: int, progress: dict[str, Any]) -> None:
        await self.conn.execute("UPDATE outbox SET progress = ? WHERE id = ?",
                                json.dumps(progress, ensure_ascii=False), row_id)

    async def case_outbox(self, case_id: int, kind: str) -> list[Row]:
        """A case's effects of one kind, in order, with their progress (a case's evidence)."""
        rows = await self._all("SELECT * FROM outbox WHERE case_id = ? AND kind = ? ORDER BY id", case_id, kind)
        for r in rows:
            _outbox_row(r)
        return rows

    async def outbox_backlog(self) -> dict[str, int]:
        rows = await self._all("SELECT state, count(*) AS n FROM outbox"
                               " WHERE state IN ('pending', 'dead') GROUP BY state")
        counts = {"pending": 0, "dead": 0}
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    # -- leases: work one process at a time does ----------------------------------------
    async def take_lease(self, name: str, holder: str, *, now: datetime, seconds: float) -> bool:
        """Hold ``name`` until ``now + seconds``: taken when nobody holds it or its holder let
        it expire, renewed when ``holder`` holds it already. True: ``holder`` holds it now."""
        row = await self._one(
            "INSERT INTO leases (name, holder, taken_at, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,"
            " taken_at = CASE WHEN leases.holder = excluded.holder THEN leases.taken_at ELSE excluded.taken_at END"
            " WHERE leases.holder = excluded.holder OR leases.expires_at <= ?"
            " RETURNING holder", name, holder, ts(now), ts(now + timedelta(seconds=seconds)), ts(now))
        return row is not None

    async def release_lease(self, name: str, holder: str) -> bool:
        """Let go of ``name`` at once (a clean stop), if ``holder`` holds it."""
        return await self.conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", name, holder) == 1

    async def lease(self, name: str) -> Row | None:
        """Who holds ``name``, since when, until when (None: nobody ever did, or let go)."""
        return await self._one("SELECT * FROM leases WHERE name = ?", name)

    # -- deliveries ------------------------------------------------------------------
    async def record_delivery(self, channel: str, external_id: str, *, outbox_id: int | None,
                              case_id: int | None, at: datetime, purpose: str | None = None) -> list[StatusUpdate]:
        """The row of a message the channel took; returns the statuses that came before it
        (oldest rank first), taken out of ``early_statuses`` for the caller to apply."""
        await self.wait_for(f"delivery:{channel}:{external_id}")      # see apply_status
        await self.conn.execute(
            "INSERT INTO deliveries (channel, external_id, outbox_id, case_id, status, updated_at, purpose)"
            " VALUES (?, ?, ?, ?, 'accepted', ?, ?) ON CONFLICT DO NOTHING",
            channel, external_id, outbox_id, case_id, ts(at), purpose)
        rows = await self._all("DELETE FROM early_statuses WHERE channel = ? AND external_id = ? RETURNING *",
                               channel, external_id)
        early = [StatusUpdate(channel=r["channel"], external_id=r["external_id"], status=r["status"],
                              at=r["at"], error_code=r["error_code"], error_title=r["error_title"])
                 for r in rows]
        return sorted(early, key=lambda st: STATUS_ORDER.get(st.status, 0))

    async def case_replies(self, case_id: int) -> list[Row]:
        """What the bot said to the citizen about a case, with delivery states."""
        rows = await self._all(
            "SELECT o.id, o.payload, o.done_at, o.state, d.status, d.purpose FROM outbox o"
            " LEFT JOIN deliveries d ON d.outbox_id = o.id"
            " WHERE o.case_id = ? AND o.kind = 'channel.text' ORDER BY o.id", case_id)
        for r in rows:
            r["payload"] = json.loads(r["payload"])
        return rows

    async def apply_status(self, st: StatusUpdate) -> Row | None:
        """Move a delivery forward to ``st.status``; returns the row when it moved.

        Statuses arrive late and out of order: a 'sent' after its 'delivered' changes
        nothing, and 'failed' always wins.
        """
        rank = STATUS_ORDER.get(st.status)
        if rank is None:
            return None
        # With record_delivery, one at a time per message: a status that finds no row yet is
        # kept where record_delivery (waiting for this transaction) will find it, and one
        # that waited for record_delivery finds its row.
        await self.wait_for(f"delivery:{st.channel}:{st.external_id}")
        ranks = " ".join(f"WHEN '{s}' THEN {n}" for s, n in STATUS_ORDER.items())
        moved = await self._one(
            "UPDATE deliveries SET status = ?, updated_at = ?, error_code = ?, error_title = ?"
            f" WHERE channel = ? AND external_id = ? AND (CASE status {ranks} ELSE 0 END) < ?"
            " RETURNING *",
            st.status, ts(st.at), st.error_code, st.error_title, st.channel, st.external_id, rank)
        if moved is None and not await self._one(
                "SELECT 1 AS x FROM deliveries WHERE channel = ? AND external_id = ?", st.channel, st.external_id):
            # Earlier than its row (the send has not returned yet): keep it for record_delivery.
            await self.conn.execute(
                "INSERT INTO early_statuses (channel, external_id, status, at, error_code, error_title, ref)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                st.channel, st.external_id, st.status, ts(st.at), st.error_code, st.error_title, st.ref)
        return moved

    async def sent_by_ref(self, channel: str, ref: str) -> str | None:
        """The id of the message the channel took with our reference ``ref``, as a status
        that came before its row tells (None: no such status yet)."""
        row = await self._one("SELECT external_id FROM early_statuses WHERE channel = ? AND ref = ?"
                              " ORDER BY at LIMIT 1", channel, ref)
        return row["external_id"] if row else None

    async def delivery_of(self, outbox_id: int) -> Row | None:
        return await self._one("SELECT * FROM deliveries WHERE outbox_id = ?", outbox_id)

    async def answer_delivery(self, case_id: int) -> Row | None:
        """The latest delivery of a case's answer (the channel took it)."""
        return await self._one("SELECT * FROM deliveries WHERE case_id = ? AND purpose = 'answer'"
                               " ORDER BY updated_at DESC LIMIT 1", case_id)

    # -- matrix ----------------------------------------------------------------------
    async def save_card(self, case_id: int, room_key: str, room_id: str, event_id: str,
                        at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO cards (case_id, room_key, room_id, event_id, posted_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (case_id, room_key) DO UPDATE SET room_id = excluded.room_id,"
            " event_id = excluded.event_id, posted_at = excluded.posted_at",
            case_id, room_key, room_id, event_id, ts(at))
        await self.conn.execute(
            "INSERT INTO card_posts (event_id, case_id, room_key, room_id, posted_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING", event_id, case_id, room_key, room_id, ts(at))

    async def get_card(self, case_id: int, room_key: str) -> Row | None:
        """The live card of a case in a room (the latest posted there)."""
        return await self._one("SELECT * FROM cards WHERE case_id = ? AND room_key = ?", case_id, room_key)

    async def card_by_event(self, event_id: str) -> Row | None:
        """Any card of any case, the live one or an earlier one."""
        return await self._one("SELECT * FROM card_posts WHERE event_id = ?", event_id)

    async def card_posts(self, case_id: int) -> list[Row]:
        """Every card of a case, oldest first."""
        return await self._all("SELECT * FROM card_posts WHERE case_id = ? ORDER BY posted_at, event_id", case_id)

    async def card_reactions(self, card_event_id: str) -> dict[str, str]:
        rows = await self._all("SELECT key, event_id FROM card_reactions WHERE card_event_id = ?",
                               card_event_id)
        return {r["key"]: r["event_id"] for r in rows}

    async def add_card_reaction(self, card_event_id: str, key: str, event_id: str) -> None:
        await self.conn.execute("INSERT INTO card_reactions (card_event_id, key, event_id) VALUES (?, ?, ?)"
                                " ON CONFLICT DO NOTHING", card_event_id, key, event_id)

    async def remove_card_reaction(self, card_event_id: str, key: str) -> None:
        await self.conn.execute("DELETE FROM card_reactions WHERE card_event_id = ? AND key = ?",
                                card_event_id, key)

    async def get_state(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM matrix_state WHERE key = ?", key)
        return row["value"] if row else None

    async def set_state(self, key: str, value: str) -> None:
        await self.conn.execute(
            "INSERT INTO matrix_state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)

    async def mark_handled(self, event_id: str, at: datetime) -> bool:
        """Claim a Matrix event for handling; False when it was handled before."""
        return await self.conn.execute(
            "INSERT INTO handled_events (event_id, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            event_id, ts(at)) == 1

    # -- retention (bridge/retention.py) --------------------------------------------------
    # What a purge leaves of a row: the message's kind and times, the effect's kind, room,
    # channel and purpose, the delivery's status and times; never an address, a message id
    # (WhatsApp's ids carry the number, Telegram's the chat id), a name or a text.
    def _blank(self, table: str) -> str:
        """The SET clause that blanks a row of inbound, outbox or deliveries."""
        j, obj = self._json, ("json_build_object" if self.pg else "json_object")
        true, empty = ("true", "'[]'::json") if self.pg else ("json('true')", "json('[]')")
        text = "::text" if self.pg else ""
        if table == "inbound":
            return ("address = '', external_id = 'purged:' || id, last_error = NULL,"
                    f" message = {obj}('channel', channel, 'external_id', 'purged:' || id, 'address', '',"
                    f"   'kind', kind, 'at', {j('message', 'at')}, 'attachments', {empty}){text}")
        if table == "outbox":
            return (f"payload = CASE WHEN kind = 'channel.text' THEN {obj}('channel', {j('payload', 'channel')},"
                    f"     'purpose', {j('payload', 'purpose')}, 'text', '', 'purged', {true}){text}"
                    f"   ELSE {obj}('room', {j('payload', 'room')}, 'purged', {true}){text} END,"
                    " target = CASE WHEN target LIKE 'matrix:%' THEN target"
                    f"   ELSE coalesce({j('payload', 'channel')}, 'channel') || ':purged' END,"
                    " progress = NULL, result = NULL, last_error = NULL")
        assert table == "deliveries", table
        # A new key of no meaning (its primary key is channel and message id): SQLite's rowid, a UUID.
        return f"external_id = 'purged:' || {'gen_random_uuid()' if self.pg else 'rowid'}, error_title = NULL"

    def _loose(self) -> dict[str, str]:
        """Rows of no case (a greeting, a status question, a read receipt) older than the period."""
        return {
            "inbound": "case_id IS NULL AND state != 'new' AND received_at < ? AND external_id NOT LIKE 'purged:%'",
            "outbox": "case_id IS NULL AND state != 'pending' AND created_at < ?"
                      f" AND {self._json('payload', 'purged')} IS NULL",
            "deliveries": "case_id IS NULL AND updated_at < ? AND external_id NOT LIKE 'purged:%'",
            "early_statuses": "at < ?",
            "conversations": "updated_at < ?",
            "held_messages": "case_id IS NULL AND held_at < ?",
        }

    async def cases_to_purge(self, closed_before: datetime, limit: int = 10000) -> list[Row]:
        """Closed cases not purged yet whose closed_at is before ``closed_before``, oldest first."""
        return await self._all(
            "SELECT * FROM cases WHERE closed_at IS NOT NULL AND closed_at < ? AND state = 'closed'"
            " AND purged_at IS NULL ORDER BY closed_at, id LIMIT ?", ts(closed_before), limit)

    async def case_in_flight(self, case_id: int) -> bool:
        """An effect of the case not delivered yet, or a message of the citizen to it not taken
        in yet: a purge leaves the case for the next run."""
        row = await self._one(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE state = 'pending' AND case_id = ?)"
            " OR EXISTS (SELECT 1 FROM inbound WHERE case_id = ? AND state = 'new') AS busy", case_id, case_id)
        return bool(row["busy"])

    async def case_files(self, case_id: int) -> list[Row]:
        """The citizen's files of a case (channel, ref): the attachment effects not purged."""
        ref = self._json("payload", "attachment", "ref")
        return await self._all(
            f"SELECT id, {self._json('payload', 'channel')} AS channel, {ref} AS ref"
            f" FROM outbox WHERE case_id = ? AND kind = 'matrix.attachment' AND {ref} IS NOT NULL ORDER BY id",
            case_id)

    async def file_in_use(self, channel: str, ref: str) -> bool:
        """Whether an attachment not purged refers to this file (one file id sent to two cases)."""
        row = await self._one(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE kind = 'matrix.attachment'"
            f" AND {self._json('payload', 'channel')} = ?"
            f" AND {self._json('payload', 'attachment', 'ref')} = ?) AS used",
            channel, ref)
        return bool(row["used"])

    async def purge_case(self, case_id: int, at: datetime) -> bool:
        """Remove a closed case's personal data, keep its figures; False when it is not a
        closed case or was purged before. Its events are cleaned with ``clean_event`` after."""
        if await self.conn.execute(
                "UPDATE cases SET purged_at = ?, summary = '', answer_draft = NULL, citizen_name = NULL,"
                " nik = NULL, nik_problem = NULL WHERE id = ? AND state = 'closed' AND purged_at IS NULL",
                ts(at), case_id) != 1:
            return False
        await self.conn.execute(f"UPDATE inbound SET {self._blank('inbound')} WHERE case_id = ?", case_id)
        await self.conn.execute(
            f"UPDATE deliveries SET {self._blank('deliveries')} WHERE case_id = ? AND external_id NOT LIKE 'purged:%'",
            case_id)
        await self.conn.execute(
            f"UPDATE outbox SET {self._blank('outbox')} WHERE case_id = ? AND state != 'pending'", case_id)
        await self.conn.execute("UPDATE ratings SET comment = NULL WHERE case_id = ?", case_id)
        await self.conn.execute("DELETE FROM held_messages WHERE case_id = ?", case_id)
        return True

    async def rating_of(self, case_id: int) -> Row | None:
        return await self._one("SELECT * FROM ratings WHERE case_id = ?", case_id)

    async def clean_event(self, event_id: int, note: str | None, data: dict[str, Any] | None) -> None:
        """An event of a purged case without its personal data (migration 8's trigger allows
        only that: the note cleared, the data reduced to some of its keys)."""
        await self.conn.execute("UPDATE case_events SET note = ?, data = ? WHERE id = ?",
                                note, json.dumps(data, ensure_ascii=False) if data else None, event_id)

    async def citizens_to_anonymise(self, silent_since: datetime, purging: Sequence[int] = ()) -> list[Row]:
        """Citizens silent since before ``silent_since`` whose every case is purged (or among
        ``purging``: what a dry run would purge), not anonymised yet."""
        return await self._all(
            "SELECT * FROM citizens c WHERE c.purged_at IS NULL AND coalesce(c.last_inbound_at, '') < ?"
            " AND EXISTS (SELECT 1 FROM cases x WHERE x.citizen_id = c.id)"
            " AND NOT EXISTS (SELECT 1 FROM cases x WHERE x.citizen_id = c.id AND x.purged_at IS NULL"
            f"                 AND x.id NOT IN {self._each('?', integers=True)})"
            " ORDER BY c.id", ts(silent_since), json.dumps(list(purging)))

    async def citizens_without_cases(self, silent_since: datetime) -> list[Row]:
        """Citizens who never had a case (they only talked to the bot), silent since before ``silent_since``."""
        return await self._all(
            "SELECT * FROM citizens c WHERE c.purged_at IS NULL AND coalesce(c.last_inbound_at, '') < ?"
            " AND NOT EXISTS (SELECT 1 FROM cases x WHERE x.citizen_id = c.id) ORDER BY c.id", ts(silent_since))

    async def forget_citizens(self, citizens: Sequence[Row], at: datetime, *, delete: bool) -> None:
        """The rows that name these citizens: their messages and ours to them that belong to
        no case, their conversation and held messages; then the citizen row itself, deleted
        (``delete``: no case refers to it) or anonymised (the cases keep their citizen_id)."""
        if not citizens:
            return
        addresses = [f"{c['channel']}:{c['address']}" for c in citizens]
        targets = json.dumps(addresses + [f"{a}:read" for a in addresses], ensure_ascii=False)
        ids = json.dumps([c["id"] for c in citizens])
        each_id = self._each("?", integers=True)
        await self.conn.execute(
            f"UPDATE inbound SET {self._blank('inbound')} WHERE case_id IS NULL AND state != 'new'"
            f" AND channel || ':' || address IN {self._each('?')}", json.dumps(addresses, ensure_ascii=False))
        await self.conn.execute(
            f"UPDATE deliveries SET {self._blank('deliveries')} WHERE external_id NOT LIKE 'purged:%' AND outbox_id IN"
            f" (SELECT id FROM outbox WHERE target IN {self._each('?')})", targets)
        await self.conn.execute(
            f"UPDATE outbox SET {self._blank('outbox')} WHERE case_id IS NULL AND state != 'pending'"
            f" AND target IN {self._each('?')}", targets)
        for table in ("conversations", "held_messages"):
            await self.conn.execute(f"DELETE FROM {table} WHERE citizen_id IN {each_id}", ids)
        if delete:
            await self.conn.execute(f"DELETE FROM citizens WHERE id IN {each_id}", ids)
        else:
            await self.conn.execute(
                "UPDATE citizens SET address = 'purged:' || id, name = NULL, user_id = NULL, username = NULL,"
                f" last_inbound_at = NULL, purged_at = ? WHERE id IN {each_id}", ts(at), ids)

    async def count_loose(self, before: datetime) -> dict[str, int]:
        """How many rows of no case, older than ``before``, a purge would clear (per table)."""
        out = {}
        for table, where in self._loose().items():
            out[table] = (await self._one(f"SELECT count(*) AS n FROM {table} WHERE {where}", ts(before)))["n"]
        return out

    async def purge_loose(self, before: datetime) -> dict[str, int]:
        """Clear the rows of no case older than ``before``: messages blanked, the rest deleted."""
        out = {}
        for table, where in self._loose().items():
            sql = (f"UPDATE {table} SET {self._blank(table)} WHERE {where}"
                   if table in ("inbound", "outbox", "deliveries") else f"DELETE FROM {table} WHERE {where}")
            out[table] = await self.conn.execute(sql, ts(before))
        return out
