"""What the trading API accepts and returns (these models also write the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from market.costing.records import CostTerms, MeasurementRecord, QuoteCostsRecord
from market.trading.models import RunStatus
from privacy.records import MechanismRecord


class QuoteRequest(BaseModel):
    """The quote request (docs/api.md, "Quotes and runs")."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(max_length=64)
    model: dict[str, Any] = Field(
        description='{"layers": [...]} or {"template": "logistic_regression" | "mlp" | "cnn", ...}'
    )
    epsilon: float = Field(gt=0, le=100, allow_inf_nan=False)
    delta: float | None = Field(
        default=None, gt=0, lt=1, description="Defaults to the dataset's delta."
    )
    epochs: int = Field(default=5, ge=1, le=1000)
    batch_size: int = Field(default=256, ge=1, le=1_000_000)
    learning_rate: float | None = Field(
        default=None, gt=0, le=10, description="Defaults to the template's tuned value."
    )
    max_grad_norm: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Per-example clipping norm. Defaults to the measured recipe's for this "
        "template, kind of data and epsilon (e.g. 0.1 for the CNN on images), else 1.0.",
    )
    worker_class: str = Field(default="cpu", max_length=40)
    deadline: AwareDatetime | None = Field(
        default=None, description="Finish by then; the quote adds the greenest start before it."
    )


class Mechanism(BaseModel):
    noise_multiplier: float
    sample_rate: float
    steps: int
    accountant: str
    epsilon: float
    delta: float
    max_grad_norm: float
    epsilon_training: float
    epsilon_metrics: float


class PriceTerms(BaseModel):
    compute: str
    energy: str
    environment: str
    royalty: str
    platform_fee: str
    total: str
    currency: str


class ExpectedError(BaseModel):
    """How far the measured run may land from the estimate (docs/costs.md)."""

    calibrated: bool = Field(description="False: no worker of the class has calibrated yet.")
    relative_error: float | None = Field(
        description="Expected relative error of time and energy (0.15 = +-15%); None: unknown."
    )
    seconds_low: float | None
    seconds_high: float | None
    basis: str = Field(description="Where the figures came from, in one sentence.")


class Estimate(BaseModel):
    seconds: float
    energy_kwh: str
    emissions_kg: str
    price: PriceTerms
    accuracy: ExpectedError | None = None


class WorkerAvailability(BaseModel):
    """Whether a worker of the quoted class is alive; without one the quote cannot be bought
    (409 ``no_live_worker``)."""

    worker_class: str
    live: bool | None
    live_workers: int | None
    message: str


class QuotePublic(BaseModel):
    id: str
    dataset_id: str
    model: dict[str, Any]
    mechanism: Mechanism
    estimate: Estimate
    greenest_start: dict[str, Any] | None
    fits_budget: bool
    reason: str | None
    budget: dict[str, float]
    worker: WorkerAvailability | None = None
    created_at: datetime
    expires_at: datetime


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quote_id: str = Field(max_length=64)


class Progress(BaseModel):
    step: int
    steps: int
    epsilon_spent: float


class CheckpointRecord(BaseModel):
    """A signed checkpoint of the audit log (``market.audit.log.checkpoint_json``)."""

    origin: str
    tree_size: int
    root: str = Field(description="Merkle root, hex.")
    signature: str = Field(description="Ed25519 signature, base64.")
    key_id: str
    created_at: str
    note: str = Field(description="The signed note (C2SP signed-note format), kept as is.")


class InclusionProofRecord(BaseModel):
    """One log entry and its audit path to a checkpoint's root."""

    seq: int
    entry: str = Field(description="The entry's canonical JSON text.")
    path: list[str] = Field(description="Sibling hashes, hex, leaf to root.")
    checkpoint: CheckpointRecord


class AuditEvidence(BaseModel):
    """A checkpoint and the inclusion proof of each of the run's log entries: checkable
    offline with the service's public key alone."""

    checkpoint: CheckpointRecord
    proofs: list[InclusionProofRecord]


class PrivacyReceipt(BaseModel):
    """What a delivered run released and what it cost the dataset's budget.

    ``records`` are the mechanisms the run released (DP-SGD steps, then the noisy held-out
    metrics); ``epsilon_spent`` is their composition under ``accountant``, at most the
    purchased ``epsilon``. Built by ``market.trading.execution``; docs/privacy.md says which
    fields are public and which are measured."""

    epsilon: float = Field(description="The purchased epsilon.")
    delta: float
    neighbouring_relation: str | None = Field(
        default=None, description="add/remove one row (absent on receipts of older runs)."
    )
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str
    epsilon_spent: float
    epsilon_training: float = Field(description="Opacus's own accountant for the steps.")
    grad_sample_mode: str
    records: list[MechanismRecord]
    dataset_epsilon_after: float = Field(
        description="The dataset's composed epsilon once this run's release counts."
    )
    dataset_epsilon_total: float = Field(description="The dataset's cap.")
    audit: AuditEvidence | None = None


class RunTimings(BaseModel):
    """Wall-clock seconds of the run's phases."""

    model_config = ConfigDict(extra="allow")

    prepare_s: float = Field(description="Decrypting and encoding the data.")
    train_s: float
    eval_s: float | None = None


class CostReceipt(BaseModel):
    """What a delivered run used and what it cost, beside what the quote predicted."""

    measured: CostTerms = Field(description="The price of the measured usage.")
    measurement: MeasurementRecord
    estimate: QuoteCostsRecord = Field(description="The quote's estimate, as quoted.")
    timings: RunTimings


class RunPublic(BaseModel):
    id: str
    quote_id: str
    dataset_id: str
    buyer_id: int
    status: RunStatus
    progress: Progress
    privacy_receipt: PrivacyReceipt | None
    cost_receipt: CostReceipt | None
    metrics: dict[str, Any] | None
    error: dict[str, str] | None
    price: dict[str, str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunList(BaseModel):
    items: list[RunPublic]


class RunPath(BaseModel):
    run_id: str = Field(max_length=64)


class QuotePath(BaseModel):
    quote_id: str = Field(max_length=64)


class RunQuery(BaseModel):
    dataset_id: str | None = Field(default=None, max_length=64)
