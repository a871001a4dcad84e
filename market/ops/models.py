"""The table operations read: each worker process's last heartbeat."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from market.db import UTCDateTime, utcnow


class WorkerHeartbeat(SQLModel, table=True):
    """One row per live worker process (``host:pid``), refreshed every ``ops.heartbeat_s``.

    ``/healthz`` reads the newest row; a worker that exits cleanly deletes its own row, and
    the supervisor of ``market serve`` deletes the row of a worker child it found dead.
    """

    __tablename__ = "worker_heartbeats"

    worker_id: str = Field(primary_key=True, max_length=120)
    queue_backend: str = Field(max_length=16)
    # The costing.worker_classes name it trains for: a quote for a class with no fresh row
    # cannot be bought (market.trading.calibration.live_workers). None: an older worker.
    worker_class: str | None = Field(default=None, max_length=40, index=True)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
