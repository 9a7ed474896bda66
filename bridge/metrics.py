"""/metrics in the Prometheus text format.

Figures that must survive a restart (complaints, cases by step, breaches, the outbox
backlog) are read from the database at each scrape; in-process counters (deliveries,
failures) and the webhook latency histogram live in this process's own registry (one
per bridge, so that several bridges in one process, as in the tests, do not clash).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from bridge.app import Bridge


class Metrics:
    def __init__(self, bridge: "Bridge") -> None:
        self.bridge = bridge
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_seconds = Histogram(
            "pengaduan_webhook_seconds", "Time to answer a channel's webhook (store included)", ["channel"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=self.registry)
        self._snapshot: dict[str, Any] = {}
        self.registry.register(_Collector(self))

    async def refresh(self) -> None:
        store = self.bridge.store
        assert store is not None
        async with store.reading() as tx:
            self._snapshot = {
                "cases": await tx.counts_by("cases", "channel"),
                "inbound": await tx.counts_by("inbound", "channel"),
                "open": await tx.open_counts(),
                "backlog": await tx.outbox_backlog(),
                "breaches": await tx.count_events("sla_%_breach"),
                "inbound_failed": await tx.failed_inbound_count(),
            }

    async def handle(self, request: web.Request) -> web.Response:
        await self.refresh()
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not request.path.startswith("/webhooks/"):
            return await handler(request)
        start = time.perf_counter()
        try:
            return await handler(request)
        finally:
            self.webhook_seconds.labels(request.path.rsplit("/", 1)[-1]).observe(time.perf_counter() - start)


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        snap, bridge = self.metrics._snapshot, self.metrics.bridge
        if not snap:
            return
        yield _by_label(CounterMetricFamily, "pengaduan_complaints", "Cases opened, by channel",
                        "channel", snap["cases"])
        yield _by_label(CounterMetricFamily, "pengaduan_inbound_messages", "Citizen messages received, by channel",
                        "channel", snap["inbound"])
        g = GaugeMetricFamily("pengaduan_cases_open", "Open cases by SOP step, holder role and state",
                              labels=["step", "role", "state"])
        for r in snap["open"]:
            g.add_metric([r["step"], r["holder_role"], r["state"]], r["n"])
        yield g
        yield _by_label(GaugeMetricFamily, "pengaduan_outbox_backlog",
                        "Outbox rows waiting (pending) or given up (dead)", "state", snap["backlog"])
        yield CounterMetricFamily("pengaduan_outbox_delivered", "Outbox rows delivered by this process",
                                  value=bridge.dispatcher.delivered)
        yield CounterMetricFamily("pengaduan_outbox_failures", "Failed delivery attempts in this process",
                                  value=bridge.dispatcher.failures)
        yield GaugeMetricFamily("pengaduan_inbound_failed",
                                "Citizen messages set aside after repeated processing errors",
                                value=snap["inbound_failed"])
        yield CounterMetricFamily("pengaduan_sla_breaches", "SLA breaches (steps and totals)",
                                  value=snap["breaches"])
        yield GaugeMetricFamily("pengaduan_matrix_synced", "1 when the last Matrix sync succeeded",
                                value=1 if bridge.matrix and bridge.matrix.last_sync_ok else 0)


def _by_label(family: Any, name: str, doc: str, label: str, values: dict[str, int]) -> Any:
    metric = family(name, doc, labels=[label])
    for key, n in values.items():
        metric.add_metric([key], n)
    return metric
