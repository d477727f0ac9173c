"""Health and Prometheus metrics on localhost, on ``prometheus_client`` via :mod:`engine.metrics`.

The registry (one per bot, never the global one), ``/metrics`` handler and the
families every front-end has (``synesthete_bot_up``, ``synesthete_bot_uptime_seconds``,
``process_*``) are shared with the web app in :mod:`engine.metrics`.  The bot's own:

- ``synesthete_bot_queries_total{flow,outcome}``: every request by flow
  (voice, attachment, recommend, context_menu, similar, more, reseed, autocomplete, ...)
  and outcome (ok, error);
- ``synesthete_bot_query_seconds{flow}``: latency histogram;
- ``synesthete_bot_errors_total{kind}``: failures by the error's ``kind``;
- ``synesthete_bot_in_flight``: requests being answered now;
- ``synesthete_bot_feedback_total{vote}``: thumbs up/down clicks.

With several processes, see docs/bot.md ("Metrics with several processes").
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from engine.metrics import Telemetry

log = logging.getLogger(__name__)

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class Metrics(Telemetry):
    """The ``synesthete_bot_*`` families, plus a running latency for "try again in N s"."""

    def __init__(self) -> None:
        super().__init__("synesthete_bot")
        r = self.registry
        self.queries = Counter("synesthete_bot_queries", "Requests by flow and outcome.", ["flow", "outcome"],
                               registry=r)
        self.errors = Counter("synesthete_bot_errors", "Failed or refused requests by error kind.", ["kind"],
                              registry=r)
        self.feedback = Counter("synesthete_bot_feedback", "Thumbs up/down clicks.", ["vote"], registry=r)
        self.latency = Histogram("synesthete_bot_query_seconds", "Request latency by flow.", ["flow"],
                                 buckets=BUCKETS, registry=r)
        self.in_flight = Gauge("synesthete_bot_in_flight", "Queries being answered now.", registry=r,
                               multiprocess_mode="livesum")
        self._ema: float | None = None

    def observe(self, flow: str, outcome: str, seconds: float, error_kind: str | None = None) -> None:
        """One finished request: its flow, ``ok``/``error``, how long, and the error's kind."""
        self.queries.labels(flow, outcome).inc()
        if error_kind:
            self.errors.labels(error_kind).inc()
        self.latency.labels(flow).observe(seconds)
        if outcome == "ok":
            self._ema = seconds if self._ema is None else 0.8 * self._ema + 0.2 * seconds

    def vote(self, up: bool) -> None:
        self.feedback.labels("up" if up else "down").inc()

    @property
    def in_flight_now(self) -> int:
        return int(self.sample("synesthete_bot_in_flight"))

    def typical_latency(self) -> float:
        """A rough 'how long does a query take' for 'try again in N s'."""
        return max(3.0, self._ema or 5.0)


class MetricsServer:
    """``/healthz`` (200 when ready, else 503) and ``/metrics``, on localhost by default."""

    def __init__(self, metrics: Metrics, host: str, port: int,
                 ready: Callable[[], dict] | Callable[[], Awaitable[dict]]) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self.metrics.handler())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("health and metrics on http://%s:%s/healthz and /metrics", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        state = self.ready()
        if inspect.isawaitable(state):  # a check that waits (the store's ping) runs off the loop
            state = await state
        return web.json_response(state, status=200 if state.get("ok") else 503)
