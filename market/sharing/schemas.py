"""What the model-sharing API accepts and returns (these models also write the OpenAPI
document). Amounts are decimal strings, never JSON numbers: a float price is refused (422)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from market.costing.records import MoneyRecord

# A non-negative decimal string: "2", "2.00", "0.5". No sign, no exponent.
AMOUNT_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,12})?$"


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictStr = Field(
        pattern=AMOUNT_PATTERN,
        examples=["2.00"],
        description="A non-negative decimal string with at most the currency's minor digits.",
    )
    currency: StrictStr = Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])


class ModelCreate(BaseModel):
    """Publish a delivered run's model (its buyer only)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(max_length=64)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    licence: str = Field(min_length=1, max_length=64)
    price: PriceIn


class DatasetRef(BaseModel):
    id: str
    title: str


class PrivacySummary(BaseModel):
    """The original run's privacy receipt, summarised: re-use spends nothing more."""

    epsilon: float = Field(description="The epsilon the run bought.")
    delta: float
    epsilon_spent: float | None = Field(description="What the run's release composed to.")
    accountant: str | None


class TrainingFootprint(BaseModel):
    """What the original training measured (the run's cost receipt)."""

    seconds: str | None
    energy_kwh: str
    emissions_kg: str
    method: str | None


class SharedModelPublic(BaseModel):
    id: str
    run_id: str
    title: str
    description: str
    licence: str
    price: MoneyRecord
    publisher_id: int
    dataset: DatasetRef
    spec: dict[str, Any] = Field(description="The model spec the run trained.")
    privacy: PrivacySummary
    metrics: dict[str, Any] | None = Field(description="The run's noisy held-out metrics.")
    training: TrainingFootprint
    acquisitions: int
    can_download: bool = Field(description="Whether the caller may download the file.")
    created_at: datetime


class SharedModelList(BaseModel):
    items: list[SharedModelPublic]
    total: int


class AcquisitionReceipt(BaseModel):
    price: MoneyRecord
    owner_royalty: MoneyRecord = Field(description="The dataset owner's share (exact).")
    publisher_share: MoneyRecord = Field(description="The publisher's share (exact).")
    energy_avoided_kwh: str = Field(description="The original run's measured energy.")
    emissions_avoided_kg: str = Field(description="The original run's measured emissions.")


class AcquisitionPublic(BaseModel):
    id: str
    model_id: str
    buyer_id: int
    receipt: AcquisitionReceipt
    created_at: datetime


class ModelPath(BaseModel):
    model_id: str = Field(max_length=64)


class ModelQuery(BaseModel):
    q: str | None = Field(default=None, max_length=200)
    dataset_id: str | None = Field(default=None, max_length=64)
    page: int = Field(default=1, ge=1, le=10_000)
