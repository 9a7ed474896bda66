"""The citizen channels the bridge knows, by name.

Everything outside ``bridge/channels/`` that needs a channel (the config reader, the
bridge's start, setup, the demo, cards, transcripts and exports) asks here, so a new
channel is one ``Channel`` class and one line below (or ``register`` from elsewhere, as
the tests do with a channel of their own), with no change to the core.
"""
from __future__ import annotations

from bridge.channels.base import Channel
from bridge.channels.telegram import TelegramChannel
from bridge.channels.whatsapp import WhatsAppChannel

_CHANNELS: dict[str, type[Channel]] = {c.name: c for c in (WhatsAppChannel, TelegramChannel)}


def channels() -> list[type[Channel]]:
    """Every known channel class, in the order they were registered."""
    return list(_CHANNELS.values())


def register(cls: type[Channel]) -> type[Channel]:
    """Add a channel class (usable as a decorator); a name can be registered only once."""
    if cls.name in _CHANNELS and _CHANNELS[cls.name] is not cls:
        raise ValueError(f"a channel named {cls.name!r} is already registered")
    _CHANNELS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _CHANNELS.pop(name, None)


def get(name: str) -> type[Channel] | None:
    return _CHANNELS.get(name)


def title(name: str) -> str:
    """The channel's name as staff read it ("WhatsApp"); an unknown one as stored."""
    cls = _CHANNELS.get(name)
    return cls.title if cls else name


def show_address(name: str, address: str, *, whole: bool) -> str:
    cls = _CHANNELS.get(name)
    return cls.show_address(address, whole=whole) if cls else Channel.show_address(address, whole=whole)


def mask_address(name: str, address: str) -> str:
    cls = _CHANNELS.get(name)
    return cls.mask_address(address) if cls else Channel.mask_address(address)
