"""What a worker does with a purchased run: decrypt in memory, train with DP, deliver.

Charging rule on failure: if no training step ran, nothing about the data was released and
the reservation is released. Once a step has run, noisy gradients have touched the model,
and since a failed run's partial state cannot be proven destroyed everywhere (it was in
memory of a process that may have crashed mid-write), the planned epsilon is charged. The
run is never charged twice: settling a reservation that is already settled does nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sqlmodel import col, select

from market import audit
from market.catalog import services as catalog
from market.catalog.models import Dataset, DatasetFormat
from market.costing import Money, measure, price_run
from market.db import utcnow
from market.services import Services
from market.trading import services as trading
from market.trading.models import Quote, ReleaseState, Run, RunStatus
from privacy.errors import IntegrityError, PrivacyError, VaultError
from privacy.model_io import model_bytes
from privacy.preprocessing import encode, input_shape, num_classes
from privacy.specs import build_model
from privacy.training import RunPlan, train_private
from privacy.vault import WrappedKey

log = logging.getLogger(__name__)


@dataclass
class _Claimed:
    run: Run
    quote: Quote
    dataset: Dataset


def _claim(market: Services, run_id: str) -> _Claimed | None:
    with market.database.write() as session:
        run = session.get(Run, run_id)
        if run is None or run.status is not RunStatus.QUEUED:
            return None  # already taken, finished or reaped: never train twice
        now = utcnow()
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.attempts += 1
        session.add(run)
        quote = session.get(Quote, run.quote_id)
        dataset = session.get(Dataset, run.dataset_id)
        assert quote is not None and dataset is not None
        audit.record(
            session,
            market.settings,
            kind="run.started",
            subject=run.id,
            actor_id=None,
            data={"attempt": run.attempts, "worker": socket.gethostname()},
        )
        return _Claimed(run=run, quote=quote, dataset=dataset)


def _read_plaintext(dataset: Dataset, plaintext: io.BytesIO) -> Any:
    if dataset.format is DatasetFormat.CSV:
        columns = [c["name"] for c in dataset.data_schema.get("columns", [])]
        return pa_csv.read_csv(
            plaintext,
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in columns},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    if dataset.format is DatasetFormat.PARQUET:
        return pq.read_table(plaintext)
    with np.load(plaintext, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _progress_writer(market: Services, run_id: str) -> Callable[[int, int, float], None]:
    def report(step: int, steps: int, epsilon: float) -> None:
        with market.database.write() as session:
            run = session.get(Run, run_id)
            if run is None:
                return
            run.progress_step = step
            run.progress_steps = steps
            run.progress_epsilon = float(epsilon)
            run.heartbeat_at = utcnow()
            session.add(run)

    return report


def execute_run(market: Services, run_id: str) -> None:
    claimed = _claim(market, run_id)
    if claimed is None:
        log.info("run %s is not queued; nothing to do", run_id)
        return
    try:
        _train_and_deliver(market, claimed)
    except Exception as exc:  # every failure ends the run; the reason is kept on it
        code, message = _failure(exc)
        log.warning("run %s failed: %s (%s)", run_id, message, code)
        fail_run(market, run_id, code=code, message=message)


def _failure(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, IntegrityError):
        return "integrity_error", "the dataset's ciphertext failed its integrity check"
    if isinstance(exc, VaultError):
        return "key_error", "the dataset's key could not be opened by this worker"
    if isinstance(exc, PrivacyError):
        return "training_error", str(exc)[:1000]
    return "internal_error", f"{exc.__class__.__name__} during training"


def _train_and_deliver(market: Services, claimed: _Claimed) -> None:
    settings = market.settings
    run, quote, dataset = claimed.run, claimed.quote, claimed.dataset
    if dataset.wrapped_key is None or dataset.storage_name is None:
        raise VaultError("the dataset was crypto-shredded")
    started = time.monotonic()
    plaintext = market.worker_vault.open_plaintext(
        market.store.path(dataset.storage_name),
        dataset_id=dataset.id,
        wrapped=WrappedKey.from_bytes(dataset.wrapped_key),
        max_bytes=settings.catalog.max_upload_bytes,
    )
    description = catalog.preprocessing_of(dataset)
    encoded = encode(description, _read_plaintext(dataset, plaintext))
    del plaintext
    plan = RunPlan.from_dict(quote.plan)
    request = quote.request
    shape, classes = input_shape(description), num_classes(description)
    model = build_model(
        request["model"],
        input_shape=shape,
        num_classes=classes,
        max_parameters=settings.trading.max_parameters,
    )
    worker_class = settings.costing.worker_classes[request["worker_class"]]
    prepared_s = time.monotonic() - started
    with measure(settings.costing.meter, worker_class) as meter:
        result = train_private(
            model=model,
            features=encoded.features,
            labels=encoded.labels,
            plan=plan,
            learning_rate=float(request["learning_rate"]),
            optimizer=request.get("optimizer", "adam"),
            max_physical_batch_size=settings.trading.max_physical_batch_size,
            seed=int(run.created_at.timestamp()),
            progress=_progress_writer(market, run.id),
            progress_interval_s=min(settings.trading.heartbeat_s, 2.0),
        )
    measurement = meter.measurement
    settings.models_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    model_name = f"{run.id}.safetensors"
    blob = model_bytes(
        state_dict=result.state_dict,
        spec=request["model"],
        preprocessing=description,
        input_shape=shape,
        num_classes=classes,
        plan=plan.to_dict(),
        extra={"run_id": run.id, "dataset_id": dataset.id, "metrics": result.metrics},
    )
    (settings.models_dir / model_name).write_bytes(blob)
    royalty = Money(trading._royalty(dataset, plan.epsilon), dataset.currency)
    region = settings.costing.regions[settings.costing.default_region]
    cost = price_run(measurement, worker_class, region, royalty=royalty, settings=settings.costing)
    with market.database.write() as session:
        stored = session.get(Run, run.id)
        assert stored is not None
        release = trading.settle_release(
            session,
            run=stored,
            state=ReleaseState.SPENT,
            records=result.records,
            accountant=settings.trading.accountant,
        )
        if release is not None:
            trading.audit_release(
                session, settings, release=release, dataset=dataset, actor_id=None
            )
        audit.record(
            session,
            settings,
            kind="cost.receipt",
            subject=run.id,
            actor_id=None,
            data=audit.cost_receipt_data(
                run_id=run.id,
                measurement=measurement,
                worker=worker_class,
                region=region,
                settings=settings.costing,
                royalty=royalty,
                breakdown=cost,
            ),
        )
        audit.record(
            session,
            settings,
            kind="run.succeeded",
            subject=run.id,
            actor_id=None,
            data={
                "model_sha256": hashlib.sha256(blob).hexdigest(),
                "metrics": result.metrics,
                "epsilon_spent": result.epsilon,
            },
        )
        composed = trading.budget.committed_epsilon(
            session, dataset, accountant=settings.trading.accountant
        )
        stored.status = RunStatus.SUCCEEDED
        stored.finished_at = utcnow()
        stored.progress_step = result.steps
        stored.progress_epsilon = result.epsilon
        stored.metrics = result.metrics
        stored.model_name = model_name
        stored.privacy_receipt = {
            "epsilon": plan.epsilon,
            "delta": plan.delta,
            "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate,
            "steps": result.steps,
            "max_grad_norm": plan.max_grad_norm,
            "accountant": plan.accountant,
            "epsilon_spent": result.epsilon,
            "epsilon_training": result.epsilon_training,
            "grad_sample_mode": result.grad_sample_mode,
            "records": result.records,
            "dataset_epsilon_after": composed,
            "dataset_epsilon_total": dataset.epsilon_total,
        }
        stored.cost_receipt = {
            "measured": cost.to_dict(),
            "measurement": measurement.to_dict(),
            "estimate": quote.estimate,
            "timings": {
                "prepare_s": prepared_s,
                "train_s": result.timings.get("train_s", measurement.seconds),
                **{k: v for k, v in result.timings.items()},
            },
        }
        stored.heartbeat_at = utcnow()
        stored.privacy_receipt = {
            **stored.privacy_receipt,
            # The signed checkpoint and inclusion proofs of this run's log entries: the buyer
            # can check them offline with the service's public key alone.
            "audit": audit.receipt_evidence(
                session, settings, seqs=audit.seqs_for_subject(session, run.id)
            ),
        }
        session.add(stored)


def fail_run(market: Services, run_id: str, *, code: str, message: str) -> None:
    """End a run as failed and settle its reservation (see the module docstring)."""
    with market.database.write() as session:
        run = session.get(Run, run_id)
        if run is None or run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return
        quote = session.get(Quote, run.quote_id)
        assert quote is not None
        trained = run.progress_step > 0
        release = trading.settle_release(
            session,
            run=run,
            state=ReleaseState.SPENT if trained else ReleaseState.RELEASED,
            records=RunPlan.from_dict(quote.plan).records() if trained else None,
            accountant=market.settings.trading.accountant,
        )
        dataset = session.get(Dataset, run.dataset_id)
        if release is not None and dataset is not None:
            trading.audit_release(
                session, market.settings, release=release, dataset=dataset, actor_id=None
            )
        audit.record(
            session,
            market.settings,
            kind="run.failed",
            subject=run.id,
            actor_id=None,
            data={"code": code, "message": message[:1000], "charged": trained},
        )
        run.status = RunStatus.FAILED
        run.error_code = code
        run.error_message = message[:1000]
        run.finished_at = utcnow()
        session.add(run)


def reap_lost_runs(market: Services) -> list[str]:
    """Fail runs whose worker stopped sending heartbeats (killed, machine lost)."""
    cutoff = utcnow() - timedelta(seconds=market.settings.trading.lease_s)
    with market.database.read() as session:
        lost = session.exec(
            select(Run.id).where(Run.status == RunStatus.RUNNING, col(Run.heartbeat_at) < cutoff)
        ).all()
    for run_id in lost:
        fail_run(
            market,
            run_id,
            code="worker_lost",
            message="the worker running this run stopped responding",
        )
    return list(lost)
