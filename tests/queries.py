"""Read-only queries that only tests need, on a store's read view (``store.reading()``)."""
from __future__ import annotations

import json
from typing import Any

from bridge.store import Row, Tx


async def count_cases(tx: Tx) -> int:
    return (await tx._one("SELECT count(*) AS n FROM cases"))["n"]


async def inbound_count(tx: Tx, state: str | None = None) -> int:
    return (await tx._one("SELECT count(*) AS n FROM inbound WHERE CAST(? AS TEXT) IS NULL OR state = ?", state, state))["n"]


async def get_delivery(tx: Tx, channel: str, external_id: str) -> Row | None:
    return await tx._one("SELECT * FROM deliveries WHERE channel = ? AND external_id = ?", channel, external_id)


async def outbox_rows(tx: Tx, *, kind: str | None = None, state: str | None = None) -> list[Row]:
    rows = await tx._all(
        "SELECT * FROM outbox WHERE (CAST(? AS TEXT) IS NULL OR kind = ?) AND (CAST(? AS TEXT) IS NULL OR state = ?) ORDER BY id",
        kind, kind, state, state)
    for r in rows:
        r["payload"] = json.loads(r["payload"])
    return rows


async def events(tx: Tx, ticket: str) -> list[dict[str, Any]]:
    return await tx._all("SELECT e.* FROM case_events e JOIN cases c ON c.id = e.case_id"
                         " WHERE c.ticket = ? ORDER BY e.id", ticket)
