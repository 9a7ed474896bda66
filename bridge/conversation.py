"""The citizen's conversation with the bot, the same on every channel.

A citizen without an open case is greeted and guided through the office's complaint
format (format aduan: Nama, NIK, Layanan, Aduan): a message in the format opens the case
at once; otherwise the bot asks for each missing field, one question a message, keeps
every attachment as evidence, and confirms a summary (YA / UBAH / BATAL) before the case
opens. A citizen with open cases adds to them (to the one their message replies to,
else the newest), and a second complaint in the format is asked about, never merged.
"status" answers with their cases; "terima kasih" after an answer opens nothing; after
the answer the citizen rates the service.

Where a conversation stands is a row in ``conversations`` (a restart resumes it); an idle
one expires with a kind message (``expire``). Every text comes from ``Texts``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bridge import aduan
from bridge.cases import Cases, Complaint, too_big_limit
from bridge.channels import base as K
from bridge.channels.base import Choice, InboundMessage
from bridge.clock import Clock
from bridge.config import CitizenSettings
from bridge.messages import describe_attachments, local_day_time, size
from bridge.outbox import HELD_PAYLOAD, Outbox
from bridge.store import Row, Tx
from bridge.texts import Texts

log = logging.getLogger(__name__)

# States of a conversation (conversations.state).
COLLECT = "collect"          # asking for the complaint's fields, one at a time
CONFIRM = "confirm"          # the summary, waiting for YA / UBAH / BATAL
CHANGE = "change"            # UBAH: which field to change
NEW_OR_NOT = "new_or_not"    # after an answer: is this a new complaint?
WHICH_CASE = "which_case"    # a complaint in the format while cases are open: new, or for one of them?
RATING = "rating"            # the answer arrived: 1..5
COMMENT = "comment"          # one comment after the rating

FIELDS = ("name", "nik", "service", "complaint")
YES = {"ya", "y", "yes", "iya", "ok", "oke", "benar", "betul", "1"}
NO = {"tidak", "tdk", "no", "bukan", "n", "2"}
THANKS = re.compile(r"^\W*(terima ?kasih|trima ?kasih|makasih|makasi|thanks?|thx|tq|ok+e?|oke+|siap|baik|"
                    r"sip|mantap|alhamdulillah|👍|🙏|😊|❤️?)\b.{0,40}$", re.IGNORECASE)
STATUS = re.compile(r"^\W*(status|cek|cek status)\b\s*(ADU-\d{4}-\d{6})?\W*$", re.IGNORECASE)


def _word(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.casefold()).strip()


@dataclass
class Reply:
    """What the bot says back: a text, and choices to tap where the channel shows them."""

    text: str
    choices: tuple[Choice, ...] = ()


class Conversation:
    def __init__(self, cases: Cases, outbox: Outbox, clock: Clock, texts: Texts, settings: CitizenSettings,
                 hours: str) -> None:
        self.cases = cases
        self.outbox = outbox
        self.clock = clock
        self.texts = texts
        self.settings = settings
        self.hours = hours            # the office's working hours, as the greeting says them

    # -- one message -------------------------------------------------------------------
    async def handle(self, tx: Tx, citizen: Row, msg: InboundMessage) -> int | None:
        """A message the citizen wrote or sent; returns the case it went to, if any."""
        await self.release_held(tx, citizen)
        await self._too_big(tx, citizen, msg)
        if msg.kind == K.CHOICE and msg.choice_id == HELD_PAYLOAD:
            return None                         # "show me": what waited is on its way
        conv = await tx.get_conversation(citizen["id"])
        if conv is not None:
            done, case_id = await self._in_conversation(tx, citizen, msg, conv)
            if done:
                return case_id
        status = STATUS.match(msg.text or "")
        if status:
            await self._status(tx, citizen, msg, status.group(2))
            return None
        open_cases = await tx.open_cases_of(citizen["id"])
        for case in list(open_cases):
            if await self.cases.answer_awaits_receipt(tx, case):
                # They write again after the answer went out: they have it.
                await self.cases.answer_unconfirmed(tx, case)
                open_cases.remove(case)
        found = aduan.parse_format(msg.text) if msg.text else None
        if open_cases:
            if found is not None and found.complete:
                return await self._ask_which_case(tx, citizen, msg, open_cases)
            return await self._follow_up(tx, citizen, msg, open_cases)
        recent = await tx.last_answered_case_of(citizen["id"], self.clock() - timedelta(days=self.settings.thanks_days))
        if recent is not None and found is None:
            if not msg.attachments and THANKS.match(msg.text or ""):
                await self._say(tx, citizen, msg, Reply(self.texts.render("thanks_reply", ticket=recent["ticket"])))
                return None
            await self._set(tx, citizen, NEW_OR_NOT, {"message": msg.to_dict()})
            await self._say(tx, citizen, msg, self._yes_no("new_complaint_question", ticket=recent["ticket"]))
            return None
        return await self._start(tx, citizen, msg, found)

    async def _too_big(self, tx: Tx, citizen: Row, msg: InboundMessage) -> None:
        """A file the channel will not hand over: the citizen hears it at once (staff see it
        in the thread when the file would have come)."""
        limit = too_big_limit(msg.channel)
        for att in msg.attachments:
            if limit and att.size and att.size > limit:
                await self._say(tx, citizen, msg, Reply(self.texts.render(
                    "file_too_big", name=describe_attachments((att,))[0], size=size(att.size), limit=size(limit))))

    # -- the complaint format, guided --------------------------------------------------------
    async def _start(self, tx: Tx, citizen: Row, msg: InboundMessage, found: aduan.FormatAduan | None,
                     greet: bool = True) -> int | None:
        data: dict[str, Any] = {"fields": {}, "evidence": [], "nik_tries": 0, "album": msg.group,
                                "confidential": self.settings.confidential, "first": msg.external_id}
        if found is not None:
            if found.rahasia is not None:
                data["confidential"] = found.rahasia
            if found.nama:
                data["fields"]["name"] = found.nama
            if found.nik:
                self._take_nik(data, found.nik)
            if found.service is not None:
                data["fields"]["service"] = found.service.name
            if found.aduan:
                data["fields"]["complaint"] = found.aduan
        if msg.attachments:
            data["evidence"].append(msg.to_dict())
        if found is not None and self._missing(data) is None:
            # The whole format in one message: the case opens at once.
            return await self._open(tx, citizen, msg, data)
        if greet:
            await self._say(tx, citizen, msg, Reply(self.texts.render(
                "greeting", hours=self.hours, format=self.texts.render("format"))))
        return await self._next_question(tx, citizen, msg, data)

    def _missing(self, data: dict[str, Any]) -> str | None:
        f = data["fields"]
        for key in FIELDS:
            if key == "nik" and (not self.settings.ask_nik or data.get("nik_problem")):
                continue
            if not f.get(key):
                return key
        return None

    async def _next_question(self, tx: Tx, citizen: Row, msg: InboundMessage, data: dict[str, Any]) -> None:
        missing = self._missing(data)
        if missing is None:
            await self._set(tx, citizen, CONFIRM, data)
            await self._say(tx, citizen, msg, self._summary(data))
            return None
        data["asking"] = missing
        await self._set(tx, citizen, COLLECT, data)
        if missing == "service":
            rows = tuple(Choice(r.id, r.title, r.description) for r in aduan.list_rows())
            await self._say(tx, citizen, msg, Reply(self.texts.render("ask_service", list=aduan.numbered_list()), rows))
        elif missing == "nik" and data.get("nik_last_error"):
            await self._say(tx, citizen, msg, Reply(self.texts.render("nik_invalid", reason=data["nik_last_error"])))
        else:
            await self._say(tx, citizen, msg, Reply(self.texts.render(f"ask_{missing}")))
        return None

    def _take_nik(self, data: dict[str, Any], value: str) -> bool:
        """Check a NIK; a wrong one is explained (a second try), after two it is left out."""
        check = aduan.check_nik(value, self.clock().astimezone(self.cases.calendar.tz).date())
        if check.ok:
            data["fields"]["nik"] = check.nik
            data.pop("nik_problem", None)
            return True
        data["nik_tries"] += 1
        if data["nik_tries"] >= 2:
            data["nik_problem"] = check.message
        data["nik_last_error"] = check.message
        return False

    async def _collect(self, tx: Tx, citizen: Row, msg: InboundMessage, data: dict[str, Any]) -> int | None:
        if msg.attachments:
            data["evidence"].append(msg.to_dict())
            if not msg.text:
                # An album comes as one message per file: one reply for all of it.
                same_album = msg.group is not None and data.get("album") == msg.group
                data["album"] = msg.group
                await self._set(tx, citizen, COLLECT, data)
                if not same_album:
                    await self._say(tx, citizen, msg, Reply(self.texts.render("evidence_kept",
                                                                              count=len(data["evidence"]))))
                return None
        asking, text = data.get("asking"), (msg.text or "").strip()
        if asking == "nik":
            if not self._take_nik(data, text) and "nik_problem" not in data:
                await self._set(tx, citizen, COLLECT, data)
                await self._say(tx, citizen, msg, Reply(self.texts.render("nik_invalid", reason=data["nik_last_error"])))
                return None
            if "nik_problem" in data:
                await self._say(tx, citizen, msg, Reply(self.texts.render("nik_skipped", reason=data["nik_problem"])))
        elif asking == "service":
            service = aduan.match_service(msg.choice_id or text) or aduan.match_service(text)
            if service is None:
                rows = tuple(Choice(r.id, r.title, r.description) for r in aduan.list_rows())
                await self._say(tx, citizen, msg, Reply(self.texts.render("service_unknown", list=aduan.numbered_list()), rows))
                return None
            data["fields"]["service"] = service.name
        elif asking in ("name", "complaint") and text:
            data["fields"][asking] = text
        elif not text:
            return None
        return await self._next_question(tx, citizen, msg, data)

    def _summary(self, data: dict[str, Any]) -> Reply:
        f = data["fields"]
        nik = f.get("nik") or ("(tidak disertakan)" if data.get("nik_problem") or not self.settings.ask_nik else "-")
        text = self.texts.render(
            "summary", name=f.get("name", "-"), nik=nik, service=f.get("service", "-"),
            complaint=f.get("complaint", "-"), evidence=len(data["evidence"]),
            confidential="ya" if data.get("confidential") else "tidak")
        return Reply(text, (Choice("ya", self.texts.render("button_send")), Choice("ubah", self.texts.render("button_edit")),
                            Choice("batal", self.texts.render("button_cancel"))))

    async def _confirm(self, tx: Tx, citizen: Row, msg: InboundMessage, data: dict[str, Any]) -> int | None:
        if msg.attachments:
            data["evidence"].append(msg.to_dict())
        answer = _word(msg.choice_id or msg.text or "")
        if answer in YES:
            return await self._open(tx, citizen, msg, data)
        if answer in ("batal", "cancel", "3"):
            await tx.end_conversation(citizen["id"])
            await self._say(tx, citizen, msg, Reply(self.texts.render("cancelled")))
            return None
        if answer in ("ubah", "2", "edit"):
            await self._set(tx, citizen, CHANGE, data)
            choices = (Choice("name", "Nama"), Choice("nik", "NIK"), Choice("service", "Layanan"),
                       Choice("complaint", "Aduan"))
            await self._say(tx, citizen, msg, Reply(self.texts.render("which_field"), choices))
            return None
        if answer == "rahasia":
            data["confidential"] = not data.get("confidential")
        await self._set(tx, citizen, CONFIRM, data)
        await self._say(tx, citizen, msg, self._summary(data))
        return None

    async def _change(self, tx: Tx, citizen: Row, msg: InboundMessage, data: dict[str, Any]) -> int | None:
        answer = _word(msg.choice_id or msg.text or "")
        field = {"1": "name", "nama": "name", "name": "name", "2": "nik", "nik": "nik", "3": "service",
                 "layanan": "service", "service": "service", "4": "complaint", "aduan": "complaint",
                 "complaint": "complaint"}.get(answer)
        if field is None:
            await self._set(tx, citizen, CONFIRM, data)
            await self._say(tx, citizen, msg, self._summary(data))
            return None
        data["fields"].pop(field, None)
        if field == "nik":
            data.update(nik_tries=0)
            data.pop("nik_problem", None)
        return await self._next_question(tx, citizen, msg, data)

    async def _open(self, tx: Tx, citizen: Row, msg: InboundMessage, data: dict[str, Any]) -> int:
        await tx.end_conversation(citizen["id"])
        f = data["fields"]
        complaint = Complaint(name=f.get("name"), nik=f.get("nik"), nik_problem=data.get("nik_problem"),
                              service=f.get("service"), text=f.get("complaint") or msg.text,
                              confidential=bool(data.get("confidential")),
                              evidence=tuple(InboundMessage.from_dict(e) for e in data["evidence"]))
        case = await self.cases.open(tx, citizen, msg, complaint=complaint, category=f.get("service"))
        log.info("conversation: %s opened", case["ticket"])
        return case["id"]

    # -- after an answer, and more than one case --------------------------------------------
    async def _ask_which_case(self, tx: Tx, citizen: Row, msg: InboundMessage, open_cases: list[Row]) -> None:
        await self._set(tx, citizen, WHICH_CASE, {"message": msg.to_dict(),
                                                  "cases": [c["ticket"] for c in open_cases[:2]]})
        choices = (Choice("baru", "Pengaduan baru"),
                   *(Choice(c["ticket"], f"Tambah ke {c['ticket'][-6:]}") for c in open_cases[:2]))
        await self._say(tx, citizen, msg, Reply(self.texts.render(
            "which_case_question", tickets=", ".join(c["ticket"] for c in open_cases)), choices))
        return None

    async def _follow_up(self, tx: Tx, citizen: Row, msg: InboundMessage, open_cases: list[Row],
                         note: str | None = None) -> int:
        """A later message goes to the case it replies to, else to the newest; the thread says so."""
        target = open_cases[0]
        if msg.reply_to:
            replied = await tx.case_of_message(msg.channel, msg.reply_to)
            target = next((c for c in open_cases if c["id"] == replied), target)
            if replied == target["id"]:
                note = note or "(membalas pesan dari kasus ini)"
        if note is None and len(open_cases) > 1:
            note = "(pemohon punya beberapa kasus terbuka; pesan ini ditambahkan ke yang terbaru)"
        await self.cases.add_citizen_message(tx, target, citizen, msg, note=note)
        return target["id"]

    async def _in_conversation(self, tx: Tx, citizen: Row, msg: InboundMessage,
                               conv: Row) -> tuple[bool, int | None]:
        """A message while the bot waits for an answer; (False, None): not an answer, go on."""
        state, data = conv["state"], conv["data"]
        words = _word(msg.choice_id or msg.text or "")
        if state in (COLLECT, CONFIRM, CHANGE) and words in ("batal", "cancel"):
            await tx.end_conversation(citizen["id"])
            await self._say(tx, citizen, msg, Reply(self.texts.render("cancelled")))
            return True, None
        if state == COLLECT:
            return True, await self._collect(tx, citizen, msg, data)
        if state == CONFIRM:
            return True, await self._confirm(tx, citizen, msg, data)
        if state == CHANGE:
            return True, await self._change(tx, citizen, msg, data)
        stored = InboundMessage.from_dict(data["message"]) if "message" in data else None
        if state == NEW_OR_NOT and stored is not None:
            await tx.end_conversation(citizen["id"])
            if words in YES:
                return True, await self._start(tx, citizen, stored, aduan.parse_format(stored.text), greet=False)
            if words in NO:
                await self._say(tx, citizen, msg, Reply(self.texts.render("not_new")))
                return True, None
            return False, None
        if state == WHICH_CASE and stored is not None:
            await tx.end_conversation(citizen["id"])
            if words in ("baru", "pengaduan baru", "1"):
                return True, await self._start(tx, citizen, stored, aduan.parse_format(stored.text), greet=False)
            chosen = msg.choice_id if msg.choice_id in data["cases"] else next(
                (t for t in data["cases"] if t.casefold() in (msg.text or "").casefold()), None)
            if chosen is None and words == "2" and data["cases"]:
                chosen = data["cases"][0]
            case = await tx.get_case_by_ticket(chosen) if chosen else None
            if case is not None and case["state"] != "closed":
                await self.cases.add_citizen_message(tx, case, citizen, stored,
                                                     note="(pemohon memilih: bagian dari kasus ini)")
                await self._say(tx, citizen, msg, Reply(self.texts.render("followup_added", ticket=case["ticket"])))
                return True, case["id"]
            return False, None
        if state == RATING:
            score = _score(msg.choice_id or msg.text or "")
            if score is None:
                await tx.end_conversation(citizen["id"])
                return False, None
            await tx.rate(data["case_id"], score, self.clock())
            await self._set(tx, citizen, COMMENT, data)
            await self._say(tx, citizen, msg, Reply(self.texts.render("rating_comment_question")))
            return True, None
        if state == COMMENT:
            await tx.end_conversation(citizen["id"])
            if words not in ("lewati", "tidak", "tidak ada", "skip", "-") and msg.text:
                await tx.rating_comment(data["case_id"], msg.text.strip())
            await self._say(tx, citizen, msg, Reply(self.texts.render("rating_thanks")))
            return True, None
        await tx.end_conversation(citizen["id"])
        return False, None

    # -- status --------------------------------------------------------------------------
    async def _status(self, tx: Tx, citizen: Row, msg: InboundMessage, ticket: str | None) -> None:
        if ticket:
            case = await tx.get_case_by_ticket(ticket.upper())
            # Somebody else's ticket is answered as an unknown one.
            if case is None or case["citizen_id"] != citizen["id"]:
                await self._say(tx, citizen, msg, Reply(self.texts.render("status_unknown_ticket", ticket=ticket.upper())))
                return
            cases = [case]
        else:
            cases = await tx.open_cases_of(citizen["id"])
            if not cases:
                await self._say(tx, citizen, msg, Reply(self.texts.render("status_none")))
                return
        lines = [self.texts.render("status_case", ticket=c["ticket"], stage=self.stage(c),
                                   due=local_day_time(c["due_at"]) if c["due_at"] else "-")
                 for c in cases]
        await self._say(tx, citizen, msg, Reply("\n\n".join(lines)))

    def stage(self, case: Row) -> str:
        """Where a case is, in plain words for the citizen."""
        if case["state"] == "closed":
            return {"dijawab": "selesai, sudah dijawab", "ditolak": "selesai, tidak dapat ditindaklanjuti"}.get(
                case["outcome"], "selesai")
        if case["state"] == "waiting":
            return "menunggu keterangan dari Anda"
        step = self.cases.profile.step(case["step"])
        return {"admin": "sedang ditangani petugas pengaduan", "kasi": "sedang diperiksa Kepala Seksi",
                "kabid": "menunggu persetujuan Kepala Bidang", "citizen": "jawaban sudah dikirim"}.get(
                    step.role, "sedang diproses")

    # -- the rating, after the answer -----------------------------------------------------
    async def ask_rating(self, tx: Tx, case: Row) -> None:
        if not self.settings.rating:
            return
        citizen = await tx.get_citizen(case["citizen_id"])
        assert citizen is not None
        await self._set(tx, citizen, RATING, {"case_id": case["id"]})
        choices = tuple(Choice(str(n), f"{n} {label}") for n, label in
                        ((5, "Sangat puas"), (4, "Puas"), (3, "Cukup"), (2, "Kurang puas"), (1, "Tidak puas")))
        await self.outbox.citizen_text(tx, case["id"], case["channel"], citizen["address"],
                                       self.texts.render("rating_question", ticket=case["ticket"]),
                                       purpose="rating", choices=choices)

    # -- the window, and expiry -----------------------------------------------------------
    async def release_held(self, tx: Tx, citizen: Row) -> None:
        """The citizen wrote: what waited for their window goes out now, in order."""
        for held in await tx.release_held(citizen["id"], self.clock()):
            p = dict(held["payload"])
            p.pop("window_closed", None)
            await self.outbox.citizen_text(tx, held["case_id"], **p)

    async def expire(self, tx: Tx, conv: Row) -> bool:
        """An idle conversation ends; a complaint left half-told gets a kind word. False: the
        citizen wrote meanwhile, so it is not idle any more."""
        if not await tx.end_conversation_if(conv["citizen_id"], conv["updated_at"]):
            return False
        if conv["state"] in (COLLECT, CONFIRM, CHANGE):
            citizen = await tx.get_citizen(conv["citizen_id"])
            assert citizen is not None
            await self.outbox.citizen_text(tx, None, citizen["channel"], citizen["address"],
                                           self.texts.render("expired", format=self.texts.render("format")),
                                           purpose="notice")
        return True

    # -- helpers ------------------------------------------------------------------------
    async def _set(self, tx: Tx, citizen: Row, state: str, data: dict[str, Any]) -> None:
        now = self.clock()
        await tx.set_conversation(citizen["id"], state, data, at=now,
                                  expires_at=now + timedelta(hours=self.settings.idle_hours))

    async def _say(self, tx: Tx, citizen: Row, msg: InboundMessage, reply: Reply) -> None:
        await self.outbox.citizen_text(tx, None, msg.channel, citizen["address"], reply.text,
                                       reply_to=None, purpose="notice", choices=reply.choices)

    def _yes_no(self, key: str, **values: Any) -> Reply:
        return Reply(self.texts.render(key, **values), (Choice("ya", "YA"), Choice("tidak", "TIDAK")))


def _score(text: str) -> int | None:
    m = re.match(r"^\W*([1-5])\b", text)
    return int(m.group(1)) if m else None

