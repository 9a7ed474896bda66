"""Admin WA (operator/staf, seksi pengaduan): takes, verifies, drafts, asks, sends."""
from __future__ import annotations

from bridge.roles.base import Context, command


@command("ambil", "claim", usage="ambil kasus ini (jadi penanggung jawab)", action="claim")
async def ambil(ctx: Context) -> None:
    await ctx.act("claim")


@command("verifikasi", "verify", usage="pengaduan sudah diverifikasi / jawaban sudah dicek", action="verify")
async def verifikasi(ctx: Context) -> None:
    await ctx.act("verify")


@command("teruskan", "escalate", usage="teruskan ke Kepala Seksi / Kepala Bidang [catatan]", action="escalate")
async def teruskan(ctx: Context) -> None:
    await ctx.act("escalate")


@command("jawab", "answer", usage="tulis atau ganti konsep jawaban: !jawab <teks>", action="answer")
async def jawab(ctx: Context) -> None:
    await ctx.act("answer")


@command("kirim", "send", usage="kirim jawaban yang sudah diparaf ke pemohon", action="send")
async def kirim(ctx: Context) -> None:
    await ctx.act("send")


@command("tolak", "reject", usage="pengaduan tidak valid: !tolak <alasan> (dikirim ke pemohon)", action="reject")
async def tolak(ctx: Context) -> None:
    await ctx.act("reject")


@command("tanya", "ask", usage="tanya pemohon: !tanya <pertanyaan> (jam SLA berhenti)", action="ask")
async def tanya(ctx: Context) -> None:
    await ctx.act("ask")


@command("catatan", "note", usage="catatan internal: !catatan <teks> (tidak dikirim ke pemohon)", action="note")
async def catatan(ctx: Context) -> None:
    await ctx.act("note")


@command("tutup", "close", usage="tutup kasus yang jawabannya tidak dapat dikirim: !tutup <alasan> "
         "(hasil \"tidak terkirim\")", action="close")
async def tutup(ctx: Context) -> None:
    await ctx.act("close")
