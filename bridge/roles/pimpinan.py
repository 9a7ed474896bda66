"""Pimpinan (Kadis, ADB): reads any case, and may act in any step as its holder would.

The reading commands live here; every staff role may use them.
"""
from __future__ import annotations

from bridge import messages as msgs
from bridge.roles.base import COMMANDS, Context, command


@command("status", usage="keadaan kasus dan tenggatnya")
async def status(ctx: Context) -> None:
    if await ctx.act("status"):
        await ctx.reply(await ctx.read("status"))


@command("riwayat", "history", usage="riwayat tindak lanjut (siapa, kapan, apa)")
async def riwayat(ctx: Context) -> None:
    if await ctx.act("history"):
        await ctx.reply(await ctx.read("history"))


@command("cetak", "print", usage="transkrip lengkap untuk dicetak (berkas HTML di utas)")
async def cetak(ctx: Context) -> None:
    if await ctx.act("print"):
        await ctx.read("print")


@command("sla", usage="jam SLA kasus ini; di luar utas: kasus ruang ini menurut sisa waktu", needs_case=False)
async def sla(ctx: Context) -> None:
    if ctx.case is None or await ctx.act("status"):
        await ctx.reply(await ctx.read("sla"))


@command("daftar", "list", usage="kasus terbuka di ruang ini", needs_case=False)
async def daftar(ctx: Context) -> None:
    await ctx.reply(await ctx.read("list"))


@command("bantuan", "help", usage="daftar perintah", needs_case=False)
async def bantuan(ctx: Context) -> None:
    seen: list[tuple[str, ...]] = []
    lines = ["Perintah (di utas kartu kasus, atau di mana saja dengan nomor tiket sesudah perintah):"]
    for cmd in COMMANDS.values():
        if cmd.names not in seen:
            seen.append(cmd.names)
            lines.append(f"!{' / !'.join(cmd.names)}: {cmd.usage}")
    lines.append("Reaksi pada kartu: 👀 ambil · ✅ verifikasi · ⬆️ teruskan · ⬇️ kembalikan · "
                 "✍️ paraf · 📤 kirim · ❌ tolak")
    await ctx.reply(msgs.Rich("\n".join(lines), "<br>".join(msgs.esc(line) for line in lines)))
