"""Worker-class throughput, measured when a worker starts and stored for quotes to use.

The benchmark is the reference workload of the time estimate: non-private training of the
seed MLP (``privacy.specs.SEED_MLP``, 784 -> 128 -> 10, whose parameter count is the
estimate's reference work per sample) on random inputs with one torch thread, as workers
train. A quote prices with the newest stored figure of its
worker class and falls back to the configured one until a worker of that class has started.
"""

from __future__ import annotations

import socket
from datetime import datetime

from sqlmodel import Field, Session, SQLModel, select

from market.db import UTCDateTime, utcnow

BATCH = 256


class WorkerCalibration(SQLModel, table=True):
    __tablename__ = "worker_calibrations"

    worker_class: str = Field(primary_key=True, max_length=40)
    throughput_samples_per_s: float
    host: str = Field(max_length=255)
    measured_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def measure_reference_throughput(samples: int) -> float:
    """Samples/s of the reference workload on this machine (best of three, after a warm-up)."""
    import torch
    from torch import nn

    from market.costing import calibrate_throughput
    from privacy.specs import SEED_MLP, SEED_MLP_CLASSES, SEED_MLP_INPUT_SHAPE, build_model

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model(
            SEED_MLP, input_shape=SEED_MLP_INPUT_SHAPE, num_classes=SEED_MLP_CLASSES
        ).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.rand(samples, *SEED_MLP_INPUT_SHAPE)
        y = torch.randint(0, SEED_MLP_CLASSES, (samples,))

        def one_pass() -> int:
            for start in range(0, samples, BATCH):
                optimizer.zero_grad()
                loss_fn(model(x[start : start + BATCH]), y[start : start + BATCH]).backward()
                optimizer.step()
            return samples

        return calibrate_throughput(one_pass)
    finally:
        torch.set_num_threads(previous)


def store(session: Session, *, worker_class: str, throughput: float) -> WorkerCalibration:
    row = session.get(WorkerCalibration, worker_class)
    if row is None:
        row = WorkerCalibration.model_validate(
            {
                "worker_class": worker_class,
                "throughput_samples_per_s": throughput,
                "host": socket.gethostname()[:255],
            }
        )
    else:
        row.throughput_samples_per_s = throughput
        row.host = socket.gethostname()[:255]
        row.measured_at = utcnow()
    session.add(row)
    return row


def throughput_for(session: Session, worker_class: str) -> float | None:
    row = session.exec(
        select(WorkerCalibration).where(WorkerCalibration.worker_class == worker_class)
    ).first()
    return row.throughput_samples_per_s if row is not None else None
