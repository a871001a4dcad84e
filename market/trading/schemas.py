"""What the trading API accepts and returns (these models also write the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from market.trading.models import RunStatus


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
    max_grad_norm: float = Field(default=1.0, gt=0, le=1000)
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


class Estimate(BaseModel):
    seconds: float
    energy_kwh: str
    emissions_kg: str
    price: PriceTerms


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
    created_at: datetime
    expires_at: datetime


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quote_id: str = Field(max_length=64)


class Progress(BaseModel):
    step: int
    steps: int
    epsilon_spent: float


class RunPublic(BaseModel):
    id: str
    quote_id: str
    dataset_id: str
    buyer_id: int
    status: RunStatus
    progress: Progress
    privacy_receipt: dict[str, Any] | None
    cost_receipt: dict[str, Any] | None
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
