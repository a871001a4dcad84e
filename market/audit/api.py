"""The audit log in the JSON API: entries, signed checkpoints, proofs, the verifying key.

Read-only for auditors (and admins, who hold every role). The one write is signing a first
checkpoint when none exists yet, so an auditor always gets something to verify against.
"""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from market.accounts.models import Role
from market.api import API_V1, BEARER
from market.api.auth import api_login_required, caller
from market.api.schemas import COMMON_ERRORS, ID_MAX, INT64_MAX
from market.audit import canonical, export, log, signing
from market.extensions import csrf
from market.services import services
from market.visibility import audit_subjects_visible_to

api = APIBlueprint(
    "audit_api",
    __name__,
    url_prefix=API_V1 + "/audit",
    abp_tags=[
        Tag(name="audit", description="The tamper-evident log: entries, checkpoints, proofs")
    ],
    abp_responses=COMMON_ERRORS,
)
csrf.exempt(api)


class EntriesQuery(BaseModel):
    after: int = Field(
        default=0, ge=0, le=ID_MAX, description="Return entries with seq greater than this."
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        le=INT64_MAX,
        description="Entries per page (default and maximum in settings).",
    )


class EntryPublic(BaseModel):
    seq: int
    time: str = Field(description="UTC, ISO 8601 with microseconds and Z.")
    kind: str = Field(description="What changed, e.g. `run.purchased`.")
    subject: str = Field(description="The id of what changed.")
    actor_id: int | None = Field(description="Who caused it; null for the system.")
    data: dict[str, Any]
    leaf_hash: str = Field(description="Hex SHA-256(0x00 || entry), the Merkle leaf.")
    entry: str = Field(description="The canonical JSON text that was hashed.")


class EntryPage(BaseModel):
    items: list[EntryPublic]
    tree_size: int = Field(description="Entries in the log now.")
    next_after: int | None = Field(description="Pass as `after` for the next page; null: done.")


class CheckpointPublic(BaseModel):
    origin: str
    tree_size: int
    root: str = Field(description="Hex RFC 6962 root of the first tree_size entries.")
    signature: str = Field(description="Base64 Ed25519 signature of the note text.")
    key_id: str = Field(description="Hex 4-byte signed-note key hint.")
    created_at: str
    note: str = Field(description="The C2SP signed note: keep it for `verify --checkpoint`.")


class ProofPath(BaseModel):
    seq: int = Field(ge=1, le=ID_MAX)


class ProofQuery(BaseModel):
    tree_size: int | None = Field(
        default=None,
        ge=1,
        le=ID_MAX,
        description="Prove against this checkpoint size (default latest).",
    )


class InclusionProofPublic(BaseModel):
    seq: int
    entry: str
    path: list[str] = Field(description="Hex sibling hashes, leaf to root (RFC 9162 2.1.3).")
    checkpoint: CheckpointPublic


class ConsistencyQuery(BaseModel):
    first: int = Field(ge=1, le=ID_MAX, description="The older tree size (a checkpoint you kept).")
    second: int | None = Field(
        default=None, ge=1, le=ID_MAX, description="The newer size (default latest)."
    )


class GuessPublic(BaseModel):
    k_plus: int = Field(description="Canaries guessed included (the highest scores).")
    k_minus: int = Field(description="Canaries guessed left out (the lowest scores).")
    correct: int
    bound: float = Field(description="The 95% lower bound on epsilon from this setting.")


class PrivacyReportPublic(BaseModel):
    seq: int = Field(description="The audit entry (kind `privacy.audit`) holding the report.")
    time: str
    config: str = Field(description="The configuration (worker) class audited.")
    family: str = Field(description="The model family trained.")
    claim_epsilon: float = Field(description="The training part of the purchased epsilon.")
    claim_delta: float
    purchased_epsilon: float
    lower_bound: float = Field(description="95% lower bound on epsilon (Bonferroni).")
    canaries: int = Field(description="m, each included with probability 1/2.")
    included: int
    guesses: list[GuessPublic]
    spread_ratio: float = Field(description="Left-out scores' spread / predicted (0.85-1.15).")
    shift: float = Field(description="Included minus left-out mean, in predicted spreads (<= 4).")
    spread_flag: bool
    shift_flag: bool
    verdict: str = Field(description="`claim refuted at 95%` or `no evidence against the claim`.")
    noise_multiplier: float
    sample_rate: float
    steps: int
    grad_sample_mode: str
    seed: int
    fault: str | None
    seconds: float
    caveats: list[str]


class PrivacyReports(BaseModel):
    items: list[PrivacyReportPublic] = Field(description="The latest report per class.")


def latest_privacy_reports(session: Any) -> list[PrivacyReportPublic]:
    """The newest ``privacy.audit`` entry of each configuration class, by class name."""
    from sqlmodel import col, select

    from market.audit.models import AuditEntry

    rows = session.exec(
        select(AuditEntry)
        .where(AuditEntry.kind == "privacy.audit")
        .order_by(col(AuditEntry.seq).desc())
    )
    latest: dict[str, PrivacyReportPublic] = {}
    for row in rows:
        if row.subject not in latest:
            latest[row.subject] = PrivacyReportPublic(
                seq=row.seq, time=canonical.format_time(row.created_at), **row.data
            )
    return [latest[name] for name in sorted(latest)]


class ConsistencyProofPublic(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="Hex hashes (RFC 9162 2.1.4).")
    checkpoint: CheckpointPublic


def visible_subjects(actor: Any) -> Any:
    """None (everything) for auditors and admins, else a subquery of the ids they may see
    (the rule is ``market.visibility.audit_subjects_visible_to``)."""
    return audit_subjects_visible_to(actor)


def _entry_public(entry: Any) -> EntryPublic:
    return EntryPublic(
        seq=entry.seq,
        time=canonical.format_time(entry.created_at),
        kind=entry.kind,
        subject=entry.subject,
        actor_id=entry.actor_id,
        data=entry.data,
        leaf_hash=entry.leaf_hash,
        entry=entry.canonical,
    )


@api.get(
    "/entries", summary="Entries after a seq, in order", security=BEARER, responses={200: EntryPage}
)
@api_login_required()
def list_entries(query: EntriesQuery):
    """Auditors read the whole log; owners the entries about their datasets and the runs on
    them; researchers the entries about their own purchases."""
    settings = services().settings.audit
    limit = min(query.limit or settings.page_size, settings.max_page_size)
    with services().database.read() as session:
        subjects = visible_subjects(caller())
        rows = log.entries_after(session, after=query.after, limit=limit, subjects=subjects)
        size = log.tree_size(session)
    items = [_entry_public(r) for r in rows]
    next_after = items[-1].seq if items and items[-1].seq < size else None
    return EntryPage(items=items, tree_size=size, next_after=next_after).model_dump(mode="json")


@api.get(
    "/checkpoint",
    summary="The latest signed checkpoint (signs one if none exists)",
    security=BEARER,
    responses={200: CheckpointPublic},
)
@api_login_required(Role.AUDITOR)
def latest_checkpoint():
    market = services()
    with market.database.read() as session:
        row = log.latest_checkpoint(session)
    if row is None:
        with market.database.write() as session:
            row = log.checkpoint(session, market.settings)
    return CheckpointPublic(**log.checkpoint_json(row)).model_dump(mode="json")


@api.get(
    "/entries/<int:seq>/proof",
    summary="Inclusion proof of an entry against a checkpoint",
    security=BEARER,
    responses={200: InclusionProofPublic},
)
@api_login_required(Role.AUDITOR)
def inclusion_proof(path: ProofPath, query: ProofQuery):
    with services().database.read() as session:
        cp = log.get_checkpoint(session, tree_size=query.tree_size)
        proof = log.inclusion_proof(session, seq=path.seq, checkpoint=cp)
    return InclusionProofPublic.model_validate(proof.to_json()).model_dump(mode="json")


@api.get(
    "/consistency",
    summary="Consistency proof between two checkpoint sizes",
    security=BEARER,
    responses={200: ConsistencyProofPublic},
)
@api_login_required(Role.AUDITOR)
def consistency(query: ConsistencyQuery):
    with services().database.read() as session:
        cp = log.get_checkpoint(session, tree_size=query.second)
        proof = log.consistency_proof(session, old_size=query.first, new_size=cp.tree_size)
    out = ConsistencyProofPublic(
        first=query.first,
        second=cp.tree_size,
        proof=proof,
        checkpoint=CheckpointPublic(**log.checkpoint_json(cp)),
    )
    return out.model_dump(mode="json")


@api.get(
    "/privacy-reports",
    summary="The latest privacy self-audit report per configuration class",
    security=BEARER,
    responses={200: PrivacyReports},
)
@api_login_required(Role.AUDITOR)
def privacy_reports():
    """Written by `market audit privacy` (docs/privacy-audit.md); auditors and admins only."""
    with services().database.read() as session:
        items = latest_privacy_reports(session)
    return PrivacyReports(items=items).model_dump(mode="json")


@api.get(
    "/export",
    summary="The signed log as `market audit export` writes it (JSON Lines)",
    security=BEARER,
    responses={
        200: {
            "description": "Header, checkpoints, then every entry up to a freshly signed "
            "checkpoint; verify with `market audit verify`.",
            "content": {"application/jsonl": {"schema": {"type": "string"}}},
        }
    },
)
@api_login_required(Role.AUDITOR)
def export_log():
    market = services()
    size = export.sign_for_export(market.database, market.settings)
    return Response(
        stream_with_context(export.export_lines(market.database, market.settings, size)),
        mimetype="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="audit-log-{size}.jsonl"'},
    )


@api.get(
    "/public-key",
    summary="The Ed25519 key that verifies checkpoints (PEM)",
    security=BEARER,
    responses={
        200: {
            "description": "The SubjectPublicKeyInfo PEM text.",
            "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
        }
    },
)
@api_login_required(Role.AUDITOR)
def public_key():
    settings = services().settings
    path = signing.public_key_path(settings)
    try:
        pem = path.read_text()
    except FileNotFoundError:
        pem = signing.public_key_pem(signing.load_signing_key(settings).public_key())
    return Response(pem, mimetype="application/x-pem-file")
