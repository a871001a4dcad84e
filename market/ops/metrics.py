"""``/metrics`` in Prometheus's text format (prometheus-client).

Measured per request: ``market_http_request_duration_seconds`` (method, endpoint, status) and
``market_budget_check_duration_seconds`` (operation ``quote`` or ``purchase``: the requests
whose work is the budget check, timed as the caller sees them). Read at each scrape: queue
depth and lag, runs by status, the age of the newest worker heartbeat.

Several gunicorn workers: ``market serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder
in the instance) before the workers start, as prometheus-client's multiprocess mode asks, so
every worker's histograms are summed at each scrape; the limitations are that library's
(no per-process gauges of their own here, files stay until the next start). An app served
another way with several processes and no such folder reports the answering process only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_SECONDS = Histogram(
    "market_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, endpoint and status.",
    ["method", "endpoint", "status"],
)
BUDGET_CHECK_SECONDS = Histogram(
    "market_budget_check_duration_seconds",
    "Time of the requests that check a dataset's privacy budget (quote, purchase).",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
#: Endpoints whose answer is a budget check, and the operation they are counted under.
BUDGET_ENDPOINTS = {
    "trading_api.create_quote": "quote",
    "trading_api.create_run": "purchase",
}


class _StateCollector(Collector):
    """Figures read from the database and the queue at each scrape (never cached)."""

    def __init__(self, market: Any) -> None:
        self.market = market

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlmodel import col, func, select

        from market.db import utcnow
        from market.ops import heartbeat
        from market.ops.health import queue_state
        from market.trading.models import Run, RunStatus

        now = utcnow()
        try:
            state = queue_state(self.market, now=now)
        except Exception:
            state = None
        depth = GaugeMetricFamily(
            "market_queue_depth", "Messages in the task queue, by state.", labels=["state"]
        )
        lag = GaugeMetricFamily(
            "market_queue_lag_seconds", "Age of the oldest ready message (0 when none)."
        )
        if state is not None:
            depth.add_metric(["ready"], state.ready)
            depth.add_metric(["scheduled"], state.scheduled)
            lag.add_metric([], state.lag_s or 0.0)
        yield depth
        yield lag
        runs = GaugeMetricFamily("market_runs", "Training runs, by status.", labels=["status"])
        with self.market.database.read() as session:
            counts = dict(
                session.exec(select(Run.status, func.count()).group_by(col(Run.status))).all()
            )
        for status in RunStatus:
            runs.add_metric([status.value], counts.get(status, 0))
        yield runs
        age = GaugeMetricFamily(
            "market_worker_heartbeat_age_seconds",
            "Seconds since the newest worker heartbeat (absent when no worker ever beat).",
        )
        latest = heartbeat.newest(self.market.database)
        if latest is not None:
            age.add_metric([], (now - latest.last_seen_at).total_seconds())
        yield age


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is None:
        return response
    seconds = time.perf_counter() - started
    endpoint = request.endpoint or "unmatched"
    REQUEST_SECONDS.labels(request.method, endpoint, str(response.status_code)).observe(seconds)
    operation = BUDGET_ENDPOINTS.get(endpoint)
    if operation is not None:
        BUDGET_CHECK_SECONDS.labels(operation).observe(seconds)
    return response


def exposition(market: Any) -> bytes:
    state = CollectorRegistry(auto_describe=False)
    state.register(_StateCollector(market))
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        requests = CollectorRegistry()
        multiprocess.MultiProcessCollector(requests)
        measured = generate_latest(requests)
    else:
        measured = generate_latest(REGISTRY)
    return measured + generate_latest(state)


def init_app(app: Flask) -> None:
    app.before_request(_started)
    app.after_request(_observe)


def metrics_response(market: Any) -> Response:
    return Response(exposition(market), content_type=CONTENT_TYPE_LATEST)
