"""The append-only log as a service: append in the caller's transaction, sign checkpoints,
prove inclusion and consistency, export.

Every function takes the caller's session and never commits (docs/architecture.md, conventions): an
audit entry is written in the same transaction as the change it records, so either both
are in the database or neither is. A crash between them is impossible by construction.

Concurrency: ``append`` first locks the single ``audit_head`` row. On PostgreSQL that is
``SELECT ... FOR UPDATE``: a second appender waits until the first commits or rolls back,
then reads the new size, so sequence numbers are unique and, because a rolled-back append
also rolls back its head update, gap-free. On SQLite, write transactions begin with
``BEGIN IMMEDIATE`` (``Database.write``), which serialises writers before they read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, delete, func, select

from market.audit import canonical, merkle, signing
from market.audit.models import AuditEntry, AuditHead, AuditNode, Checkpoint
from market.config import Settings
from market.db import utcnow
from market.errors import NotFound

HEAD_ID = 1


def _lock_head(session: Session) -> AuditHead:
    """The head row, locked for the rest of the transaction (created if missing)."""
    statement = (
        select(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = session.exec(statement).first()
    if head is not None:
        return head
    # First append ever (or the tables were emptied): create the row without racing. ON
    # CONFLICT DO NOTHING lets two first appenders both proceed; the loser then waits on
    # the winner's row lock below.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(AuditHead).values(id=HEAD_ID, size=0, frontier=[]).on_conflict_do_nothing()
    )
    head = session.exec(statement).one()
    if head.size == 0:
        _rebuild_head(session, head)
    return head


def _rebuild_head(session: Session, head: AuditHead) -> None:
    """Recompute size, frontier and nodes from the entries (they are the truth; the head
    and the nodes a cache): whatever nodes a vanished head left behind are replaced."""
    session.exec(delete(AuditNode))
    frontier = merkle.Frontier()
    nodes: list[AuditNode] = []
    for leaf in session.exec(select(AuditEntry.leaf_hash).order_by(col(AuditEntry.seq))):
        for level, position, h in frontier.append(bytes.fromhex(leaf)):
            nodes.append(AuditNode(level=level, position=position, hash=h.hex()))
    if frontier.size:
        head.size = frontier.size
        head.frontier = frontier.to_hex()
        session.add(head)
        session.add_all(nodes)


def entry_payload(
    *, seq: int, time: datetime, kind: str, subject: str, actor_id: int | None, data: Any
) -> dict[str, Any]:
    """What is hashed: the six fields of an entry, ``data`` already plain JSON."""
    return {
        "seq": seq,
        "time": canonical.format_time(time),
        "kind": kind,
        "subject": subject,
        "actor": actor_id,
        "data": canonical.plain(data, where="data"),
    }


def append(
    session: Session,
    *,
    kind: str,
    subject: str | int,
    actor_id: int | None,
    data: Mapping[str, Any],
    now: datetime | None = None,
) -> AuditEntry:
    """Record one state change in the caller's transaction (never commits).

    ``kind`` is ``<domain>.<event>`` (``run.purchased``); ``subject`` the id of the thing
    that changed; ``actor_id`` the user who caused it (None: the system, e.g. a worker).
    ``data`` must have a canonical JSON form (see ``market.audit.canonical``): Decimals and
    datetimes are fine, NaN and naive datetimes are refused with ``NotCanonical``.
    """
    head = _lock_head(session)
    seq = head.size + 1
    created_at = now or utcnow()
    payload = entry_payload(
        seq=seq, time=created_at, kind=kind, subject=str(subject), actor_id=actor_id, data=data
    )
    text = canonical.dumps(payload)
    leaf = merkle.leaf_hash(text.encode("utf-8"))
    entry = AuditEntry.model_validate(
        {
            "seq": seq,
            "created_at": created_at,
            "kind": kind,
            "subject": str(subject),
            "actor_id": actor_id,
            "data": payload["data"],
            "canonical": text,
            "leaf_hash": leaf.hex(),
        }
    )
    frontier = merkle.Frontier.from_hex(head.size, head.frontier)
    completed = frontier.append(leaf)
    head.size = frontier.size
    head.frontier = frontier.to_hex()
    session.add(entry)
    session.add(head)
    # The perfect subtrees this leaf completes (about two a leaf on average): proofs read them.
    session.add_all(
        AuditNode(level=level, position=position, hash=h.hex()) for level, position, h in completed
    )
    session.flush()
    return entry


def latest_checkpoint(session: Session) -> Checkpoint | None:
    """The checkpoint of the largest tree size (the newest of those)."""
    statement = select(Checkpoint).order_by(
        col(Checkpoint.tree_size).desc(), col(Checkpoint.id).desc()
    )
    return session.exec(statement).first()


def checkpoint(session: Session, settings: Settings, *, now: datetime | None = None) -> Checkpoint:
    """Sign the current size and root (in the caller's transaction; never commits).

    If the newest checkpoint already covers the current size it is returned as is: a
    purchase that calls this right after another one does not sign the same tree twice.
    """
    head = _lock_head(session)
    latest = latest_checkpoint(session)
    origin = settings.audit.origin
    if latest is not None and latest.tree_size == head.size and latest.origin == origin:
        return latest
    root = merkle.Frontier.from_hex(head.size, head.frontier).root()
    key = signing.load_signing_key(settings)
    text = signing.note_text(origin, head.size, root)
    signature = signing.sign_note(key, text)
    row = Checkpoint.model_validate(
        {
            "tree_size": head.size,
            "root": root.hex(),
            "origin": origin,
            "signature": base64.b64encode(signature).decode(),
            "key_id": signing.key_id(origin, key.public_key()).hex(),
            "created_at": now or utcnow(),
        }
    )
    session.add(row)
    session.flush()
    return row


def checkpoint_if_due(session: Session, settings: Settings) -> Checkpoint | None:
    """Sign a checkpoint when ``audit.checkpoint_every`` entries have gone unsigned."""
    head = _lock_head(session)
    latest = latest_checkpoint(session)
    signed = latest.tree_size if latest is not None else 0
    if head.size - signed >= settings.audit.checkpoint_every:
        return checkpoint(session, settings)
    return None


def record(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    subject: str | int,
    actor_id: int | None,
    data: Mapping[str, Any],
) -> AuditEntry:
    """``append`` and then ``checkpoint_if_due``: what services call for a state change."""
    entry = append(session, kind=kind, subject=subject, actor_id=actor_id, data=data)
    checkpoint_if_due(session, settings)
    return entry


def tree_size(session: Session) -> int:
    """Entries in the log as this transaction sees them (the head's size, no lock taken:
    COUNT(*) would scan the whole table on PostgreSQL)."""
    head = session.get(AuditHead, HEAD_ID)
    if head is not None:
        return head.size
    return int(session.exec(select(func.count()).select_from(AuditEntry)).one())


def entries_after(
    session: Session, *, after: int, limit: int, subjects: Any = None
) -> list[AuditEntry]:
    """Up to ``limit`` entries with seq > ``after``, in order (for paging); with ``subjects``
    (a collection or a subquery of ids), only entries about those subjects."""
    statement = select(AuditEntry).where(col(AuditEntry.seq) > after)
    if subjects is not None:
        statement = statement.where(col(AuditEntry.subject).in_(subjects))
    statement = statement.order_by(col(AuditEntry.seq)).limit(limit)
    return list(session.exec(statement))


def iter_entries(session: Session, *, up_to: int, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every entry with seq <= ``up_to``, in order, a batch of rows in memory at a time."""
    after = 0
    while after < up_to:
        rows = entries_after(session, after=after, limit=min(batch, up_to - after))
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def _leaf_hashes(session: Session, size: int) -> list[bytes]:
    statement = (
        select(AuditEntry.leaf_hash)
        .where(col(AuditEntry.seq) <= size)
        .order_by(col(AuditEntry.seq))
    )
    leaves = [bytes.fromhex(h) for h in session.exec(statement)]
    if len(leaves) != size:
        raise NotFound(f"the log holds {len(leaves)} entries, fewer than {size}")
    return leaves


def get_checkpoint(session: Session, *, tree_size: int | None = None) -> Checkpoint:
    """The newest checkpoint of ``tree_size`` (None: the latest of all)."""
    if tree_size is None:
        found = latest_checkpoint(session)
    else:
        found = session.exec(
            select(Checkpoint)
            .where(Checkpoint.tree_size == tree_size)
            .order_by(col(Checkpoint.id).desc())
        ).first()
    if found is None:
        raise NotFound("no such audit checkpoint")
    return found


@dataclass(frozen=True)
class InclusionProof:
    """Evidence that one entry is in the tree a signed checkpoint commits to.

    Verifiable with the public key alone (``market.audit.verify.verify_inclusion_evidence``):
    check the checkpoint's signature, hash the entry, walk the path to the root.
    """

    seq: int
    entry: str  # the canonical JSON text of the entry
    path: list[str]  # hex sibling hashes, leaf to root
    checkpoint: dict[str, Any]  # checkpoint_json() of the checkpoint proved against

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entry": self.entry,
            "path": self.path,
            "checkpoint": self.checkpoint,
        }


def checkpoint_json(row: Checkpoint) -> dict[str, Any]:
    """A checkpoint as plain JSON, with the signed note an auditor can keep as is."""
    root = bytes.fromhex(row.root)
    text = signing.note_text(row.origin, row.tree_size, root)
    note = signing.render_signed_note(
        text, row.origin, bytes.fromhex(row.key_id), base64.b64decode(row.signature)
    )
    return {
        "origin": row.origin,
        "tree_size": row.tree_size,
        "root": row.root,
        "signature": row.signature,
        "key_id": row.key_id,
        "created_at": canonical.format_time(row.created_at),
        "note": note,
    }


class _Nodes:
    """Subtree roots for the proofs of a tree of ``size`` leaves, from ``audit_nodes``.

    Proofs are built twice: once to learn which perfect subtrees they name, then, after
    reading those (one query, O(log n) rows), for real. A log whose nodes are missing
    (written before the table existed and not backfilled) is proved from its leaves.
    """

    def __init__(self, session: Session, size: int) -> None:
        self.session = session
        self.size = size
        self.wanted: set[merkle.NodeKey] = set()
        self.known: dict[merkle.NodeKey, bytes] = {}

    def _want(self, start: int, end: int) -> bytes:
        self.wanted.update(merkle.perfect_parts(start, end))
        return b""

    def _read(self, start: int, end: int) -> bytes:
        return merkle.fold([self.known[key] for key in merkle.perfect_parts(start, end)])

    def build(self, prove: Any) -> list[bytes]:
        """``prove(subtree)``: one of ``merkle.inclusion_path``/``consistency_path``."""
        prove(self._want)
        if self.wanted:
            rows = self.session.exec(
                select(AuditNode.level, AuditNode.position, AuditNode.hash).where(
                    tuple_(col(AuditNode.level), col(AuditNode.position)).in_(sorted(self.wanted))
                )
            ).all()
            self.known = {(level, position): bytes.fromhex(h) for level, position, h in rows}
        if len(self.known) < len(self.wanted):
            leaves = _leaf_hashes(self.session, self.size)
            return list(prove(lambda start, end: merkle.root(leaves[start:end])))
        return list(prove(self._read))


def inclusion_proof(session: Session, *, seq: int, checkpoint: Checkpoint) -> InclusionProof:
    """The audit path of entry ``seq`` in the tree of ``checkpoint``: O(log n) node reads."""
    if not 1 <= seq <= checkpoint.tree_size:
        raise NotFound(
            f"entry {seq} is not covered by the checkpoint of size {checkpoint.tree_size}"
        )
    entry = session.get(AuditEntry, seq)
    if entry is None:
        raise NotFound(f"no audit entry {seq}")
    size = checkpoint.tree_size
    if tree_size(session) < size:
        raise NotFound(f"the log holds fewer than {size} entries")
    path = _Nodes(session, size).build(
        lambda subtree: merkle.inclusion_path(size, seq - 1, subtree)
    )
    return InclusionProof(
        seq=seq,
        entry=entry.canonical,
        path=[p.hex() for p in path],
        checkpoint=checkpoint_json(checkpoint),
    )


def receipt_evidence(session: Session, settings: Settings, *, seqs: list[int]) -> dict[str, Any]:
    """What a run's receipt carries: a fresh checkpoint and the inclusion proof of each of
    the run's entries against it, so the buyer and the owner hold evidence of their own.

    Signs a checkpoint if the newest one does not cover the entries yet. For a run:
    ``receipt_evidence(session, settings, seqs=seqs_for_subject(session, run.id))``, in the
    transaction that records ``run.succeeded``, after appending it.
    """
    cp = checkpoint(session, settings)
    return {
        "checkpoint": checkpoint_json(cp),
        "proofs": [inclusion_proof(session, seq=s, checkpoint=cp).to_json() for s in seqs],
    }


def seqs_for_subject(session: Session, subject: str | int) -> list[int]:
    """The seqs of every entry about ``subject`` (e.g. a run id), in order."""
    statement = (
        select(AuditEntry.seq)
        .where(AuditEntry.subject == str(subject))
        .order_by(col(AuditEntry.seq))
    )
    return list(session.exec(statement))


def consistency_proof(session: Session, *, old_size: int, new_size: int) -> list[str]:
    """RFC 9162 PROOF(old_size, D[new_size]) as hex, for an auditor holding an old checkpoint."""
    if not 0 < old_size <= new_size:
        raise NotFound(f"no consistency proof from size {old_size} to {new_size}")
    if tree_size(session) < new_size:
        raise NotFound(f"the log holds fewer than {new_size} entries")
    path = _Nodes(session, new_size).build(
        lambda subtree: merkle.consistency_path(old_size, new_size, subtree)
    )
    return [p.hex() for p in path]
