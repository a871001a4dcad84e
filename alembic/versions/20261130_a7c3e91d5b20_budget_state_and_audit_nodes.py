"""trading: kept budget state per dataset, RDP curve per release; audit: Merkle nodes

Revision ID: a7c3e91d5b20
Revises: f983ea08f942
Create Date: 2026-11-30 13:50:00.000000+00:00

The budget state is not backfilled: a dataset without a state row (or a release without
its curve) is derived from its release rows at its first write (market/trading/budget.py).
The audit log's nodes are: every perfect subtree of the existing entries, computed from
their leaf hashes (market/audit/merkle.py), so proofs of old entries read nodes too.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import market.db
from market.audit import merkle

revision: str = "a7c3e91d5b20"
down_revision: str | Sequence[str] | None = "f983ea08f942"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("privacy_releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rdp_curve", sa.JSON(), nullable=True))
        batch_op.create_index(
            "ix_privacy_releases_dataset_state", ["dataset_id", "state"], unique=False
        )
    op.create_table(
        "privacy_budget_states",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("spent_rdp", sa.JSON(), nullable=True),
        sa.Column("spent_records", sa.JSON(), nullable=False),
        sa.Column("spent_releases", sa.Integer(), nullable=False),
        sa.Column("updated_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id"),
    )
    nodes = op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("level", "position"),
    )
    entries = sa.table("audit_entries", sa.column("seq", sa.Integer), sa.column("leaf_hash"))
    frontier = merkle.Frontier()
    batch: list[dict[str, object]] = []
    rows = op.get_bind().execute(sa.select(entries.c.leaf_hash).order_by(entries.c.seq))
    for (leaf,) in rows:
        for level, position, h in frontier.append(bytes.fromhex(leaf)):
            batch.append({"level": level, "position": position, "hash": h.hex()})
        if len(batch) >= 5000:
            op.bulk_insert(nodes, batch)
            batch = []
    if batch:
        op.bulk_insert(nodes, batch)


def downgrade() -> None:
    op.drop_table("audit_nodes")
    op.drop_table("privacy_budget_states")
    with op.batch_alter_table("privacy_releases", schema=None) as batch_op:
        batch_op.drop_index("ix_privacy_releases_dataset_state")
        batch_op.drop_column("rdp_curve")
