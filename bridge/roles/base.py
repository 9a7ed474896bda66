"""What staff can say to the bot: the command registry, reactions, and parsing.

Adding a command is one decorated function in a role module:

    @command("ambil", "claim", usage="ambil kasus ini")
    async def ambil(ctx: Context) -> None:
        await ctx.act("claim")

Who may run it, and in which step, is not decided here but by the SOP profile
(``workflow.decide``): the role modules group commands by the role that mostly uses them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from bridge.messages import ACTION_REACTIONS, Rich
from bridge.store import Row


class Context(Protocol):
    """What a command handler can do; bridge/staff.py provides it."""

    case: Row | None
    actor: str
    role: str
    text: str
    room_key: str | None

    async def act(self, action: str, text: str | None = None) -> bool:
        """Do a workflow action (or check a reading one); False, with a reply, when refused."""
    async def reply(self, message: Rich) -> None: ...
    async def read(self, what: str) -> Any:
        """status | history | list: a message to reply with; print: post the transcript."""


Handler = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    names: tuple[str, ...]       # Indonesian first, then English aliases
    usage: str
    handler: Handler
    needs_case: bool = True
    action: str | None = None    # the workflow action it does (the guides name it by this command)


COMMANDS: dict[str, Command] = {}


def command(*names: str, usage: str, needs_case: bool = True,
            action: str | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        cmd = Command(names, usage, handler, needs_case, action)
        for name in names:
            if name in COMMANDS:
                raise RuntimeError(f"command !{name} registered twice")
            COMMANDS[name] = cmd
        return handler
    return register


def command_for(action: str) -> str | None:
    """The Indonesian command that does ``action`` (``!jawab``), for guides."""
    return next((f"!{cmd.names[0]}" for cmd in COMMANDS.values() if cmd.action == action), None)


# -- reactions ---------------------------------------------------------------------------
_VARIATION = re.compile("[\ufe0e\ufe0f\U0001F3FB-\U0001F3FF]")


def normalize_key(key: str) -> str:
    """One form for a reaction: without variation selectors or skin tones (✍️, ✍🏽 -> ✍)."""
    return _VARIATION.sub("", key).strip()


REACTION_ACTIONS = {normalize_key(emoji): action for action, emoji in ACTION_REACTIONS.items()}

# What a reaction means when its command would carry text.
REACTION_TEXT = {"reject": "Pengaduan tidak dapat diverifikasi.",
                 "return": "Dikembalikan untuk ditindaklanjuti (lihat catatan di utas)."}


def reaction_action(key: str) -> str | None:
    return REACTION_ACTIONS.get(normalize_key(key))


# -- commands ----------------------------------------------------------------------------
TICKET = re.compile(r"^ADU-\d{4}-\d{6}$", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    command: Command
    name: str
    ticket: str | None
    text: str


_WORD = re.compile(r"(\S+)\s*(.*)", re.DOTALL)


def parse(body: str) -> Parsed | None:
    """``!jawab [ADU-2026-000001] teks...`` -> the command, the ticket if given, the text.

    Any white space ends the command's name (``!jawab`` then a new line and the answer),
    and the text keeps its line breaks.
    """
    body = body.strip()
    if not body.startswith("!") or len(body) < 2 or body[1].isspace():
        return None
    head, rest = _WORD.match(body[1:]).groups()
    name = head.lower()
    cmd = COMMANDS.get(name)
    if cmd is None:
        return Parsed(Command((name,), "", _unknown, needs_case=False), name, None, rest)
    word = _WORD.match(rest)
    if word and TICKET.match(word.group(1)):
        return Parsed(cmd, name, word.group(1).upper(), word.group(2))
    return Parsed(cmd, name, None, rest)


async def _unknown(ctx: Context) -> None:
    from bridge.messages import refusal
    await ctx.reply(refusal("Perintah tidak dikenal. Ketik !bantuan untuk daftar perintah."))


def load_all() -> None:
    """Import the role modules so that their commands register."""
    from bridge.roles import admin, kabid, kasi, pimpinan  # noqa: F401
