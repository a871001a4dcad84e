"""accounts: session generation; ops: worker heartbeats

users.session_generation is copied into the signed session cookie and raised on sign-out,
password change, suspension and role change, so older cookies stop working at once.
worker_heartbeats holds each worker process's last heartbeat, which /healthz reads.

Revision ID: c4e8a2d61f07
Revises: 7d3e5a91c2b4
Create Date: 2026-11-30 10:19:39.232656+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import market.db

revision: str = "c4e8a2d61f07"
down_revision: str | Sequence[str] | None = "7d3e5a91c2b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("queue_backend", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("started_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id"),
    )
    with op.batch_alter_table("worker_heartbeats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_worker_heartbeats_last_seen_at"), ["last_seen_at"], unique=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_generation", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_generation")

    with op.batch_alter_table("worker_heartbeats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_worker_heartbeats_last_seen_at"))

    op.drop_table("worker_heartbeats")
