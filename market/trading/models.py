"""Tables of trading: quotes, runs, and the privacy ledger's releases.

A ``PrivacyRelease`` row is one accounted mechanism set against a dataset's budget: the
records of ``privacy.accounting`` (plain JSON), reserved at purchase, spent (with what the
run actually released) at delivery, or released if the run never trained. A dataset's
budget is the composition of its reserved and spent rows, never a sum of epsilons.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from market.catalog.models import str_enum
from market.db import UTCDateTime, utcnow
from privacy.records import MechanismRecord


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunPhase(StrEnum):
    """Where a run is in its life; ``market.trading.lifecycle`` says what each step charges."""

    QUEUED = "queued"  # bought, budget reserved, waiting for a worker
    CLAIMED = "claimed"  # a worker holds the lease; the data is still untouched
    DATA_TOUCHED = "data_touched"  # decryption began: from here on the run is charged
    TRAINING = "training"  # DP-SGD steps are running
    DELIVERED = "delivered"  # weights, receipts and spend committed together
    FAILED = "failed"  # ended without a model (charged iff the data was touched)


class ReleaseState(StrEnum):
    RESERVED = "reserved"  # counted against the budget while the run is pending
    SPENT = "spent"  # the run released information: final
    RELEASED = "released"  # the run never touched the data: no longer counted


class Quote(SQLModel, table=True):
    __tablename__ = "quotes"

    id: str = Field(primary_key=True, max_length=32)
    dataset_id: str = Field(foreign_key="datasets.id", index=True)
    researcher_id: int = Field(foreign_key="users.id", index=True)
    # The validated request (model spec, epsilon, delta, epochs, batch size, ...).
    request: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    # privacy.training.RunPlan.to_dict(): noise multiplier, sample rate, steps, ...
    plan: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    # The cost estimate (market.costing), money as strings.
    estimate: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    price_total_minor: int
    currency: str = Field(max_length=3)
    fits_budget: bool
    epsilon_after: float
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    id: str = Field(primary_key=True, max_length=32)
    quote_id: str = Field(foreign_key="quotes.id", unique=True)
    dataset_id: str = Field(foreign_key="datasets.id", index=True)
    buyer_id: int = Field(foreign_key="users.id", index=True)
    status: RunStatus = Field(default=RunStatus.QUEUED, sa_type=str_enum(RunStatus), index=True)
    price_total_minor: int
    currency: str = Field(max_length=3)
    progress_step: int = 0
    progress_steps: int = 0
    progress_epsilon: float = 0.0
    attempts: int = 0
    # The fencing token: bumped at every claim. A worker's writes are compare-and-set on
    # (id, lease_token, status running), so a worker whose lease was taken writes nothing.
    lease_token: int = 0
    phase: RunPhase = Field(default=RunPhase.QUEUED, sa_type=str_enum(RunPhase))
    # Set (in its own committed write) before the first byte is decrypted; never cleared.
    data_touched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    privacy_receipt: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    cost_receipt: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    metrics: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=1000)
    model_name: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PrivacyRelease(SQLModel, table=True):
    __tablename__ = "privacy_releases"
    # A budget check reads a dataset's active reservations (market.trading.budget): with the
    # single-column indexes alone, SQLite walks every release of the dataset to find them.
    __table_args__ = (sa.Index("ix_privacy_releases_dataset_state", "dataset_id", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: str = Field(foreign_key="datasets.id", index=True)
    run_id: str | None = Field(default=None, foreign_key="runs.id", index=True)
    state: ReleaseState = Field(sa_type=str_enum(ReleaseState), index=True)
    # privacy.records mechanism records (subsampled Gaussian, Gaussian, Laplace).
    records: list[MechanismRecord] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    epsilon: float  # this release's own epsilon at the dataset's delta (for reading only)
    epsilon_after: float  # the dataset's composed epsilon once this release counts
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # privacy.accounting.curve_to_json of ``records``, written with them (market.trading.budget)
    # so that no process recomputes a mechanism's RDP curve to count this release.
    rdp_curve: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))


class PrivacyBudgetState(SQLModel, table=True):
    """A dataset's spent privacy loss, composed incrementally (``market.trading.budget``).

    Written in the same transaction as every change to the dataset's releases; the reserved
    part is not kept here but summed from the few active reservations (their stored curves),
    so releasing a reservation subtracts nothing. ``spent_rdp`` null means "derive again
    from the release rows" (a change the increment cannot express exactly).
    """

    __tablename__ = "privacy_budget_states"

    # No foreign key, deliberately: on PostgreSQL its check takes a KEY SHARE lock on the
    # dataset row, which a purchase holds FOR UPDATE while it waits for this row; a worker
    # creating this row meanwhile closed a deadlock (measured with 30 concurrent purchases).
    dataset_id: str = Field(primary_key=True, max_length=32)
    # privacy.accounting.curve_to_json of every spent release's records, summed.
    spent_rdp: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON))
    # privacy.accounting.merge_records of every spent release: what PRV and PLD compose.
    spent_records: list[MechanismRecord] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    spent_releases: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
