"""accounts: approval, e-mail verification, one-time mail links

users.is_approved is false while a self sign-up waits for an admin; users.email_verified_at
is set when the person follows a verification (or reset) link. Accounts that exist already
were all made by an admin or the command line: they stay approved (server default) and are
taken as verified from their creation. mail_tokens holds the SHA-256 of each one-time link
(password reset, e-mail verification), its expiry and when it was used.

Revision ID: f983ea08f942
Revises: c4e8a2d61f07
Create Date: 2026-11-30 13:30:20.959328+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import market.db

revision: str = "f983ea08f942"
down_revision: str | Sequence[str] | None = "c4e8a2d61f07"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum("reset", "verify", name="mailtokenpurpose", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", market.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", market.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mail_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_tokens_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_mail_tokens_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_approved", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("email_verified_at", market.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE users SET email_verified_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")
        batch_op.drop_column("is_approved")

    with op.batch_alter_table("mail_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_mail_tokens_token_hash"))

    op.drop_table("mail_tokens")
