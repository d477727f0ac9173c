"""Prometheus metrics for the front-ends (the bot and the web app), on ``prometheus_client``.

Why a library and not our own text: the exposition format has escaping, content
negotiation (Prometheus 0.0.4 text, OpenMetrics) and multiprocess aggregation
that nobody here should have to maintain.  This module holds only what the bot
(:mod:`bot.metrics`) and the web app (:mod:`web.metrics`) share, so the two
cannot drift apart:

* a **per-process registry** per front-end (:class:`Telemetry`), never
  ``prometheus_client.REGISTRY``: ``synesthete-bot --with-web`` runs the bot and
  the web app in one process, and tests build many apps in one process; each
  gets its own families and its own ``/metrics``, and nothing is registered
  twice;
* the families every front-end has: ``<namespace>_up``,
  ``<namespace>_uptime_seconds`` and the standard ``process_*`` ones;
* the aiohttp ``/metrics`` handler, and reading a value back (``sample``) for
  health checks and tests.

Several processes (``PROMETHEUS_MULTIPROC_DIR``): prometheus_client then keeps
every value in memory-mapped files in that directory, and a scrape must add up
all processes' files instead of reading this process's registry.
:meth:`Telemetry.scrape_registry` does that switch; see docs/bot.md
("Metrics with several processes") for how to run it.
"""

from __future__ import annotations

import logging
import time

from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest, values
from prometheus_client.aiohttp import make_aiohttp_handler

log = logging.getLogger(__name__)


def multiprocess_mode() -> bool:
    """Whether prometheus_client chose multiprocess mode.

    The library decides once, at its import, from its own environment variable
    ``PROMETHEUS_MULTIPROC_DIR`` (it must be set before any metric exists, so it
    cannot be a Synesthete setting); we ask the library what it decided instead
    of reading the environment again.
    """
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Telemetry:
    """One front-end's metrics: its own registry plus the families every front-end has.

    Subclasses add their families with ``registry=self.registry``.  The metric
    names carry ``namespace`` (``synesthete_bot``, ``synesthete_web``) so two
    front-ends scraped by one Prometheus never mix.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry()
        self.started = time.time()
        self._scrape: CollectorRegistry | None = None
        ProcessCollector(registry=self.registry)
        up = Gauge(f"{namespace}_up", "1 while the process runs.", registry=self.registry,
                   multiprocess_mode="liveall")
        up.set(1)
        uptime = Gauge(f"{namespace}_uptime_seconds", "Seconds since the process started.",
                       registry=self.registry, multiprocess_mode="liveall")
        # a callback gauge is computed at scrape time; in multiprocess mode it reads 0 (use process_start_time)
        uptime.set_function(lambda: time.time() - self.started)

    def scrape_registry(self) -> CollectorRegistry:
        """What ``/metrics`` serves: this registry, or every process's files in multiprocess mode."""
        if not multiprocess_mode():
            return self.registry
        if self._scrape is None:
            from prometheus_client import multiprocess

            self._scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._scrape)  # reads the library's own directory variable
            log.info("metrics: prometheus_client multiprocess mode; a scrape adds up every process")
        return self._scrape

    def handler(self) -> Handler:
        """The aiohttp ``GET /metrics`` handler; prometheus_client negotiates the format
        (Prometheus text, or OpenMetrics when the scraper asks) and compression."""
        return make_aiohttp_handler(self.scrape_registry())

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one sample (0.0 when that label set has not been seen yet).

        ``name`` is the sample's full name: ``..._total`` for a counter,
        ``..._count`` / ``..._sum`` / ``..._bucket`` (with ``le``) for a histogram.
        """
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def text(self) -> str:
        """The text exposition, as a scrape without an Accept header gets it (logs, tests)."""
        return generate_latest(self.scrape_registry()).decode("utf-8")
