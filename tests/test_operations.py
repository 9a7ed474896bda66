"""What an operator watches: /healthz, /metrics, and the logs."""
from __future__ import annotations

import json
import logging

import aiohttp

from tests.harness import Env, until
from tests.story import command, complaint


async def get(env: Env, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{env.bridge.http.url}{path}") as r:
            return r.status, await r.text()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


async def test_metrics_count_complaints_steps_outbox_and_webhook_latency(env: Env) -> None:
    card = await complaint(env, "6281234500020", "KTP-el belum jadi")
    await complaint(env, "6281234500021", "KK salah nama")
    await command(env, "admin", card, "!verifikasi")
    await until(lambda: _settled(env), what="the outbox to empty")
    status, text = await get(env, "/metrics")
    assert status == 200
    assert metric(text, 'pengaduan_complaints_total{channel="whatsapp"}') == 2
    assert metric(text, 'pengaduan_cases_open{role="admin",state="open",step="draf"}') == 1
    assert metric(text, 'pengaduan_cases_open{role="admin",state="open",step="verifikasi"}') == 1
    assert metric(text, 'pengaduan_outbox_backlog{state="pending"}') == 0
    assert metric(text, "pengaduan_outbox_delivered_total") >= 4
    assert metric(text, "pengaduan_sla_breaches_total") == 0
    assert metric(text, 'pengaduan_webhook_seconds_count{channel="whatsapp"}') >= 2
    assert metric(text, "pengaduan_matrix_synced") == 1


async def _settled(env: Env) -> bool:
    async with env.bridge.store.reading() as tx:
        return (await tx.outbox_backlog())["pending"] == 0


async def test_healthz_is_503_when_the_bridge_cannot_work(env: Env) -> None:
    await until(lambda: env.bridge.matrix.last_sync_ok, what="a sync")
    assert (await get(env, "/healthz"))[0] == 200
    await env.bridge.channels["whatsapp"].stop()         # the channel lost its HTTP session
    status, text = await get(env, "/healthz")
    assert status == 503 and json.loads(text)["channels"]["whatsapp"]["ok"] is False


def test_json_logs_carry_no_phone_number_or_nik(capsys) -> None:
    from main import setup_logging
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("json")
    try:
        logging.getLogger("bridge.test").info("warga %s NIK %s", "6281234567890", "3402124501900003")
    finally:
        # Back to pytest's own handlers: the JSON handler writes to capsys' stream, closed after this test.
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["level"] == "INFO" and record["logger"] == "bridge.test"
    assert "6281234567890" not in line and "3402124501900003" not in line and "340212******0003" in line


def test_the_webhook_histogram_counts_each_answer_in_its_bucket() -> None:
    from bridge.metrics import Latency
    latency = Latency((0.005, 0.01, 5))
    for seconds in (0.001, 0.005, 0.007, 10):                   # a value on a bound is in it (le)
        latency.observe(seconds)
    assert latency.cumulative() == [("0.005", 2), ("0.01", 3), ("5.0", 3), ("+Inf", 4)]
    assert latency.sum == 0.001 + 0.005 + 0.007 + 10
