"""/metrics in the Prometheus text format.

Figures that must survive a restart (complaints, cases by step, breaches, the outbox
backlog) are read from the database at each scrape; in-process counters (deliveries,
failures) and the webhook latency histogram live in this process's own registry (one
per bridge, so that several bridges in one process, as in the tests, do not clash).
"""
from __future__ import annotations

import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from bridge.app import Bridge

WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Latency:
    """A histogram of one channel's webhook answers, counted on the event loop alone (so
    without prometheus_client's locks, two a sample): a count per bucket, and the sum."""

    def __init__(self, buckets: tuple[float, ...] = WEBHOOK_BUCKETS) -> None:
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)        # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1      # le: a value on a bound is in it
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out, n = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            n += count
            out.append((floatToGoString(bound), n))
        return out


class Metrics:
    def __init__(self, bridge: "Bridge") -> None:
        self.bridge = bridge
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks: dict[str, Latency] = {}        # by channel: time to answer its webhook
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

    def timed(self, route: web.RouteDef) -> web.RouteDef:
        """A channel's webhook route (/webhooks/<channel>), its handler timed into
        ``pengaduan_webhook_seconds{channel}`` (store included, whatever it answers); other
        routes as they are. Wrapping the route, not a middleware: no extra step for every
        request of the app, and only the channels' own routes make labels."""
        if not route.path.startswith("/webhooks/"):
            return route
        latency = self.webhooks.setdefault(route.path.rsplit("/", 1)[-1], Latency())
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = route.handler  # type: ignore[assignment]
        clock = time.perf_counter

        async def timed_handler(request: web.Request) -> web.StreamResponse:
            start = clock()
            try:
                return await handler(request)
            finally:
                latency.observe(clock() - start)
        return web.RouteDef(route.method, route.path, timed_handler, route.kwargs)


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
        webhooks = HistogramMetricFamily("pengaduan_webhook_seconds",
                                         "Time to answer a channel's webhook (store included)", labels=["channel"])
        for channel, latency in self.metrics.webhooks.items():
            webhooks.add_metric([channel], latency.cumulative(), latency.sum)
        yield webhooks
        yield GaugeMetricFamily("pengaduan_matrix_synced", "1 when the last Matrix sync succeeded",
                                value=1 if bridge.matrix and bridge.matrix.last_sync_ok else 0)


def _by_label(family: Any, name: str, doc: str, label: str, values: dict[str, int]) -> Any:
    metric = family(name, doc, labels=[label])
    for key, n in values.items():
        metric.add_metric([key], n)
    return metric
