"""2. Webhook to card, 3. staff to citizen, 4. burst: the bridge against Matrix's own hop.

The bridge runs in its own process (bench/bridge_proc.py) against the run's Synapse and
the fake Graph API (in this process: it is the outside world, like the homeserver). The
staff are real Matrix clients here that sync in a loop and time each event's arrival
(common.Watcher). The baseline of each measure is the same clients doing the Matrix part
alone: a second device of the bot's account sends a message, or sees a reaction, directly.
For the cards there are two: a short message, and the same card's content (what the
homeserver does with a card of about 1 KB, without the bridge).
"""
from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp
import nio

from bench import spy
from bench.common import (BOT, CARD, CARD_MARK, STAFF, Proc, Row, Seen, Watcher, body_of, bridge_config,
                          bridge_proc, complaint_text, db_count, fmt_ratio, is_card, marker_of, median, ms, pct,
                          ratio, secs, thread_root, until, user_id)

TICKET = re.compile(r"ADU-\d{4}-\d{6}")


class GraphTap:
    """The moments the fake Graph API received the bridge's sends (perf_counter)."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self._waiting: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[float]]] = []
        graph.listeners.append(self._on_send)

    def _on_send(self, record: dict[str, Any]) -> None:
        at = time.perf_counter()
        for pred, fut in list(self._waiting):
            if not fut.done() and pred(record["body"]):
                fut.set_result(at)
        self._waiting = [(p, f) for p, f in self._waiting if not f.done()]

    def expect(self, pred: Callable[[dict[str, Any]], bool]) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting.append((pred, fut))
        return fut

    def close(self) -> None:
        self.graph.listeners.remove(self._on_send)


def text_to(address: str, contains: str) -> Callable[[dict[str, Any]], bool]:
    def match(body: dict[str, Any]) -> bool:
        return body.get("to") == address and contains in (body.get("text") or {}).get("body", "")
    return match


class Lab:
    """A bridge process, its rooms, the staff watching them, and the bot's second device."""

    def __init__(self, ctx: Any, prefix: str) -> None:
        self.ctx = ctx
        self.prefix = prefix
        self.spec = bridge_config(ctx.hs, ctx.graph, ctx.work / prefix, prefix)
        self.db = Path(self.spec["data"]["database"]["path"])
        self.proc: Proc | None = None
        self.staff: dict[str, Watcher] = {}
        self.observer: Watcher | None = None
        self.session: aiohttp.ClientSession | None = None
        self.tap = GraphTap(ctx.graph)

    async def open(self, roles: tuple[str, ...] = ("admin",)) -> "Lab":
        self.proc = bridge_proc(self.spec, self.ctx.work, self.prefix)
        await self.proc.wait_ready()
        self.rooms: dict[str, str] = self.proc.ready["rooms"]
        hs = self.ctx.hs
        for role in roles:
            w = Watcher(hs.url, user_id(hs.server_name, STAFF[role]))
            await w.start(rooms=[self.rooms[role]])
            self.staff[role] = w
        # The bot's account on a second device: the direct sender, and Matrix's view as the bot gets it.
        self.observer = Watcher(hs.url, user_id(hs.server_name, BOT))
        await self.observer.start()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                             timeout=aiohttp.ClientTimeout(total=60))
        self.webhook = self.proc.ready["url"] + "/webhooks/whatsapp"
        return self

    async def post(self, payload: dict[str, Any]) -> int:
        """A notification as Meta posts it (signed); the bridge's HTTP status."""
        graph = self.ctx.graph
        raw = graph.encode(payload)
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua",
                   "X-Hub-Signature-256": graph.sign(raw)}
        assert self.session is not None
        async with self.session.post(self.webhook, data=raw, headers=headers) as r:
            await r.read()
            return r.status

    def backlog(self) -> int:
        return db_count(self.db, "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending')"
                                 " + (SELECT count(*) FROM inbound WHERE state = 'new')")

    async def settled(self, timeout: float = 20) -> bool:
        """Everything received is processed and every effect delivered (polled every 20 ms)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if await asyncio.to_thread(self.backlog) == 0:
                return True
            await asyncio.sleep(0.02)
        return False

    async def close(self) -> None:
        self.tap.close()
        for w in [*self.staff.values(), *([self.observer] if self.observer else [])]:
            await w.stop()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            self.proc.stop()


def card_with(room: str, marker: str) -> Callable[[Seen], bool]:
    return lambda s: is_card(s, room) and marker_of(s) == marker


def card_of(room: str, ticket: str, not_event: str | None = None) -> Callable[[Seen], bool]:
    def match(s: Seen) -> bool:
        first = body_of(s).split("\n", 1)[0]
        return (s.room_id == room and body_of(s).startswith("📨") and ticket in first
                and s.event.event_id != not_event)
    return match


def marked(room: str, marker: str) -> Callable[[Seen], bool]:
    return lambda s: s.room_id == room and marker_of(s) == marker


def card_copy(content: dict[str, Any], marker: str, new_marker: str) -> dict[str, Any]:
    """A card's content (as the bridge sent it) with ``new_marker`` for ``marker``: what a
    client sends to post the same card itself."""
    out = copy.deepcopy(content)
    out.pop("m.relates_to", None)
    for key in ("body", "formatted_body"):
        if isinstance(out.get(key), str):
            out[key] = out[key].replace(f"({marker})", f"({new_marker})")
    return out


def two_rows(section: str, what: str, bridge: list[float], bases: list[tuple[str, list[float]]], target: float,
             note: str = "") -> list[Row]:
    """Median and p95 of ``bridge`` against each of ``bases`` (label, samples), each judged
    by ``target``."""
    rows = []
    for label, p in (("median", 50), ("p95", 95)):
        b = median(bridge) if p == 50 else pct(bridge, p)
        for i, (against, base) in enumerate(bases):
            d = median(base) if p == 50 else pct(base, p)
            r = ratio(b, d)
            rows.append(Row(section, f"{what}, {label} (n={len(bridge)}), against {against}", ms(b), ms(d),
                            fmt_ratio(r), f"≤ {target}×", None if r is None else r <= target,
                            note if p == 50 and i == 0 else ""))
    return rows


# -- 2. webhook to card -------------------------------------------------------------------
async def card(ctx: Any) -> list[Row]:
    n, warm = (10, 2) if ctx.quick else (200, 5)
    budget = min(ctx.left() - 10, 40 if ctx.quick else 150)
    end = time.monotonic() + budget
    lab = await Lab(ctx, "card").open()
    bridge_s: list[float] = []
    short_s: list[float] = []
    same_s: list[float] = []
    unsettled = 0
    try:
        admin, room, observer = lab.staff["admin"], lab.rooms["admin"], lab.observer
        assert observer is not None
        for i in range(warm + n):
            if time.monotonic() > end:
                break
            marker = f"bm-card-{i}"
            seen_card = admin.expect(card_with(room, marker))
            status = await lab.post(ctx.graph.text(f"62877{i:08d}", complaint_text(marker), name="Warga Bench"))
            t0 = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"webhook answered {status}")
            seen = await until(seen_card, 30, f"the card {marker}")
            unsettled += not await lab.settled()
            # Baseline 1: a short message from the bot's second device.
            direct = f"bm-direct-{i}"
            seen_direct = admin.expect(marked(room, direct))
            t1 = time.perf_counter()
            await observer.say(room, f"Pesan langsung ({direct})")
            seen2 = await until(seen_direct, 30, f"the direct message {direct}")
            # Baseline 2: the card the bridge just posted, posted again by the same device.
            content = seen.event.source["content"]
            ctx.extra.setdefault("card_content", (content, marker))
            same = f"bm-samecard-{i}"
            seen_same = admin.expect(marked(room, same))
            t2 = time.perf_counter()
            await observer.send(room, card_copy(content, marker, same))
            seen3 = await until(seen_same, 30, f"the direct card {same}")
            if i >= warm:
                bridge_s.append(seen.at - t0)
                short_s.append(seen2.at - t1)
                same_s.append(seen3.at - t2)
    finally:
        await lab.close()
    ctx.log(f"card: bridge median {ms(median(bridge_s))}, direct short {ms(median(short_s))}, direct same card "
            f"{ms(median(same_s))} (n={len(bridge_s)})")
    size = len(json.dumps(ctx.extra["card_content"][0], ensure_ascii=False).encode()) if "card_content" in ctx.extra else 0
    note = ("from the webhook's 200 to the card in the staff client's sync; baselines: the bot's second device "
            "sends a short message, then the same card's content (the card just seen, "
            f"{size:,} bytes of JSON), each timed from the call to its arrival in the same client's sync; "
            "samples alternate")
    if unsettled:
        note += f"; {unsettled} samples did not settle within 20 s"
    return two_rows("Webhook to card", "webhook → card", bridge_s,
                    [("the same card sent directly", same_s), ("a short message sent directly", short_s)], 1.3, note)


# -- 3. staff to citizen ------------------------------------------------------------------
async def staff(ctx: Any) -> list[Row]:
    k, warm = (3, 1) if ctx.quick else (30, 3)
    total = k + warm
    lab = await Lab(ctx, "staff").open(("admin", "kasi", "kabid"))
    bridge_s: list[float] = []
    direct_s: list[float] = []
    try:
        admin, kasi, kabid, observer = lab.staff["admin"], lab.staff["kasi"], lab.staff["kabid"], lab.observer
        assert observer is not None
        rooms = lab.rooms
        citizens = [f"62878{i:08d}" for i in range(total)]
        # The cases, walked through the Mojokerto SOP up to "Jawaban dikirim" (not timed).
        cards = [admin.expect(card_with(rooms["admin"], f"bm-staff-{i}")) for i in range(total)]
        for i, wa in enumerate(citizens):
            assert await lab.post(ctx.graph.text(wa, complaint_text(f"bm-staff-{i}"), name="Warga Bench")) == 200
        first = [await until(c, 60, "the cards") for c in cards]
        tickets = [TICKET.search(body_of(s)).group(0) for s in first]
        kasi_cards = [kasi.expect(card_of(rooms["kasi"], t)) for t in tickets]
        for s in first:
            await admin.react(rooms["admin"], s.event.event_id, "✅")
            await admin.say(rooms["admin"], "!jawab KTP-el Anda sudah dicetak dan dapat diambil di kecamatan.",
                            thread=s.event.event_id)
        kasi_seen = [await until(c, 60, "the kasi cards") for c in kasi_cards]
        kabid_cards = [kabid.expect(card_of(rooms["kabid"], t)) for t in tickets]
        for s in kasi_seen:
            await kasi.react(rooms["kasi"], s.event.event_id, "✅")
        kabid_seen = [await until(c, 60, "the kabid cards") for c in kabid_cards]
        again = [admin.expect(card_of(rooms["admin"], t, not_event=s.event.event_id))
                 for t, s in zip(tickets, first)]
        for s in kabid_seen:
            await kabid.react(rooms["kabid"], s.event.event_id, "✍️")
        admin_cards = [await until(c, 60, "the admin's second cards") for c in again]
        ready = [admin.expect(lambda x, e=s.event.event_id: thread_root(x) == e
                              and "Langkah sekarang: Jawaban dikirim" in body_of(x), past=True)
                 for s in admin_cards]
        for s in admin_cards:
            await admin.react(rooms["admin"], s.event.event_id, "✅")
        for c in ready:
            await until(c, 60, "the cases at 'Jawaban dikirim'")
        await lab.settled()
        ctx.log(f"staff: {total} cases at 'Jawaban dikirim'")
        # Timed: 📤 on each, one at a time, then the same reaction path to the bot's second device.
        for i, (wa, s) in enumerate(zip(citizens, admin_cards)):
            answer = lab.tap.expect(text_to(wa, "Jawaban atas pengaduan"))
            t0 = time.perf_counter()
            await admin.react(rooms["admin"], s.event.event_id, "📤")
            arrived = await until(answer, 30, "the answer at the fake Graph API")
            await lab.settled()
            key = f"bm-react-{i}"
            seen_react = observer.expect(lambda x, key=key: getattr(x.event, "key", None) == key)
            t1 = time.perf_counter()
            await admin.react(rooms["admin"], first[i].event.event_id, key)
            seen = await until(seen_react, 30, "the direct reaction")
            await lab.settled()
            if i >= warm:
                bridge_s.append(arrived - t0)
                direct_s.append(seen.at - t1)
    finally:
        await lab.close()
    ctx.log(f"staff: bridge median {ms(median(bridge_s))}, direct {ms(median(direct_s))} (n={len(bridge_s)})")
    b, d = median(bridge_s), median(direct_s)
    return [
        Row("Staff to citizen", f"📤 → answer at the Graph API, median (n={len(bridge_s)})", ms(b), ms(d),
            fmt_ratio(ratio(b, d)), "< 150 ms", None if b is None else b < 0.150,
            "from sending the reaction to the answer's request at the fake Graph API; baseline: the same "
            "reaction path to the bot's second device (Matrix alone)"),
        Row("Staff to citizen", f"📤 → answer at the Graph API, p95 (n={len(bridge_s)})", ms(pct(bridge_s, 95)),
            ms(pct(direct_s, 95)), fmt_ratio(ratio(pct(bridge_s, 95), pct(direct_s, 95)))),
    ]


async def fresh_room(owner: Watcher, member: Watcher, name: str) -> str:
    """A new room of ``owner``'s that ``member`` has joined (and syncs)."""
    made = await owner.client.room_create(name=name, invite=[member.user])
    if not isinstance(made, nio.RoomCreateResponse):
        raise RuntimeError(f"cannot create a room: {made}")
    joined = await member.client.join(made.room_id)
    if not isinstance(joined, nio.JoinResponse):
        raise RuntimeError(f"{member.user} cannot join {made.room_id}: {joined}")
    return made.room_id


# -- 4. burst -----------------------------------------------------------------------------
async def burst(ctx: Any) -> list[Row]:
    n = 60 if ctx.quick else 2000
    conc = 32
    direct_limit = min(30 if ctx.quick else 90, ctx.left() - 40)
    lab = await Lab(ctx, "burst").open()
    try:
        admin, room, observer = lab.staff["admin"], lab.rooms["admin"], lab.observer
        assert observer is not None

        def collector(prefix: str, want: Callable[[Seen], bool]) -> tuple[dict[str, float], asyncio.Future[None]]:
            got: dict[str, float] = {}
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def hook(s: Seen) -> bool:
                m = marker_of(s)
                if m and m.startswith(prefix) and want(s) and m not in got:
                    got[m] = s.at
                    if len(got) == n and not done.done():
                        done.set_result(None)
                return done.done()
            admin.hooks.append(hook)
            return got, done

        async def fan_out(send: Callable[[int], Any]) -> tuple[float, int]:
            """n sends, ``conc`` at a time; (seconds until all were answered, failures)."""
            sem = asyncio.Semaphore(conc)
            failed = 0

            async def one(i: int) -> None:
                nonlocal failed
                async with sem:
                    try:
                        ok = await send(i)
                    except Exception:
                        ok = False
                    failed += not ok
            t = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.perf_counter() - t, failed

        async def direct_block(prefix: str, where: str, send: Callable[[int], Any], what: str
                               ) -> tuple[float | None, int, float, int]:
            """n direct sends by one client, ``conc`` at a time: (seconds until all were seen
            or None, how many were seen, seconds until all were answered, failures)."""
            got, done = collector(prefix, lambda s: s.room_id == where)
            t0 = time.perf_counter()
            sent, failed = await fan_out(send)
            try:
                await until(done, direct_limit, what)
            except TimeoutError:
                pass
            return (max(got.values()) - t0) if len(got) == n else None, len(got), sent, failed

        # Baselines first, while the bridge is idle: n direct sends by the bot's second device,
        # short messages, then the content of a card as the bridge posts it (the card phase's
        # first card, else bench/card_cost.py's). Each block has a new room of its own, with the
        # same two members as the Admin room (the bot, the Admin): a room is slower the more it
        # holds, so no block goes into a room that another block grew.
        short_room, card_room = [await fresh_room(observer, admin, f"bench burst {what}")
                                 for what in ("short", "cards")]

        async def short(i: int) -> bool:
            await observer.say(short_room, f"Pesan langsung ({'bm-direct-%d' % i})")
            return True
        direct_t, direct_seen, direct_sent, direct_failed = await direct_block("bm-direct-", short_room, short,
                                                                              "every direct message")
        template, template_marker = ctx.extra.get("card_content") or (CARD, CARD_MARK)

        async def same_card(i: int) -> bool:
            await observer.send(card_room, card_copy(template, template_marker, f"bm-samecard-{i}"))
            return True
        same_t, same_seen, same_sent, same_failed = await direct_block("bm-samecard-", card_room, same_card,
                                                                      "every direct card")

        # The bridge: n complaints from n citizens, as fast as this client can post them.
        got_b, done_b = collector("bm-burst-", lambda s: is_card(s, room))

        async def complaint(i: int) -> bool:
            marker = f"bm-burst-{i}"
            return await lab.post(ctx.graph.text(f"62879{i:08d}", complaint_text(marker), name="Warga Bench")) == 200
        # Whatever the run has left, at most 4 minutes (quick: 1).
        limit = max(10.0, min(60 if ctx.quick else 240, ctx.left() - 15))
        profile = spy.start(ctx, lab.proc.pid if lab.proc else 0, "burst", int(limit))
        t0 = time.perf_counter()
        posted, post_failed = await fan_out(complaint)
        try:
            await until(done_b, limit, "every card")
        except TimeoutError:
            pass
        bridge_t = (max(got_b.values()) - t0) if len(got_b) == n else None
        seen_at = time.perf_counter() - t0
        spy.stop(ctx, profile, "burst")
        stored = db_count(lab.db, "SELECT count(*) FROM inbound")
        cases = db_count(lab.db, "SELECT count(*) FROM cases")
        cards_db = db_count(lab.db, "SELECT count(*) FROM cards WHERE room_key = 'admin'")
    finally:
        await lab.close()
    lost = n - len(got_b)
    ctx.log(f"burst: bridge {secs(bridge_t)} ({len(got_b)}/{n} cards), direct same card {secs(same_t)} "
            f"({same_seen}/{n}), direct short {secs(direct_t)} ({direct_seen}/{n})")
    rate = f"{len(got_b) / seen_at:.0f} cards/s" if bridge_t is None else f"{n / bridge_t:.0f} cards/s"
    size = len(json.dumps(template, ensure_ascii=False).encode())
    source = "the card phase's first card" if "card_content" in ctx.extra else "bench/card_cost.py's card"
    notes = [f"bridge {rate}; all {n:,} webhooks answered in {posted:.1f} s ({post_failed} failed); order: short "
             f"messages, same cards, the bridge, each into a room of its own (the bridge's: its Admin room), "
             f"with the same two members",
             f"{n:,} sends of a card's content ({source}, {size:,} bytes of JSON) by the bot's second device, "
             f"answered in {same_sent:.1f} s ({same_failed} failed)",
             f"{n:,} short messages by the bot's second device, answered in {direct_sent:.1f} s "
             f"({direct_failed} failed)"]
    rows = []
    for (against, base_t), note in zip((("the same cards sent directly", same_t),
                                        ("short messages sent directly", direct_t)), notes[1:]):
        r = ratio(bridge_t, base_t)
        at_least = ratio(limit, base_t) if bridge_t is None else None
        rows.append(Row("Burst", f"{n:,} complaints, {conc} at a time: until every card is in Matrix, against "
                                 f"{against}",
                        secs(bridge_t) if bridge_t is not None else f"not all in {limit:.0f} s",
                        secs(base_t) if base_t is not None else f"not all in {direct_limit:.0f} s",
                        fmt_ratio(r) if at_least is None else f"> {at_least:.2f}×", "≤ 1.2×",
                        r <= 1.2 if r is not None else (False if at_least is not None and at_least > 1.2 else None),
                        (notes[0] + "; " if not rows else "") + note))
    rows.append(Row("Burst", "nothing lost (cards seen / stored / cases)", f"{len(got_b):,} / {stored:,} / {cases:,}",
                    f"{same_seen:,} / {direct_seen:,} seen", "—", f"{n:,} each",
                    lost == 0 and stored == n and cases == n,
                    f"{cards_db:,} admin cards recorded in the bridge's database"))
    return rows
