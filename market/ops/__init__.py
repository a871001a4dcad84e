"""Operations: health, metrics, the worker's heartbeat and supervision, instance hygiene.

``/healthz`` (market.ops.health) reports the database, the workers' heartbeats and the
queue's lag, 503 naming what fails; ``/metrics`` (market.ops.metrics) is Prometheus text.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify

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


def init_app(app: Flask) -> None:
    from market.ops.metrics import init_app as init_metrics

    init_metrics(app)
    app.register_blueprint(bp)
