"""The workflow engine on its own: both seed SOPs as data, decisions, refused profiles."""
from __future__ import annotations

import pytest

from bridge.workflow import (PROFILES, CaseView, ProfileError, allowed_actions, decide,
                             load_profile, validate)

MOJOKERTO = PROFILES["mojokerto"]
BANTUL = PROFILES["bantul"]


def walk(profile, path):
    """Play (role, action, text) steps from the first staff step; return the steps visited."""
    case = CaseView(step=profile.first_staff_step.id, state="open")
    visited = [case.step]
    for role, action, text in path:
        d = decide(profile, case, role, action, text)
        assert d.ok, (case, role, action, d.reason)
        case = CaseView(step=d.to_step, state="closed" if d.closes else "open",
                        has_draft=case.has_draft or action == "answer",
                        approved=case.approved or d.approves)
        if d.moves:
            visited.append(case.step)
    return case, visited


def test_both_seed_profiles_are_valid() -> None:
    for p in PROFILES.values():
        assert validate(p) is p
    assert load_profile({"profile": "bantul"}) is BANTUL


def test_mojokerto_whole_path() -> None:
    case, visited = walk(MOJOKERTO, [
        ("admin", "claim", ""), ("admin", "verify", ""), ("admin", "answer", "Draf"),
        ("kasi", "answer", "Final"), ("kasi", "verify", ""), ("kabid", "approve", ""),
        ("admin", "verify", ""), ("admin", "send", ""),
    ])
    assert visited == ["verifikasi", "draf", "final", "paraf", "cek", "kirim", "selesai"]
    assert case.approved


@pytest.mark.parametrize("path,visited", [
    # the admin resolves: drafts, the kasi approves, back to the admin to send
    ([("admin", "claim", ""), ("admin", "answer", "J"), ("kasi", "approve", ""), ("admin", "send", "")],
     ["diterima", "verifikasi_admin", "verifikasi_kasi", "jawab", "selesai"]),
    # the kasi resolves
    ([("admin", "claim", ""), ("admin", "escalate", ""), ("kasi", "answer", "J"), ("kasi", "approve", ""),
      ("admin", "send", "")],
     ["diterima", "verifikasi_admin", "verifikasi_kasi", "jawab", "selesai"]),
    # to the kabid and back: the kabid's response counts as approved
    ([("admin", "claim", ""), ("admin", "escalate", ""), ("kasi", "escalate", ""), ("kabid", "answer", "J"),
      ("kabid", "return", "Data sudah divalidasi"), ("admin", "send", "")],
     ["diterima", "verifikasi_admin", "verifikasi_kasi", "tanggapan_kabid", "jawab", "selesai"]),
])
def test_bantul_paths(path, visited) -> None:
    case, seen = walk(BANTUL, path)
    assert seen == visited and case.approved


def test_roles_and_steps_are_enforced() -> None:
    start = CaseView(step="verifikasi", state="open")
    assert not decide(MOJOKERTO, start, "kasi", "verify").ok             # not the kasi's step
    assert "Admin WA" in decide(MOJOKERTO, start, "kasi", "verify").reason
    assert not decide(MOJOKERTO, start, None, "verify").ok               # not staff at all
    assert decide(MOJOKERTO, start, "pimpinan", "verify").ok             # pimpinan acts as the holder
    assert not decide(MOJOKERTO, start, "admin", "approve").ok           # not in this step
    assert not decide(MOJOKERTO, start, "admin", "send").ok
    assert decide(MOJOKERTO, start, "kabid", "history").ok               # reading is for every role


def test_answers_need_approval_before_sending_and_freeze_after() -> None:
    jawab = CaseView(step="jawab", state="open", has_draft=True)
    assert "belum diparaf" in decide(BANTUL, jawab, "admin", "send").reason
    assert not decide(BANTUL, jawab, "admin", "approve").ok               # below min_approver
    assert decide(BANTUL, jawab, "kasi", "approve").ok                    # an approver in jawab
    approved = CaseView(step="jawab", state="open", has_draft=True, approved=True)
    assert decide(BANTUL, approved, "admin", "send").ok
    assert not decide(BANTUL, approved, "admin", "answer", "ubah").ok
    assert not decide(BANTUL, CaseView(step="verifikasi_kasi", state="open"), "kasi", "approve").ok


def test_waiting_for_the_citizen_blocks_step_actions() -> None:
    waiting = CaseView(step="verifikasi", state="waiting")
    assert not decide(MOJOKERTO, waiting, "admin", "verify").ok
    assert decide(MOJOKERTO, waiting, "admin", "note", "x").ok
    assert not decide(MOJOKERTO, waiting, "admin", "ask", "lagi?").ok
    assert decide(MOJOKERTO, waiting, "admin", "reject", "tidak dibalas").ok


def test_text_commands_need_text_and_closed_cases_refuse() -> None:
    c = CaseView(step="verifikasi", state="open")
    assert not decide(MOJOKERTO, c, "admin", "reject", " ").ok
    assert decide(MOJOKERTO, c, "admin", "reject", "Bukan kewenangan Dukcapil").closes == "ditolak"
    assert not decide(MOJOKERTO, CaseView(step="selesai", state="closed"), "admin", "note", "x").ok


def test_allowed_actions_follow_the_step() -> None:
    assert allowed_actions(MOJOKERTO, "verifikasi") == ("claim", "verify", "reject")
    assert allowed_actions(BANTUL, "jawab") == ("claim", "approve", "send", "answer")


def _custom(**over):
    sop = {"profile": "kantor", "total_minutes": 60, "min_approver": "kasi", "steps": [
        {"id": "terima", "role": "citizen", "minutes": 5},
        {"id": "cek", "role": "admin", "minutes": 20, "actions": {"answer": "paraf"}},
        {"id": "paraf", "role": "kasi", "minutes": 20, "actions": {"approve": "kirim"}},
        {"id": "kirim", "role": "admin", "minutes": 10, "actions": {"send": "selesai"}},
        {"id": "selesai", "role": "citizen", "minutes": 5},
    ]}
    sop.update(over)
    return sop


def test_an_office_profile_in_config() -> None:
    p = load_profile(_custom())
    assert p.name == "kantor" and p.first_staff_step.id == "cek"


@pytest.mark.parametrize("change,message", [
    (lambda s: s["steps"][1]["actions"].update(answer="nowhere"), "leads to unknown step 'nowhere'"),
    (lambda s: s["steps"].insert(2, {"id": "lost", "role": "kasi", "minutes": 5, "actions": {"verify": "kirim"}}),
     "step lost is reached by no action"),
    (lambda s: s["steps"][3]["actions"].update(send="cek"), "no step sends the answer"),
    (lambda s: s["steps"][2].update(role="admin"), "paraf here needs a role at or above kasi"),
    (lambda s: s["steps"][1].update(role="lurah"), "unknown role 'lurah'"),
    (lambda s: s["steps"][1]["actions"].update(fly="kirim"), "unknown action 'fly'"),
    (lambda s: s["steps"][1].pop("minutes"), "missing key 'minutes'"),
    (lambda s: s.update(min_approver="camat"), "min_approver"),
])
def test_inconsistent_profiles_are_refused(change, message) -> None:
    sop = _custom()
    change(sop)
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_profile(sop)


def test_a_dead_end_is_refused() -> None:
    sop = _custom()
    sop["steps"][2]["actions"] = {"approve": "kirim", "return": "trap"}
    sop["steps"].insert(3, {"id": "trap", "role": "admin", "minutes": 5, "actions": {"claim": "="}})
    with pytest.raises(ProfileError, match="from step trap there is no way to the end"):
        load_profile(sop)


def test_close_is_the_way_out_of_the_sending_step_only() -> None:
    kirim = CaseView(step="kirim", state="open", has_draft=True, approved=True)
    d = decide(MOJOKERTO, kirim, "admin", "close", "Nomor tidak aktif")
    assert d.ok and d.closes == "tidak terkirim" and d.to_step == "selesai"
    assert not decide(MOJOKERTO, kirim, "admin", "close", " ").ok            # a reason is needed
    assert not decide(MOJOKERTO, kirim, "kasi", "close", "x").ok             # the holder's, or pimpinan's
    assert decide(MOJOKERTO, kirim, "pimpinan", "close", "x").ok
    assert "!tutup hanya" in decide(MOJOKERTO, CaseView(step="draf", state="open"), "admin", "close", "x").reason
    assert decide(BANTUL, CaseView(step="jawab", state="open"), "admin", "close", "x").ok


def test_four_eyes_on_the_paraf_unless_the_office_allows_it() -> None:
    drafted = CaseView(step="paraf", state="open", has_draft=True, drafted_by="@budi:dinas")
    refused = decide(MOJOKERTO, drafted, "kabid", "approve", actor="@budi:dinas")
    assert not refused.ok and "Anda tulis sendiri" in refused.reason
    assert decide(MOJOKERTO, drafted, "kabid", "approve", actor="@sari:dinas").ok
    one_person = load_profile({"profile": "mojokerto", "self_approval": True})
    assert decide(one_person, drafted, "kabid", "approve", actor="@budi:dinas").ok
    with pytest.raises(ProfileError, match="self_approval"):
        load_profile({"profile": "mojokerto", "self_approval": "ya"})


def test_sent_back_after_paraf_withdraws_it() -> None:
    cek = CaseView(step="cek", state="open", has_draft=True, approved=True)
    d = decide(MOJOKERTO, cek, "admin", "return", "Nomor surat salah")
    assert d.ok and d.to_step == "draf" and d.withdraws
    before = CaseView(step="paraf", state="open", has_draft=True)
    assert not decide(MOJOKERTO, before, "kabid", "return", "Perbaiki").withdraws   # nothing to withdraw
