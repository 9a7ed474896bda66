"""A local, throw-away Synapse homeserver for the tests and for a local demo.

``LocalSynapse`` generates a Synapse config in a data directory on first start,
rewrites it for a closed, loopback-only server (client API only, no federation,
no key servers, no stats, rate limits raised), runs Synapse in its own process
group and waits until the client API answers.  Later starts on the same data
directory reuse the config, the signing key and the database; only the listener
(host and port) and the log level follow the constructor arguments.

The code is synchronous on purpose (subprocess + urllib): it is used from a sync
pytest session fixture and from a CLI before any asyncio loop runs.

    with LocalSynapse(Path("data/synapse")) as hs:
        admin = hs.register("admin", "secret", admin=True)
        token = hs.login("admin", "secret")

Run ``python -m bridge.homeserver --data-dir data/synapse`` for a demo server.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

__all__ = ["LocalSynapse", "SynapseError", "SynapseStartError"]

CONFIG_FILE = "homeserver.yaml"
LOG_FILE = "homeserver.log"
LOG_CONFIG_FILE = "log.config"  # only if the generated config names none
OUTPUT_FILE = "synapse.out"  # Synapse's own stdout/stderr (start-up tracebacks land here)
DATABASE_FILE = "homeserver.db"
MEDIA_DIR = "media_store"

_BIND_ATTEMPTS = 3
_POLL_INTERVAL = 0.1
_HTTP_TIMEOUT = 30.0
_TAIL_LINES = 40

# High enough that no test ever waits on a limiter.  The keys are the ones
# synapse/config/ratelimiting.py (RatelimitConfig.read_config) of 1.163 parses.
_UNLIMITED: dict[str, float] = {"per_second": 10_000, "burst_count": 100_000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_admin_redaction": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
}

# Never talk to any other server: no federation listener, no outbound federation,
# no notary key servers, no stats reporting, no URL previews.
_CLOSED_SERVER: dict[str, Any] = {
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "federation_domain_whitelist": [],
    "report_stats": False,
    "enable_registration": False,
    "url_preview_enabled": False,
    "presence": {"enabled": False},
}

# A throw-away server: cheap password hashing (Synapse's own tests use 4; the
# default of 12 costs about a quarter of a second per register or login).
_FAST_HASHING: dict[str, Any] = {"bcrypt_rounds": 4}


class SynapseError(RuntimeError):
    """A request to the local Synapse failed."""


class SynapseStartError(SynapseError):
    """Synapse died during start-up or did not answer in time."""


class _BindError(SynapseStartError):
    """Synapse could not bind its port (someone else took it)."""


class LocalSynapse:
    """One Synapse process serving the client API on a loopback port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str = "localhost",
        port: int | None = None,
        host: str = "127.0.0.1",
        log_level: str = "WARNING",
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.server_name = server_name
        self.host = host
        self.log_level = log_level.upper()
        self._requested_port = port or None  # 0 means "any free port" too
        self._port: int | None = None
        self._secret: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- properties ---------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("LocalSynapse has not been started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def registration_shared_secret(self) -> str:
        if self._secret is None:
            self._secret = self._prepare_config()
        return self._secret

    @property
    def pid(self) -> int | None:
        """Process id (and process group id) of the running Synapse, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not exited(self._proc)

    # -- life cycle ---------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Start Synapse and wait until ``/_matrix/client/versions`` answers 200."""
        if self.running:
            raise RuntimeError(f"Synapse is already running (pid {self.pid})")
        self.stop()  # reap a process that died on its own since the last start
        self._secret = self._prepare_config()
        deadline = time.monotonic() + timeout
        attempts = 1 if self._requested_port is not None else _BIND_ATTEMPTS
        try:
            for attempt in range(1, attempts + 1):
                port = self._requested_port
                if port is None:
                    port = _free_port(self.host)
                self._write_listener(port)
                try:
                    self._launch(port, deadline, timeout)
                    return
                except _BindError as err:
                    if attempt == attempts:
                        raise SynapseStartError(
                            f"Synapse could not bind {self.host}:{port} "
                            f"(attempt {attempt} of {attempts}): {err}"
                        ) from err
        except BaseException:  # including KeyboardInterrupt while waiting
            self.stop()
            self._port = None
            raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if not exited(proc):
            _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not exited(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
        # The leader is dead but not reaped yet (a zombie), so its pid cannot be
        # reused and the group id still names only our processes: kill whatever
        # is left in the group, then reap.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- users --------------------------------------------------------------

    def register(self, localpart: str, password: str, *, admin: bool = False) -> str:
        """Create a user through the shared-secret admin API; return its user id.

        An existing user is fine: then the password is checked by logging in (the
        admin flag of an existing user is left as it is).
        """
        status, body = self._request("GET", "/_synapse/admin/v1/register")
        if status != 200 or "nonce" not in body:
            raise SynapseError(f"register {localpart!r}: no nonce ({status}): {body}")
        nonce = str(body["nonce"])
        parts = (nonce, localpart, password, "admin" if admin else "notadmin")
        mac = hmac.new(
            self.registration_shared_secret.encode(),
            b"\x00".join(part.encode() for part in parts),
            hashlib.sha1,
        )
        payload = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        status, body = self._request("POST", "/_synapse/admin/v1/register", payload)
        if status == 200:
            return str(body["user_id"])
        if status == 400 and body.get("errcode") == "M_USER_IN_USE":
            self.login(localpart, password)
            return f"@{localpart}:{self.server_name}"
        raise SynapseError(f"register {localpart!r} failed ({status}): {body}")

    def login(self, localpart: str, password: str) -> str:
        """Log in with a password; return a fresh access token."""
        payload = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        }
        status, body = self._request("POST", "/_matrix/client/v3/login", payload)
        if status != 200 or "access_token" not in body:
            raise SynapseError(f"login {localpart!r} failed ({status}): {body}")
        return str(body["access_token"])

    def lift_ratelimit(self, user_id: str, admin_token: str) -> None:
        """Exempt ``user_id`` from message rate limits (needs an admin's token)."""
        path = (
            "/_synapse/admin/v1/users/"
            f"{urllib.parse.quote(user_id, safe='')}/override_ratelimit"
        )
        payload = {"messages_per_second": 0, "burst_count": 0}
        status, body = self._request("POST", path, payload, token=admin_token)
        if status != 200:
            raise SynapseError(f"override_ratelimit {user_id} failed ({status}): {body}")

    # -- config -------------------------------------------------------------

    def _prepare_config(self) -> str:
        """Generate and adapt the config on first use; return the shared secret."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self._generate_config()
        config = self._read_config()
        if config.get("server_name") != self.server_name:
            raise SynapseError(
                f"{self.config_path} is for server {config.get('server_name')!r}, "
                f"not {self.server_name!r}"
            )
        if not config.get("log_config"):
            config["log_config"] = str(self.data_dir / LOG_CONFIG_FILE)
            self._write_config(config)
        self._write_log_config(Path(config["log_config"]))
        secret = config.get("registration_shared_secret")
        if not isinstance(secret, str) or not secret:
            raise SynapseError(f"{self.config_path} has no registration_shared_secret")
        return secret

    def _generate_config(self) -> None:
        command = [
            sys.executable, "-m", "synapse.app.homeserver",
            "--server-name", self.server_name,
            "--config-path", str(self.config_path),
            "--data-directory", str(self.data_dir),
            "--generate-config",
            "--report-stats=no",
        ]  # fmt: skip
        result = subprocess.run(
            command, cwd=self.data_dir, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise SynapseError(
                f"generating the Synapse config failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        config = self._read_config()
        config["listeners"] = [self._listener(8008)]  # the real port is set per start
        config["database"] = {
            "name": "sqlite3",
            "args": {"database": str(self.data_dir / DATABASE_FILE)},
        }
        config["media_store_path"] = str(self.data_dir / MEDIA_DIR)
        # Keep the generated log config path; its content is rewritten every start.
        config.setdefault("log_config", str(self.data_dir / LOG_CONFIG_FILE))
        config.update(_CLOSED_SERVER)
        config.update(_RATE_LIMITS)
        config.update(_FAST_HASHING)
        if not config.get("registration_shared_secret"):
            config["registration_shared_secret"] = secrets.token_urlsafe(32)
        config.pop("registration_shared_secret_path", None)
        self._write_config(config)

    def _write_listener(self, port: int) -> None:
        config = self._read_config()
        config["listeners"] = [self._listener(port)]
        self._write_config(config)

    def _listener(self, port: int) -> dict[str, Any]:
        return {
            "port": port,
            "bind_addresses": [self.host],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }

    def _write_log_config(self, path: Path) -> None:
        log_config = {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                    " - %(request)s - %(message)s"
                }
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                }
            },
            "root": {"level": self.log_level, "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
        path.write_text(yaml.safe_dump(log_config, sort_keys=False))

    def _read_config(self) -> dict[str, Any]:
        config = yaml.safe_load(self.config_path.read_text())
        if not isinstance(config, dict):
            raise SynapseError(f"{self.config_path} is not a YAML mapping")
        return config

    def _write_config(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.dump(config, Dumper=_PlainDumper, sort_keys=False))
        tmp.replace(self.config_path)

    # -- process ------------------------------------------------------------

    def _launch(self, port: int, deadline: float, timeout: float) -> None:
        log_offset = _size(self.log_path)
        out_path = self.data_dir / OUTPUT_FILE
        out_offset = _size(out_path)
        command = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]
        with out_path.open("ab") as out:
            proc = subprocess.Popen(
                command, cwd=self.data_dir, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._proc, self._port = proc, port
        while True:
            if exited(proc):
                self.stop()
                self._port = None
                output = _read_from(out_path, out_offset) + _read_from(self.log_path, log_offset)
                error = _BindError if _is_bind_error(output) else SynapseStartError
                raise error(
                    f"Synapse exited during start-up on port {port} "
                    f"(exit code {proc.returncode}).\n{self._diagnostics(out_path, out_offset)}"
                )
            if self._answers():
                return
            if time.monotonic() >= deadline:
                self.stop()
                self._port = None
                raise SynapseStartError(
                    f"Synapse did not answer on {self.host}:{port} within {timeout:g} s.\n"
                    f"{self._diagnostics(out_path, out_offset)}"
                )
            time.sleep(_POLL_INTERVAL)

    def _answers(self) -> bool:
        try:
            with self._opener.open(f"{self.url}/_matrix/client/versions", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, http.client.HTTPException):  # URLError is an OSError
            return False


    def _diagnostics(self, out_path: Path, out_offset: int) -> str:
        parts = [f"--- tail of {self.log_path} ---", _tail(self.log_path)]
        output = _read_from(out_path, out_offset).strip()
        if output:
            lines = output.splitlines()[-_TAIL_LINES:]
            parts += [f"--- tail of {out_path} ---", "\n".join(lines)]
        return "\n".join(parts)

    # -- HTTP ---------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send a JSON request; return (status, decoded body) for any status."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with self._opener.open(request, timeout=_HTTP_TIMEOUT) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except urllib.error.URLError as err:
            raise SynapseError(f"{method} {self.url}{path}: {err.reason}") from err
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"raw": raw.decode(errors="replace")}
        return status, body if isinstance(body, dict) else {"body": body}


# -- helpers ------------------------------------------------------------------


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full instead of as YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _is_bind_error(output: str) -> bool:
    return "Address already in use" in output or "CannotListenError" in output


def exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once the process has exited; leaves it unreaped (WNOWAIT), so its pid stays ours
    (and its process group with it) until the caller waits for it."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    text = _read_from(path, max(0, _size(path) - 64 * 1024))
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


# -- demo CLI -----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Synapse for a demo.")
    parser.add_argument("--data-dir", type=Path, default=Path("data/synapse"))
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--port", type=int, default=8008, help="0: any free port")
    parser.add_argument("--admin", default="admin", help="admin localpart to register")
    parser.add_argument("--password", default="admin")
    args = parser.parse_args(argv)
    # Turn SIGTERM into SystemExit so that the `finally` below stops Synapse.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    hs = LocalSynapse(args.data_dir, server_name=args.server_name, port=args.port)
    started = time.monotonic()
    try:
        hs.start()
        user_id = hs.register(args.admin, args.password, admin=True)
        print(f"Synapse {hs.url} up in {time.monotonic() - started:.1f} s; admin {user_id}")
        print(f"log: {hs.log_path}; Ctrl-C to stop", flush=True)
        try:
            while hs.running:
                time.sleep(1)
        except KeyboardInterrupt:
            return 0
        print(f"Synapse exited on its own; see {hs.log_path}", file=sys.stderr)
        return 1
    finally:
        hs.stop()


if __name__ == "__main__":
    sys.exit(main())
