"""The append-only, signed audit log (docs/operations.md says how auditors use it).

Every state change of the marketplace is appended, in the same transaction as the change,
as a canonical JSON entry; the entries are the leaves of an RFC 6962 Merkle tree whose root
the service signs (a checkpoint) every ``audit.checkpoint_every`` entries and at each
purchase. An auditor exports the log and verifies it offline with the public key alone.

Layers, each usable alone::

    merkle     pure RFC 6962/9162 hashing: roots, inclusion and consistency proofs
    canonical  the one byte string of a value (sorted keys, UTC, Decimal as string)
    signing    checkpoint notes, the Ed25519 signing key kept apart from the data keys
    models     audit_entries, audit_checkpoints, audit_head (the lock and the frontier)
    log        append / record / checkpoint / proofs, in the caller's transaction
    export     the JSON Lines export
    verify     offline verification (no database), naming the first bad entry
    ledgers    privacy and cost ledgers re-derived from the entries
    api, cli   /api/v1/audit/* and ``market audit``

Usage from a service (one transaction, committed by the caller)::

    with database.write() as session:
        run = create_run(session, ...)
        audit.record(session, settings, kind="run.purchased", subject=run.id,
                     actor_id=buyer.id, data={"quote_id": quote.id, "price": price})
        audit.checkpoint(session, settings)     # at each purchase
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market.audit.ledgers import cost_receipt_data, privacy_entry_data
from market.audit.log import (
    InclusionProof,
    append,
    checkpoint,
    checkpoint_if_due,
    checkpoint_json,
    consistency_proof,
    inclusion_proof,
    latest_checkpoint,
    receipt_evidence,
    record,
    seqs_for_subject,
)
from market.audit.models import AuditEntry, AuditHead, Checkpoint
from market.audit.signing import ensure_signing_key

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "AuditEntry",
    "AuditHead",
    "Checkpoint",
    "InclusionProof",
    "append",
    "checkpoint",
    "checkpoint_if_due",
    "checkpoint_json",
    "consistency_proof",
    "cost_receipt_data",
    "ensure_signing_key",
    "inclusion_proof",
    "init_app",
    "latest_checkpoint",
    "privacy_entry_data",
    "receipt_evidence",
    "record",
    "seqs_for_subject",
]


def init_app(app: Flask) -> None:
    """Register /api/v1/audit/* on the application (an ``OpenAPI`` app)."""
    from market.api import register_api
    from market.audit.api import api

    register_api(app, api)
