"""What a worker does with a purchased run: decrypt in memory, train with DP, deliver.

The run's states, its fenced writes and what every ending charges live in
``market.trading.lifecycle``; this module is the work between them. Everything that can be
decided from public values (the key opens, the spec builds) is decided before the data is
touched, so those failures charge nothing; after ``touch_data`` every failure is the same
``training_failed`` and charges the plan.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from market import audit, failpoints
from market.catalog import tables
from market.catalog.models import Dataset, DatasetFormat
from market.costing import Measurement, Money, WorkerClassSettings, measure, price_run
from market.costing.records import CostTerms, MeasurementRecord, QuoteCostsRecord
from market.db import utcnow
from market.services import Services
from market.trading import lifecycle
from market.trading import services as trading
from market.trading.lifecycle import Claimed, LeaseKeeper, LeaseLost, reap_lost_runs
from market.trading.models import ReleaseState, RunPhase, RunStatus
from market.trading.schemas import AuditEvidence, CostReceipt, PrivacyReceipt, RunTimings
from privacy.errors import IntegrityError, VaultError
from privacy.model_io import model_bytes
from privacy.prepared import TableKey
from privacy.preprocessing import Encoded, encode, input_shape, num_classes, vocabulary
from privacy.specs import build_model
from privacy.training import NEIGHBOURING_RELATION, RunPlan, TrainingResult, train_private
from privacy.vault import WrappedKey

__all__ = ["execute_run", "reap_lost_runs"]

log = logging.getLogger(__name__)


def _read_plaintext(dataset: Dataset, plaintext: io.BytesIO) -> Any:
    if dataset.format is DatasetFormat.CSV:
        columns = [c["name"] for c in dataset.data_schema.get("columns", [])]
        header = tables.header_names(plaintext.readline())
        plaintext.seek(0)
        return pa_csv.read_csv(
            plaintext,
            read_options=tables.read_options(header, trim=tables.trims(dataset.data_schema)),
            convert_options=tables.convert_options(columns),
        )
    if dataset.format is DatasetFormat.PARQUET:
        return pq.read_table(plaintext)
    with np.load(plaintext, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def execute_run(market: Services, run_id: str) -> None:
    claimed = lifecycle.claim(market, run_id)
    if claimed is None:
        log.info("run %s is not queued; nothing to do", run_id)
        return
    lease = claimed.lease
    with LeaseKeeper(market, lease, interval_s=market.settings.trading.heartbeat_s) as keeper:
        try:
            _train_and_deliver(market, claimed, keeper)
        except LeaseLost:
            log.warning("run %s: lease lost; this worker delivers nothing", run_id)
        except Exception as exc:  # every failure ends the run (lifecycle says what it charges)
            if keeper.lost.is_set():
                log.warning("run %s: lease lost; this worker delivers nothing", run_id)
                return
            code, message = _failure(exc)
            # The class name only: messages raised while training may quote private data.
            log.warning("run %s failed: %s (%s)", run_id, code, type(exc).__name__)
            lifecycle.fail(market, run_id, code=code, message=message, lease=lease)


def _failure(exc: Exception) -> tuple[str, str]:
    """Code and message of a failure *before* the data was touched (after it, lifecycle
    replaces both with the generic ``training_failed``)."""
    if isinstance(exc, IntegrityError):
        return "integrity_error", "the dataset's ciphertext failed its integrity check"
    if isinstance(exc, VaultError):
        return "key_error", "the dataset's key could not be opened by this worker"
    return "internal_error", f"{exc.__class__.__name__} before training"


def _train_and_deliver(market: Services, claimed: Claimed, keeper: LeaseKeeper) -> None:
    settings = market.settings
    lease, quote, dataset = claimed.lease, claimed.quote, claimed.dataset
    if dataset.wrapped_key is None or dataset.storage_name is None:
        raise VaultError("the dataset was crypto-shredded")
    wrapped = WrappedKey.from_bytes(dataset.wrapped_key)
    # Public checks first: the key opens and the model builds. Neither reads a row.
    market.worker_vault.keyring.unwrap(wrapped, dataset_id=dataset.id)
    request = quote.request
    description = trading.model_input(dataset, request["model"])
    shape, classes = input_shape(description), num_classes(description)
    model = build_model(
        request["model"],
        input_shape=shape,
        num_classes=classes,
        max_parameters=settings.trading.max_parameters,
        vocabulary=vocabulary(description),
    )
    plan = RunPlan.from_dict(quote.plan)
    worker_class = settings.costing.worker_classes[request["worker_class"]]

    failpoints.pause("claimed")
    lifecycle.touch_data(market, lease)
    failpoints.pause("data_touched")
    started = time.monotonic()
    path = market.store.path(dataset.storage_name)

    def decrypt_and_encode() -> Encoded:
        plaintext = market.worker_vault.open_plaintext(
            path,
            dataset_id=dataset.id,
            wrapped=wrapped,
            max_bytes=settings.catalog.max_upload_bytes,
        )
        return encode(description, _read_plaintext(dataset, plaintext))

    key = TableKey.of(
        dataset_id=dataset.id, path=path, wrapped_key=dataset.wrapped_key, description=description
    )
    encoded = market.prepared_tables.get_or_encode(key, decrypt_and_encode)
    failpoints.pause("decrypted")  # the rows are in this process's memory, read or recalled
    lifecycle.heartbeat(market, lease)  # a fenced write: stop here if the lease is gone
    prepared_s = time.monotonic() - started

    def report(step: int, steps: int, epsilon: float) -> None:
        if step >= steps:  # the delivery's own (fenced) write records the last step
            return
        try:
            lifecycle.report_progress(market, lease, step, steps, epsilon)
        except LeaseLost:
            keeper.lost.set()
            raise

    with measure(settings.costing.meter, worker_class) as meter:
        result = train_private(
            model=model,
            features=encoded.features,
            labels=encoded.labels,
            plan=plan,
            learning_rate=float(request["learning_rate"]),
            optimizer=request.get("optimizer", "adam"),
            lr_schedule=request.get("lr_schedule", "constant"),
            max_physical_batch_size=settings.trading.max_physical_batch_size,
            progress=report,
            progress_interval_s=min(settings.trading.heartbeat_s, 2.0),
            cancel=keeper.lost,
        )
    measurement = meter.measurement
    blob = model_bytes(
        state_dict=result.state_dict,
        spec=request["model"],
        preprocessing=description,
        input_shape=shape,
        num_classes=classes,
        plan=plan.to_dict(),
        extra={"run_id": lease.run_id, "dataset_id": dataset.id, "metrics": result.metrics},
    )
    model_path = _write_model(settings.models_dir, f"{lease.run_id}.safetensors", blob)
    failpoints.pause("delivering")
    try:
        _deliver(
            market,
            claimed,
            result=result,
            plan=plan,
            measurement=measurement,
            worker_class=worker_class,
            model_name=model_path.name,
            model_sha256=hashlib.sha256(blob).hexdigest(),
            prepared_s=prepared_s,
        )
    except BaseException:
        model_path.unlink(missing_ok=True)  # not delivered: no model may stay behind
        raise


def _write_model(models_dir: Path, name: str, blob: bytes) -> Path:
    """Write the weights atomically, readable by the service's user only."""
    models_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = models_dir / name
    partial = path.with_name(name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path


def _deliver(
    market: Services,
    claimed: Claimed,
    *,
    result: TrainingResult,
    plan: RunPlan,
    measurement: Measurement,
    worker_class: WorkerClassSettings,
    model_name: str,
    model_sha256: str,
    prepared_s: float,
) -> None:
    """Spend, receipts, audit entries and the model, in one fenced transaction."""
    settings = market.settings
    dataset, quote = claimed.dataset, claimed.quote
    royalty = Money(trading._royalty(dataset, plan.epsilon), dataset.currency)
    region = settings.costing.regions[settings.costing.default_region]
    cost = price_run(measurement, worker_class, region, royalty=royalty, settings=settings.costing)
    with market.database.write() as session:
        stored = lifecycle.fenced(session, claimed.lease)
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
            subject=stored.id,
            actor_id=None,
            data=audit.cost_receipt_data(
                run_id=stored.id,
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
            subject=stored.id,
            actor_id=None,
            data={
                "model_sha256": model_sha256,
                "metrics": result.metrics,
                "epsilon_spent": result.epsilon,
            },
        )
        composed = trading.budget.committed_epsilon(
            session, dataset, accountant=settings.trading.accountant
        )
        stored.status = RunStatus.SUCCEEDED
        stored.phase = RunPhase.DELIVERED
        stored.finished_at = utcnow()
        stored.progress_step = result.steps
        stored.progress_steps = plan.steps
        stored.progress_epsilon = result.epsilon
        stored.metrics = result.metrics
        stored.model_name = model_name
        stored.heartbeat_at = utcnow()
        # The signed checkpoint and inclusion proofs of this run's log entries: the buyer
        # can check them offline with the service's public key alone.
        evidence = audit.receipt_evidence(
            session, settings, seqs=audit.seqs_for_subject(session, stored.id)
        )
        stored.privacy_receipt = PrivacyReceipt(
            epsilon=plan.epsilon,
            delta=plan.delta,
            neighbouring_relation=NEIGHBOURING_RELATION,
            noise_multiplier=plan.noise_multiplier,
            sample_rate=plan.sample_rate,
            steps=result.steps,
            max_grad_norm=plan.max_grad_norm,
            accountant=plan.accountant,
            epsilon_spent=result.epsilon,
            epsilon_training=result.epsilon_training,
            grad_sample_mode=result.grad_sample_mode,
            records=result.records,
            dataset_epsilon_after=composed,
            dataset_epsilon_total=dataset.epsilon_total,
            audit=AuditEvidence.model_validate(evidence),
        ).model_dump(mode="json")
        stored.cost_receipt = CostReceipt(
            measured=CostTerms.model_validate(cost.to_dict()),
            measurement=MeasurementRecord.model_validate(measurement.to_dict()),
            estimate=QuoteCostsRecord.model_validate(quote.estimate),
            timings=RunTimings.model_validate(
                {
                    "prepare_s": prepared_s,
                    "train_s": result.timings.get("train_s", measurement.seconds),
                    **result.timings,
                }
            ),
        ).model_dump(mode="json")
        session.add(stored)
