"""Operations: health, metrics, the worker's heartbeat and supervision, instance hygiene.

``/healthz`` (market.ops.health) reports the database, the workers' heartbeats and the
queue's lag, 503 naming what fails; ``/metrics`` (market.ops.metrics) is Prometheus text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, jsonify

if TYPE_CHECKING:
    from market.services import Services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """For load balancers and supervisors: 200 when the database, a worker and the queue are
    all well, else 503 naming the failing parts."""
    from market.ops.health import health
    from market.services import services

    status, body = health(services())
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, status


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    from market.ops.metrics import metrics_response
    from market.services import services

    return metrics_response(services())


def init_services(services: Services) -> None:
    """What ops adds to any process: the periodic orphan sweep on the queue."""
    from market.ops.tasks import register_tasks

    services.on_queue(register_tasks)


def init_app(app: Flask) -> None:
    """/healthz, /metrics and the request metrics."""
    from market.ops.metrics import init_app as init_metrics

    init_metrics(app)
    app.register_blueprint(bp)
