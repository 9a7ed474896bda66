"""``main.py backup DEST``: a consistent copy of the database and the media folder.

The database is copied with SQLite's online backup API (``sqlite3.Connection.backup``)
from a read-only connection, in one step: it reads one snapshot of the database (the
write-ahead log included) while the bridge goes on writing, and never blocks it (WAL
lets writers go on beside a reader). The media folder is copied after the database, so
every file the copied database names was complete before the copy began (a file is
written before the row that names it commits); a file written meanwhile is taken or not,
and a restored bridge fetches again any file its database does not name yet.

Everything goes into a new folder ``DEST/pengaduan-YYYYmmdd-HHMMSS/`` (office time):
the database under its own name (``pengaduan.db``) and ``media/``, readable by the
owner only (folders 0700, files 0600). Restoring (README, "Backups"): stop the bridge,
put the database and ``media/`` where ``[database] path`` says (no -wal or -shm file of
the old database left beside it), start the bridge.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from bridge.store import MEDIA_DIR, NoDatabase


@dataclass(frozen=True)
class Backup:
    folder: Path
    database: Path
    database_bytes: int
    cases: int
    media_files: int
    media_bytes: int

    def lines(self) -> list[str]:
        return [f"Cadangan ditulis ke {self.folder}",
                f"  {self.database.name}: {self.cases} pengaduan, {self.database_bytes} byte",
                f"  {MEDIA_DIR}/: {self.media_files} berkas, {self.media_bytes} byte"]


def backup(database: Path, dest: Path, *, now: datetime, tz: tzinfo) -> Backup:
    """Copy ``database`` and the media folder beside it into a new folder under ``dest``."""
    database = Path(database)
    if not database.is_file():
        raise NoDatabase(f"no database at {database}")
    if not dest.exists():
        dest.mkdir(mode=0o700, parents=True)
    folder = _new_folder(dest, f"pengaduan-{now.astimezone(tz):%Y%m%d-%H%M%S}")
    copy = folder / database.name
    os.close(os.open(copy, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    cases = _copy_database(database, copy)
    files, size = _copy_media(database.parent / MEDIA_DIR, folder / MEDIA_DIR)
    return Backup(folder, copy, copy.stat().st_size, cases, files, size)


def _new_folder(dest: Path, name: str) -> Path:
    for n in range(1, 100):
        folder = dest / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        folder.chmod(0o700)              # whatever the umask
        return folder
    raise FileExistsError(f"{dest / name}: already there")


def _copy_database(source: Path, copy: Path) -> int:
    """The online backup, checked: the copy passes quick_check; returns its number of cases."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)              # pages=-1: one step, one snapshot, never restarted by a write
            (check,) = dst.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise RuntimeError(f"the copy {copy} failed its check: {check}")
            (cases,) = dst.execute("SELECT count(*) FROM cases").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    for leftover in (Path(f"{copy}-wal"), Path(f"{copy}-shm")):
        leftover.unlink(missing_ok=True)     # closed cleanly: nothing in them
    copy.chmod(0o600)
    return cases


def _copy_media(media: Path, target: Path) -> tuple[int, int]:
    """Copy the media folder's files (owner-only); a file removed meanwhile (a purge) is skipped."""
    target.mkdir(mode=0o700)
    target.chmod(0o700)
    files = size = 0
    if not media.is_dir():
        return files, size
    for root, dirs, names in os.walk(media):
        here = target / Path(root).relative_to(media)
        for d in dirs:
            (here / d).mkdir(mode=0o700, exist_ok=True)
            (here / d).chmod(0o700)
        for name in names:
            to = here / name
            try:
                shutil.copyfile(Path(root) / name, to)
            except FileNotFoundError:
                continue
            to.chmod(0o600)
            files += 1
            size += to.stat().st_size
    return files, size
