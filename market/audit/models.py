"""Tables of the audit log: the entries (leaves), the signed checkpoints, and the head.

``audit_entries.canonical`` is the exact byte string that was hashed into the leaf: the
columns beside it (kind, subject, data, ...) exist to query by, but verification only ever
reads ``canonical``, so no database's JSON round trip (key order, float spelling, jsonb)
can change what was signed.

``audit_head`` is one row (id 1): the log's size and its Merkle frontier. Every append
locks it (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
serialises writers), which is what makes ``seq`` gap-free and unique, and the frontier
gives the root of the current size in O(log n) when a checkpoint is signed.

``audit_nodes`` holds the hash of every perfect subtree of the log (level 0: the leaves),
written by the append that completes it: an inclusion or consistency proof reads the
O(log n) nodes it needs (``market.audit.merkle.perfect_parts``), never every leaf.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from market.db import UTCDateTime, utcnow


class AuditEntryBase(SQLModel):
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    created_at: datetime = Field(sa_type=UTCDateTime)
    kind: str = Field(max_length=64, index=True)
    subject: str = Field(max_length=128, index=True)
    actor_id: int | None = Field(default=None, index=True)
    data: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    # The canonical JSON text that was hashed (see the module docstring).
    canonical: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    leaf_hash: str = Field(max_length=64)


class AuditEntry(AuditEntryBase, table=True):
    """One leaf of the log; ``seq`` runs 1, 2, 3, ... with no gaps."""

    __tablename__ = "audit_entries"


class CheckpointBase(SQLModel):
    id: int | None = Field(default=None, primary_key=True)
    tree_size: int = Field(index=True)
    root: str = Field(max_length=64)
    origin: str = Field(max_length=255)
    # base64 of the raw Ed25519 signature over the note text (market.audit.signing).
    signature: str = Field(max_length=128)
    # 4-byte key hint of the signed-note format, hex: which key signed.
    key_id: str = Field(max_length=8)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Checkpoint(CheckpointBase, table=True):
    """A signed (origin, tree size, root): the service's commitment to a prefix of the log."""

    __tablename__ = "audit_checkpoints"


class AuditHead(SQLModel, table=True):
    """The single row every append locks: size of the log and its Merkle frontier."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    size: int = 0
    frontier: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))


class AuditNode(SQLModel, table=True):
    """The hash of one perfect subtree: leaves ``[position * 2**level, (position+1) * 2**level)``
    (1-based seqs: ``position * 2**level + 1`` onwards). Never changes once written."""

    __tablename__ = "audit_nodes"

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    position: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    hash: str = Field(max_length=64)
