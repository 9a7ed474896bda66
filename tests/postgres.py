"""A throwaway PostgreSQL server for a test session, from Debian's ``postgresql`` package.

    with PostgresServer(tmp_path) as pg:
        pg.url                                  # postgresql://postgres@127.0.0.1:PORT/postgres
        url = pg.create_database_sync("t1")     # or: url = await pg.create_database("t1")
        pg.drop_database_sync("t1")             # or: await pg.drop_database("t1")

``start()`` finds the newest server binaries (``/usr/lib/postgresql/<major>/bin``), runs
``initdb`` (trust authentication, UTF8, locale C, ``--no-sync``) into a fresh private
folder, starts ``postgres`` on 127.0.0.1 at a free port and on a unix socket in that
folder, with settings for tests (fsync, synchronous_commit and full_page_writes off,
max_connections 200), and waits, polling with a bounded timeout, until the postmaster
reports itself ready and the port accepts connections. ``stop()`` asks for a fast
shutdown, kills the server if it lingers, and removes the folder. The server's output
goes to ``<base_dir>/postgres.log``.

Running as root (CI runs as root). PostgreSQL refuses to run as root, so ``initdb`` and
``postgres`` are started by ``subprocess`` with ``user=``, ``group=`` and
``extra_groups=[]``: the forked child drops to the ``postgres`` system user (created by
Debian's ``postgresql-common`` with the package; ``nobody`` where there is none) before it
execs, as ``setpriv --reuid --regid --clear-groups`` would, but with no extra process in
between (``runuser`` would fork and open a PAM session), so the pid we hold is the
postmaster's own and a signal reaches it directly. That user cannot enter pytest's
``tmp_path`` (pytest makes ``/tmp/pytest-of-root`` mode 0700), so the cluster does not
live there: it lives in a ``tempfile.mkdtemp()`` folder in the system temp folder, handed
to that user. Not as root, everything runs as the current user. The cluster folder is
in the system temp folder in both cases, which also keeps the socket's path far below
the 107 bytes a unix socket path may have.

No orphans. ``stop()`` sends the postmaster SIGINT (fast shutdown: it ends its own
children) and, if it is still there after the timeout, SIGKILLs it and its children, found
by their parent pid (each child of a postmaster calls setsid(), so a process-group kill
would miss them; one that escapes exits by itself once it sees the postmaster gone).
Besides the server a small watchdog (``sh``, in a session of its own) waits on a pipe
whose only writer is this process: should the test process die without ``stop()``
(SIGKILL, a crashed xdist worker), the pipe closes, and the watchdog shuts the server down
(SIGQUIT, immediate), SIGKILLs it if it lingers, and removes its folder. ``stop()``
disarms the watchdog before it stops the server itself.

The server listens on loopback only and trusts every local connection: it is for tests.
Our URLs name host, port, user and database, so ``PG*`` variables and a Debian cluster of
the package's own (port 5432, socket in ``/var/run/postgresql``) play no part.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from bridge.homeserver import _read_from, _size, exited

__all__ = ["PostgresError", "PostgresServer", "find_bin_dir"]

DEBIAN_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"  # the database superuser that initdb creates (not the OS user)
SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",  # two xdist workers, each with several pools
}
_BIND_ATTEMPTS = 3
_POLL_INTERVAL = 0.02
_TAIL_LINES = 30
_MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: a longer database name is cut short by the server

# Runs beside the server with a pipe from us on stdin; EOF means we died without stop().
# $1: the postmaster's pid, $2: the cluster folder. SIGQUIT is PostgreSQL's immediate
# shutdown: the postmaster SIGQUITs its children and exits (a child left behind by a
# SIGKILLed postmaster exits by itself when it sees it gone). A zombie counts as gone: the
# postmaster's new parent (PID 1) may reap it only a second later.
_WATCHDOG = r"""
running() {
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 1
  stat=${stat##*") "}
  [ "${stat%% *}" != Z ]
}
read _ignored
kill -QUIT "$1" 2>/dev/null
i=0
while running "$1" && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
if running "$1"; then kill -KILL "$1" 2>/dev/null; fi
rm -rf -- "$2"
"""


class PostgresError(RuntimeError):
    """The server could not be set up or started, or a command on it failed."""


class _BindError(PostgresError):
    """The port was taken between choosing it and the server binding it."""


def find_bin_dir() -> Path | None:
    """Debian's server binaries of the highest major version present, else None."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for bin_dir in DEBIAN_ROOT.glob("*/bin"):
        try:
            version = tuple(int(part) for part in bin_dir.parent.name.split("."))
        except ValueError:
            continue
        if all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "postgres", "psql")):
            found.append((version, bin_dir))
    return max(found)[1] if found else None


class PostgresServer:
    """One throwaway PostgreSQL cluster; see the module's docstring."""

    host = "127.0.0.1"
    user = SUPERUSER

    def __init__(
        self,
        base_dir: Path,
        *,
        bin_dir: Path | None = None,
        run_as: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.log_path = self.base_dir / "postgres.log"
        self._bin_dir = bin_dir
        self._run_as = run_as
        self.settings = {**SETTINGS, **(settings or {})}
        self.dir: Path | None = None  # the cluster folder: data/ and the unix socket
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    # -- where ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise PostgresError("the PostgreSQL server is not running")
        return self._port

    @property
    def socket_dir(self) -> Path:
        if self.dir is None:
            raise PostgresError("the PostgreSQL server is not running")
        return self.dir

    @property
    def data_dir(self) -> Path:
        return self.socket_dir / "data"

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database (the one to create others from)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{name}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not exited(self._proc)

    # -- databases --------------------------------------------------------------

    def unique_name(self, hint: str = "db") -> str:
        """A database name not handed out before by this server: ``t<n>_<hint>``."""
        clean = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_") or "db"
        return f"t{next(self._names)}_{clean}"[:_MAX_NAME_BYTES]

    async def create_database(self, name: str) -> str:
        """Create database ``name`` (asyncpg); return its URL."""
        await self._execute_async(f"CREATE DATABASE {_identifier(name)}")
        return self.database_url(name)

    async def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing its connections (FORCE)."""
        await self._execute_async(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    def create_database_sync(self, name: str) -> str:
        """Create database ``name`` (psql on the unix socket); return its URL."""
        self.psql(f"CREATE DATABASE {_identifier(name)}")
        return self.database_url(name)

    def drop_database_sync(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql over the unix socket; return its unaligned output."""
        command = [
            str(self._bin("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user, "-d", database,
            "-c", sql,
        ]  # fmt: skip
        done = subprocess.run(command, env=_clean_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise PostgresError(f"psql {sql!r} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    async def _execute_async(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # -- life cycle -------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """initdb a fresh cluster and start the server; return once it accepts connections."""
        if self._proc is not None:
            raise PostgresError(f"the PostgreSQL server is already started (pid {self._proc.pid})")
        bin_dir = self._bin_dir or find_bin_dir()
        if bin_dir is None:
            raise PostgresError(f"no PostgreSQL server in {DEBIAN_ROOT}/<major>/bin "
                                "(Debian's postgresql package; .ci/run installs it)")
        self._bin_dir = bin_dir
        deadline = time.monotonic() + timeout
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.dir = Path(tempfile.mkdtemp(prefix="pengaduan-pg-"))
            identity = self._identity()
            if identity is not None:
                os.chown(self.dir, *identity)
            self._initdb(deadline)
            for attempt in range(1, _BIND_ATTEMPTS + 1):
                try:
                    self._launch(_free_port(self.host), deadline, timeout)
                    return
                except _BindError:
                    if attempt == _BIND_ATTEMPTS:
                        raise
        except BaseException:  # KeyboardInterrupt while waiting too
            self.stop()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Fast shutdown, SIGKILL after ``timeout``; remove the cluster; idempotent."""
        self._stop_processes(timeout)
        folder, self.dir = self.dir, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _stop_processes(self, timeout: float = 10) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:  # disarm it first: it must not act on a stop of ours
            watchdog.kill()
            watchdog.wait()
            if watchdog.stdin is not None:
                watchdog.stdin.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            if not exited(proc):
                _signal(proc.pid, signal.SIGINT)  # SIGINT: fast shutdown
                deadline = time.monotonic() + timeout
                while not exited(proc) and time.monotonic() < deadline:
                    time.sleep(_POLL_INTERVAL)
            if not exited(proc):  # it hung: kill it and its children (each child of a
                # postmaster calls setsid(), so they are not in its process group)
                for pid in [proc.pid, *_children(proc.pid)]:
                    _signal(pid, signal.SIGKILL)
            proc.wait()
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------

    def _bin(self, name: str) -> Path:
        assert self._bin_dir is not None
        return self._bin_dir / name

    def _identity(self) -> tuple[int, int] | None:
        """(uid, gid) to run the server as, or None to run it as ourselves (not root)."""
        if os.geteuid() != 0:
            return None
        names = [self._run_as] if self._run_as else ["postgres", "nobody"]
        for name in names:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid != 0:
                return entry.pw_uid, entry.pw_gid
        raise PostgresError(f"running as root and no unprivileged user to run PostgreSQL as "
                            f"(tried {', '.join(names)})")

    def _popen_kwargs(self) -> dict[str, object]:
        identity = self._identity()
        kwargs: dict[str, object] = {"cwd": self.dir, "env": _clean_env(), "stdin": subprocess.DEVNULL}
        if identity is not None:
            kwargs.update(user=identity[0], group=identity[1], extra_groups=[])
        return kwargs

    def _initdb(self, deadline: float) -> None:
        command = [
            str(self._bin("initdb")), "-D", str(self.data_dir), "-U", self.user,
            "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C",
        ]  # fmt: skip
        offset = _size(self.log_path)
        with self.log_path.open("ab") as log:
            try:
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                                      timeout=max(1.0, deadline - time.monotonic()),
                                      **self._popen_kwargs())  # type: ignore[call-overload]
            except subprocess.TimeoutExpired as err:
                raise PostgresError(f"initdb did not finish in time\n{self._tail(offset)}") from err
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode})\n{self._tail(offset)}")

    def _launch(self, port: int, deadline: float, timeout: float) -> None:
        command = [str(self._bin("postgres")), "-D", str(self.data_dir), "-p", str(port),
                   "-h", self.host, "-k", str(self.dir)]
        for key, value in self.settings.items():
            command += ["-c", f"{key}={value}"]
        offset = _size(self.log_path)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, **self._popen_kwargs())  # type: ignore[call-overload]
        self._proc, self._port = proc, port
        self._watchdog = subprocess.Popen(
            ["sh", "-c", _WATCHDOG, "pg-watchdog", str(proc.pid), str(self.dir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while True:
            if exited(proc):
                output = _read_from(self.log_path, offset)
                self._stop_processes()  # reap it; the cluster stays for another attempt
                error = _BindError if _is_bind_error(output) else PostgresError
                raise error(f"postgres exited during start-up on port {port} "
                            f"(exit code {proc.returncode})\n{self._tail(offset)}")
            if self._ready(port):
                return
            if time.monotonic() >= deadline:
                raise PostgresError(f"postgres did not accept connections on {self.host}:{port} "
                                    f"within {timeout:g} s\n{self._tail(offset)}")
            time.sleep(_POLL_INTERVAL)

    def _ready(self, port: int) -> bool:
        """The postmaster says "ready" in postmaster.pid (as pg_ctl -w reads it) and the port answers."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        if len(lines) < 8 or lines[7].strip() != "ready":
            return False
        try:
            socket.create_connection((self.host, port), timeout=1).close()
        except OSError:
            return False
        return True

    def _tail(self, offset: int) -> str:
        lines = _read_from(self.log_path, offset).strip().splitlines()[-_TAIL_LINES:]
        return f"--- {self.log_path} ---\n" + "\n".join(lines)


def _identifier(name: str) -> str:
    if not name or "\0" in name or len(name.encode()) > _MAX_NAME_BYTES:
        raise ValueError(f"not a usable database name: {name!r} (1 to {_MAX_NAME_BYTES} bytes)")
    return '"' + name.replace('"', '""') + '"'


def _clean_env() -> dict[str, str]:
    """Our environment without PG* variables (PGDATA, PGPORT, PGHOST...), in locale C."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and not k.startswith("LC_")}
    env.update(LANG="C", LC_ALL="C")
    return env


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _is_bind_error(output: str) -> bool:
    return "could not bind" in output or "Address already in use" in output


