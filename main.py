"""Pengaduan bridge: citizens' complaints from WhatsApp into the office's Matrix rooms.

    python main.py --config config.toml             run the bridge (until SIGINT/SIGTERM)
    python main.py --config config.toml case ADU-…  print a case's transcript and history
    python main.py --config config.toml setup       create/join rooms, invite staff, say what is missing
    python main.py --config config.toml export --month 2026-11   the month's complaints (CSV, Excel)
    python main.py --config config.toml purge --older-than 730 [--dry-run]   retention: closed cases' personal data
    python main.py --config config.toml backup /backup                a consistent copy of the database and media
    python main.py --config config.toml migrate-db --to postgresql://…   move the SQLite data into PostgreSQL
    python main.py demo                              the local demo (also: ./run with no credentials)
    python main.py --config data/demo/config.toml case ADU-…     the shell commands on the demo's data
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path

from bridge import transcript
from bridge.app import Bridge
from bridge.clock import system_clock
from bridge.config import ConfigError, Settings, has_credentials, load, read_toml
from bridge.matrix import MatrixStartupError
from bridge.privacy import MaskingFilter
from bridge.store import NoDatabase, Store

log = logging.getLogger("bridge")


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a traceback or a stack goes whole into "exc_info" / "stack_info".

    The handler's MaskingFilter has masked the message, the traceback and the stack by now;
    the formatter masks once more (masking is idempotent) for a handler installed without it."""

    _mask = MaskingFilter()

    def format(self, record: logging.LogRecord) -> str:
        self._mask.filter(record)           # also renders record.exc_text from exc_info, masked
        entry = {"time": self.formatTime(record), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("nio", "aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run(settings: Settings) -> None:
    stop = stop_on_signals()
    bridge = Bridge(settings)
    await bridge.start()
    bridge.freeze_what_start_made()
    try:
        await stop.wait()
        log.info("bridge: stopping")
    finally:
        await bridge.stop()
    log.info("bridge: stopped")


def demo_dir(config: str, base: dict | None = None) -> Path:
    """Where the demo keeps its data: ``data/demo`` beside config.toml, or the folder of the
    config the demo wrote there (it says ``[demo] data_dir = "."``)."""
    folder = Path(config).resolve().parent
    own = (base or {}).get("demo", {})
    return folder / own["data_dir"] if isinstance(own, dict) and "data_dir" in own else folder / "data" / "demo"


async def demo(config: str, args: argparse.Namespace) -> None:
    from bridge.demo import run_demo
    base = read_toml(config)
    data_dir = Path(args.data_dir) if args.data_dir else demo_dir(config, base)
    await run_demo(base, data_dir, stop_on_signals(),
                   http_port=args.http_port, homeserver_port=args.homeserver_port)
    log.info("demo: stopped")


def print_case(settings: Settings, ticket: str) -> str:
    """The printable transcript of one case, as text, read from the database."""
    async def read() -> str:
        store = await Store.open(settings.database_url, create=False)
        try:
            async with store.reading() as tx:
                case = await tx.get_case_by_ticket(ticket.upper())
                if case is not None and case["purged_at"]:
                    # Retention removed its personal data: say so, and show what stayed.
                    from bridge.retention import purged_text
                    return await purged_text(tx, case, settings.sop)
                return transcript.to_text(await transcript.build_by_ticket(
                    tx, ticket.upper(), reveal_contact=True, profile=settings.sop))
        finally:
            await store.close()
    return asyncio.run(read())


async def export(settings: Settings, month: str, out_dir: Path | None) -> str:
    """Write the month's files (default: ``reports/`` beside the database); say what was written."""
    from bridge.export import export_month, month_range
    month_range(month, settings.sla.calendar)          # a bad month is refused before anything opens
    store = await Store.open(settings.database_url, create=False)
    try:
        done = await export_month(store, settings.sop, settings.sla.calendar, month,
                                  out_dir or settings.data_dir / "reports")
    finally:
        await store.close()
    return f"{done.count} pengaduan ditulis ke {done.csv} dan {done.xlsx.name}"


async def purge(settings: Settings, days: int | None, *, dry_run: bool, vacuum: bool) -> str:
    """Retention: remove the personal data of cases closed more than ``days`` days ago
    (default: [retention] days); ``dry_run`` says what would go and changes nothing."""
    from bridge.retention import purge as run_purge
    days = settings.retention.days if days is None else days
    if days < 1:
        raise ValueError(f"--older-than: must be at least 1 day, not {days}")
    path = settings.database_path
    if path is not None and not path.is_file():     # like case and export: a database is never made here
        raise NoDatabase(f"no database at {path}")
    # Read-only for a dry run; else the bridge's own way in (it may be running: one writer at a time).
    store = await Store.open(settings.database_url, create=not dry_run)
    try:
        done = await run_purge(store, settings.data_dir / "media", days=days, now=system_clock(),
                               dry_run=dry_run, vacuum=vacuum and not dry_run)
    finally:
        await store.close()
    return "\n".join(done.lines(settings.sla.calendar.tz))


def backup(settings: Settings, dest: Path) -> str:
    """A consistent copy of the database and the media folder in a new folder under ``dest``."""
    from bridge.backup import backup as run_backup
    if settings.database_path is None:
        raise ValueError("backup copies a SQLite database; on PostgreSQL back up with pg_dump "
                         f"(and copy {settings.data_dir / 'media'})")
    done = run_backup(settings.database_path, dest, now=system_clock(), tz=settings.sla.calendar.tz)
    return "\n".join(done.lines())


async def migrate_db(settings: Settings, to: str | None, config: str) -> str:
    """Copy the config's SQLite database into an empty PostgreSQL one (``to``, else
    DATABASE_URL): moving an office (bridge/migrate_db.py). Says what to change in config.toml."""
    import asyncpg
    from bridge.db import POSTGRESQL, _without_password, parse_url
    from bridge.migrate_db import CannotCopy, copy_database
    url = to or os.environ.get("DATABASE_URL")
    if not url:
        raise ValueError("migrate-db: give the PostgreSQL database, --to postgresql://..., or set DATABASE_URL")
    if settings.database_path is None:
        raise ValueError("migrate-db copies the config's SQLite database ([database] path), "
                         "and this config's [database] url is PostgreSQL already")
    if parse_url(url)[0] != POSTGRESQL:
        raise ValueError(f"migrate-db: the target is a postgresql:// URL, not {_without_password(url)!r}")
    source = await Store.open(settings.database_path, create=False)     # read-only: the source stays as it is
    try:
        try:
            target = await Store.open(url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise CannotCopy(f"cannot open {_without_password(url)}: {e}") from e
        try:
            done = await copy_database(source, target)
        finally:
            await target.close()
    finally:
        await source.close()
    return "\n".join(done.lines(Path(config).resolve().parent))


def no_database(config: str, error: NoDatabase) -> str:
    """The error line, pointing at the demo's config when the demo has run beside this one."""
    line = f"error: {error}"
    demo_config = demo_dir(config) / "config.toml"
    if demo_config.is_file() and demo_config != Path(config).resolve():
        line += f" (the local demo's data: --config {os.path.relpath(demo_config)})"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.toml", help="path to config.toml")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bridge (the default)")
    case = sub.add_parser("case", help="print a case's transcript and history")
    case.add_argument("ticket", help="e.g. ADU-2026-000123")
    sub.add_parser("setup", help="create or join the role rooms, invite staff, set power levels, "
                                 "and say what is still missing (safe to run again)")
    export_cmd = sub.add_parser("export", help="write a month's complaints as CSV and Excel")
    export_cmd.add_argument("--month", required=True, help="YYYY-MM, e.g. 2026-11")
    export_cmd.add_argument("--out", type=Path, help="folder for the files (default: reports/ beside the database)")
    purge_cmd = sub.add_parser("purge", help="retention: remove the personal data of cases closed longer ago "
                                             "than the period, keep their figures")
    purge_cmd.add_argument("--older-than", type=int, metavar="DAYS",
                           help="cases closed more than DAYS days ago (default: [retention] days)")
    purge_cmd.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    purge_cmd.add_argument("--vacuum", action="store_true",
                           help="rebuild the database file after the purge (once, for a database from before "
                                "retention; holds the bridge's writes while it runs)")
    backup_cmd = sub.add_parser("backup", help="write a consistent copy of the database and media/ into a new "
                                               "folder under DEST (safe while the bridge runs)")
    backup_cmd.add_argument("dest", type=Path, help="e.g. /backup: the copy goes to DEST/pengaduan-YYYYmmdd-HHMMSS/")
    migrate_cmd = sub.add_parser("migrate-db", help="copy the office's SQLite database ([database] path) into an "
                                                    "empty PostgreSQL database, and say what to change in "
                                                    "config.toml (stop the bridge first)")
    migrate_cmd.add_argument("--to", metavar="URL", help="postgresql://user@host:port/dbname (default: DATABASE_URL)")
    demo_cmd = sub.add_parser("demo", help="the local demo: embedded homeserver and citizen simulator "
                                           "(what ./run does when no credentials are set)")
    demo_cmd.add_argument("--data-dir", help="default: data/demo beside config.toml")
    demo_cmd.add_argument("--http-port", type=int, default=8080, help="0: any free port")
    demo_cmd.add_argument("--homeserver-port", type=int, default=8008, help="0: any free port")
    args = parser.parse_args(argv)
    if args.command is None and not has_credentials():
        print("No credentials (MATRIX_* or a channel's secrets) in the environment: starting the local demo "
              "(see README to run with a real homeserver and citizen channels).", file=sys.stderr)
        args = parser.parse_args([*(argv or sys.argv[1:]), "demo"])
    setup_logging()
    try:
        if args.command == "demo":
            asyncio.run(demo(args.config, args))
            return 0
        if args.command == "setup":
            from bridge.setup import setup_command
            print("\n".join(asyncio.run(setup_command(args.config))))
            return 0
        # migrate-db: DATABASE_URL names its target; the source is the config's own SQLite database.
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} if args.command == "migrate-db" else None
        settings = load(args.config, env, offline=args.command in ("case", "export", "purge", "backup", "migrate-db"))
        setup_logging(settings.log_format)
        if args.command == "case":
            print(print_case(settings, args.ticket), end="")
        elif args.command == "export":
            print(asyncio.run(export(settings, args.month, args.out)))
        elif args.command == "purge":
            print(asyncio.run(purge(settings, args.older_than, dry_run=args.dry_run, vacuum=args.vacuum)))
        elif args.command == "backup":
            try:
                print(backup(settings, args.dest))
            except (OSError, sqlite3.Error) as e:     # DEST not writable, a full disk, a broken copy
                print(f"error: backup failed: {e}", file=sys.stderr)
                return 2
        elif args.command == "migrate-db":
            from bridge.migrate_db import CannotCopy
            try:
                print(asyncio.run(migrate_db(settings, args.to, args.config)))
            except CannotCopy as e:
                print(f"error: migrate-db: {e}", file=sys.stderr)
                return 2
        else:
            asyncio.run(run(settings))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:           # e.g. a month that is not YYYY-MM
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NoDatabase as e:           # case, export, purge, backup, migrate-db never make a database; PostgreSQL down
        print(no_database(args.config, e), file=sys.stderr)
        return 2
    except transcript.NotFound as e:
        print(f"no case {e}", file=sys.stderr)
        return 1
    except MatrixStartupError as e:
        print(f"cannot start: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
