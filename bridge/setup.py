"""``python main.py setup``: an office admin's one-time (and any-time) check of the Matrix side.

Logs the bot in as the bridge does (the session is kept in the same database), then for
every role room in ``[rooms]`` and every unit room in ``[[units]]``: resolves it (creating
a missing alias when ``[rooms] create = true``), joins it, invites the role's staff who
are neither joined nor invited, and makes sure of the power levels: the bot 100, the
role's lead (the first user listed for the role in ``[staff]``) at least 50; nobody else
is touched and no existing entry is dropped. Encrypted rooms are refused as at start.

It is idempotent: a second run changes nothing and its last line says so. The report
ends with what is still for the operator to do: secrets not in the environment, the
webhook to register with Meta, staff who have not joined yet, a role with nobody listed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import nio

from bridge.channels import registry
from bridge.clock import Clock, system_clock
from bridge.errors import DeliveryError
from bridge.config import ROLES, Settings, load
from bridge.matrix import MatrixBot, MatrixStartupError
from bridge.store import Store

BOT_LEVEL, LEAD_LEVEL = 100, 50
# Room versions whose creators hold unlimited power and must not be listed in
# m.room.power_levels "users" (MSC4289, room version 12 onwards: Synapse refuses them).
_LEGACY_ROOM_VERSIONS = {str(n) for n in range(1, 12)}
_UNLIMITED = float("inf")


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """The config reader for setup: missing channel secrets are reported, not fatal."""
    env = dict(os.environ if env is None else env)
    for name in (name for ch in registry.channels() for name in ch.secrets):
        env[name] = env.get(name) or "(not set)"
    return load(path, env)


async def setup_command(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """The CLI's entry point: read config.toml, open the database, run the setup."""
    settings = load_settings(path, env)
    store = await Store.open(settings.database_url)
    try:
        return await run_setup(settings, store, env=env)
    finally:
        await store.close()


async def run_setup(settings: Settings, store: Store, *, clock: Clock = system_clock,
                    env: Mapping[str, str] | None = None) -> list[str]:
    """Set up the rooms; return the report lines (changes, what is missing, a summary).

    ``env`` is where the secrets are looked for (default: os.environ). Raises
    MatrixStartupError, as the bridge's start does, for a room it cannot use.
    """
    env = os.environ if env is None else env
    bot = MatrixBot(settings, store, clock)
    changes: list[str] = []
    todo: list[str] = []
    try:
        await bot.login()
        joined = await bot.client.joined_rooms()
        already = set(joined.rooms) if isinstance(joined, nio.JoinedRoomsResponse) else set()
        for key, role, ref, unit in bot.room_refs():
            where = f"{ref} ({key})"
            room_id, created = await bot.resolve_room(role, ref, unit)
            await bot.join_room(role, ref, room_id)
            if created:
                changes.append(f"created {where}: {room_id}")
            elif room_id not in already:
                changes.append(f"joined {where}: {room_id}")
            state = await _state(bot, room_id, where)
            staff = settings.staff[role]
            await _invite(bot, room_id, where, staff, _memberships(state), changes, todo)
            await _power_levels(bot, room_id, where, state, staff[0] if staff else None, changes, todo)
    finally:
        await bot.stop()
    todo += [f"missing: [staff] {role} lists nobody, so no one is invited to its rooms"
             for role in ROLES if not settings.staff[role]]
    todo += await _channels(settings, env, changes)
    summary = f"{len(changes)} change(s) made" if changes else "nothing changed: the rooms were already set up"
    return [*changes, *todo, summary]


async def _state(bot: MatrixBot, room_id: str, where: str) -> list[dict[str, Any]]:
    resp = await bot.client.room_get_state(room_id)
    if not isinstance(resp, nio.RoomGetStateResponse):
        raise MatrixStartupError(f"cannot read the state of {where}: {resp}")
    return resp.events


def _memberships(state: list[dict[str, Any]]) -> dict[str, str]:
    return {e["state_key"]: e.get("content", {}).get("membership", "")
            for e in state if e.get("type") == "m.room.member"}


async def _invite(bot: MatrixBot, room_id: str, where: str, staff: tuple[str, ...],
                  members: dict[str, str], changes: list[str], todo: list[str]) -> None:
    for user in staff:
        membership = members.get(user)
        if membership == "join":
            continue
        if membership == "ban":
            todo.append(f"missing: {user} is banned from {where}")
            continue
        if membership != "invite":
            resp = await bot.client.room_invite(room_id, user)
            if not isinstance(resp, nio.RoomInviteResponse):
                todo.append(f"missing: cannot invite {user} to {where}: {resp}")
                continue
            changes.append(f"invited {user} to {where}")
        todo.append(f"waiting: {user} has not joined {where} yet (invited)")


async def _power_levels(bot: MatrixBot, room_id: str, where: str, state: list[dict[str, Any]],
                        lead: str | None, changes: list[str], todo: list[str]) -> None:
    """The bot at 100 (or a creator's unlimited power), the lead at least 50; one write at most."""
    create = next(e for e in state if e.get("type") == "m.room.create")
    pl_event = next((e for e in state if e.get("type") == "m.room.power_levels"), None)
    content: dict[str, Any] = dict(pl_event["content"]) if pl_event else {}
    users: dict[str, int] = dict(content.get("users", {}))
    creators: set[str] = set()
    if str(create.get("content", {}).get("room_version", "1")) not in _LEGACY_ROOM_VERSIONS:
        creators = {create["sender"], *create.get("content", {}).get("additional_creators", [])}

    def level(user: str) -> float:
        if user in creators:
            return _UNLIMITED
        if pl_event is None:
            return 100 if user == create["sender"] else 0
        return int(users.get(user, content.get("users_default", 0)))

    me = bot.user_id
    if level(me) < BOT_LEVEL:
        todo.append(f"missing: the bot has power {level(me):.0f} in {where}; "
                    f"a room admin must give {me} power {BOT_LEVEL}")
        return
    wanted: dict[str, int] = {}
    if me not in creators and me not in users:
        wanted[me] = BOT_LEVEL
    if lead and level(lead) < LEAD_LEVEL:
        wanted[lead] = LEAD_LEVEL
    if not wanted:
        return
    resp = await bot.client.room_put_state(room_id, "m.room.power_levels",
                                           {**content, "users": {**users, **wanted}})
    if not isinstance(resp, nio.RoomPutStateResponse):
        todo.append(f"missing: cannot set the power levels in {where}: {resp}")
        return
    changes.append(f"power levels in {where}: " + ", ".join(f"{u} {n}" for u, n in wanted.items()))


async def _channels(settings: Settings, env: Mapping[str, str], changes: list[str]) -> list[str]:
    """Each enabled channel: its missing secrets, what it sets up at its service (when its
    secrets are there), and what is left for the operator."""
    todo: list[str] = []
    where = f"{settings.http.host}:{settings.http.port}"
    for cls in registry.channels():
        channel = settings.channels.get(cls.name)
        if channel is None or not channel.enabled:
            continue
        missing = [f"missing: {name} is not set in the environment" for name in cls.needed_secrets(channel)
                   if not env.get(name)]
        todo += missing
        if not missing:
            try:
                changes += await cls.setup(channel)
            except DeliveryError as e:
                todo.append(f"missing: {cls.title} setup failed: {e}")
        todo += cls.operator_notes(channel, where)
    return todo

