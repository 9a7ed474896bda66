"""The local Synapse used by the tests: users, a real message round trip, restarts."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import nio
import pytest
import yaml

import bridge.homeserver as homeserver
from bridge.homeserver import LocalSynapse, SynapseError, SynapseStartError


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/_matrix/client/versions", timeout=5) as resp:
        return bool(resp.status == 200)


def _runs_config(pid: int, config_path: Path) -> bool:
    """True if process ``pid`` exists and is a Synapse started with ``config_path``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return str(config_path).encode() in cmdline.split(b"\0")


def _synapses_for(config_path: Path) -> list[int]:
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [pid for pid in pids if _runs_config(pid, config_path)]


def _config(server: LocalSynapse) -> dict[str, Any]:
    config = yaml.safe_load(server.config_path.read_text())
    assert isinstance(config, dict)
    return config


async def _wait_for_body(
    client: nio.AsyncClient, room_id: str, body: str, timeout: float = 15
) -> nio.RoomMessageText:
    async with asyncio.timeout(timeout):
        while True:
            response = await client.sync(timeout=1000)
            assert isinstance(response, nio.SyncResponse), response
            room = response.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                if isinstance(event, nio.RoomMessageText) and event.body == body:
                    return event


async def test_message_round_trip_between_two_users(synapse: LocalSynapse) -> None:
    alice_name, bob_name = _unique("alice"), _unique("bob")
    alice_id = synapse.register(alice_name, "alice-pw", admin=True)
    bob_id = synapse.register(bob_name, "bob-pw")
    assert (alice_id, bob_id) == (f"@{alice_name}:localhost", f"@{bob_name}:localhost")

    alice = nio.AsyncClient(synapse.url, alice_id)
    bob = nio.AsyncClient(synapse.url, bob_id)
    try:
        assert isinstance(await alice.login("alice-pw"), nio.LoginResponse)
        assert isinstance(await bob.login("bob-pw"), nio.LoginResponse)
        synapse.lift_ratelimit(bob_id, alice.access_token)

        created = await alice.room_create(name="Pengaduan", invite=[bob_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        assert isinstance(await bob.join(created.room_id), nio.JoinResponse)

        body = f"KTP-el saya belum jadi ({uuid.uuid4().hex[:6]})"
        content = {"msgtype": "m.text", "body": body}
        sent = await alice.room_send(created.room_id, "m.room.message", content)
        assert isinstance(sent, nio.RoomSendResponse), sent

        event = await _wait_for_body(bob, created.room_id, body)
        assert event.sender == alice_id
        assert event.event_id == sent.event_id
        assert not bob.rooms[created.room_id].encrypted
    finally:
        await alice.close()
        await bob.close()


def test_register_is_idempotent(synapse: LocalSynapse) -> None:
    name = _unique("dewi")
    first = synapse.register(name, "pw-1")
    second = synapse.register(name, "pw-1")
    assert first == second == f"@{name}:localhost"
    assert synapse.login(name, "pw-1")
    with pytest.raises(SynapseError, match="403"):
        synapse.register(name, "another password")


def test_restart_reuses_config_keys_and_database(tmp_path: Path) -> None:
    server = LocalSynapse(tmp_path / "hs")
    server.start()
    try:
        before = _config(server)
        key_path = Path(before["signing_key_path"])
        key = key_path.read_bytes()
        secret = server.registration_shared_secret
        server.register("carol", "carol-pw")

        server.stop()
        server.start()

        after = _config(server)
        assert key_path.read_bytes() == key
        assert server.registration_shared_secret == secret
        assert after["listeners"][0]["port"] == server.port
        before.pop("listeners"), after.pop("listeners")
        assert after == before
        assert _answers(server.url)
        assert server.login("carol", "carol-pw")
    finally:
        server.stop()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    with LocalSynapse(tmp_path / "hs") as server:
        pid = server.pid
        assert pid is not None
        assert _runs_config(pid, server.config_path)
    assert server.pid is None
    assert not _runs_config(pid, server.config_path)
    assert _synapses_for(server.config_path) == []
    server.stop()  # idempotent


def test_start_retries_when_the_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_free_port = homeserver._free_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])  # the first pick is taken, later ones are free

        def pick(host: str) -> int:
            return next(ports, None) or real_free_port(host)

        monkeypatch.setattr(homeserver, "_free_port", pick)

        with LocalSynapse(tmp_path / "hs") as server:
            assert server.port != taken
            assert _answers(server.url)
        assert "Address already in use" in server.log_path.read_text()

        # A fixed port is not retried: the error carries the tail of the log.
        fixed = LocalSynapse(tmp_path / "hs", port=taken)
        with pytest.raises(SynapseStartError, match=r"(?s)tail of .*homeserver\.log.*in use"):
            fixed.start()
        assert fixed.pid is None
