"""What each outbox kind does when it is delivered: Matrix posts and channel sends.

These handlers join the two sides (MatrixBot, the channels) without either knowing the
other. Each either succeeds and returns a ``finish`` that records what it did in the
transaction that marks the row done, or raises DeliveryError.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

from bridge import outbox as ob
from bridge.channels.base import Attachment, Channel, Choice, StatusUpdate
from bridge import transcript
from bridge.clock import Clock, parse_ts, ts
from bridge.errors import DeliveryError, NotYet
from bridge.matrix import MatrixBot
from bridge.outbox import HELD_PAYLOAD, HOLDABLE, WINDOW_CLOSED, Delivery, Dispatcher, Finish
from bridge import messages as msgs
from bridge.messages import ACTION_REACTIONS
from bridge.store import Row, Store, Tx
from bridge.workflow import Profile

log = logging.getLogger(__name__)

# A send cut short after it may have reached the service (no answer in time, a crash) is not
# repeated for this long, while its status, which brings our reference back, may yet come.
SENT_STATUS_GRACE = 60.0

_MSGTYPES = {"image": "m.image", "sticker": "m.image", "video": "m.video", "audio": "m.audio"}
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "application/pdf": ".pdf",
               "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "video/mp4": ".mp4"}


# What a delivery status means for a case (Cases.delivery_moved), and that the answer
# was taken (Cases.answer_taken): called inside the transaction that records a send.
StatusHandler = Callable[[Tx, Row, StatusUpdate], Awaitable[None]]
AnswerTaken = Callable[[Tx, int], Awaitable[None]]
# A message to the citizen waits for their window (Cases.message_held), with the template's name.
Held = Callable[[Tx, int, str, str], Awaitable[None]]

# What an earlier card of a case says now (Cases.earlier_card); None for the live card.
CardRenderer = Callable[[Tx, int, Row], Awaitable["dict[str, Any] | None"]]


def thread_relation(root: str) -> dict[str, Any]:
    return {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
            "m.in_reply_to": {"event_id": root}}


class Effects:
    def __init__(self, store: Store, matrix: MatrixBot, channels: dict[str, Channel], clock: Clock,
                 media_dir: Path, *, on_status: StatusHandler, on_answer_taken: AnswerTaken,
                 earlier_card: CardRenderer, profile: Profile, on_held: Held) -> None:
        self.on_held = on_held
        self.profile = profile
        self.on_status = on_status
        self.earlier_card = earlier_card
        self.on_answer_taken = on_answer_taken
        self.store = store
        self.matrix = matrix
        self.channels = channels
        self.clock = clock
        self.media_dir = media_dir

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register(ob.MATRIX_CARD, self.card)
        dispatcher.register(ob.MATRIX_CARD_EDIT, self.card_edit)
        dispatcher.register(ob.MATRIX_THREAD, self.thread)
        dispatcher.register(ob.MATRIX_NOTICE, self.notice)
        dispatcher.register(ob.MATRIX_ATTACHMENT, self.attachment)
        dispatcher.register(ob.MATRIX_REACTIONS, self.reactions)
        dispatcher.register(ob.MATRIX_TRANSCRIPT, self.transcript)
        dispatcher.register(ob.MATRIX_EVIDENCE, self.evidence)
        dispatcher.register(ob.MATRIX_POINTER, self.pointer)
        dispatcher.register(ob.MATRIX_CARDS, self.cards)
        dispatcher.register(ob.CHANNEL_TEXT, self.citizen_text)
        dispatcher.register(ob.CHANNEL_READ, self.mark_read)

    @staticmethod
    def txn(d: Delivery) -> str:
        return f"pengaduan-outbox-{d.id}"

    # -- Matrix ----------------------------------------------------------------------
    async def card(self, d: Delivery) -> Finish:
        room = d.payload["room"]
        event_id = await self.matrix.send(room, d.payload["content"], self.txn(d))
        case_id = d.row["case_id"]

        async def finish(tx: Tx) -> dict[str, Any]:
            await tx.save_card(case_id, room, self.matrix.room_id(room), event_id, self.clock())
            return {"event_id": event_id}
        return finish

    async def card_edit(self, d: Delivery) -> Finish | None:
        """Replace the card's content (m.replace), so the card shows the case as it is now."""
        async with self.store.reading() as tx:
            card = await tx.get_card(d.row["case_id"], d.payload["room"])
        if card is None:
            return None                  # no card to edit (its post failed): the thread says it all
        event_id = await self.matrix.send(d.payload["room"], _edit(card["event_id"], d.payload["content"]),
                                          self.txn(d))
        return _result(event_id=event_id)

    async def cards(self, d: Delivery) -> Finish | None:
        """Every card of the case but the live one says where the case is now, with a link,
        or how it ended. Each edit is kept in ``progress``, so a retry repeats none."""
        case_id = d.row["case_id"]
        async with self.store.reading() as tx:
            posts = await tx.card_posts(case_id)
        for post in posts:
            if post["event_id"] in d.progress:
                continue
            async with self.store.reading() as tx:
                content = await self.earlier_card(tx, case_id, post)
            if content is not None:
                await d.save_progress(**{post["event_id"]: await self.matrix.send(
                    post["room_key"], _edit(post["event_id"], content), f"{self.txn(d)}-{post['event_id']}")})
        return None

    async def pointer(self, d: Delivery) -> Finish:
        """In the old thread: where the case went, with a link to its card there (posted
        just before, as the case's effects go in order)."""
        async with self.store.reading() as tx:
            card = await tx.get_card(d.row["case_id"], d.payload["to_room"])
        link = msgs.matrix_to(card["room_id"], card["event_id"]) if card else None
        content = msgs.moved_to(d.payload["to_room"], d.payload["step"], link).notice()
        event_id = await self.matrix.send(d.payload["room"], await self._in_thread(d, content), self.txn(d))
        return _result(event_id=event_id)

    async def _in_thread(self, d: Delivery, content: dict[str, Any]) -> dict[str, Any]:
        """The content placed in the thread of the case's card in that room (or the card
        the payload names as its ``root``)."""
        if d.payload.get("root"):
            return {**content, "m.relates_to": thread_relation(d.payload["root"])}
        async with self.store.reading() as tx:
            card = await tx.get_card(d.row["case_id"], d.payload["room"])
        if card is None:
            # The card itself could not be posted (a dead row): stay visible, unthreaded.
            return content
        return {**content, "m.relates_to": thread_relation(card["event_id"])}

    async def thread(self, d: Delivery) -> Finish:
        content = await self._in_thread(d, d.payload["content"])
        event_id = await self.matrix.send(d.payload["room"], content, self.txn(d))
        return _result(event_id=event_id)

    async def notice(self, d: Delivery) -> Finish:
        event_id = await self.matrix.send(d.payload["room"], d.payload["content"], self.txn(d))
        return _result(event_id=event_id)

    async def attachment(self, d: Delivery) -> Finish:
        """Download from the channel, keep the file, upload to Matrix, post in the thread.

        Each step saves its progress, so a retry after a failure redoes only what failed.
        """
        att = Attachment.from_dict(d.payload["attachment"])
        if "path" not in d.progress:
            media = await self._channel(d.payload["channel"]).fetch_media(att)
            path = self.media_dir / d.payload["channel"] / hashlib.sha256(att.ref.encode()).hexdigest()[:32]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(media.data)
            filename = att.filename or f"{att.kind}-{att.ref[-8:]}{_EXTENSIONS.get(media.mime_type, '')}"
            await d.save_progress(path=str(path), size=len(media.data), mime_type=media.mime_type,
                                  filename=filename)
            log.info("media: %s of %d bytes downloaded", att.kind, len(media.data))
        p = d.progress
        if "mxc" not in p:
            data = Path(p["path"]).read_bytes()
            await d.save_progress(mxc=await self.matrix.upload(data, p["mime_type"], p["filename"]))
        content = await self._in_thread(d, _media_content(att, p, d.payload.get("caption", "")))
        event_id = await self.matrix.send(d.payload["room"], content, self.txn(d))
        return _result(event_id=event_id, mxc=p["mxc"])

    async def evidence(self, d: Delivery) -> Finish | None:
        """Under a case's new card (escalation, return): the citizen's earlier messages and
        files, so that staff who are not members of the first room see them too. Files
        are posted again from their ``mxc://`` content, never downloaded again.

        The case's effects are delivered in order, so every earlier attachment row is
        done (or dead) by now. Each post is kept in ``progress``, so a retry repeats none.
        """
        async with self.store.reading() as tx:
            events = await tx.case_events(d.row["case_id"])
            files = await tx.case_outbox(d.row["case_id"], ob.MATRIX_ATTACHMENT)
        said = [e for e in events if e["kind"] == "citizen_message" and e["note"]]
        if said and "messages" not in d.progress:
            content = msgs.earlier_messages(said).content()
            await d.save_progress(messages=await self.matrix.send(
                d.payload["room"], await self._in_thread(d, content), f"{self.txn(d)}-messages"))
        seen: set[str] = set()
        for row in files:
            ref = row["payload"]["attachment"]["ref"]
            key = f"file-{row['id']}"
            if ref in seen or key in d.progress:
                continue
            seen.add(ref)
            p = row["progress"]
            if "mxc" in p:
                content = _media_content(Attachment.from_dict(row["payload"]["attachment"]), p,
                                         row["payload"].get("caption", ""))
            else:                        # its download failed for good: say so instead
                content = msgs.missing_attachment(p.get("filename") or row["payload"]["attachment"]["kind"]).notice()
            await d.save_progress(**{key: await self.matrix.send(
                d.payload["room"], await self._in_thread(d, content), f"{self.txn(d)}-{key}")})
        return None

    async def reactions(self, d: Delivery) -> Finish | None:
        """Bring the bot's reactions on a card to the wanted set; each change is kept at once.
        An offer a newer one replaced while it waited is not sent."""
        async with self.store.reading() as tx:
            mine = await tx.outbox_outcome(d.id)
            card = await tx.get_card(d.row["case_id"], d.payload["room"])
            have = await tx.card_reactions(card["event_id"]) if card else {}
        if card is None or (mine is not None and mine["state"] != "pending"):
            return None
        want = [ACTION_REACTIONS[a] for a in d.payload["actions"]]
        for key, event_id in have.items():
            if key not in want:
                await self.matrix.redact(d.payload["room"], event_id, f"{self.txn(d)}-del-{key}")
                async with self.store.transaction() as tx:
                    await tx.remove_card_reaction(card["event_id"], key)
        for key in want:
            if key not in have:
                content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": card["event_id"], "key": key}}
                event_id = await self.matrix.send(d.payload["room"], content, f"{self.txn(d)}-add-{key}",
                                                  event_type="m.reaction")
                async with self.store.transaction() as tx:
                    await tx.add_card_reaction(card["event_id"], key, event_id)
        return None

    async def transcript(self, d: Delivery) -> Finish:
        """The printable record of the case as it is now, as an HTML file in the thread."""
        async with self.store.reading() as tx:
            record = await transcript.build(tx, d.row["case_id"], profile=self.profile)
        data = transcript.to_html(record).encode()
        filename = f"{record.ticket}.html"
        if "mxc" not in d.progress:
            await d.save_progress(mxc=await self.matrix.upload(data, "text/html", filename), size=len(data))
        content = {"msgtype": "m.file", "body": filename, "filename": filename, "url": d.progress["mxc"],
                   "info": {"mimetype": "text/html", "size": d.progress["size"]}, "m.mentions": {}}
        event_id = await self.matrix.send(d.payload["room"], await self._in_thread(d, content), self.txn(d))
        return _result(event_id=event_id)

    # -- channels --------------------------------------------------------------------
    def _channel(self, name: str) -> Channel:
        try:
            return self.channels[name]
        except KeyError:
            raise DeliveryError(f"channel {name} is not enabled", transient=False) from None

    async def citizen_text(self, d: Delivery) -> Finish:
        p = d.payload
        channel = self._channel(p["channel"])
        purpose = p.get("purpose")
        if channel.window_hours is not None and purpose in (*HOLDABLE, "rating") and (
                p.get("window_closed") or await self._outside_window(channel, p)):
            if purpose == "rating":
                return _result(skipped="outside the window: no template is spent on a rating")
            return await self._hold(d, channel)
        choices = [Choice.from_dict(c) for c in p.get("choices", ())]
        external_id = await self._send_once(d, channel, "text", lambda **ref: channel.send_text(
            p["address"], p["text"], reply_to=p.get("reply_to"), choices=choices, **ref))

        async def finish(tx: Tx) -> dict[str, Any]:
            early = await tx.record_delivery(p["channel"], external_id, outbox_id=d.id,
                                             case_id=d.row["case_id"], at=self.clock(), purpose=p.get("purpose"))
            if p.get("purpose") == "answer" and d.row["case_id"]:
                await self.on_answer_taken(tx, d.row["case_id"])
            # Statuses that came while the send was under way count now, in their order.
            for st in early:
                moved = await tx.apply_status(st)
                if moved:
                    await self.on_status(tx, moved, st)
            return {"external_id": external_id}
        return finish

    async def _send_once(self, d: Delivery, channel: Channel, step: str,
                         send: Callable[..., Awaitable[str]]) -> str:
        """``send()`` the row's message, or find that an earlier attempt already did.

        On a channel that echoes our reference (``echoes_ref``), the send carries one
        (``outbox:<row>:<step>``) and the row notes when it began. An attempt that found no
        answer (a timeout, a cut connection, a crash of the bridge) leaves that note: the
        next one looks for a status bringing the reference back and takes its message id,
        and sends again only when none came within SENT_STATUS_GRACE. Elsewhere (Telegram)
        such a send is repeated: its API has no way to tell, nor to refuse a repeat."""
        if not channel.echoes_ref:
            return await send()
        ref, began = f"outbox:{d.id}:{step}", f"{step}_began"
        if d.progress.get(began):
            async with self.store.reading() as tx:
                external_id = await tx.sent_by_ref(channel.name, ref)
            if external_id:
                log.info("outbox: row %d (%s) was taken by %s before: not sent again", d.id, step, channel.name)
                return external_id
            wait = (parse_ts(d.progress[began]) + timedelta(seconds=SENT_STATUS_GRACE) - self.clock())
            if wait.total_seconds() > 0:
                raise NotYet(wait.total_seconds())
        await d.save_progress(**{began: ts(self.clock())})
        try:
            return await send(ref=ref)
        except DeliveryError as e:
            if e.unsent:                   # surely not taken: nothing to wait for
                await d.save_progress(**{began: None})
            raise

    async def _outside_window(self, channel: Channel, p: dict[str, Any]) -> bool:
        """Whether the citizen's last message is older than the channel's window (the store's clock)."""
        async with self.store.reading() as tx:
            citizen = await tx.citizen_by_address(p["channel"], p["address"])
        last = citizen["last_inbound_at"] if citizen and citizen["last_inbound_at"] else None
        return last is None or self.clock() - last > timedelta(hours=channel.window_hours or 0)

    async def _hold(self, d: Delivery, channel: Channel) -> Finish:
        """Outside the window: the office's approved template says something waits (with the
        ticket, and a button), and the message waits until the citizen writes."""
        p = d.payload
        template = channel.templates.get(p["purpose"]) or channel.templates.get("answer")
        if template is None:
            # Nothing may reach the citizen now: a failure staff see (and can act on).
            raise DeliveryError(f"{WINDOW_CLOSED}: lebih dari {channel.window_hours:g} jam sejak pesan terakhir "
                                f"pemohon, dan tidak ada template yang diatur ([{channel.name}.templates])",
                                transient=False, code=WINDOW_CLOSED)
        if "template_id" not in d.progress:
            await d.save_progress(template_id=await self._send_once(d, channel, "template", lambda **ref: (
                channel.send_template(p["address"], template.name, template.language, [p.get("ticket") or "-"],
                                      button_payload=HELD_PAYLOAD, **ref))))
        template_id = d.progress["template_id"]

        async def finish(tx: Tx) -> dict[str, Any]:
            citizen = await tx.citizen_by_address(p["channel"], p["address"])
            assert citizen is not None
            await tx.hold_message(citizen["id"], d.row["case_id"],
                                  {k: v for k, v in p.items() if k != "window_closed"}, self.clock())
            await tx.record_delivery(p["channel"], template_id, outbox_id=d.id, case_id=d.row["case_id"],
                                     at=self.clock(), purpose="template")
            if d.row["case_id"]:
                await self.on_held(tx, d.row["case_id"], p["purpose"], template.name)
            return {"held": True, "template_id": template_id}
        return finish

    async def mark_read(self, d: Delivery) -> None:
        await self._channel(d.payload["channel"]).mark_read(d.payload["external_id"])
        return None


def _edit(event_id: str, new: dict[str, Any]) -> dict[str, Any]:
    """An edit (m.replace) of ``event_id`` to the content ``new``."""
    return {**new, "body": f"* {new['body']}", "formatted_body": f"* {new['formatted_body']}",
            "m.new_content": new, "m.mentions": {},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}}


def _media_content(att: Attachment, p: dict[str, Any], caption: str) -> dict[str, Any]:
    """A Matrix media message for an uploaded file (``p``: its progress: mxc, filename, ...)."""
    content: dict[str, Any] = {
        "msgtype": _MSGTYPES.get(att.kind, "m.file"), "body": p["filename"], "filename": p["filename"],
        "url": p["mxc"], "info": {"mimetype": p["mime_type"], "size": p["size"]}, "m.mentions": {},
    }
    if caption:
        # A Matrix media caption: body is the caption when filename is set beside it.
        content["body"] = caption
    return content


def _result(**values: Any) -> Finish:
    async def finish(tx: Tx) -> dict[str, Any]:
        return values
    return finish
