"""What ``/healthz`` and ``/metrics`` report: the database, the workers and the queue.

Each check answers ``ok`` and a few figures. ``/healthz`` answers 200 when every check is ok,
else 503 with the standard error body naming the failing parts, so a load balancer or a
supervisor sees *which* part failed without reading logs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, func, select

from market.db import utcnow
from market.ops import heartbeat


@dataclass
class Check:
    ok: bool
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, **self.figures}


def check_database(market: Any) -> Check:
    started = time.perf_counter()
    try:
        with market.database.read() as session:
            session.exec(sa.select(sa.literal(1)))
    except Exception as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        return Check(False, f"the database does not answer: {reason}")
    return Check(True, "answers", {"latency_ms": round(1000 * (time.perf_counter() - started), 2)})


def check_worker(market: Any, *, now: datetime | None = None) -> Check:
    now = now or utcnow()
    stale_s = market.settings.ops.worker_stale_s
    try:
        latest = heartbeat.newest(market.database)
    except Exception as exc:
        return Check(False, f"worker heartbeats unreadable: {type(exc).__name__}")
    if latest is None:
        return Check(False, "no worker has a heartbeat: queued runs will not train")
    age = (now - latest.last_seen_at).total_seconds()
    figures = {"last_heartbeat_age_s": round(age, 1), "stale_after_s": stale_s}
    if age > stale_s:
        return Check(False, f"no worker heartbeat for {age:.0f} s", figures)
    return Check(True, "alive", figures)


@dataclass
class QueueState:
    ready: int
    scheduled: int
    lag_s: float | None


def queue_state(market: Any, *, now: datetime | None = None, peek: int = 200) -> QueueState:
    """Depth of the queue and the age of its oldest ready message.

    Huey's messages carry no enqueue time, so a message is dated by what it names: a
    message that was scheduled became ready at its ``eta``; a training message at its run's
    purchase. Periodic maintenance messages name nothing and are not dated.
    """
    from market.trading.models import Run

    now = now or utcnow()
    huey = market.queue.huey
    ready = int(huey.storage.queue_size())
    scheduled = int(huey.storage.schedule_size())
    oldest: datetime | None = None
    run_ids: list[str] = []
    for raw in huey.storage.enqueued_items(peek):
        message = huey.serializer.deserialize(raw)
        if message.eta is not None:
            eta = message.eta if message.eta.tzinfo else message.eta.replace(tzinfo=now.tzinfo)
            oldest = eta if oldest is None else min(oldest, eta)
        elif message.name == "train_run" and message.args:
            run_ids.append(str(message.args[0]))
    if run_ids:
        with market.database.read() as session:
            bought = session.exec(
                select(func.min(Run.created_at)).where(col(Run.id).in_(run_ids))
            ).one()
        if bought is not None:
            oldest = bought if oldest is None else min(oldest, bought)
    lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    return QueueState(ready=ready, scheduled=scheduled, lag_s=lag)


def check_queue(market: Any, *, now: datetime | None = None) -> Check:
    limit = market.settings.ops.queue_lag_max_s
    try:
        state = queue_state(market, now=now)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return Check(False, f"the queue does not answer: {type(exc).__name__} {reason}".strip())
    figures = {
        "ready": state.ready,
        "scheduled": state.scheduled,
        "lag_s": None if state.lag_s is None else round(state.lag_s, 1),
        "lag_max_s": limit,
    }
    if state.lag_s is not None and state.lag_s > limit:
        return Check(False, f"the oldest ready message has waited {state.lag_s:.0f} s", figures)
    return Check(True, "keeping up", figures)


def health(market: Any) -> tuple[int, dict[str, Any]]:
    """The status code and body of ``/healthz``."""
    checks = {"database": check_database(market)}
    if checks["database"].ok:
        checks["worker"] = check_worker(market)
    else:
        checks["worker"] = Check(False, "not checked: the database does not answer")
    checks["queue"] = check_queue(market)
    body = {name: check.as_json() for name, check in checks.items()}
    failing = [name for name, check in checks.items() if not check.ok]
    if not failing:
        return 200, {"status": "ok", "checks": body}
    message = "; ".join(f"{name}: {checks[name].message}" for name in failing)
    return 503, {
        "error": {
            "code": "unhealthy",
            "message": f"failing: {message}",
            "details": {"failing": failing, "checks": body},
        }
    }
