"""runs: fencing token, phase and data-touched time

Revision ID: 7d3e5a91c2b4
Revises: 69844cd1edca
Create Date: 2026-11-30 10:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import market.db

revision: str = "7d3e5a91c2b4"
down_revision: str | Sequence[str] | None = "69844cd1edca"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PHASES = ("queued", "claimed", "data_touched", "training", "delivered", "failed")


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease_token", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "phase",
                sa.Enum(*PHASES, name="runphase", native_enum=False, length=16),
                nullable=False,
                server_default="queued",
            )
        )
        batch_op.add_column(
            sa.Column("data_touched_at", market.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Existing rows: finished runs keep their outcome as their phase; a run that had
    # started may have decrypted its data, so it counts as touched (the safe side).
    op.execute("UPDATE runs SET phase = 'delivered' WHERE status = 'succeeded'")
    op.execute("UPDATE runs SET phase = 'failed' WHERE status = 'failed'")
    op.execute(
        "UPDATE runs SET phase = 'data_touched', data_touched_at = started_at "
        "WHERE status = 'running'"
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.alter_column("lease_token", server_default=None)
        batch_op.alter_column("phase", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("data_touched_at")
        batch_op.drop_column("phase")
        batch_op.drop_column("lease_token")
