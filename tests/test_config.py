"""config.toml and environment validation: one clear line naming the key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, load

ROOT = Path(__file__).resolve().parents[1]
ENV = {"MATRIX_PASSWORD": "pw", "WHATSAPP_TOKEN": "t", "WHATSAPP_APP_SECRET": "s",
       "WHATSAPP_VERIFY_TOKEN": "v"}


def test_the_shipped_example_config_is_valid() -> None:
    s = load(ROOT / "config.toml", ENV)
    assert s.rooms.by_role["admin"].startswith("#")
    assert s.channels["whatsapp"].graph_url == "https://graph.facebook.com"
    assert s.database_path.is_absolute()



def _config(tmp_path: Path, replace: tuple[str, str] | None = None) -> Path:
    text = (ROOT / "config.toml").read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("replace,expected", [
    (('user_id = "@pengaduan:localhost"', 'user_id = "pengaduan"'), "[matrix] user_id"),
    (('homeserver = "http://127.0.0.1:8008"', 'homeserver = "localhost"'), "[matrix] homeserver"),
    (('admin = "#pengaduan-admin:localhost"\n', ''), "[rooms] admin: missing"),
    (('kasi = "#pengaduan-kasi:localhost"', 'kasi = "pengaduan-kasi"'), "[rooms] kasi"),
    (('kabid = ["@kabid:localhost"]', 'kabid = ["kabid"]'), "[staff] kabid"),
    (('port = 8080', 'port = "8080"'), "[http] port: must be int"),
    (('port = 8080', 'port = 70000'), "[http] port"),
    (('phone_number_id = "106540352242922"', 'phone_number_id = "abc"'), "[whatsapp] phone_number_id"),
    (('api_version = "v21.0"', 'api_version = "21"'), "[whatsapp] api_version"),
    (('create = true', 'create = "yes"'), "[rooms] create: must be bool"),
    (('format = "text"', 'format = "xml"'), "[logging] format"),
])
def test_bad_keys_are_named(tmp_path: Path, replace: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(_config(tmp_path, replace), ENV)
    assert expected in str(e.value)


@pytest.mark.parametrize("missing", ["WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN"])
def test_missing_secret_is_named(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load(ROOT / "config.toml", env)


def test_matrix_needs_a_password_or_token() -> None:
    env = {k: v for k, v in ENV.items() if k != "MATRIX_PASSWORD"}
    with pytest.raises(ConfigError, match="MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN"):
        load(ROOT / "config.toml", env)
    assert load(ROOT / "config.toml", {**env, "MATRIX_ACCESS_TOKEN": "syt_x"}).matrix.access_token


def test_whatsapp_disabled_needs_no_whatsapp_secrets(tmp_path: Path) -> None:
    p = _config(tmp_path, ("enabled = true", "enabled = false"))
    s = load(p, {"MATRIX_PASSWORD": "pw"})
    assert not s.channels["whatsapp"].enabled


def test_not_toml_and_not_found(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[matrix\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad, ENV)
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.toml", ENV)


def test_bad_config_stops_startup_with_one_clear_line(tmp_path: Path) -> None:
    p = _config(tmp_path, ('port = 8080', 'port = "eighty"'))
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", str(p)],
                          capture_output=True, text=True, timeout=60, env={**ENV, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["config error: [http] port: must be int, not 'eighty'"]


def test_an_unknown_or_inconsistent_sop_profile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[sop\] profile: unknown profile 'jepara'"):
        load(_config(tmp_path, ('profile = "mojokerto"', 'profile = "jepara"')), ENV)
    broken = _config(tmp_path, ('profile = "mojokerto"', '''profile = "kantor"
total_minutes = 60
steps = [
  { id = "cek", role = "admin", minutes = 20, actions = { send = "hilang" } },
  { id = "selesai", role = "citizen", minutes = 5 },
]'''))
    with pytest.raises(ConfigError, match="leads to unknown step 'hilang'"):
        load(broken, ENV)


def test_sla_section(tmp_path: Path) -> None:
    text = (ROOT / "config.toml").read_text()
    for old, new in [('timezone = "Asia/Jakarta"', 'timezone = "Asia/Makassar"'), ("warn_ratio = 0.8", "warn_ratio = 0.75"),
                     ("remind_minutes = 30", "remind_minutes = 20"), ('digest_time = "07:30"', 'digest_time = "08:00"'),
                     ("cuti_bersama = []", "cuti_bersama = [2026-12-31]"), ('tue = ["07:30-16:00"]\n', "")]:
        assert old in text
        text = text.replace(old, new)
    p = tmp_path / "config.toml"
    p.write_text(text)
    s = load(p, ENV).sla
    assert s.policy.warn_ratio == 0.75 and s.policy.remind_minutes == 20 and s.digest_time.hour == 8
    assert s.calendar.tz.key == "Asia/Makassar"
    from datetime import date
    assert s.calendar.day_off(date(2026, 12, 31)) and s.calendar.day_off(date(2026, 12, 1))   # Tuesday: no hours
    assert s.calendar.day_off(date(2026, 12, 2)) is None


@pytest.mark.parametrize("replace,message", [
    (('timezone = "Asia/Jakarta"', 'timezone = "Mars/Olympus"'), "[sla] timezone"),
    (("warn_ratio = 0.8", "warn_ratio = 1.5"), "[sla] warn_ratio"),
    (('digest_time = "07:30"', 'digest_time = "pagi"'), "[sla] digest_time"),
    (("cuti_bersama = []", 'cuti_bersama = ["24-12-2026"]'), "[sla] cuti_bersama"),
    (('mon = ["07:30-16:00"]', 'senin = ["07:30-16:00"]'), "[sla.hours] senin"),
    (('mon = ["07:30-16:00"]', 'mon = ["16:00-07:00"]'), "[sla.hours]"),
])
def test_bad_sla_keys_are_named(tmp_path: Path, replace: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(_config(tmp_path, replace), ENV)
    assert message in str(e.value)


def test_room_ids_of_room_version_12_have_no_server_part(tmp_path: Path) -> None:
    p = _config(tmp_path, ('admin = "#pengaduan-admin:localhost"', 'admin = "!Ab3dEfGh1jKlMn0pQrStUvWxYz"'))
    assert load(p, ENV).rooms.by_role["admin"] == "!Ab3dEfGh1jKlMn0pQrStUvWxYz"


def test_the_database_is_a_sqlite_path_a_url_or_database_url_from_the_environment(tmp_path: Path) -> None:
    s = load(_config(tmp_path), ENV)
    assert (s.database_path, s.data_dir) == (tmp_path / "data" / "pengaduan.db", tmp_path / "data")
    assert s.database_url == f"sqlite:///{tmp_path}/data/pengaduan.db"
    pg = 'url = "postgresql://pengaduan@db.internal:5432/pengaduan"\ndata_dir = "/srv/pengaduan"'
    s = load(_config(tmp_path, ('path = "data/pengaduan.db"', pg)), ENV)
    assert (s.database_url, s.database_path) == ("postgresql://pengaduan@db.internal:5432/pengaduan", None)
    assert s.data_dir == Path("/srv/pengaduan")
    # The password stays out of config.toml: DATABASE_URL wins over [database] (also for case and export).
    secret = "postgresql://pengaduan:s3cret@db.internal/pengaduan"
    assert load(_config(tmp_path), {**ENV, "DATABASE_URL": secret}).database_url == secret
    assert load(_config(tmp_path), {"DATABASE_URL": secret}, offline=True).database_url == secret
    assert load(_config(tmp_path), {**ENV, "DATABASE_URL": secret}).data_dir == tmp_path / "data"


@pytest.mark.parametrize("database,message", [
    ('url = "mysql://x@h/db"', "[database] url (or DATABASE_URL): 'mysql://x@h/db': the database URL starts with"),
    ('url = "postgresql://x:pw@/db"', "'postgresql://x:***@/db': no host"),
    ('path = "a.db"\nurl = "postgresql://x@h/db"', "[database]: give url or path, not both"),
    ('path = "a.db"\ndata_dir = "/srv"', "[database] data_dir: only with PostgreSQL"),
])
def test_a_bad_database_setting_is_named(tmp_path: Path, database: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(_config(tmp_path, ('path = "data/pengaduan.db"', database)), ENV)
    assert message in str(e.value)
