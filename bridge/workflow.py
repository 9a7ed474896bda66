"""The SOP as data: steps, the role that acts in each, their minutes, the total.

This is the first part of the workflow engine: the two seed profiles (SOP.md) with their
steps and times. The actions that move a case between steps come with the staff
workflow (reactions and commands).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    id: str
    name: str          # as staff read it (Bahasa Indonesia)
    role: str          # who acts: citizen, admin, kasi, kabid
    minutes: int


@dataclass(frozen=True)
class Profile:
    name: str
    office: str
    steps: tuple[Step, ...]
    total_minutes: int
    min_approver: str

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def first_staff_step(self) -> Step:
        """Where a new case waits: the first step a staff role acts in."""
        return next(s for s in self.steps if s.role != "citizen")


PROFILES: dict[str, Profile] = {
    "mojokerto": Profile(
        name="mojokerto", office="Dispendukcapil Kab. Mojokerto", total_minutes=120,
        min_approver="kabid",
        steps=(
            Step("terima", "Pengaduan diterima", "citizen", 15),
            Step("verifikasi", "Verifikasi pengaduan", "admin", 15),
            Step("draf", "Draf jawaban", "admin", 30),
            Step("final", "Finalisasi jawaban", "kasi", 15),
            Step("paraf", "Paraf kepala bidang", "kabid", 15),
            Step("cek", "Pengecekan jawaban", "admin", 15),
            Step("kirim", "Jawaban dikirim", "admin", 15),
        )),
    "bantul": Profile(
        name="bantul", office="Disdukcapil Kab. Bantul", total_minutes=160, min_approver="kasi",
        steps=(
            Step("terima", "Aduan disampaikan", "citizen", 10),
            Step("diterima", "Aduan diterima admin", "admin", 10),
            Step("verifikasi_admin", "Verifikasi oleh Admin WA", "admin", 30),
            Step("verifikasi_kasi", "Verifikasi oleh Kepala Seksi", "kasi", 30),
            Step("tanggapan_kasi", "Tanggapan Kepala Seksi", "kasi", 30),
            Step("tanggapan_kabid", "Tanggapan Kepala Bidang", "kabid", 30),
            Step("jawab", "Jawaban oleh Admin WA", "admin", 10),
            Step("selesai", "Jawaban diterima pemohon", "citizen", 10),
        )),
}


class ProfileError(ValueError):
    pass


def load_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"[sop] profile: unknown profile {name!r} "
                           f"(built in: {', '.join(sorted(PROFILES))})") from None
