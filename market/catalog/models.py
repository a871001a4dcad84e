"""Tables of the catalog: datasets (listings) and their tags.

A dataset's rows never live here. The table holds the public metadata the owner chose to
reveal, the terms of sale, and, once uploaded, where the ciphertext is and its data key
wrapped to the worker's key (``wrapped_key``; deleting it crypto-shreds the dataset).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from market.db import UTCDateTime, utcnow


class DatasetStatus(StrEnum):
    DRAFT = "draft"  # metadata only, waiting for its file
    LISTED = "listed"  # file encrypted, validated and for sale
    DELISTED = "delisted"  # withdrawn and crypto-shredded; ledgers and audit stay


class DatasetFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    NPZ = "npz"


def str_enum(enum: type[StrEnum]) -> sa.Enum:
    """A StrEnum stored as its value in a VARCHAR (no PostgreSQL ENUM type to migrate)."""
    return sa.Enum(
        enum,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Dataset(SQLModel, table=True):
    __tablename__ = "datasets"

    id: str = Field(primary_key=True, max_length=32)
    owner_id: int = Field(foreign_key="users.id", index=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=5000)
    licence: str = Field(max_length=64)
    format: DatasetFormat = Field(sa_type=str_enum(DatasetFormat))
    label: str | None = Field(default=None, max_length=200)
    # The public schema: {"columns": [...]} or {"image": {...}} exactly as the owner declared.
    data_schema: dict[str, Any] = Field(sa_column=sa.Column("schema", sa.JSON, nullable=False))
    epsilon_total: float
    delta: float
    max_epsilon_per_run: float
    price_per_run_minor: int = Field(ge=0)
    price_per_epsilon_minor: int = Field(ge=0)
    currency: str = Field(max_length=3)
    status: DatasetStatus = Field(
        default=DatasetStatus.DRAFT, sa_type=str_enum(DatasetStatus), index=True
    )
    rows: int | None = Field(default=None)
    ciphertext_bytes: int | None = Field(default=None, sa_type=sa.BigInteger)
    storage_name: str | None = Field(default=None, max_length=128)
    wrapped_key: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    key_version: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    listed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delisted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DatasetTag(SQLModel, table=True):
    __tablename__ = "dataset_tags"

    dataset_id: str = Field(foreign_key="datasets.id", primary_key=True, ondelete="CASCADE")
    tag: str = Field(primary_key=True, max_length=40, index=True)
