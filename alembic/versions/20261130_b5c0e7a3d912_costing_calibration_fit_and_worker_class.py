"""costing: a worker class's calibration fit; ops: each heartbeat's worker class

worker_calibrations.fit holds the per-family time fit, power figures and expected error a
worker measures at start (market.trading.calibration). worker_heartbeats.worker_class says
which class a live worker trains for, so a quote for a class without one cannot be bought.

Revision ID: b5c0e7a3d912
Revises: d41b7c2e9a63
Create Date: 2026-11-30 14:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "b5c0e7a3d912"
down_revision: str | Sequence[str] | None = "d41b7c2e9a63"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("worker_calibrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fit", sa.JSON(), nullable=True))
    with op.batch_alter_table("worker_heartbeats", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("worker_class", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_worker_heartbeats_worker_class"), ["worker_class"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("worker_heartbeats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_worker_heartbeats_worker_class"))
        batch_op.drop_column("worker_class")
    with op.batch_alter_table("worker_calibrations", schema=None) as batch_op:
        batch_op.drop_column("fit")
