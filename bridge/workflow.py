"""The SOP as data, and the engine that decides what an action does. Pure code, no I/O.

A profile is a list of steps; each step names the role that acts in it, its minutes,
and the actions it allows with the step each leads to. The two seed SOPs are built in
(``PROFILES``); an office can write its own in config.toml in the same form:

    [sop]
    total_minutes = 120
    min_approver = "kabid"          # the lowest role whose paraf lets an answer go out
    agenda_format = "470/{seq}/416-314/{year}"   # optional: paraf gives an agenda number
    [[sop.steps]]
    id = "verifikasi"
    name = "Verifikasi pengaduan"
    role = "admin"
    minutes = 15
    actions = { verify = "draf", reject = "selesai" }

An action leads to a step id, or to ``"="`` (stay in this step). ``decide`` checks an
action against a case's state and the actor's role and returns either a refusal (a
reason staff read in the thread) or the outcome the case service then records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# The one vocabulary of roles: ids in rank order (an approval needs a rank at or above
# the profile's min_approver), and the titles staff read.
STAFF_ROLES = ("admin", "kasi", "kabid", "pimpinan")
ROLE_RANK = {role: rank for rank, role in enumerate(STAFF_ROLES, start=1)}
CITIZEN = "citizen"
ROLE_TITLES = {"admin": "Admin WA", "kasi": "Kepala Seksi", "kabid": "Kepala Bidang",
               "pimpinan": "Pimpinan", CITIZEN: "Pemohon"}
STAY = "="

# Every action of the staff contract (DESIGN.md). Step actions move a case; the others
# are allowed in every open step to the roles named in ``decide``.
STEP_ACTIONS = ("claim", "verify", "escalate", "return", "approve", "send", "reject", "answer")
FREE_ACTIONS = ("note", "ask", "close")
READ_ACTIONS = ("status", "history", "print", "list", "help")
ACTIONS = STEP_ACTIONS + FREE_ACTIONS + READ_ACTIONS

# What staff call each action (refusals and guides name them so).
ACTION_TITLES = {"claim": "Ambil", "verify": "Verifikasi", "escalate": "Teruskan", "return": "Kembalikan",
                 "approve": "Paraf", "send": "Kirim jawaban", "reject": "Tolak", "answer": "Tulis jawaban",
                 "note": "Catatan", "ask": "Tanya pemohon", "close": "Tutup (tidak terkirim)"}

# Actions that carry text, and must have some.
NEEDS_TEXT = {"answer", "note", "ask", "reject", "return", "close"}

# How a case ends, as the audit, the digest and the export name it.
OUTCOME_ANSWERED = "dijawab"
OUTCOME_REJECTED = "ditolak"
OUTCOME_UNDELIVERABLE = "tidak terkirim"


class ProfileError(ValueError):
    """An SOP profile that cannot run; the message names what is wrong."""


@dataclass(frozen=True)
class Step:
    id: str
    name: str           # as staff read it (Bahasa Indonesia)
    role: str           # who acts: citizen, admin, kasi, kabid
    minutes: int
    actions: Mapping[str, str] = field(default_factory=dict)   # action -> step id or "="
    approvers: tuple[str, ...] = ()   # roles besides ``role`` who may give paraf here


@dataclass(frozen=True)
class Profile:
    name: str
    office: str
    steps: tuple[Step, ...]
    total_minutes: int
    min_approver: str
    agenda_format: str | None = None
    # Actions whose actor's answer counts as approved (Bantul: the kabid's response).
    approving_actions: frozenset[tuple[str, str]] = frozenset()   # (step id, action)
    # Four eyes: whoever wrote the draft may not give it paraf, unless a one-person
    # office switches this on ([sop] self_approval = true).
    self_approval: bool = False

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def first_staff_step(self) -> Step:
        """Where a new case waits: the first step a staff role acts in."""
        return next(s for s in self.steps if s.role != CITIZEN)

    @property
    def final_step(self) -> Step:
        return self.steps[-1]

    def sends_answer(self, step_id: str) -> bool:
        """Whether the answer is sent from this step (where ``!tutup`` is the way out)."""
        return "send" in self.step(step_id).actions

    def target(self, step: Step, action: str) -> Step:
        to = step.actions[action]
        return step if to == STAY else self.step(to)


@dataclass(frozen=True)
class CaseView:
    """What the engine needs to know of a case."""

    step: str
    state: str                    # open | waiting | closed
    has_draft: bool = False
    approved: bool = False
    drafted_by: str | None = None     # who wrote the current draft (four eyes)


@dataclass(frozen=True)
class Decision:
    ok: bool
    reason: str = ""              # why not, for the thread (Bahasa Indonesia)
    action: str = ""
    from_step: str = ""
    to_step: str = ""
    approves: bool = False        # this action approves the draft (paraf)
    withdraws: bool = False       # this action takes back the paraf (the agenda number is void)
    closes: str | None = None     # outcome when the action closes the case

    @property
    def moves(self) -> bool:
        return self.ok and self.to_step != self.from_step


def refuse(reason: str) -> Decision:
    return Decision(ok=False, reason=reason)


def decide(profile: Profile, case: CaseView, role: str | None, action: str,
           text: str = "", actor: str | None = None) -> Decision:
    """May ``actor`` in ``role`` do ``action`` on ``case`` now, and what follows if so."""
    if action not in ACTIONS:
        return refuse(f"Perintah tidak dikenal: {action}.")
    if role not in ROLE_RANK:
        return refuse("Anda tidak terdaftar sebagai petugas di [staff] konfigurasi.")
    if action in READ_ACTIONS:
        return Decision(ok=True, action=action, from_step=case.step, to_step=case.step)
    if case.state == "closed":
        return refuse("Kasus ini sudah ditutup.")
    if action in NEEDS_TEXT and not text.strip():
        return refuse(f"Perintah ini perlu teks: !{action} <teks>.")
    step = profile.step(case.step)
    holder = step.role
    is_holder = role == holder or role == "pimpinan"
    if action == "note":
        return Decision(ok=True, action=action, from_step=step.id, to_step=step.id)
    if action == "ask":
        if not is_holder:
            return refuse(_not_yours(step, role))
        if case.state == "waiting":
            return refuse("Kasus ini sudah menunggu jawaban pemohon.")
        return Decision(ok=True, action=action, from_step=step.id, to_step=step.id)
    if action == "close":
        if not profile.sends_answer(step.id):
            return refuse(f"!tutup hanya untuk jawaban yang tidak dapat dikirim, di langkah pengiriman "
                          f"jawaban; kasus ini di langkah \"{step.name}\".")
        if not is_holder:
            return refuse(_not_yours(step, role))
        return Decision(ok=True, action=action, from_step=step.id, to_step=profile.final_step.id,
                        closes=OUTCOME_UNDELIVERABLE)
    if case.state == "waiting" and action != "reject":
        return refuse("Kasus ini menunggu jawaban pemohon (!tanya); tunggu balasannya dulu.")

    may_act = is_holder or (action == "approve" and role in step.approvers)
    if not may_act:
        return refuse(_not_yours(step, role))
    if action not in step.actions:
        title = ACTION_TITLES.get(action, action)
        where = [s.name for s in profile.steps if action in s.actions]
        if not where:
            return refuse(f"{title} tidak dipakai dalam SOP {profile.name}.")
        return refuse(f"{title} tidak ada pada langkah \"{step.name}\"; itu dilakukan di langkah "
                      + ", ".join(f"\"{name}\"" for name in where) + ".")
    target = profile.target(step, action)
    approves = action == "approve" or (step.id, action) in profile.approving_actions
    if action == "approve":
        if not case.has_draft:
            return refuse("Belum ada konsep jawaban untuk diparaf. Tulis dengan !jawab <teks>.")
        if case.approved:
            return refuse("Jawaban ini sudah diparaf.")
        if ROLE_RANK[role] < ROLE_RANK[profile.min_approver]:
            return refuse(f"Paraf jawaban minimal oleh {ROLE_TITLES[profile.min_approver]}.")
        if actor is not None and actor == case.drafted_by and not profile.self_approval:
            return refuse("Konsep jawaban ini Anda tulis sendiri; paraf harus diberikan petugas lain "
                          f"(minimal {ROLE_TITLES[profile.min_approver]}).")
    if action == "answer" and case.approved:
        return refuse("Jawaban sudah diparaf dan tidak dapat diubah lagi.")
    if action == "send":
        if not case.has_draft:
            return refuse("Belum ada jawaban untuk dikirim.")
        if not case.approved:
            return refuse(f"Jawaban belum diparaf (minimal {ROLE_TITLES[profile.min_approver]}); "
                          "jawaban tidak dapat dikirim sebelum disetujui.")
    if approves and action != "approve":
        # The response of a role at or above min_approver counts as its approval.
        approves = case.has_draft and not case.approved and ROLE_RANK[role] >= ROLE_RANK[profile.min_approver]
    closes = OUTCOME_REJECTED if action == "reject" else None
    # Sent back after paraf (Mojokerto's check fails): the paraf is taken back.
    withdraws = action == "return" and case.approved and not approves
    return Decision(ok=True, action=action, from_step=step.id, to_step=target.id,
                    approves=approves, withdraws=withdraws, closes=closes)


def _not_yours(step: Step, role: str | None = None) -> str:
    yours = f" (Anda: {ROLE_TITLES[role]})" if role in ROLE_TITLES else ""
    return (f"Langkah \"{step.name}\" dikerjakan oleh {ROLE_TITLES.get(step.role, step.role)}; "
            f"Anda tidak memiliki peran itu{yours}.")


def allowed_actions(profile: Profile, step_id: str) -> tuple[str, ...]:
    """The step actions of a step, in contract order (for the card's reactions)."""
    step = profile.step(step_id)
    return tuple(a for a in STEP_ACTIONS if a in step.actions)


# -- profiles --------------------------------------------------------------------------
def _steps(*specs: tuple[Any, ...]) -> tuple[Step, ...]:
    return tuple(Step(*spec) for spec in specs)


PROFILES: dict[str, Profile] = {
    # Dispendukcapil Kab. Mojokerto: 7 steps, 2 hours; the kabid's paraf gives the agenda number.
    "mojokerto": Profile(
        name="mojokerto", office="Dispendukcapil Kab. Mojokerto", total_minutes=120,
        min_approver="kabid", agenda_format="470/{seq}/416-314/{year}",
        steps=_steps(
            ("terima", "Pengaduan diterima", CITIZEN, 15, {}),
            ("verifikasi", "Verifikasi pengaduan", "admin", 15,
             {"claim": STAY, "verify": "draf", "reject": "selesai"}),
            ("draf", "Draf jawaban", "admin", 30, {"claim": STAY, "answer": "final"}),
            ("final", "Finalisasi jawaban", "kasi", 15,
             {"claim": STAY, "answer": STAY, "verify": "paraf", "return": "draf"}),
            ("paraf", "Paraf kepala bidang", "kabid", 15,
             {"claim": STAY, "approve": "cek", "return": "draf"}),
            ("cek", "Pengecekan jawaban", "admin", 15, {"claim": STAY, "verify": "kirim", "return": "draf"}),
            ("kirim", "Jawaban dikirim", "admin", 15, {"claim": STAY, "send": "selesai"}),
            ("selesai", "Jawaban diterima pemohon", CITIZEN, 0, {}),
        )),
    # Disdukcapil Kab. Bantul IKMT-PIAK-01-06: 160 minutes; approval by at least the kasi.
    "bantul": Profile(
        name="bantul", office="Disdukcapil Kab. Bantul", total_minutes=160, min_approver="kasi",
        approving_actions=frozenset({("tanggapan_kasi", "return"), ("tanggapan_kabid", "return")}),
        steps=_steps(
            ("terima", "Aduan disampaikan", CITIZEN, 10, {}),
            ("diterima", "Aduan diterima Admin WA", "admin", 10,
             {"claim": "verifikasi_admin", "reject": "selesai"}),
            ("verifikasi_admin", "Verifikasi oleh Admin WA", "admin", 30,
             {"claim": STAY, "answer": "verifikasi_kasi", "escalate": "verifikasi_kasi",
              "reject": "selesai"}),
            ("verifikasi_kasi", "Verifikasi oleh Kepala Seksi", "kasi", 30,
             {"claim": STAY, "answer": STAY, "approve": "jawab", "verify": "tanggapan_kasi",
              "escalate": "tanggapan_kabid", "return": "verifikasi_admin", "reject": "selesai"}),
            ("tanggapan_kasi", "Tanggapan Kepala Seksi", "kasi", 30,
             {"claim": STAY, "answer": STAY, "approve": "jawab", "return": "jawab"}),
            ("tanggapan_kabid", "Tanggapan Kepala Bidang", "kabid", 30,
             {"claim": STAY, "answer": STAY, "approve": "jawab", "return": "jawab"}),
            ("jawab", "Jawaban oleh Admin WA", "admin", 10,
             {"claim": STAY, "answer": STAY, "approve": STAY, "send": "selesai"},
             ("kasi", "kabid")),
            ("selesai", "Jawaban diterima pemohon", CITIZEN, 10, {}),
        )),
}


def validate(profile: Profile) -> Profile:
    """Refuse a profile that cannot run: unknown steps or roles, unreachable steps, no end."""
    where = f"[sop] {profile.name}"
    ids = [s.id for s in profile.steps]
    if len(profile.steps) < 2:
        raise ProfileError(f"{where}: needs at least a staff step and a final step")
    if len(set(ids)) != len(ids):
        raise ProfileError(f"{where}: step ids repeat: {', '.join(i for i in ids if ids.count(i) > 1)}")
    if profile.min_approver not in ROLE_RANK:
        raise ProfileError(f"{where}: min_approver {profile.min_approver!r} is not one of {', '.join(ROLE_RANK)}")
    if profile.total_minutes <= 0:
        raise ProfileError(f"{where}: total_minutes must be positive")
    if profile.agenda_format is not None and "{seq}" not in profile.agenda_format:
        raise ProfileError(f"{where}: agenda_format must contain {{seq}}")
    for s in profile.steps:
        if s.role not in ROLE_RANK and s.role != CITIZEN:
            raise ProfileError(f"{where}: step {s.id}: unknown role {s.role!r}")
        if s.minutes < 0:
            raise ProfileError(f"{where}: step {s.id}: minutes must not be negative")
        for action, to in s.actions.items():
            if action not in STEP_ACTIONS:
                raise ProfileError(f"{where}: step {s.id}: unknown action {action!r} "
                                   f"(one of {', '.join(STEP_ACTIONS)})")
            if to != STAY and to not in ids:
                raise ProfileError(f"{where}: step {s.id}: action {action} leads to unknown step {to!r}")
        if "approve" in s.actions:
            approvers = (s.role, *s.approvers)
            if not any(ROLE_RANK.get(r, 0) >= ROLE_RANK[profile.min_approver] for r in approvers):
                raise ProfileError(f"{where}: step {s.id}: paraf here needs a role at or above "
                                   f"{profile.min_approver}")
    final = profile.final_step
    if final.actions:
        raise ProfileError(f"{where}: the last step {final.id} is the end and allows no actions")
    if not any("send" in s.actions and profile.target(s, "send").id == final.id for s in profile.steps):
        raise ProfileError(f"{where}: no step sends the answer (send = \"{final.id}\")")
    # Every step is reached from the first staff step, and every step can reach the end.
    edges = {s.id: {profile.target(s, a).id for a in s.actions} for s in profile.steps}
    start = profile.first_staff_step.id
    reached = _reach(start, edges)
    for s in profile.steps:
        if s.role != CITIZEN and s.id not in reached:
            raise ProfileError(f"{where}: step {s.id} is reached by no action")
        if s.id in reached and final.id not in _reach(s.id, edges):
            raise ProfileError(f"{where}: from step {s.id} there is no way to the end ({final.id})")
    return profile


def _reach(start: str, edges: Mapping[str, set[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def load_profile(sop: Mapping[str, Any]) -> Profile:
    """The profile ``[sop]`` selects (``profile = "bantul"``) or defines (``[[sop.steps]]``)."""
    if "steps" not in sop:
        name = sop.get("profile", "mojokerto")
        if name not in PROFILES:
            raise ProfileError(f"[sop] profile: unknown profile {name!r} (built in: {', '.join(sorted(PROFILES))})")
        base = PROFILES[name]
        if "agenda_format" in sop:
            base = Profile(**{**base.__dict__, "agenda_format": sop["agenda_format"] or None})
        if "self_approval" in sop:
            base = Profile(**{**base.__dict__, "self_approval": _flag(sop, "self_approval")})
        return validate(base)
    try:
        steps = tuple(
            Step(id=str(s["id"]), name=str(s.get("name", s["id"])), role=str(s["role"]),
                 minutes=int(s["minutes"]), actions=dict(s.get("actions", {})),
                 approvers=tuple(s.get("approvers", ())))
            for s in sop["steps"])
        profile = Profile(
            name=str(sop.get("profile", "custom")), office=str(sop.get("office", "")), steps=steps,
            total_minutes=int(sop["total_minutes"]), min_approver=str(sop.get("min_approver", "kasi")),
            agenda_format=sop.get("agenda_format"),
            approving_actions=frozenset((str(a[0]), str(a[1])) for a in sop.get("approving_actions", ())),
            self_approval=_flag(sop, "self_approval"))
    except KeyError as e:
        raise ProfileError(f"[sop]: missing key {e.args[0]!r} in the profile or one of its steps") from None
    except (TypeError, ValueError) as e:
        raise ProfileError(f"[sop]: {e}") from None
    return validate(profile)


def _flag(sop: Mapping[str, Any], key: str) -> bool:
    value = sop.get(key, False)
    if not isinstance(value, bool):
        raise ProfileError(f"[sop] {key}: must be true or false, not {value!r}")
    return value


def agenda_number(profile: Profile, seq: int, year: int) -> str | None:
    if not profile.agenda_format:
        return None
    return profile.agenda_format.format(seq=seq, year=year)
