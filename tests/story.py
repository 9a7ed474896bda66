"""Helpers that let a test read like the SOP: who does what, and what they then see."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nio

from tests.harness import BOT, Env, Seen, StaffClient, in_thread_of, until


@dataclass
class Card:
    ticket: str
    room_id: str
    event_id: str


def body(seen: Seen) -> str:
    return getattr(seen.event, "body", "") or ""


NIK = "3402124501900003"


def in_format(text: str, name: str = "Siti Aminah") -> str:
    """A complaint in the office's format (Nama, NIK, Layanan, Aduan), so that it opens a
    case at once: the lines of ``text`` that are format fields stay, the others are the Aduan."""
    labels = ("nama:", "nik:", "layanan:", "aduan:")
    fields = [line for line in text.splitlines() if line.strip().casefold().startswith(labels)]
    rest = "\n".join(line for line in text.splitlines() if line not in fields).strip()
    given = " ".join(fields).casefold()
    lines = [] if "nama:" in given else [f"Nama: {name}"]
    lines += [] if "nik:" in given else [f"NIK: {NIK}"]
    lines += [] if "layanan:" in given else ["Layanan: Lainnya"]
    lines += fields + ([] if "aduan:" in given else [f"Aduan: {rest}"])
    return "\n".join(lines)


async def complaint(env: Env, wa_id: str, text: str, name: str = "Siti Aminah") -> Card:
    """A citizen writes a complaint in the format; the Admin WA sees the new card."""
    message = in_format(text, name)
    status, _ = await env.send(env.graph.text(wa_id, message, name=name))
    assert status == 200
    room = env.bridge.matrix.rooms["admin"]
    aduan = message.split("Aduan:", 1)[1].strip().splitlines()[0]      # what the card shows
    seen = await env.admin.wait_for(
        lambda s: s.room_id == room and body(s).startswith("📨 Pengaduan baru") and aduan in body(s),
        what="the new case card")
    return Card(body(seen).split()[3], room, seen.event.event_id)


async def card_in(env: Env, role: str, ticket: str, *, after: Card | None = None) -> Card:
    """The card of ``ticket`` that appears in ``role``'s room (one posted after ``after``)."""
    client = await env.staff_member(role)
    room = env.bridge.matrix.rooms[role]

    def newer(s: Seen) -> bool:
        if after is None:
            return True
        ids = [x.event.event_id for x in client.seen]
        return after.event_id in ids and ids.index(s.event.event_id) > ids.index(after.event_id)
    seen = await client.wait_for(
        lambda s: s.room_id == room and body(s).startswith("📨") and ticket in body(s).splitlines()[0]
        and newer(s), what=f"the card of {ticket} in the {role} room")
    return Card(ticket, room, seen.event.event_id)


async def bot_says(client: StaffClient, card: Card, contains: str) -> str:
    """The bot's notice in the card's thread that contains ``contains``."""
    seen = await client.wait_for(
        lambda s: s.event.sender.startswith(f"@{BOT}:") and isinstance(s.event, nio.RoomMessageText | nio.RoomMessageNotice)
        and in_thread_of(card.event_id)(s.event) and contains in body(s),
        what=f"the bot saying {contains!r} in {card.ticket}'s thread")
    return body(seen)


async def react(env: Env, role: str, card: Card, key: str) -> str:
    client = await env.staff_member(role)
    return await client.react(card.room_id, card.event_id, key)


async def command(env: Env, role: str, card: Card, text: str) -> str:
    client = await env.staff_member(role)
    return await client.say(card.room_id, text, thread=card.event_id)


async def case_row(env: Env, ticket: str) -> dict[str, Any]:
    async with env.bridge.store.reading() as tx:
        row = await tx.get_case_by_ticket(ticket)
    assert row is not None
    return row


async def case_reaches(env: Env, ticket: str, **expected: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await case_row(env, ticket)
        return row if all(row[k] == v for k, v in expected.items()) else None
    return await until(check, what=f"{ticket} to reach {expected}")


async def steps_walked(env: Env, ticket: str) -> list[str]:
    case = await case_row(env, ticket)
    async with env.bridge.store.reading() as tx:
        events = await tx.case_events(case["id"])
    walked = [events[0]["to_step"]]
    for e in events[1:]:
        if e["to_step"] and e["to_step"] != walked[-1]:
            walked.append(e["to_step"])
    return walked


async def to_the_check(env: Env, card: Card, answer: str = "KTP-el Anda sudah dapat diambil.") -> Card:
    """Mojokerto from the new card to 'cek': verified, drafted, finalised, paraf.
    Returns the admin's card of the check."""
    await command(env, "admin", card, "!verifikasi")
    # An answer that starts with a new line is written as staff write a long one: "!jawab" alone on the first line.
    await command(env, "admin", card, "!jawab" + (answer if answer.startswith("\n") else f" {answer}"))
    kasi_card = await card_in(env, "kasi", card.ticket)
    await command(env, "kasi", kasi_card, "!verifikasi")
    kabid_card = await card_in(env, "kabid", card.ticket)
    await command(env, "kabid", kabid_card, "!paraf")
    return await card_in(env, "admin", card.ticket, after=card)


async def to_the_sending_step(env: Env, card: Card, answer: str = "KTP-el Anda sudah dapat diambil.") -> Card:
    """Mojokerto from the new card to 'kirim'; returns the admin's card of the sending step."""
    admin_card = await to_the_check(env, card, answer)
    await command(env, "admin", admin_card, "!verifikasi")
    await case_reaches(env, card.ticket, step="kirim")
    return admin_card


def office_year(env: Env) -> int:
    """The year of the bridge's clock in the office's timezone (tickets and agenda numbers)."""
    return env.bridge.clock().astimezone(env.bridge.settings.sla.calendar.tz).year
