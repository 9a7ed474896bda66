"""Kepala Seksi ("kasi yang membidangi"): verifies escalated cases, answers, approves, returns."""
from __future__ import annotations

from bridge.roles.base import Context, command


@command("kembalikan", "return", usage="kembalikan ke Admin WA dengan catatan: !kembalikan <catatan>", action="return")
async def kembalikan(ctx: Context) -> None:
    await ctx.act("return")


@command("paraf", "approve", usage="paraf (setujui) konsep jawaban; memberi nomor agenda bila diatur", action="approve")
async def paraf(ctx: Context) -> None:
    await ctx.act("approve")
