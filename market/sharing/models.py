"""Tables of model sharing: published models and their acquisitions.

A ``SharedModel`` is a delivered run's model offered by its buyer (the publisher) at a price.
It points at the run; the weights stay the run's file, so an acquirer downloads the very
bytes the run delivered. The run's measured training energy and emissions are copied at
publication: they are what each acquisition avoids, and the dashboards total them without
reading every run's receipt.

An ``Acquisition`` is one researcher's purchase of a shared model: the price paid, split
exactly (decimal strings, never floats, ``market.money``) into the dataset owner's royalty
and the publisher's share, and the energy and emissions that training it again would have
cost. One acquisition per model and researcher.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from market.db import UTCDateTime, utcnow


class SharedModel(SQLModel, table=True):
    __tablename__ = "shared_models"

    id: str = Field(primary_key=True, max_length=32)
    run_id: str = Field(foreign_key="runs.id", unique=True)
    dataset_id: str = Field(foreign_key="datasets.id", index=True)
    publisher_id: int = Field(foreign_key="users.id", index=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=5000)
    licence: str = Field(max_length=64)
    price_minor: int = Field(ge=0)
    currency: str = Field(max_length=3)
    # The original run's measurement (exact decimal strings, units in the names).
    energy_kwh: str = Field(max_length=64)
    emissions_kg: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class Acquisition(SQLModel, table=True):
    __tablename__ = "model_acquisitions"
    __table_args__ = (sa.UniqueConstraint("model_id", "buyer_id", name="uq_acquisition_buyer"),)

    id: str = Field(primary_key=True, max_length=32)
    model_id: str = Field(foreign_key="shared_models.id", index=True)
    buyer_id: int = Field(foreign_key="users.id", index=True)
    # Who the royalties went to, fixed at the time of the acquisition.
    owner_id: int = Field(foreign_key="users.id", index=True)
    publisher_id: int = Field(foreign_key="users.id", index=True)
    price_minor: int = Field(ge=0)
    currency: str = Field(max_length=3)
    # Exact decimal strings: owner_amount + publisher_amount == the price.
    owner_amount: str = Field(max_length=64)
    publisher_amount: str = Field(max_length=64)
    energy_avoided_kwh: str = Field(max_length=64)
    emissions_avoided_kg: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
