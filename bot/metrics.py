"""Health and Prometheus metrics on localhost, with aiohttp (already a dependency).

Why hand-written exposition instead of prometheus_client: three metric families
do not justify a dependency, and the text format is simple and stable
(https://prometheus.io/docs/instrumenting/exposition_formats/).

- ``synesthete_bot_queries_total{flow,outcome}``: every request by flow
  (voice, attachment, recommend, context_menu, similar, more, reseed) and outcome (ok, error);
- ``synesthete_bot_query_seconds{flow}``: latency histogram;
- ``synesthete_bot_errors_total{kind}``: failures by the error's ``kind``;
- ``synesthete_bot_in_flight``, ``synesthete_bot_up``, ``synesthete_bot_feedback_total{vote}``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.queries: dict[tuple[str, str], int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.feedback: dict[str, int] = defaultdict(int)
        self.hist: dict[str, list[int]] = {}
        self.hist_sum: dict[str, float] = defaultdict(float)
        self.hist_count: dict[str, int] = defaultdict(int)
        self.in_flight = 0
        self._ema: float | None = None

    def observe(self, flow: str, outcome: str, seconds: float, error_kind: str | None = None) -> None:
        self.queries[(flow, outcome)] += 1
        if error_kind:
            self.errors[error_kind] += 1
        counts = self.hist.setdefault(flow, [0] * len(BUCKETS))
        for i, b in enumerate(BUCKETS):
            if seconds <= b:
                counts[i] += 1
        self.hist_sum[flow] += seconds
        self.hist_count[flow] += 1
        if outcome == "ok":
            self._ema = seconds if self._ema is None else 0.8 * self._ema + 0.2 * seconds

    def typical_latency(self) -> float:
        """A rough 'how long does a query take' for 'try again in N s'."""
        return max(3.0, self._ema or 5.0)

    def render(self) -> str:
        out: list[str] = []
        out += ["# HELP synesthete_bot_up 1 while the bot process runs.", "# TYPE synesthete_bot_up gauge",
                "synesthete_bot_up 1"]
        out += ["# HELP synesthete_bot_uptime_seconds Seconds since the bot started.",
                "# TYPE synesthete_bot_uptime_seconds gauge",
                f"synesthete_bot_uptime_seconds {time.time() - self.started:.3f}"]
        out += ["# HELP synesthete_bot_in_flight Queries being answered now.", "# TYPE synesthete_bot_in_flight gauge",
                f"synesthete_bot_in_flight {self.in_flight}"]
        out += ["# HELP synesthete_bot_queries_total Requests by flow and outcome.",
                "# TYPE synesthete_bot_queries_total counter"]
        for (flow, outcome), n in sorted(self.queries.items()):
            out.append(f'synesthete_bot_queries_total{{flow="{_esc(flow)}",outcome="{_esc(outcome)}"}} {n}')
        out += ["# HELP synesthete_bot_errors_total Failed or refused requests by error kind.",
                "# TYPE synesthete_bot_errors_total counter"]
        for kind, n in sorted(self.errors.items()):
            out.append(f'synesthete_bot_errors_total{{kind="{_esc(kind)}"}} {n}')
        out += ["# HELP synesthete_bot_feedback_total Thumbs up/down clicks.",
                "# TYPE synesthete_bot_feedback_total counter"]
        for vote, n in sorted(self.feedback.items()):
            out.append(f'synesthete_bot_feedback_total{{vote="{_esc(vote)}"}} {n}')
        out += ["# HELP synesthete_bot_query_seconds Request latency by flow.",
                "# TYPE synesthete_bot_query_seconds histogram"]
        for flow in sorted(self.hist):
            f = _esc(flow)
            for b, n in zip(BUCKETS, self.hist[flow]):
                out.append(f'synesthete_bot_query_seconds_bucket{{flow="{f}",le="{b}"}} {n}')
            out.append(f'synesthete_bot_query_seconds_bucket{{flow="{f}",le="+Inf"}} {self.hist_count[flow]}')
            out.append(f'synesthete_bot_query_seconds_sum{{flow="{f}"}} {self.hist_sum[flow]:.6f}')
            out.append(f'synesthete_bot_query_seconds_count{{flow="{f}"}} {self.hist_count[flow]}')
        return "\n".join(out) + "\n"


class MetricsServer:
    """``/healthz`` (200 when ready, else 503) and ``/metrics``, on localhost by default."""

    def __init__(self, metrics: Metrics, host: str, port: int, ready: Callable[[], dict]) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
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
        return web.json_response(state, status=200 if state.get("ok") else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render().encode("utf-8"),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
