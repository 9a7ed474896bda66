"""``main.py setup`` against the session's real homeserver: rooms, invites, power levels, the report."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nio
import pytest

from bridge.matrix import MatrixStartupError
from bridge.setup import load_settings, run_setup
from bridge.store import Store
from tests.harness import BOT, PASSWORD, STAFF, StaffClient, bridge_settings, new_prefix, user_id

SECRETS = {"WHATSAPP_TOKEN": "t", "WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "v"}
CHANGE_VERBS = ("created", "joined", "invited", "power levels")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "setup.db")
    yield s
    await s.close()


@pytest.fixture
async def staff(synapse_users) -> AsyncIterator[Any]:
    """``await staff("kasi")``: a logged-in, syncing staff member (stopped after the test)."""
    started: list[StaffClient] = []

    async def start(role: str) -> StaffClient:
        client = StaffClient(synapse_users, STAFF[role])
        await client.start()
        started.append(client)
        return client
    yield start
    for client in started:
        await client.stop()


async def room_state(client: StaffClient, room_id: str) -> dict[str, dict[str, Any]]:
    """The room's state events with an empty state key, by type (each with its event_id)."""
    resp = await client.client.room_get_state(room_id)
    assert isinstance(resp, nio.RoomGetStateResponse), resp
    return {e["type"]: e for e in resp.events if e["state_key"] == ""}


async def resolve(client: StaffClient, alias: str) -> str:
    resp = await client.client.room_resolve_alias(alias)
    assert isinstance(resp, nio.RoomResolveAliasResponse), resp
    return resp.room_id


def changes(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(CHANGE_VERBS)]


async def test_first_run_sets_up_the_rooms_and_a_second_changes_nothing(
        synapse_users, graph, tmp_path, store, staff) -> None:
    prefix, server = new_prefix(), synapse_users.server_name
    unit = {"name": "capil", "categories": ["Akta Kelahiran"],
            "kasi": f"#{prefix}-capil-kasi:{server}", "kabid": f"#{prefix}-capil-kabid:{server}"}
    settings = bridge_settings(synapse_users, graph, tmp_path, prefix=prefix, overrides={"units": [unit]})
    bot, kasi_id = user_id(synapse_users, BOT), user_id(synapse_users, STAFF["kasi"])

    first = await run_setup(settings, store, env=SECRETS)
    aliases = [*(f"#{prefix}-{r}:{server}" for r in STAFF), unit["kasi"], unit["kabid"]]
    assert sorted(l.split(" (")[0] for l in first if l.startswith("created")) == sorted(f"created {a}" for a in aliases)
    assert f"power levels in #{prefix}-kasi:{server} (kasi): {kasi_id} 50" in first
    assert f"waiting: {kasi_id} has not joined {unit['kasi']} (kasi:capil) yet (invited)" in first
    assert not [l for l in first if "is not set" in l]          # the env has the secrets
    assert first[-1] == "12 change(s) made"                      # 6 rooms created, 6 leads at 50
    async with store.reading() as tx:
        device = await tx.get_state("device_id")

    kasi = await staff("kasi")
    kasi_room, unit_room = await resolve(kasi, f"#{prefix}-kasi:{server}"), await resolve(kasi, unit["kasi"])
    assert {kasi_room, unit_room} <= set(kasi.client.invited_rooms)
    await kasi.join(kasi_room)
    state = await room_state(kasi, kasi_room)
    users = state["m.room.power_levels"]["content"]["users"]
    assert users[kasi_id] == 50
    create = state["m.room.create"]
    if create["content"].get("room_version", "1") in {str(n) for n in range(1, 12)}:
        assert users[bot] == 100
    else:   # room version 12: the creator has unlimited power and must not be listed in "users"
        assert create["sender"] == bot and bot not in users
    assert "m.room.encryption" not in state

    second = await run_setup(settings, store, env=SECRETS)
    assert changes(second) == []
    assert second[-1] == "nothing changed: the rooms were already set up"
    assert f"waiting: {kasi_id} has not joined #{prefix}-kasi:{server} (kasi) yet (invited)" not in second
    assert f"waiting: {kasi_id} has not joined {unit['kasi']} (kasi:capil) yet (invited)" in second
    again = await room_state(kasi, kasi_room)
    assert again["m.room.power_levels"]["event_id"] == state["m.room.power_levels"]["event_id"]
    async with store.reading() as tx:
        assert await tx.get_state("device_id") == device           # the same session, not a new login


async def test_a_new_staff_member_is_invited_and_made_lead_without_dropping_others(
        synapse_users, graph, tmp_path, store, staff) -> None:
    prefix, server = new_prefix(), synapse_users.server_name
    admin_id, kabid_id = user_id(synapse_users, STAFF["admin"]), user_id(synapse_users, STAFF["kabid"])
    await run_setup(bridge_settings(synapse_users, graph, tmp_path, prefix=prefix), store, env=SECRETS)
    # The office lists a second admin, first: they become the lead of the admin room.
    settings = bridge_settings(synapse_users, graph, tmp_path, prefix=prefix,
                               overrides={"staff": {"admin": [kabid_id, admin_id]}})
    where = f"#{prefix}-admin:{server} (admin)"
    lines = await run_setup(settings, store, env=SECRETS)
    assert changes(lines) == [f"invited {kabid_id} to {where}", f"power levels in {where}: {kabid_id} 50"]

    kabid = await staff("kabid")
    room_id = await resolve(kabid, f"#{prefix}-admin:{server}")
    assert room_id in kabid.client.invited_rooms
    await kabid.join(room_id)
    users = (await room_state(kabid, room_id))["m.room.power_levels"]["content"]["users"]
    assert users[kabid_id] == 50 and users[admin_id] == 50        # the earlier lead is kept

    third = await run_setup(settings, store, env=SECRETS)
    assert changes(third) == [] and third[-1].startswith("nothing changed")


async def test_rooms_made_by_someone_else(synapse_users, graph, tmp_path, store, staff) -> None:
    """A legacy room (by id) where the bot has 100 gets its lead raised, the owner's entry
    kept; a room (by alias) where the bot has no power is reported, not written."""
    prefix, server = new_prefix(), synapse_users.server_name
    bot, owner_id = user_id(synapse_users, BOT), user_id(synapse_users, STAFF["pimpinan"])
    kabid_id = user_id(synapse_users, STAFF["kabid"])
    owner = await staff("pimpinan")
    # Room version 11: its id is "!opaque:server", which [rooms] accepts; a version 12 id has
    # no server part ("!opaque"), so that room is configured by its alias.
    legacy = await owner.client.room_create(
        room_version="11", preset=nio.RoomPreset.private_chat, invite=[bot],
        power_level_override={"users": {owner_id: 100, bot: 100, kabid_id: 20}})
    powerless = await owner.client.room_create(alias=f"{prefix}-kasi", preset=nio.RoomPreset.private_chat,
                                               invite=[bot])
    assert isinstance(legacy, nio.RoomCreateResponse) and isinstance(powerless, nio.RoomCreateResponse)
    settings = bridge_settings(synapse_users, graph, tmp_path, prefix=prefix,
                               overrides={"rooms": {"kabid": legacy.room_id}})

    lines = await run_setup(settings, store, env=SECRETS)
    assert f"joined {legacy.room_id} (kabid): {legacy.room_id}" in lines
    assert f"power levels in {legacy.room_id} (kabid): {kabid_id} 50" in lines
    assert f"joined #{prefix}-kasi:{server} (kasi): {powerless.room_id}" in lines
    assert (f"missing: the bot has power 0 in #{prefix}-kasi:{server} (kasi); "
            f"a room admin must give {bot} power 100") in lines
    assert not [l for l in lines if l.startswith(f"power levels in #{prefix}-kasi")]
    users = (await room_state(owner, legacy.room_id))["m.room.power_levels"]["content"]["users"]
    assert users == {owner_id: 100, bot: 100, kabid_id: 50}

    again = await run_setup(settings, store, env=SECRETS)
    assert changes(again) == [] and again[-1].startswith("nothing changed")


async def test_the_report_lists_what_is_missing_outside_matrix(synapse_users, tmp_path, store) -> None:
    prefix, server = new_prefix(), synapse_users.server_name
    staff_lines = "\n".join(f'{role} = ["{user_id(synapse_users, lp)}"]'
                            for role, lp in STAFF.items() if role != "pimpinan")
    rooms = "\n".join(f'{role} = "#{prefix}-{role}:{server}"' for role in STAFF)
    config = tmp_path / "config.toml"
    config.write_text(f"""
[matrix]
homeserver = "{synapse_users.url}"
user_id = "{user_id(synapse_users, BOT)}"
[rooms]
{rooms}
create = true
[staff]
{staff_lines}
[whatsapp]
phone_number_id = "1234567890"
[http]
host = "127.0.0.1"
port = 8099
[database]
path = "data/pengaduan.db"
""", encoding="utf-8")
    env = {"MATRIX_PASSWORD": PASSWORD, "WHATSAPP_VERIFY_TOKEN": "chosen"}
    settings = load_settings(config, env)        # the config reader, with two WhatsApp secrets missing

    lines = await run_setup(settings, store, env=env)
    assert "missing: WHATSAPP_TOKEN is not set in the environment" in lines
    assert "missing: WHATSAPP_APP_SECRET is not set in the environment" in lines
    assert not [l for l in lines if "WHATSAPP_VERIFY_TOKEN is not set" in l]
    webhook = [l for l in lines if l.startswith("webhook:")]
    assert len(webhook) == 1 and "https://<your host>/webhooks/whatsapp" in webhook[0]
    assert "127.0.0.1:8099" in webhook[0] and "WHATSAPP_VERIFY_TOKEN" in webhook[0]
    assert "missing: [staff] pimpinan lists nobody, so no one is invited to its rooms" in lines

    off = replace(settings, channels={**settings.channels, "whatsapp": replace(settings.channels["whatsapp"], enabled=False)})
    quiet = await run_setup(off, store, env={})
    assert not [l for l in quiet if "WHATSAPP" in l or l.startswith("webhook:")]
    assert quiet[-1].startswith("nothing changed")


async def test_an_encrypted_room_is_refused(synapse_users, graph, tmp_path, store, staff) -> None:
    prefix = new_prefix()
    owner = await staff("admin")
    created = await owner.client.room_create(
        alias=f"{prefix}-admin", preset=nio.RoomPreset.public_chat,
        initial_state=[{"type": "m.room.encryption", "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    assert isinstance(created, nio.RoomCreateResponse), created
    settings = bridge_settings(synapse_users, graph, tmp_path, prefix=prefix)
    with pytest.raises(MatrixStartupError,
                       match=r"^\[rooms\] admin: #\S+ is encrypted; the bot reads only unencrypted rooms$"):
        await run_setup(settings, store, env=SECRETS)
