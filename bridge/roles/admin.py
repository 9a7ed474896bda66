"""Admin WA (operator/staf, seksi pengaduan): takes, verifies, drafts, asks, sends."""
from __future__ import annotations

from bridge.roles.base import Context, command


@command("ambil", "claim", usage="ambil kasus ini (jadi penanggung jawab)")
async def ambil(ctx: Context) -> None:
    await ctx.act("claim")


@command("verifikasi", "verify", usage="pengaduan sudah diverifikasi / jawaban sudah dicek")
async def verifikasi(ctx: Context) -> None:
    await ctx.act("verify")


@command("teruskan", "escalate", usage="teruskan ke Kepala Seksi / Kepala Bidang [catatan]")
async def teruskan(ctx: Context) -> None:
    await ctx.act("escalate")


@command("jawab", "answer", usage="tulis atau ganti konsep jawaban: !jawab <teks>")
async def jawab(ctx: Context) -> None:
    await ctx.act("answer")


@command("kirim", "send", usage="kirim jawaban yang sudah diparaf ke pemohon")
async def kirim(ctx: Context) -> None:
    await ctx.act("send")


@command("tolak", "reject", usage="pengaduan tidak valid: !tolak <alasan> (dikirim ke pemohon)")
async def tolak(ctx: Context) -> None:
    await ctx.act("reject")


@command("tanya", "ask", usage="tanya pemohon: !tanya <pertanyaan> (jam SLA berhenti)")
async def tanya(ctx: Context) -> None:
    await ctx.act("ask")


@command("catatan", "note", usage="catatan internal: !catatan <teks> (tidak dikirim ke pemohon)")
async def catatan(ctx: Context) -> None:
    await ctx.act("note")


@command("tutup", "close", usage="tutup kasus yang jawabannya tidak dapat dikirim: !tutup <alasan> "
         "(hasil \"tidak terkirim\")")
async def tutup(ctx: Context) -> None:
    await ctx.act("close")
