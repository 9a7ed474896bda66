"""The bot's Matrix side against the real homeserver: rooms, transaction ids, refusals."""
from __future__ import annotations

from dataclasses import replace

import nio
import pytest

from bridge.app import Bridge
from bridge.matrix import MatrixStartupError
from tests.harness import Env, StaffClient, STAFF, bridge_settings, new_prefix


async def test_a_resend_with_the_same_transaction_id_survives_a_restart(env: Env) -> None:
    content = {"msgtype": "m.notice", "body": "sekali saja"}
    first = await env.bridge.matrix.send("admin", content, "pengaduan-outbox-test-1")
    await env.restart_bridge()        # same database: same access token and device
    again = await env.bridge.matrix.send("admin", content, "pengaduan-outbox-test-1")
    assert again == first


async def test_created_rooms_invite_their_staff_and_are_unencrypted(env: Env) -> None:
    kasi = StaffClient(env.synapse, STAFF["kasi"])
    await kasi.start()
    try:
        room_id = env.bridge.matrix.rooms["kasi"]
        assert room_id in kasi.client.invited_rooms
        await kasi.join(room_id)
        enc = await kasi.client.room_get_state_event(room_id, "m.room.encryption")
        assert isinstance(enc, nio.RoomGetStateEventError)
        name = await kasi.client.room_get_state_event(room_id, "m.room.name")
        assert name.content["name"] == "Pengaduan · Kepala Seksi"
    finally:
        await kasi.stop()


async def test_an_encrypted_room_is_refused_at_start(synapse_users, graph, tmp_path) -> None:
    prefix = new_prefix()
    owner = StaffClient(synapse_users, STAFF["admin"])
    await owner.start()
    try:
        created = await owner.client.room_create(
            alias=f"{prefix}-admin", preset=nio.RoomPreset.public_chat,
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        assert isinstance(created, nio.RoomCreateResponse), created
    finally:
        await owner.stop()
    bridge = Bridge(bridge_settings(synapse_users, graph, tmp_path, prefix=prefix))
    with pytest.raises(MatrixStartupError, match=r"\[rooms\] admin: .* is encrypted"):
        await bridge.start()


async def test_a_missing_alias_without_create_is_refused(synapse_users, graph, tmp_path) -> None:
    settings = bridge_settings(synapse_users, graph, tmp_path, prefix=new_prefix(),
                               overrides={"rooms": {"create": False}})
    with pytest.raises(MatrixStartupError, match=r"\[rooms\] admin: alias .* does not exist"):
        await Bridge(settings).start()


async def test_a_wrong_password_is_refused(synapse_users, graph, tmp_path) -> None:
    settings = bridge_settings(synapse_users, graph, tmp_path, prefix=new_prefix())
    settings = replace(settings, matrix=replace(settings.matrix, password="wrong"))
    with pytest.raises(MatrixStartupError, match="login of .* failed"):
        await Bridge(settings).start()


async def test_the_sync_token_is_kept_for_the_next_start(env: Env) -> None:
    from bridge.store import Store
    from tests.harness import until
    await until(lambda: env.bridge.matrix.last_sync_ok, what="a sync")
    await env.stop_bridge()
    store = await Store.open(env.settings.database_url)
    async with store.reading() as tx:
        token = await tx.get_state("sync_token")
    await store.close()
    assert token
    await env.start_bridge()
    assert env.bridge.matrix.since_at_start == token
