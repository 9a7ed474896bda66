"""Nobody in: only configured staff act, the bot stays in its own rooms, secrets compare in
constant time. (A stranger's or a wrong role's command, and status for others' tickets,
are in test_staff_rules.py and test_conversation.py.)"""
from __future__ import annotations

import hmac
from dataclasses import replace

import nio

from bridge import channels as _channels  # noqa: F401  (the adapters patched below)
from tests.harness import TELEGRAM_SECRET, StaffClient, until
from tests.story import bot_says, case_row, command, complaint

WARGA = "6281234500701"


async def test_someone_removed_from_staff_has_no_rights_after_the_next_start(env) -> None:
    card = await complaint(env, WARGA, "KTP-el saya hilang")
    await command(env, "admin", card, "!ambil")
    await bot_says(env.admin, card, "Diambil oleh")
    # The office removes the admin from [staff] and restarts the bridge.
    staff = {**env.settings.staff, "admin": ()}
    env.settings = replace(env.settings, staff=staff)
    await env.restart_bridge()
    await command(env, "admin", card, "!verifikasi")
    await bot_says(env.admin, card, "tidak terdaftar sebagai petugas")
    assert (await case_row(env, card.ticket))["step"] == "verifikasi"


async def test_an_invite_to_a_room_not_in_the_config_is_declined(env) -> None:
    """Injected: a stranger creates a room and invites the bot. Observed: the bot declines
    (its membership there becomes 'leave') and says so in its log; it never joins."""
    env.synapse.register("orang_asing", "asing-password-1")
    stranger = StaffClient(env.synapse, "orang_asing")
    stranger.password = "asing-password-1"
    await stranger.start()
    try:
        bot = env.bridge.matrix.user_id
        created = await stranger.client.room_create(name="Grup palsu", invite=[bot])
        assert isinstance(created, nio.RoomCreateResponse)

        async def declined() -> bool:
            state = await stranger.client.room_get_state_event(created.room_id, "m.room.member", bot)
            return getattr(state, "content", {}).get("membership") == "leave"
        await until(declined, timeout=30, what="the bot to decline the invite")
        assert created.room_id not in env.bridge.matrix.client.rooms or \
            env.bridge.matrix.client.rooms[created.room_id].own_user_id not in \
            env.bridge.matrix.client.rooms[created.room_id].users
    finally:
        await stranger.stop()


async def test_notices_and_the_bots_own_messages_are_never_commands(env) -> None:
    """Bots (ours included) speak in m.notice: a notice that reads like a command does
    nothing, so two bots can never drive each other; the bot's own text is skipped too."""
    card = await complaint(env, WARGA, "KTP-el saya hilang")
    room = card.room_id
    thread = {"rel_type": "m.thread", "event_id": card.event_id, "is_falling_back": True,
              "m.in_reply_to": {"event_id": card.event_id}}
    sent = await env.admin.client.room_send(room, "m.room.message",
                                            {"msgtype": "m.notice", "body": "!ambil", "m.relates_to": thread})
    assert isinstance(sent, nio.RoomSendResponse)
    own = await env.bridge.matrix.client.room_send(room, "m.room.message",
                                                   {"msgtype": "m.text", "body": "!ambil", "m.relates_to": thread})
    assert isinstance(own, nio.RoomSendResponse)
    # A real command after them is the first thing acted on.
    await command(env, "admin", card, "!catatan penanda")
    await bot_says(env.admin, card, "penanda")
    case = await case_row(env, card.ticket)
    async with env.bridge.store.reading() as tx:
        events = [e["kind"] for e in await tx.case_events(case["id"])]
    assert "take" not in events and events.count("note") == 1


async def test_secrets_are_compared_in_constant_time(env, botapi, make_env, monkeypatch) -> None:
    """Every webhook secret check goes through hmac.compare_digest (never ==)."""
    compared: list[tuple[bytes | str, bytes | str]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)
    monkeypatch.setattr("bridge.channels.whatsapp.hmac.compare_digest", spy)
    # WhatsApp: the signature and the verify token.
    status, _ = await env.send(env.graph.text(WARGA, "halo"))
    assert status == 200
    assert any(isinstance(a, bytes) and len(a) == 32 for a, _ in compared)         # the HMAC-SHA256 digest
    await env.graph.verify_webhook(env.webhook_url, "verify-me", challenge="1")
    assert (b"verify-me", b"verify-me") in compared
    # Telegram's webhook secret.
    tg = await make_env({"telegram": {"mode": "webhook",
                                      "webhook_url": "https://pengaduan.example.go.id/webhooks/telegram"}},
                        botapi=botapi)
    from bridge.simulator.telegram import TgUser
    update = botapi.text(TgUser(id=5550701, first_name="Siti"), "halo")
    status, _ = await botapi.deliver_webhook(f"{tg.bridge.http.url}/webhooks/telegram", update, "salah")
    assert status == 401 and (b"salah", TELEGRAM_SECRET.encode()) in compared
