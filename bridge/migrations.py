"""Numbered schema upgrades, run at start (PRAGMA user_version holds the version).

One function per version, registered with ``@upgrade(n)``; never edit one that has been
released: add the next number instead. The store runs each upgrade inside one
transaction with the new ``user_version``, so an upgrade that fails changes nothing.
Scripts go through ``run_script`` (statement by statement on the open transaction), never
``executescript``, which commits whatever is pending before it starts. Each upgrade gets a
bridge.db.Conn; the scripts are SQLite's so far (PostgreSQL's statements, where the two
must differ, are the next step of the PostgreSQL backend).
"""
from __future__ import annotations

import sqlite3
from typing import Awaitable, Callable

from bridge.db import Conn

Upgrade = Callable[[Conn], Awaitable[None]]
UPGRADES: dict[int, Upgrade] = {}


def upgrade(version: int) -> Callable[[Upgrade], Upgrade]:
    def register(fn: Upgrade) -> Upgrade:
        if version in UPGRADES:
            raise RuntimeError(f"schema version {version} registered twice")
        UPGRADES[version] = fn
        return fn
    return register


async def run_script(db: Conn, script: str) -> None:
    """Run the statements of ``script`` one by one, inside the caller's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        # complete_statement knows that a trigger's body (BEGIN ... END;) is one statement.
        if sqlite3.complete_statement(statement):
            if statement.strip().strip(";").strip():
                await db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement at the end of a script: {statement.strip()[:60]}")


@upgrade(1)
async def initial_schema(db: Conn) -> None:
    await run_script(db, """
    CREATE TABLE citizens (
        id              INTEGER PRIMARY KEY,
        channel         TEXT NOT NULL,
        address         TEXT NOT NULL,          -- wa_id digits, Telegram chat id
        name            TEXT,
        user_id         TEXT,                   -- WhatsApp business-scoped user id
        created_at      TEXT NOT NULL,
        last_inbound_at TEXT,
        UNIQUE (channel, address)
    );

    -- Every message a channel delivered, stored before the channel got its 200.
    CREATE TABLE inbound (
        id           INTEGER PRIMARY KEY,
        channel      TEXT NOT NULL,
        external_id  TEXT NOT NULL,
        address      TEXT NOT NULL,
        kind         TEXT NOT NULL,
        sent_at      TEXT NOT NULL,             -- the citizen's time
        received_at  TEXT NOT NULL,             -- ours
        message      TEXT NOT NULL,             -- normalized InboundMessage, JSON
        state        TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'done', 'ignored')),
        case_id      INTEGER REFERENCES cases(id),
        UNIQUE (channel, external_id)
    );
    CREATE INDEX inbound_new ON inbound (id) WHERE state = 'new';
    CREATE INDEX inbound_case ON inbound (case_id, id);

    CREATE TABLE cases (
        id              INTEGER PRIMARY KEY,
        ticket          TEXT NOT NULL UNIQUE,
        citizen_id      INTEGER NOT NULL REFERENCES citizens(id),
        channel         TEXT NOT NULL,
        category        TEXT,
        summary         TEXT NOT NULL DEFAULT '',
        state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'waiting', 'closed')),
        step            TEXT NOT NULL,
        holder_role     TEXT NOT NULL,
        assignee        TEXT,
        answer_draft    TEXT,
        approved_by     TEXT,
        approved_at     TEXT,
        agenda_number   TEXT,
        outcome         TEXT,
        opened_at       TEXT NOT NULL,
        step_entered_at TEXT NOT NULL,
        due_at          TEXT,
        step_due_at     TEXT,
        closed_at       TEXT,
        linked_case_id  INTEGER REFERENCES cases(id)
    );
    -- At most one case in progress per citizen: the database says so, not our memory.
    CREATE UNIQUE INDEX cases_one_open ON cases (citizen_id) WHERE state != 'closed';
    CREATE INDEX cases_step_due ON cases (step_due_at) WHERE state = 'open';

    -- Append-only audit trail: the office's evidence.
    CREATE TABLE case_events (
        id         INTEGER PRIMARY KEY,
        case_id    INTEGER NOT NULL REFERENCES cases(id),
        at         TEXT NOT NULL,
        actor      TEXT NOT NULL,               -- Matrix user id, 'citizen' or 'bot'
        role       TEXT,
        kind       TEXT NOT NULL,
        from_step  TEXT,
        to_step    TEXT,
        note       TEXT,
        data       TEXT                         -- JSON
    );
    CREATE INDEX case_events_case ON case_events (case_id, id);
    CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
        BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;
    CREATE TRIGGER case_events_no_delete BEFORE DELETE ON case_events
        BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;

    CREATE TABLE sequences (
        name   TEXT PRIMARY KEY,                -- e.g. 'ticket/2026'
        value  INTEGER NOT NULL
    );

    -- Every outbound effect, written in the transaction that causes it.
    CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,
        target      TEXT NOT NULL,              -- rows of one target are delivered in order
        payload     TEXT NOT NULL,              -- JSON
        case_id     INTEGER REFERENCES cases(id),
        state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_try_at TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        done_at     TEXT,
        last_error  TEXT,
        progress    TEXT,                       -- JSON: what a multi-step delivery already did
        result      TEXT                        -- JSON
    );
    CREATE INDEX outbox_pending ON outbox (target, id) WHERE state = 'pending';
    CREATE INDEX outbox_due ON outbox (next_try_at) WHERE state = 'pending';

    -- Our messages to citizens and their delivery state (only moves forward).
    CREATE TABLE deliveries (
        channel      TEXT NOT NULL,
        external_id  TEXT NOT NULL,
        outbox_id    INTEGER REFERENCES outbox(id),
        case_id      INTEGER REFERENCES cases(id),
        status       TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        error_code   INTEGER,
        error_title  TEXT,
        PRIMARY KEY (channel, external_id)
    );

    -- The case cards in Matrix: one per case and room it has been in.
    CREATE TABLE cards (
        case_id   INTEGER NOT NULL REFERENCES cases(id),
        room_key  TEXT NOT NULL,                -- 'admin', 'kasi', ... (or a unit's room)
        room_id   TEXT NOT NULL,
        event_id  TEXT NOT NULL UNIQUE,
        posted_at TEXT NOT NULL,
        PRIMARY KEY (case_id, room_key)
    );

    CREATE TABLE matrix_state (
        key    TEXT PRIMARY KEY,                -- sync token, access token, room ids
        value  TEXT NOT NULL
    );

    -- Matrix events already acted on, so a replayed sync acts on none twice.
    CREATE TABLE handled_events (
        event_id  TEXT PRIMARY KEY,
        at        TEXT NOT NULL
    );
    """)


@upgrade(2)
async def staff_workflow(db: Conn) -> None:
    await run_script(db, """
    ALTER TABLE cases ADD COLUMN unit TEXT;                 -- [[units]] name: its kasi/kabid rooms
    ALTER TABLE cases ADD COLUMN approved_role TEXT;
    ALTER TABLE cases ADD COLUMN waiting_since TEXT;        -- set while waiting for the citizen
    ALTER TABLE cases ADD COLUMN answered_at TEXT;          -- the answer reached the citizen

    ALTER TABLE deliveries ADD COLUMN purpose TEXT;         -- 'answer' for the final answer

    -- The reactions the bot put on a card, so it can take back the ones no longer valid.
    CREATE TABLE card_reactions (
        card_event_id  TEXT NOT NULL,
        key            TEXT NOT NULL,
        event_id       TEXT NOT NULL,
        PRIMARY KEY (card_event_id, key)
    );
    CREATE INDEX cases_citizen_closed ON cases (citizen_id, closed_at);
    """)


@upgrade(3)
async def sla_clocks(db: Conn) -> None:
    await run_script(db, """
    ALTER TABLE cases ADD COLUMN step_warn_at TEXT;
    ALTER TABLE cases ADD COLUMN warn_at TEXT;              -- of the total deadline (due_at)
    ALTER TABLE cases ADD COLUMN step_alerts INTEGER NOT NULL DEFAULT 0;   -- 1 warned, 2 breached, 3+ reminded
    ALTER TABLE cases ADD COLUMN total_alerts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cases ADD COLUMN next_alert_at TEXT;        -- NULL: nothing to watch (closed, waiting)

    DROP INDEX cases_step_due;
    -- The SLA check reads only this index: the cases whose next alert is due.
    CREATE INDEX cases_next_alert ON cases (next_alert_at) WHERE next_alert_at IS NOT NULL;
    CREATE INDEX cases_opened ON cases (opened_at);
    CREATE INDEX cases_closed ON cases (closed_at) WHERE closed_at IS NOT NULL;
    CREATE INDEX cases_open_state ON cases (state, holder_role) WHERE state != 'closed';
    CREATE INDEX case_events_at ON case_events (at);
    """)


@upgrade(4)
async def review_fixes(db: Conn) -> None:
    await run_script(db, """
    ALTER TABLE cases ADD COLUMN answer_sent_at TEXT;       -- the channel took the answer
    ALTER TABLE cases ADD COLUMN drafted_by TEXT;           -- who wrote the draft (four eyes)

    -- A delivery status that came before its message's row (the send had not returned
    -- yet): kept here and applied when the row is written.
    CREATE TABLE early_statuses (
        channel      TEXT NOT NULL,
        external_id  TEXT NOT NULL,
        status       TEXT NOT NULL,
        at           TEXT NOT NULL,
        error_code   INTEGER,
        error_title  TEXT,
        PRIMARY KEY (channel, external_id, status)
    );

    -- inbound gains 'failed' (set aside after repeated errors) and its attempts.
    CREATE TABLE inbound_v4 (
        id           INTEGER PRIMARY KEY,
        channel      TEXT NOT NULL,
        external_id  TEXT NOT NULL,
        address      TEXT NOT NULL,
        kind         TEXT NOT NULL,
        sent_at      TEXT NOT NULL,
        received_at  TEXT NOT NULL,
        message      TEXT NOT NULL,
        state        TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'done', 'ignored', 'failed')),
        case_id      INTEGER REFERENCES cases(id),
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        UNIQUE (channel, external_id)
    );
    INSERT INTO inbound_v4 (id, channel, external_id, address, kind, sent_at, received_at, message,
                            state, case_id)
        SELECT id, channel, external_id, address, kind, sent_at, received_at, message, state, case_id
        FROM inbound;
    DROP TABLE inbound;
    ALTER TABLE inbound_v4 RENAME TO inbound;
    CREATE INDEX inbound_new ON inbound (id) WHERE state = 'new';
    CREATE INDEX inbound_case ON inbound (case_id, id);
    CREATE INDEX inbound_failed ON inbound (id) WHERE state = 'failed';
    """)


@upgrade(5)
async def card_posts(db: Conn) -> None:
    await run_script(db, """
    -- Every card ever posted (cards keeps the live one per room): so that each earlier
    -- card can be edited to say where the case is now, and events on it find their case.
    CREATE TABLE card_posts (
        event_id   TEXT PRIMARY KEY,
        case_id    INTEGER NOT NULL REFERENCES cases(id),
        room_key   TEXT NOT NULL,
        room_id    TEXT NOT NULL,
        posted_at  TEXT NOT NULL
    );
    INSERT INTO card_posts (event_id, case_id, room_key, room_id, posted_at)
        SELECT event_id, case_id, room_key, room_id, posted_at FROM cards;
    CREATE INDEX card_posts_case ON card_posts (case_id, posted_at);
    """)


@upgrade(6)
async def citizen_conversation(db: Conn) -> None:
    await run_script(db, """
    ALTER TABLE citizens ADD COLUMN username TEXT;           -- WhatsApp username, when one comes

    ALTER TABLE cases ADD COLUMN citizen_name TEXT;          -- "Nama" as the complaint gives it
    ALTER TABLE cases ADD COLUMN nik TEXT;                   -- the NIK given (checked), if any
    ALTER TABLE cases ADD COLUMN nik_problem TEXT;           -- why no checked NIK (flagged on the card)
    ALTER TABLE cases ADD COLUMN confidential INTEGER NOT NULL DEFAULT 0;   -- rahasia

    -- A citizen may have more than one open case now: the conversation asks, nothing is merged.
    DROP INDEX cases_one_open;
    CREATE INDEX cases_citizen_open ON cases (citizen_id, id) WHERE state != 'closed';

    -- Where each citizen's conversation with the bot stands (the guided format, a question
    -- put to them, a rating): a restart resumes it; an idle one expires.
    CREATE TABLE conversations (
        citizen_id  INTEGER PRIMARY KEY REFERENCES citizens(id),
        state       TEXT NOT NULL,
        data        TEXT NOT NULL,              -- JSON
        updated_at  TEXT NOT NULL,
        expires_at  TEXT NOT NULL
    );
    CREATE INDEX conversations_expiry ON conversations (expires_at);

    -- Messages that wait for the citizen's 24-hour window to open again (a template told
    -- them something waits); sent when they write.
    CREATE TABLE held_messages (
        id           INTEGER PRIMARY KEY,
        citizen_id   INTEGER NOT NULL REFERENCES citizens(id),
        case_id      INTEGER REFERENCES cases(id),
        payload      TEXT NOT NULL,             -- JSON: the channel.text payload
        held_at      TEXT NOT NULL,
        released_at  TEXT
    );
    CREATE INDEX held_waiting ON held_messages (citizen_id, id) WHERE released_at IS NULL;

    -- The citizen's rating of a case's answer (the office's satisfaction index, IKM).
    CREATE TABLE ratings (
        case_id   INTEGER PRIMARY KEY REFERENCES cases(id),
        score     INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
        comment   TEXT,
        rated_at  TEXT NOT NULL
    );
    """)


@upgrade(7)
async def channel_cursors(db: Conn) -> None:
    await run_script(db, """
    -- Where a polling channel stands (Telegram: the next getUpdates offset), written in the
    -- transaction that stores the updates it confirms.
    CREATE TABLE channel_cursors (
        channel     TEXT PRIMARY KEY,
        position    TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    """)


@upgrade(8)
async def retention(db: Conn) -> None:
    """Retention (UU 27/2022, bridge/retention.py): a closed case's personal data is removed
    after the office's period, and its anonymous figures stay.

    The audit trail stays append-only, with one narrow exception, written here in the
    database rather than trusted to the code: an event of a case already marked purged
    (``cases.purged_at``) may be rewritten so that it only *loses* personal data: its note
    cleared (or kept as it is) and its data reduced to a subset of its keys with their
    values unchanged. Who acted, in which role, what, when and from which step to which
    stays as written, and no event is ever deleted. A case is marked purged only once it is
    closed, and the mark is never taken back, so an open case's trail cannot be touched.
    """
    await run_script(db, """
    ALTER TABLE cases ADD COLUMN purged_at TEXT;             -- its personal data was removed then
    ALTER TABLE citizens ADD COLUMN purged_at TEXT;          -- anonymised: every case of theirs purged
    -- A case's effects and deliveries, read by case (a purge, a transcript) without a full scan.
    CREATE INDEX outbox_case ON outbox (case_id, id) WHERE case_id IS NOT NULL;
    CREATE INDEX deliveries_case ON deliveries (case_id) WHERE case_id IS NOT NULL;

    -- Only a closed case is purged, once: the mark is never moved or taken back,
    -- and a purged case stays closed.
    CREATE TRIGGER cases_purge_closed_only BEFORE UPDATE OF purged_at ON cases
        WHEN NEW.purged_at IS NOT OLD.purged_at
             AND (OLD.purged_at IS NOT NULL OR OLD.state != 'closed' OR NEW.state != 'closed')
        BEGIN SELECT RAISE(ABORT, 'cases: only a closed case is purged, and only once'); END;
    CREATE TRIGGER cases_purged_stay_closed BEFORE UPDATE OF state ON cases
        WHEN OLD.purged_at IS NOT NULL AND NEW.state != 'closed'
        BEGIN SELECT RAISE(ABORT, 'cases: a purged case stays closed'); END;

    DROP TRIGGER case_events_no_update;
    CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
        WHEN NOT (
            (SELECT purged_at FROM cases WHERE id = OLD.case_id) IS NOT NULL
            AND NEW.id IS OLD.id AND NEW.case_id IS OLD.case_id AND NEW.at IS OLD.at
            AND NEW.actor IS OLD.actor AND NEW.role IS OLD.role AND NEW.kind IS OLD.kind
            AND NEW.from_step IS OLD.from_step AND NEW.to_step IS OLD.to_step
            AND (NEW.note IS NULL OR NEW.note IS OLD.note)
            AND (NEW.data IS NULL OR NEW.data IS OLD.data OR NOT EXISTS (
                SELECT 1 FROM json_each(NEW.data) n WHERE NOT EXISTS (
                    SELECT 1 FROM json_each(OLD.data) o
                    WHERE o.key IS n.key AND o.type IS n.type AND o.value IS n.value))))
        BEGIN SELECT RAISE(ABORT, 'case_events is append-only (a purged case''s events may only lose personal data)'); END;
    """)


@upgrade(9)
async def sent_refs(db: Conn) -> None:
    await run_script(db, """
    -- The reference we gave a send (biz_opaque_callback_data), as its status brings it back:
    -- a send cut short (a timeout, a crash) whose status comes is found taken, not sent again.
    ALTER TABLE early_statuses ADD COLUMN ref TEXT;
    CREATE INDEX early_statuses_ref ON early_statuses (channel, ref) WHERE ref IS NOT NULL;
    """)


@upgrade(10)
async def leases(db: Conn) -> None:
    await run_script(db, """
    -- Work that one process at a time does (the Matrix sync, a channel's polling), when
    -- several bridge processes share a database: held until expires_at, renewed by its
    -- holder, taken over by another once it has expired (its holder died).
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        taken_at    TEXT NOT NULL,
        expires_at  TEXT NOT NULL
    );
    """)
