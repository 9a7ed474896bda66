"""One way to speak to the database, SQLite (aiosqlite) or PostgreSQL (asyncpg).

bridge/store.py runs every statement through this interface. SQL is written once, with
``?`` (or ``?3``) placeholders; on PostgreSQL they become ``$1, $2, ...`` (never inside a
quoted string or a comment). A statement answers as the store needs: ``execute`` the
number of rows it changed, ``fetch`` a list of dicts, ``fetchrow`` one dict or None,
``fetchval`` the first value.

``Database.open(url)`` takes ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or
``postgresql://user@host:port/dbname``. Writes go through ``transaction()``: on SQLite one
writer at a time (``BEGIN IMMEDIATE`` under a lock, as SQLite wants), on a connection of the
event loop's own thread (no hop a statement; see ``SQLiteDatabase``); on PostgreSQL a pooled
connection each, side by side. ``reading()`` is a consistent read-only view of committed
data (a second SQLite connection, WAL; a REPEATABLE READ READ ONLY transaction on
PostgreSQL). Why asyncpg: native asyncio with no thread hop per statement, the binary
protocol, typed values both ways, and the driver mautrix-python's async_db uses for the
same job.
"""
from __future__ import annotations

import abc
import asyncio
import logging
import re
import sqlite3
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import aiosqlite

log = logging.getLogger(__name__)

Row = dict[str, Any]
SQLITE, POSTGRESQL = "sqlite", "postgresql"
CHECKPOINT_EVERY = 1.0      # seconds: SQLite's log is copied into the file this often while writes go on
CHECKPOINT_BYTES = 4 << 20  # a shorter log is left as it is (SQLite's own mark: 1,000 pages of 4 KB)
WAL_PAGES = 16384           # a log this long (64 MB of 4 KB pages) starts over even while writes go on
# Every connection that writes: the log is checkpointed beside them (SQLiteDatabase).
_WRITING = ("foreign_keys = ON", "synchronous = NORMAL", "secure_delete = ON", "wal_autocheckpoint = 0")
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


class SQLiteHereConn(Conn):
    """A connection of the event loop's own thread (SQLiteDatabase.transaction): each
    statement runs at once, the loop waiting for it, where ``SQLiteConn`` makes a hop to
    aiosqlite's thread and back for each (a new complaint's transaction: 7 ms of hops)."""

    dialect = SQLITE

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, *args: Any) -> int:
        cur = self.db.execute(sql, args)
        try:
            return max(cur.rowcount, 0)
        finally:
            cur.close()

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows).close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cur = self.db.execute(sql, args)
        try:
            columns = [d[0] for d in cur.description or ()]
            return [dict(zip(columns, r)) for r in cur.fetchall()]
        finally:
            cur.close()


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
    """Writes one at a time (``BEGIN IMMEDIATE`` under a lock, as SQLite wants) on a
    connection of the event loop's own thread: every statement at once, with no hop to
    another thread and back (``transaction``). When another process holds
    the write lock, that connection does not wait for it: the transaction goes to the
    writer, an aiosqlite connection, whose thread waits for it. Reads go to a reader of
    their own (aiosqlite: long ones never hold up the loop; WAL lets it read committed data
    while a write is under way).

    Checkpoints are kept out of the commits. SQLite's own (every 1,000 pages of log) copy
    the pages and sync the file inside whichever commit crosses the mark, and every webhook
    waiting for that commit waits for it too: a commit's p99 of 6.5 ms where it is 0.3 ms
    without (bench/README.md). So no connection here checkpoints by itself. After a write,
    a task looks every ``checkpoint_every`` seconds; a log under ``checkpoint_bytes`` is
    left as it is (as SQLite leaves one under 1,000 pages). A longer one is copied into the
    file by a connection of its own, on a thread of its own: while writes keep coming,
    PASSIVE (the writes go on meanwhile); once a whole period went by without a write, the
    log is emptied (TRUNCATE, under the write lock). Under writes that never pause, a log
    past ``wal_pages`` starts over under the write lock (RESTART, about 15 ms, as the
    PASSIVE copy before it did the rest; the file keeps its size until the next lull, as
    cutting it there is slower). That connection waits for nobody: a reader of another
    process in the way makes it try again later, never keeps the writes waiting.
    """

    dialect = SQLITE
    shared = False      # one process: a SQLite file has one bridge

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 path: Path | None = None, here: sqlite3.Connection | None = None) -> None:
        self._writer, self._reader = writer, reader
        self._write_lock, self._read_lock = asyncio.Lock(), asyncio.Lock()
        self._path = path                  # None: read-only, nothing to write or checkpoint
        self._here = here                  # the event loop's own connection (transaction)
        self._beside: aiosqlite.Connection | None = None        # checkpoints, opened at the first write
        self._checkpoints: asyncio.Task[None] | None = None
        self._written = False              # since the last checkpoint began
        self.checkpoint_every, self.checkpoint_bytes, self.wal_pages = CHECKPOINT_EVERY, CHECKPOINT_BYTES, WAL_PAGES

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
                await SQLiteConn(writer).execute("PRAGMA journal_mode = WAL")
            reader = await cls._connect(path, read_only)
        except BaseException:
            await writer.close()       # not left to the garbage collector, at a moment of its choosing
            raise
        if read_only:
            return cls(writer, reader)
        here = sqlite3.connect(path, isolation_level=None)
        for pragma in _WRITING + ("busy_timeout = 0",):       # locked by another process: see transaction
            here.execute(f"PRAGMA {pragma}").close()
        return cls(writer, reader, path, here)

    @staticmethod
    async def _connect(path: Path, read_only: bool, *, busy_timeout: int = 5000) -> aiosqlite.Connection:
        if read_only:
            db = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            db = await aiosqlite.connect(path, isolation_level=None)
        try:
            for pragma in (f"busy_timeout = {busy_timeout}", *(() if read_only else _WRITING)):
                await SQLiteConn(db).execute(f"PRAGMA {pragma}")     # each statement closed: no lock kept
        except BaseException:
            await db.close()
            raise
        return db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """On the event loop's own connection (``SQLiteHereConn``: each statement at once,
        no hop), the loop waiting for the statements themselves (a round of 15 webhooks'
        rows: about 0.3 ms; the transactions are short: long reads go to the reader). When
        another process (a shell command) holds the write lock, the loop must not wait for
        it: that connection waits for nobody (busy_timeout 0), and the transaction runs on
        the writer's thread instead, which waits there."""
        async with self._write_lock:
            if self._here is not None and _begin(self._here):
                try:
                    yield SQLiteHereConn(self._here)
                    self._here.execute("COMMIT")
                except BaseException:
                    if self._here.in_transaction:
                        self._here.rollback()
                    raise
                self._wrote()
                return
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
                self._wrote()

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

    def _wrote(self) -> None:
        """A write committed: the log is copied into the file beside the writer (see the class)."""
        self._written = True
        if self._checkpoints is None and self._path is not None:
            self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_while_written(),
                                                                       name="sqlite-checkpoints")

    async def _checkpoint_while_written(self) -> None:
        try:
            while True:
                self._written = False
                await asyncio.sleep(self.checkpoint_every)
                if self._wal_size() >= self.checkpoint_bytes:     # a shorter log is left, as SQLite would
                    await self._checkpoint_beside(lull=not self._written)
                if not self._written:
                    return
        except sqlite3.Error as e:       # another process's checkpoint, say: the next write starts it again
            log.warning("database: checkpoint failed: %s", e)
        finally:
            self._checkpoints = None

    async def _checkpoint_beside(self, *, lull: bool) -> None:
        """The log copied into the file on a connection of its own: emptied when the writes
        paused (``lull``), else copied as the writes go on, and started over when it is
        past ``wal_pages`` (see the class)."""
        if self._beside is None:
            assert self._path is not None
            self._beside = await self._connect(self._path, False, busy_timeout=0)
        beside = SQLiteConn(self._beside)
        if lull:
            async with self._write_lock:
                await beside.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        copied = await beside.fetchrow("PRAGMA wal_checkpoint(PASSIVE)")
        if copied and copied["log"] > self.wal_pages:
            async with self._write_lock:
                await beside.execute("PRAGMA wal_checkpoint(RESTART)")

    def _wal_size(self) -> int:
        try:
            return Path(f"{self._path}-wal").stat().st_size if self._path else 0
        except FileNotFoundError:
            return 0

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
        self._path = None                  # no checkpoint task starts any more (the last close checkpoints)
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.wait([self._checkpoints])
        if self._beside is not None:
            await self._beside.close()
            self._beside = None
        async with self._write_lock:
            if self._here is not None:
                self._here.close()
            await self._writer.close()
        async with self._read_lock:
            await self._reader.close()


def _begin(conn: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE on a connection that waits for nobody; False: another process holds
    the write lock."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        if e.sqlite_errorcode == sqlite3.SQLITE_BUSY:
            return False
        raise
    return True


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
