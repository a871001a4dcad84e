"""sharing: shared models and their acquisitions

Revision ID: d41b7c2e9a63
Revises: a7c3e91d5b20
Create Date: 2026-11-30 14:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import market.db

revision: str = "d41b7c2e9a63"
down_revision: str | Sequence[str] | None = "a7c3e91d5b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shared_models",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("dataset_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=5000), nullable=False),
        sa.Column("licence", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("energy_kwh", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("emissions_kg", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.ForeignKeyConstraint(["publisher_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )
    with op.batch_alter_table("shared_models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shared_models_created_at"), ["created_at"])
        batch_op.create_index(batch_op.f("ix_shared_models_dataset_id"), ["dataset_id"])
        batch_op.create_index(batch_op.f("ix_shared_models_publisher_id"), ["publisher_id"])

    op.create_table(
        "model_acquisitions",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("model_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("buyer_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("owner_amount", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("publisher_amount", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "energy_avoided_kwh", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column(
            "emissions_avoided_kg", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["buyer_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["model_id"], ["shared_models.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["publisher_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "buyer_id", name="uq_acquisition_buyer"),
    )
    with op.batch_alter_table("model_acquisitions", schema=None) as batch_op:
        for column in ("buyer_id", "created_at", "model_id", "owner_id", "publisher_id"):
            batch_op.create_index(batch_op.f(f"ix_model_acquisitions_{column}"), [column])


def downgrade() -> None:
    with op.batch_alter_table("model_acquisitions", schema=None) as batch_op:
        for column in ("publisher_id", "owner_id", "model_id", "created_at", "buyer_id"):
            batch_op.drop_index(batch_op.f(f"ix_model_acquisitions_{column}"))
    op.drop_table("model_acquisitions")
    with op.batch_alter_table("shared_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shared_models_publisher_id"))
        batch_op.drop_index(batch_op.f("ix_shared_models_dataset_id"))
        batch_op.drop_index(batch_op.f("ix_shared_models_created_at"))
    op.drop_table("shared_models")
