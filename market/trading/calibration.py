"""A worker class's own cost calibration, measured when a worker starts and stored for quotes.

At start (``market worker``, and so the worker ``market serve`` embeds) a worker runs short
real DP-SGD trainings (``privacy.training.train_private``, the function a run calls) on
synthetic data of public shapes, for each model family (``linear``, ``mlp``, ``cnn``), with
different step counts, batch sizes and dataset sizes, each twice (the slower kept),
inside the run meter (``market.costing.measure``).
It fits each family's start-up seconds, seconds per step and seconds per sample and
multiply-accumulate (``market.costing.estimate.fit_worker``), keeps the meter's power
figures (method, average power, CPU utilisation, peak memory), and stores the result for its
class (``WorkerCalibration.fit``). A quote for the class prices with the newest stored fit;
until one exists it falls back to the configured constants and says so.

The timed span is the metered span of a real run (Opacus set-up, the steps, the noisy metric
release), so an estimate and a receipt measure the same thing with the same instrument. No
private data is touched: features and labels are random draws of public shapes.

The same module answers whether a class has a live worker (a heartbeat newer than
``ops.worker_stale_s``, ``live_workers``) and whether a GPU class can measure its GPU.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from market.costing.estimate import BYTES_PER_GB, CalibrationPoint, WorkerFit, fit_worker
from market.db import UTCDateTime, utcnow
from market.ops.models import WorkerHeartbeat

if TYPE_CHECKING:
    from market.config import Settings

log = logging.getLogger(__name__)

BATCH = 256

#: Calibration workloads: a model of each family on random inputs of a public shape.
WORKLOADS: dict[str, tuple[dict[str, Any], tuple[int, ...], int]] = {
    "linear": ({"template": "logistic_regression"}, (30,), 2),
    "mlp": ({"template": "mlp", "hidden": [128], "dropout": 0.2}, (64,), 10),
    # The template's default channels: per-sample costs of a convolution under BK clipping
    # do not scale with its multiply-accumulates alone, so a smaller CNN overstated them.
    "cnn": ({"template": "cnn"}, (1, 8, 8), 10),
}
#: (rows, batch, epochs) of each timed run: two step counts at two batch sizes separate the
#: per-run, per-step and per-sample terms; a larger set, the per-row term.
ROWS = 512
SHAPES: tuple[tuple[int, int, int], ...] = (
    (ROWS, 16, 4),
    (ROWS, 16, 12),
    (ROWS, 128, 8),
    (ROWS, 128, 24),
    (4096, 64, 2),
    # Quotes default to batch 256: a fit that stopped at 128 understated larger batches.
    (4096, 256, 2),
)
#: Each shape is timed this many times and the larger kept: on a machine shared with other
#: work one short run can be twice as slow as the next (docs/benchmarks.md).
REPEATS = 2


class WorkerCalibration(SQLModel, table=True):
    __tablename__ = "worker_calibrations"

    worker_class: str = Field(primary_key=True, max_length=40)
    throughput_samples_per_s: float
    host: str = Field(max_length=255)
    measured_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    fit: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))


@dataclass(frozen=True, slots=True)
class ModelWork:
    """What a model costs per sample: its family and its multiply-accumulates."""

    family: str
    macs: float


def model_work(model: Any, input_shape: Sequence[int]) -> ModelWork:
    """Family and multiply-accumulates per sample of ``model``, from one forward pass on
    zeros of the public input shape (never a row): linear and convolution layers counted."""
    import torch
    from torch import nn

    macs = 0.0
    linear_layers = 0
    convolutional = False
    embedding = False

    def count(module: nn.Module, _: Any, output: Any) -> None:
        nonlocal macs
        if isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features
        elif isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            kernel = 1
            for size in module.kernel_size:
                kernel *= size
            per_output = module.in_channels // module.groups * kernel
            macs += float(output[0].numel()) * per_output

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            linear_layers += 1
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            convolutional = True
        if isinstance(module, nn.Embedding):
            embedding = True
        hooks.append(module.register_forward_hook(count))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            dtype = torch.long if embedding else torch.float32
            model(torch.zeros((1, *input_shape), dtype=dtype))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if convolutional:
        family = "cnn"
    elif linear_layers > 1 or embedding:
        family = "mlp"
    else:
        family = "linear"
    return ModelWork(family=family, macs=max(macs, 1.0))


def calibrate_worker(settings: Settings, worker_class: str) -> WorkerFit:
    """Time real DP-SGD runs of every family on this machine, inside the run meter, and fit
    them (module docstring). Takes a few seconds; run once per worker start."""
    import numpy as np
    import torch

    from market.costing import measure
    from privacy.specs import build_model
    from privacy.training import plan_run, train_private

    worker = settings.costing.worker_classes[worker_class]
    meter_settings = settings.costing.meter
    points: list[CalibrationPoint] = []
    seconds = joules = cpu_seconds = 0.0
    peak = 0
    method = "estimated"
    generator = np.random.default_rng(0)
    for family, (spec, shape, classes) in WORKLOADS.items():
        torch.manual_seed(0)
        model = build_model(spec, input_shape=shape, num_classes=classes)
        work = model_work(model, shape)
        features = generator.random((max(r for r, _, _ in SHAPES), *shape), dtype=np.float32)
        labels = generator.integers(0, classes, len(features))

        def run(
            rows: int,
            batch: int,
            epochs: int,
            model: Any = model,
            features: Any = features,
            labels: Any = labels,
        ) -> Any:
            plan = plan_run(
                rows=rows,
                epsilon=4.0,
                delta=1e-5,
                epochs=epochs,
                batch_size=batch,
                max_grad_norm=1.0,
                accountant=settings.trading.accountant,
                **settings.trading.holdout(),
            )
            with measure(meter_settings, worker) as meter:
                train_private(
                    model=model,
                    features=features[:rows],
                    labels=labels[:rows],
                    plan=plan,
                    learning_rate=0.01,
                    max_physical_batch_size=settings.trading.max_physical_batch_size,
                    # As a run reports (execution.py): the epsilon-so-far it computes for
                    # each report is part of a run's time.
                    progress=lambda step, steps, epsilon: None,
                    progress_interval_s=min(settings.trading.heartbeat_s, 2.0),
                )
            return plan, meter.measurement

        run(ROWS, 32, 1)  # warm-up, not timed: first-call initialisation of torch and Opacus
        for rows, batch, epochs in SHAPES:
            timed = []
            for _ in range(REPEATS):
                plan, measured = run(rows, batch, epochs)
                timed.append((measured.seconds, measured.cpu_seconds))
                seconds += measured.seconds
                joules += measured.energy_kwh * 3.6e6
                cpu_seconds += measured.cpu_seconds
                peak = max(peak, measured.peak_rss_bytes)
                method = measured.method
            points.append(
                CalibrationPoint(
                    family=family,
                    steps=plan.steps,
                    batch=plan.sample_rate * plan.rows,
                    macs=work.macs,
                    seconds=sorted(t for t, _ in timed)[len(timed) // 2],
                    rows=plan.rows,
                    epochs=plan.epochs,
                    cpu_seconds=sorted(c for _, c in timed)[len(timed) // 2],
                )
            )
    return fit_worker(
        points,
        method=method,
        avg_power_w=joules / seconds if seconds > 0 else 0.0,
        cpu_utilisation=min(1.0, cpu_seconds / (worker.cores * seconds)) if seconds else 0.0,
        peak_memory_gb=peak / BYTES_PER_GB,
        min_relative_error=settings.costing.estimate.min_relative_error,
        host=socket.gethostname()[:255],
        measured_at=utcnow().isoformat(timespec="seconds"),
    )


def measure_reference_throughput(samples: int) -> float:
    """Samples/s of the reference workload (the seed MLP, non-private, one torch thread) on
    this machine, best of three after a warm-up: the fallback estimate's throughput."""
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


def store(
    session: Session, *, worker_class: str, throughput: float, fit: WorkerFit | None = None
) -> WorkerCalibration:
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
    row.fit = None if fit is None else fit.to_dict()
    session.add(row)
    return row


def calibrate_and_store(market: Any, worker_class: str) -> WorkerFit | None:
    """What a worker does at start: calibrate (unless ``costing.estimate.calibrate`` is off)
    and store the fit and the reference throughput for its class."""
    settings = market.settings
    fit = calibrate_worker(settings, worker_class) if settings.costing.estimate.calibrate else None
    throughput = measure_reference_throughput(settings.costing.estimate.benchmark_samples)
    with market.database.write() as session:
        store(session, worker_class=worker_class, throughput=throughput, fit=fit)
    return fit


def throughput_for(session: Session, worker_class: str) -> float | None:
    row = session.get(WorkerCalibration, worker_class)
    return row.throughput_samples_per_s if row is not None else None


def fit_for(session: Session, worker_class: str) -> WorkerFit | None:
    """The class's newest stored calibration fit, or None when no worker stored one."""
    row = session.get(WorkerCalibration, worker_class)
    if row is None or not row.fit:
        return None
    return WorkerFit.from_dict(row.fit)


def live_workers(
    session: Session, worker_class: str, *, stale_after_s: float, now: datetime | None = None
) -> int:
    """Worker processes of ``worker_class`` whose heartbeat is fresher than ``stale_after_s``
    (the same freshness ``/healthz`` asks of a worker)."""
    since = (now or utcnow()) - timedelta(seconds=stale_after_s)
    rows = session.exec(
        select(WorkerHeartbeat.worker_id).where(
            col(WorkerHeartbeat.worker_class) == worker_class,
            col(WorkerHeartbeat.last_seen_at) >= since,
        )
    ).all()
    return len(rows)


class GpuUnavailable(RuntimeError):
    """A GPU worker class on a machine whose GPUs NVML cannot read."""


def require_measurable_gpu(settings: Settings, worker_class: str) -> None:
    """A worker of a GPU class starts only where NVML can read a GPU's energy counter: a
    receipt of that class must never claim GPU watts that nothing measured (docs/costs.md)."""
    from market.costing.nvml import NvmlReader, NvmlUnavailable, load_nvml

    worker = settings.costing.worker_classes[worker_class]
    if worker.kind != "gpu":
        return
    meter = settings.costing.meter
    if not meter.nvml_enabled:
        raise GpuUnavailable(
            f"worker class {worker_class!r} is a GPU class but costing.meter.nvml_enabled is off"
        )
    try:
        reader = NvmlReader(load_nvml(), indices=meter.gpu_indices)
    except NvmlUnavailable as exc:
        raise GpuUnavailable(
            f"worker class {worker_class!r} needs a GPU whose energy NVML can read: {exc}"
        ) from exc
    reader.close()
