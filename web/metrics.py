"""The web app's Prometheus families and the middleware that fills them.

The registry, ``/metrics`` handler and the families every front-end has come
from :mod:`engine.metrics` (shared with the bot).  Here only what is the web
app's own:

- ``synesthete_web_requests_total{route,method,status}``: every HTTP request;
  ``route`` is the route's pattern (``/api/similar``, ``/static``) or
  ``unmatched``, never the raw path, so a scanner cannot blow up cardinality;
- ``synesthete_web_request_seconds{route}``: latency histogram (WebSocket
  sessions are counted but not timed: their length is the listener's, not ours);
- ``synesthete_web_audio_queries_total{source,outcome}`` and
  ``synesthete_web_audio_query_seconds{source}``: audio sent to the engine,
  ``source`` ``upload`` or ``live``, ``outcome`` ``ok`` or the engine error's kind;
- ``synesthete_web_rate_limited_total{limit}``: requests refused with 429;
- ``synesthete_web_live_sessions``: live WebSocket sessions open now.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Gauge, Histogram

from engine.errors import SynestheteError
from engine.metrics import Telemetry

#: Request latency (s): search and similar are milliseconds, an upload is seconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
#: Engine time for one audio query (s), as the bot measures its queries.
AUDIO_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class WebMetrics(Telemetry):
    """The ``synesthete_web_*`` families on their own registry (one per app)."""

    def __init__(self) -> None:
        super().__init__("synesthete_web")
        r = self.registry
        self.requests = Counter("synesthete_web_requests", "HTTP requests by route pattern, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("synesthete_web_request_seconds",
                                 "Time to answer an HTTP request, by route (WebSocket sessions not timed).",
                                 ["route"], buckets=REQUEST_BUCKETS, registry=r)
        self.audio_queries = Counter("synesthete_web_audio_queries",
                                     "Audio queries sent to the engine by source (upload, live) and outcome.",
                                     ["source", "outcome"], registry=r)
        self.audio_seconds = Histogram("synesthete_web_audio_query_seconds",
                                       "Engine time for one audio query, by source.", ["source"],
                                       buckets=AUDIO_BUCKETS, registry=r)
        self.rate_limited = Counter("synesthete_web_rate_limited",
                                    "Requests refused with 429, by limit (audio, search).", ["limit"], registry=r)
        self.live_sessions = Gauge("synesthete_web_live_sessions", "Live listening sessions open now.",
                                   registry=r, multiprocess_mode="livesum")

    @contextmanager
    def audio_query(self, source: str) -> Iterator[None]:
        """Count and time one engine call on audio; the outcome is ``ok`` or the engine error's kind."""
        t0 = time.perf_counter()
        outcome = "internal"
        try:
            yield
            outcome = "ok"
        except SynestheteError as exc:
            outcome = exc.kind
            raise
        finally:
            self.audio_queries.labels(source, outcome).inc()
            self.audio_seconds.labels(source).observe(time.perf_counter() - t0)


METRICS = web.AppKey("metrics", WebMetrics)


def route_of(request: web.Request) -> str:
    """The route pattern a request matched (bounded label values), or ``unmatched``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: sees the status the client gets, error responses included."""
    metrics = request.app[METRICS]
    t0 = time.perf_counter()
    status = 500
    timed = True
    try:
        resp = await handler(request)
        status = resp.status
        timed = not isinstance(resp, web.WebSocketResponse)
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer (nginx's convention)
        raise
    finally:
        route = route_of(request)
        metrics.requests.labels(route, request.method, str(status)).inc()
        if timed:
            metrics.latency.labels(route).observe(time.perf_counter() - t0)
