"""The bridge's HTTP face: the channels' webhooks and /healthz."""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]


def make_app(routes: list[web.RouteDef], health: HealthCheck, metrics: Any = None) -> web.Application:
    """The bridge's app: /healthz (503 when the bridge cannot work), /metrics, the channels' routes."""
    app = web.Application(client_max_size=8 * 1024 * 1024)

    async def healthz(request: web.Request) -> web.Response:
        status = await health()
        return web.json_response(status, status=200 if status.get("ok") else 503)

    app.add_routes([web.get("/healthz", healthz), *routes])
    if metrics:
        app.add_routes([web.get("/metrics", metrics.handle)])
    return app


class HttpServer:
    """Runs the app on host:port; port 0 takes a free port (see ``port`` after start)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]     # the real port when 0 was asked
        log.info("http: listening on http://%s:%d", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
