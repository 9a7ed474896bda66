"""config.toml and the environment's secrets, read once at start into typed settings.

Nothing else in the bridge reads the TOML file or the environment. A missing or bad key
stops start-up with one line that names it (``ConfigError``).
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.workflow import STAFF_ROLES as ROLES, Profile, ProfileError, load_profile
from bridge.worktime import DEFAULT_HOURS, WEEKDAYS, SlaPolicy, WorkCalendar

_USER_ID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d+)?$")
# A room alias, or a room id: "!opaque:server", or "!opaque" alone (room version 12 on).
_ROOM = re.compile(r"^(#[^:\s]+:[A-Za-z0-9.\-]+(:\d+)?|![^:\s]+(:[A-Za-z0-9.\-]+(:\d+)?)?)$")


class ConfigError(Exception):
    """A configuration problem, worded for the operator in one line."""


@dataclass(frozen=True)
class MatrixSettings:
    homeserver: str
    user_id: str
    device_name: str
    password: str | None
    access_token: str | None


@dataclass(frozen=True)
class RoomSettings:
    by_role: dict[str, str]        # role -> room id (!...) or alias (#...)
    create: bool


@dataclass(frozen=True)
class UnitSettings:
    """A unit ("kasi/kabid yang membidangi"): the categories it handles and its rooms."""

    name: str
    categories: tuple[str, ...]
    rooms: dict[str, str]          # 'kasi' / 'kabid' -> room id or alias


@dataclass(frozen=True)
class SlaSettings:
    policy: SlaPolicy              # the working calendar, warn ratio and reminder interval
    check_seconds: float
    digest_time: time

    @property
    def calendar(self) -> WorkCalendar:
        return self.policy.calendar


@dataclass(frozen=True)
class CitizenSettings:
    """The citizen's side of the conversation ([citizen])."""

    ask_nik: bool = True             # the guided path asks for the NIK
    idle_hours: float = 24.0         # an unfinished conversation expires after this
    thanks_days: int = 3             # "terima kasih" this soon after an answer opens nothing
    confidential: bool = False       # every complaint is rahasia unless the citizen says otherwise
    rating: bool = True              # ask for a rating after the answer is delivered
    texts: Path | None = None        # the office's texts.toml (overrides bridge/texts.toml)


@dataclass(frozen=True)
class RetentionSettings:
    """[retention]: the daily purge of closed cases' personal data (bridge/retention.py)."""

    enabled: bool = False            # the daily job; main.py purge works either way
    days: int = 730                  # a closed case keeps its personal data this long
    run_at: time = time(2, 0)        # [retention] time: when the job runs, office time


@dataclass(frozen=True)
class HttpSettings:
    host: str
    port: int


@dataclass(frozen=True)
class Settings:
    matrix: MatrixSettings
    rooms: RoomSettings
    staff: dict[str, tuple[str, ...]]
    # Every known channel's settings by name (bridge/channels/registry.py), enabled or not.
    channels: dict[str, Any]
    http: HttpSettings
    # Where the store lives: "sqlite:///<absolute path>" or "postgresql://..." (bridge.db);
    # database_path is the SQLite file (None on PostgreSQL), data_dir the folder of media/ and reports/.
    database_url: str
    database_path: Path | None
    data_dir: Path
    sop: Profile
    sla: SlaSettings
    units: tuple[UnitSettings, ...] = ()
    citizen: CitizenSettings = CitizenSettings()
    retention: RetentionSettings = RetentionSettings()
    log_format: str = "text"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def load(path: str | Path, env: Mapping[str, str] | None = None, *, offline: bool = False) -> Settings:
    """Read ``path`` and the secrets in ``env`` (default: os.environ).

    ``offline``: for shell commands that only read the database (case, export): no secret
    is needed, and none is read.
    """
    env = os.environ if env is None else env
    return from_dict(read_toml(path), env, base_dir=Path(path).resolve().parent, offline=offline)


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def has_credentials(env: Mapping[str, str] | None = None) -> bool:
    """Whether any secret is set: with none, ``./run`` starts the local demo instead."""
    env = os.environ if env is None else env
    from bridge.channels import registry
    return any(env.get(k) for k in ("MATRIX_PASSWORD", "MATRIX_ACCESS_TOKEN",
                                     *(name for ch in registry.channels() for name in ch.secrets)))


def from_dict(data: dict[str, Any], env: Mapping[str, str], *, base_dir: Path,
              offline: bool = False) -> Settings:
    from bridge.channels import registry
    r = _Reader(data, {} if offline else env, offline=offline)

    matrix = MatrixSettings(
        homeserver=r.url("matrix", "homeserver"),
        user_id=r.match("matrix", "user_id", _USER_ID, "a Matrix user id like @bot:example.org"),
        device_name=r.get("matrix", "device_name", str, "pengaduan-bridge"),
        password=None if offline else env.get("MATRIX_PASSWORD") or None,
        access_token=None if offline else env.get("MATRIX_ACCESS_TOKEN") or None,
    )
    if not (matrix.password or matrix.access_token or offline):
        raise ConfigError("environment: set MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN for the bot account")

    rooms = RoomSettings(
        by_role={role: r.match("rooms", role, _ROOM, "a room id (!id:server) or alias (#name:server)")
                 for role in ROLES},
        create=r.get("rooms", "create", bool, False),
    )
    staff = {role: tuple(r.user_list("staff", role)) for role in ROLES}

    channels = {ch.name: ch.read_settings(Section(r, ch.name, ch.enabled_by_default)) for ch in registry.channels()}

    port = r.get("http", "port", int, 8080)
    if not 0 <= port <= 65535:
        raise ConfigError(f"[http] port: {port} is not a TCP port")
    http = HttpSettings(host=r.get("http", "host", str, "127.0.0.1"), port=port)

    database_url, db, data_dir = _database(r, env, base_dir)
    sop = data.get("sop", {})
    if not isinstance(sop, dict):
        raise ConfigError("[sop]: must be a table")
    try:
        profile = load_profile(sop)
    except ProfileError as e:
        raise ConfigError(str(e)) from None
    log_format = r.get("logging", "format", str, "text")
    if log_format not in ("text", "json"):
        raise ConfigError(f"[logging] format: must be \"text\" or \"json\", not {log_format!r}")
    return Settings(matrix=matrix, rooms=rooms, staff=staff, channels=channels, http=http,
                    database_url=database_url, database_path=db, data_dir=data_dir, sop=profile,
                    units=_units(data), sla=_sla(data),
                    citizen=_citizen(r, base_dir), retention=_retention(r), log_format=log_format, raw=data)


def _database(r: "_Reader", env: Mapping[str, str], base_dir: Path) -> tuple[str, Path | None, Path]:
    """(URL, SQLite file or None, data folder). ``DATABASE_URL`` in the environment (read by
    the offline commands too: they open the database) wins over ``[database] url`` and
    ``path`` (which exclude each other); with neither, the SQLite file at ``path``. The data folder
    (media/, reports/) is beside the SQLite file, or ``[database] data_dir`` on PostgreSQL."""
    from bridge.db import POSTGRESQL, BadDatabaseUrl, parse_url
    if r.get("database", "url", str, "") and r.get("database", "path", str, ""):
        raise ConfigError("[database]: give url or path, not both")
    url = env.get("DATABASE_URL") or r.get("database", "url", str, "")
    try:
        dialect, target = parse_url(url) if url else ("sqlite", r.get("database", "path", str, "data/pengaduan.db"))
    except BadDatabaseUrl as e:
        raise ConfigError(f"[database] url (or DATABASE_URL): {e}") from None
    if dialect == POSTGRESQL:
        data_dir = Path(r.get("database", "data_dir", str, "data"))
        return target, None, data_dir if data_dir.is_absolute() else base_dir / data_dir
    if r.get("database", "data_dir", str, ""):
        raise ConfigError("[database] data_dir: only with PostgreSQL (a SQLite database keeps media/ beside it)")
    path = Path(target)
    if not path.is_absolute():
        path = base_dir / path
    return f"sqlite:///{path}", path, path.parent


def _citizen(r: "_Reader", base_dir: Path) -> CitizenSettings:
    idle = r.get("citizen", "idle_hours", (int, float), 24)
    days = r.get("citizen", "thanks_days", int, 3)
    if idle <= 0 or days < 0:
        raise ConfigError("[citizen] idle_hours must be positive and thanks_days not negative")
    texts = r.get("citizen", "texts", str, "")
    path = (base_dir / texts) if texts else (base_dir / "texts.toml")
    if texts and not path.is_file():
        raise ConfigError(f"[citizen] texts: {path} not found")
    return CitizenSettings(
        ask_nik=r.get("citizen", "ask_nik", bool, True), idle_hours=float(idle), thanks_days=days,
        confidential=r.get("citizen", "confidential", bool, False), rating=r.get("citizen", "rating", bool, True),
        texts=path if path.is_file() else None)


def _retention(r: "_Reader") -> RetentionSettings:
    days = r.get("retention", "days", int, 730)
    if days < 1:
        raise ConfigError(f"[retention] days: must be at least 1, not {days}")
    at = r.get("retention", "time", str, "02:00")
    try:
        run_at = time.fromisoformat(at)
    except ValueError:
        raise ConfigError(f"[retention] time: {at!r} is not a time like \"02:00\"") from None
    return RetentionSettings(enabled=r.get("retention", "enabled", bool, False), days=days, run_at=run_at)


def _sla(data: dict[str, Any]) -> SlaSettings:
    r = _Reader(data, {})
    tz = r.get("sla", "timezone", str, "Asia/Jakarta")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"[sla] timezone: unknown timezone {tz!r} (e.g. Asia/Jakarta, Asia/Makassar)") from None
    hours = r.get("sla", "hours", dict, DEFAULT_HOURS)
    for day, periods in hours.items():
        if day not in WEEKDAYS:
            raise ConfigError(f"[sla.hours] {day}: not a day (use {', '.join(WEEKDAYS)})")
        if not isinstance(periods, list) or not all(isinstance(p, str) for p in periods):
            raise ConfigError(f"[sla.hours] {day}: must be a list like [\"07:30-11:30\", \"13:00-16:00\"]")
    days_off = []
    for key in ("cuti_bersama", "local_holidays"):
        for d in r.get("sla", key, list, []):
            if not isinstance(d, date):
                raise ConfigError(f"[sla] {key}: {d!r} is not a date (write 2026-12-24, without quotes)")
            days_off.append(d)
    try:
        calendar = WorkCalendar.from_config(
            tz, hours, days_off,
            national=r.get("sla", "national_holidays", bool, True),
            cuti_bersama_nasional=r.get("sla", "cuti_bersama_nasional", bool, True))
    except ValueError as e:
        raise ConfigError(f"[sla.hours]: {e}") from None
    warn_ratio = r.get("sla", "warn_ratio", float, 0.8)
    if not 0 < warn_ratio <= 1:
        raise ConfigError("[sla] warn_ratio: must be more than 0 and at most 1")
    remind = r.get("sla", "remind_minutes", int, 30)
    check = r.get("sla", "check_seconds", (int, float), 30)
    if remind <= 0 or check <= 0:
        raise ConfigError("[sla] remind_minutes and check_seconds: must be positive")
    digest = r.get("sla", "digest_time", str, "07:30")
    try:
        digest_time = time.fromisoformat(digest)
    except ValueError:
        raise ConfigError(f"[sla] digest_time: {digest!r} is not a time like \"07:30\"") from None
    return SlaSettings(SlaPolicy(calendar, warn_ratio, remind), float(check), digest_time)


def _units(data: dict[str, Any]) -> tuple[UnitSettings, ...]:
    units = data.get("units", [])
    if not isinstance(units, list):
        raise ConfigError("[[units]]: must be an array of tables")
    out: list[UnitSettings] = []
    for i, u in enumerate(units):
        where = f"[[units]] #{i + 1}"
        if not isinstance(u, dict) or not isinstance(u.get("name"), str) or not u["name"].strip():
            raise ConfigError(f"{where}: name: missing")
        name = u["name"].strip()
        if not re.match(r"^[a-z0-9_-]+$", name):
            raise ConfigError(f"{where} name: {name!r} must be lowercase letters, digits, - or _")
        cats = u.get("categories")
        if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
            raise ConfigError(f"{where} ({name}) categories: must be a list of service names")
        rooms = {}
        for role in ("kasi", "kabid"):
            ref = u.get(role)
            if not isinstance(ref, str) or not _ROOM.match(ref):
                raise ConfigError(f"{where} ({name}) {role}: must be a room id or alias")
            rooms[role] = ref
        out.append(UnitSettings(name, tuple(cats), rooms))
    return tuple(out)


class Section:
    """One channel's config table (``[name]``) and its secrets, for ``Channel.read_settings``.

    ``enabled`` is read here for every channel; a disabled channel needs no secret and no
    key of its own (``secret`` and ``required`` give "" then)."""

    def __init__(self, reader: "_Reader", table: str, enabled_by_default: bool) -> None:
        self.reader = reader
        self.table = table
        self.enabled: bool = reader.get(table, "enabled", bool, enabled_by_default)

    def get(self, key: str, typ: Any, default: Any) -> Any:
        return self.reader.get(self.table, key, typ, default)

    def required(self, key: str, typ: Any = str) -> Any:
        return self.reader.get(self.table, key, typ) if self.enabled else ""

    def url(self, key: str, default: str) -> str:
        return self.reader.url(self.table, key, default)

    def match(self, key: str, pattern: re.Pattern[str], what: str, default: str) -> str:
        return self.reader.match(self.table, key, pattern, what, default)

    def secret(self, name: str) -> str:
        return self.reader.secret(name, self.table) if self.enabled else ""

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"[{self.table}] {message}")


class _Reader:
    """Typed access to the TOML tables; every failure names its key."""

    def __init__(self, data: dict[str, Any], env: Mapping[str, str], offline: bool = False) -> None:
        self.data = data
        self.env = env
        self.offline = offline

    _MISSING = object()

    def get(self, table: str, key: str, typ: Any, default: Any = _MISSING) -> Any:
        section = self.data.get(table, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{table}]: must be a table")
        if key not in section:
            if default is self._MISSING:
                raise ConfigError(f"[{table}] {key}: missing")
            return default
        value = section[key]
        # bool is an int in Python; keep them apart so port = true is refused.
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (typ in (int, float, (int, float)) and isinstance(value, bool)):
            name = typ.__name__ if isinstance(typ, type) else "a number"
            raise ConfigError(f"[{table}] {key}: must be {name}, not {value!r}")
        if typ is str and not value.strip():
            raise ConfigError(f"[{table}] {key}: must not be empty")
        return value

    def match(self, table: str, key: str, pattern: re.Pattern[str], what: str,
              default: Any = _MISSING) -> str:
        value = self.get(table, key, str, default)
        if not pattern.match(value):
            raise ConfigError(f"[{table}] {key}: {value!r} is not {what}")
        return value

    def url(self, table: str, key: str, default: Any = _MISSING) -> str:
        value = self.get(table, key, str, default)
        if not re.match(r"^https?://[^\s/]+", value):
            raise ConfigError(f"[{table}] {key}: {value!r} is not an http(s) URL")
        return value

    def user_list(self, table: str, key: str) -> list[str]:
        value = self.get(table, key, list, [])
        for item in value:
            if not isinstance(item, str) or not _USER_ID.match(item):
                raise ConfigError(f"[{table}] {key}: {item!r} is not a Matrix user id like @name:example.org")
        return value

    def secret(self, name: str, table: str) -> str:
        value = self.env.get(name, "")
        if not value and not self.offline:
            raise ConfigError(f"environment: {name} is not set (needed by [{table}])")
        return value
