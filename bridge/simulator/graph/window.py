"""The 24-hour customer-service window, as the fake Graph API keeps it.

Meta lets a business send free-form messages (text, interactive, media, ...) to a user
only within 24 hours of that user's last message; outside it only approved templates.
The send call still answers 200 with a wamid, and the refusal comes afterwards as a
``failed`` status webhook with error 131047 (API notes, "24-hour customer-service
window").

:class:`CustomerWindows` remembers when each citizen last wrote, keyed by phone number
(``wa_id``) and by business-scoped user id (BSUID): a message that carries both links
them, so a send to either finds the window the other opened.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

WINDOW = timedelta(hours=24)
RE_ENGAGEMENT_CODE = 131047
RE_ENGAGEMENT_TITLE = "Re-engagement message"
RE_ENGAGEMENT_DETAILS = (
    "Message failed to send because more than 24 hours have passed since the customer "
    "last replied to this number."
)


class CustomerWindows:
    """When each citizen last wrote, by wa_id and by BSUID (one person may have both)."""

    def __init__(self) -> None:
        self._last: dict[str, datetime] = {}
        self._same: dict[str, frozenset[str]] = {}  # id -> every id of that person

    def link(self, *ids: str | None) -> None:
        """Note that ``ids`` (a wa_id, a BSUID) belong to one person."""
        group: set[str] = set()
        for one in ids:
            if one:
                group |= self._same.get(one, frozenset({one}))
        frozen = frozenset(group)
        for one in frozen:
            self._same[one] = frozen

    def wrote(self, ids: Iterable[str | None], at: datetime) -> None:
        """The person known by ``ids`` sent a message at ``at`` (the later time wins)."""
        known = [one for one in ids if one]
        self.link(*known)
        for one in known:
            previous = self._last.get(one)
            self._last[one] = at if previous is None else max(previous, at)

    def aliases(self, address: str) -> frozenset[str]:
        """``address`` and every other id of the same person."""
        return self._same.get(address, frozenset({address}))

    def last_message(self, address: str) -> datetime | None:
        """When the person at ``address`` last wrote, whichever of their ids they used."""
        times = [self._last[one] for one in self.aliases(address) if one in self._last]
        return max(times) if times else None

    def is_open(self, address: str, now: datetime) -> bool:
        last = self.last_message(address)
        return last is not None and now - last < WINDOW

    def note_notification(self, payload: dict[str, Any]) -> None:
        """Learn from a notification about to be posted: who wrote when, who is who.

        Every message except ``system`` ones counts as the citizen writing; its
        ``timestamp`` is when.  Malformed parts (tests post some on purpose) are skipped.
        """
        for value in _values(payload):
            for contact in _dicts(value.get("contacts")):
                self.link(_str(contact.get("wa_id")), _str(contact.get("user_id")))
            for message in _dicts(value.get("messages")):
                if message.get("type") == "system":
                    continue
                try:
                    at = datetime.fromtimestamp(int(message["timestamp"]), timezone.utc)
                except (KeyError, TypeError, ValueError, OverflowError, OSError):
                    continue
                self.wrote([_str(message.get("from")), _str(message.get("from_user_id"))], at)


def _values(payload: dict[str, Any]) -> list[dict[str, Any]]:
    values = []
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            if isinstance(change.get("value"), dict):
                values.append(change["value"])
    return values


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
