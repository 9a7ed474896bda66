"""One way to speak to the database, SQLite (aiosqlite) or PostgreSQL (asyncpg).

bridge/store.py runs every statement through this interface. SQL is written once, with
``?`` (or ``?3``) placeholders; on PostgreSQL they become ``$1, $2, ...`` (never inside a
quoted string or a comment). A statement answers as the store needs: ``execute`` the
number of rows it changed, ``fetch`` a list of dicts, ``fetchrow`` one dict or None,
``fetchval`` the first value.

``Database.open(url)`` takes ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or
``postgresql://user@host:port/dbname``. Writes go through ``transaction()``: on SQLite one
writer at a time (``BEGIN IMMEDIATE`` under a lock, as SQLite wants); on PostgreSQL a pooled
connection each, side by side. ``reading()`` is a consistent read-only view of committed
data (a second SQLite connection, WAL; a REPEATABLE READ READ ONLY transaction on
PostgreSQL). Why asyncpg: native asyncio with no thread hop per statement, the binary
protocol, typed values both ways, and the driver mautrix-python's async_db uses for the
same job.
"""
from __future__ import annotations

import abc
import asyncio
import re
import sqlite3
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence, TypeVar
from urllib.parse import urlsplit

import aiosqlite

Row = dict[str, Any]
T = TypeVar("T")
SQLITE, POSTGRESQL = "sqlite", "postgresql"
SCHEMA_LOCK = 0x70656E67    # PostgreSQL's advisory lock key for schema upgrades ("peng")


class BadDatabaseUrl(ValueError):
    """A database URL this code cannot open."""


class DatabaseUnavailable(Exception):
    """The database server cannot be reached, or refused us (the message has no password)."""


def parse_url(url: str) -> tuple[str, str]:
    """(dialect, target): the SQLite file's path, or the PostgreSQL URL as given."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise BadDatabaseUrl(f"{url!r}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
        return SQLITE, url[len("sqlite:///"):]
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        if not parts.hostname and "host=" not in parts.query:
            raise BadDatabaseUrl(f"{_without_password(url)!r}: no host")
        return POSTGRESQL, url
    raise BadDatabaseUrl(f"{_without_password(url)!r}: the database URL starts with sqlite:/// or postgresql://")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


# ? outside quotes and comments; quoted strings, quoted names and comments are kept as they are.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?\d*", re.DOTALL)


@lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """``sql`` with each ``?`` placeholder as PostgreSQL's ``$n`` (and SQLite's numbered
    ``?3`` as ``$3``)."""
    n = 0

    def number(m: re.Match[str]) -> str:
        nonlocal n
        token = m.group()
        if not token.startswith("?"):
            return token
        if len(token) > 1:
            return "$" + token[1:]
        n += 1
        return f"${n}"
    return _TOKENS.sub(number, sql)


class Conn(abc.ABC):
    """One connection, inside a transaction or a read view."""

    dialect: str

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it inserted, changed or deleted."""

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once for each row of arguments."""

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Every row of a query (or of a statement's RETURNING), as dicts."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return next(iter(row.values())) if row else None


class SQLiteConn(Conn):
    dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.db.execute(sql, args) as cur:
            return max(cur.rowcount, 0)        # -1 for a statement that changes no rows, as 0 elsewhere

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.db.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self.db.execute(sql, args) as cur:
            columns = [d[0] for d in cur.description or ()]
            return [dict(zip(columns, r)) for r in await cur.fetchall()]


class PostgresConn(Conn):
    dialect = POSTGRESQL

    def __init__(self, db: Any) -> None:       # an asyncpg connection
        self.db = db

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self.db.execute(numbered(sql), *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.db.executemany(numbered(sql), list(rows))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self.db.fetch(numbered(sql), *args)]


def _rowcount(status: str) -> int:
    """The rows counted in a command tag: "UPDATE 3", "INSERT 0 1", "DELETE 0"; 0 for others."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() and status.split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE", "MERGE") else 0


class Database(abc.ABC):
    dialect: str
    shared: bool        # other processes may use it at the same time (then their work is claimed)

    @staticmethod
    async def open(url: str) -> "Database":
        dialect, target = parse_url(url)
        if dialect == SQLITE:
            return await SQLiteDatabase.open(Path(target))
        return await PostgresDatabase.open(target)

    @abc.abstractmethod
    def transaction(self) -> Any:
        """``async with db.transaction() as conn``: commits on success, rolls back on any exception."""

    @abc.abstractmethod
    def reading(self) -> Any:
        """``async with db.reading() as conn``: a consistent read-only view of committed data."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database has (0: none yet)."""

    @abc.abstractmethod
    async def upgrade(self, version: int, fn: Callable[[Conn], Awaitable[None]]) -> bool:
        """Run ``fn`` and set the schema to ``version``, in one transaction (a failure changes
        nothing), unless the database is already there: another process starting at the
        same moment did it. True: this call did it."""


class SQLiteDatabase(Database):
    """Two connections: one writer (every transaction, ``BEGIN IMMEDIATE`` under a lock, so
    there is one writer as SQLite wants) and one reader (WAL lets it read committed data
    while a write is under way)."""

    dialect = SQLITE
    shared = False      # one process: a SQLite file has one bridge

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer, self._reader = writer, reader
        self._write_lock, self._read_lock = asyncio.Lock(), asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, read_only: bool = False) -> "SQLiteDatabase":
        """The file at ``path`` in WAL mode (``read_only``: opened so, nothing written, and
        a transaction fails). Deleted and overwritten content is zeroed (``secure_delete``),
        so that removed personal data leaves no copy in the file's free space."""
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        writer = await cls._connect(path, read_only)
        try:
            if not read_only:
                await SQLiteConn(writer).execute("PRAGMA secure_delete = ON")
                await SQLiteConn(writer).execute("PRAGMA journal_mode = WAL")
            reader = await cls._connect(path, read_only)
        except BaseException:
            await writer.close()       # not left to the garbage collector, at a moment of its choosing
            raise
        return cls(writer, reader)

    @staticmethod
    async def _connect(path: Path, read_only: bool) -> aiosqlite.Connection:
        if read_only:
            db = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            db = await aiosqlite.connect(path, isolation_level=None)
        try:
            for pragma in ("busy_timeout = 5000", "foreign_keys = ON", "synchronous = NORMAL"):
                await SQLiteConn(db).execute(f"PRAGMA {pragma}")     # each statement closed: no lock kept
        except BaseException:
            await db.close()
            raise
        return db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._write_lock:
            try:
                # Inside the try: a task cancelled while BEGIN runs on the connection's
                # thread still rolls back (queued after it), so the next one can begin.
                await self._writer.execute("BEGIN IMMEDIATE")
                yield SQLiteConn(self._writer)
            except BaseException:
                await self._writer.rollback()
                raise
            else:
                await self._writer.commit()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Conn]:
        async with self._read_lock:
            try:
                await self._reader.execute("BEGIN")
                yield SQLiteConn(self._reader)
            finally:
                await self._reader.rollback()

    async def try_lock(self, key: str) -> bool:
        """One process: nothing to claim from another (PostgresDatabase.try_lock)."""
        return True

    async def unlock(self, key: str) -> None:
        pass

    async def schema_version(self) -> int:
        return await SQLiteConn(self._writer).fetchval("PRAGMA user_version")

    async def upgrade(self, version: int, fn: Callable[[Conn], Awaitable[None]]) -> bool:
        async with self.transaction() as conn:          # BEGIN IMMEDIATE: one process at a time
            if await conn.fetchval("PRAGMA user_version") >= version:
                return False
            await fn(conn)
            await conn.execute(f"PRAGMA user_version = {int(version)}")
        return True

    async def in_one_hop(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the writer's own thread, in a transaction of its own (BEGIN IMMEDIATE,
        ``fn``, COMMIT; ROLLBACK on any exception): one hop for all of it, where
        ``transaction()`` makes a hop of every statement (each waits for a turn of a busy
        event loop, and on the thread each lets go of the GIL and must get it back)."""
        async with self._write_lock:
            # aiosqlite's Connection._execute(fn, *args) runs fn on its thread (aiosqlite is
            # pinned in requirements.txt; its public API has no such call).
            return await self._writer._execute(_in_one_transaction, self._writer._conn, fn)

    async def checkpoint(self) -> bool:
        """Copy the write-ahead log into the file and empty it (TRUNCATE). False when a
        reader of another process kept it from finishing (the next one will)."""
        async with self._write_lock:
            busy = await SQLiteConn(self._writer).fetchval("PRAGMA wal_checkpoint(TRUNCATE)")
        return busy == 0

    async def vacuum(self) -> None:
        """Rebuild the file; holds the write lock for as long as it takes."""
        async with self._write_lock:
            await SQLiteConn(self._writer).execute("VACUUM")

    async def close(self) -> None:
        async with self._write_lock:
            await self._writer.close()
        async with self._read_lock:
            await self._reader.close()


def _in_one_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """BEGIN IMMEDIATE, ``fn``, COMMIT; ROLLBACK on any exception (COMMIT's own included)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


class PostgresDatabase(Database):
    dialect = POSTGRESQL
    shared = True

    def __init__(self, pool: Any, url: str) -> None:      # an asyncpg pool
        self._pool = pool
        self.name = _without_password(url)      # for messages
        self._url = url
        self._locks: Any = None     # the connection that holds this process's session locks
        self._locks_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, size: int = 10, read_only: bool = False) -> "PostgresDatabase":
        """A pool of up to ``size`` connections (``read_only``: every transaction is one,
        so a write fails)."""
        import asyncpg          # only where PostgreSQL is used
        settings = {"default_transaction_read_only": "on"} if read_only else None
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=size, server_settings=settings)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise DatabaseUnavailable(f"cannot open {_without_password(url)}: {e}") from None
        return cls(pool, url)

    async def try_lock(self, key: str) -> bool:
        """Take the session lock ``key`` unless another process holds it. Held on a connection
        of its own until ``unlock``, or until this process dies: the server ends its session
        and lets go, so another process can take it at once."""
        return await self._on_locks("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)

    async def unlock(self, key: str) -> None:
        await self._on_locks("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)

    async def _on_locks(self, sql: str, key: str) -> bool:
        import asyncpg
        async with self._locks_lock:
            if self._locks is None or self._locks.is_closed():
                self._locks = await asyncpg.connect(self._url)      # a lost one took its locks with it
            return bool(await self._locks.fetchval(sql, key))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._pool.acquire() as db, db.transaction():
            yield PostgresConn(db)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Conn]:
        async with self._pool.acquire() as db, db.transaction(isolation="repeatable_read", readonly=True):
            yield PostgresConn(db)

    async def schema_version(self) -> int:
        async with self._pool.acquire() as db:
            if await db.fetchval("SELECT to_regclass('schema_version')") is None:
                return 0
            return await db.fetchval("SELECT version FROM schema_version") or 0

    async def upgrade(self, version: int, fn: Callable[[Conn], Awaitable[None]]) -> bool:
        async with self.transaction() as conn:
            # One process at a time, until this transaction ends; the next one finds it done.
            await conn.execute("SELECT pg_advisory_xact_lock(?)", SCHEMA_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL,"
                               " one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one))")
            if (await conn.fetchval("SELECT version FROM schema_version") or 0) >= version:
                return False
            await fn(conn)
            await conn.execute("INSERT INTO schema_version (version) VALUES (?)"
                               " ON CONFLICT (one) DO UPDATE SET version = excluded.version", version)
        return True

    async def checkpoint(self) -> bool:
        """Nothing to do: PostgreSQL writes its log into the tables and recycles it itself."""
        return True

    async def vacuum(self) -> None:
        """VACUUM every table (outside a transaction, as it must be): dead rows' space reused."""
        async with self._pool.acquire() as db:
            await db.execute("VACUUM")

    async def close(self) -> None:
        async with self._locks_lock:
            if self._locks is not None:
                await self._locks.close()
        await self._pool.close()
