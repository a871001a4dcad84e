"""The log in a real database (SQLite and PostgreSQL): append, checkpoints, concurrency."""

from __future__ import annotations

import base64
import math
import threading
from datetime import datetime
from decimal import Decimal

import pytest
from sqlmodel import col, select

from market.audit import log, merkle, signing
from market.audit.canonical import NotCanonical, dumps
from market.audit.models import AuditEntry, Checkpoint
from market.config import Settings
from market.db import Database
from tests.audit.conftest import append_many


def _all_entries(database: Database) -> list[AuditEntry]:
    with database.read() as session:
        return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))


def test_append_writes_canonical_entries_with_contiguous_seq(
    database: Database, audit_settings: Settings
) -> None:
    append_many(database, audit_settings, 6)
    entries = _all_entries(database)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    first = entries[0]
    assert first.canonical == dumps(
        {
            "seq": 1,
            "time": first.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "kind": "user.created",
            "subject": "subject-0",
            "actor": None,
            "data": {"index": 0, "price": "5.00", "note": "é ✓", "ratio": 0.1},
        }
    )
    assert '"price":"5.00"' in first.canonical and " " not in first.canonical.replace("é ✓", "")
    for entry in entries:
        assert entry.leaf_hash == merkle.leaf_hash(entry.canonical.encode()).hex()
        assert entry.created_at.tzinfo is not None


def test_checkpoints_every_n_entries_sign_the_root(
    database: Database, audit_settings: Settings
) -> None:
    append_many(database, audit_settings, 9)  # checkpoint_every = 4
    with database.read() as session:
        rows = list(session.exec(select(Checkpoint).order_by(col(Checkpoint.tree_size))))
    assert [c.tree_size for c in rows] == [4, 8]
    leaves = [bytes.fromhex(e.leaf_hash) for e in _all_entries(database)]
    public = signing.load_public_key(signing.public_key_path(audit_settings).read_bytes())
    for row in rows:
        root = merkle.root(leaves[: row.tree_size])
        assert row.root == root.hex()
        text = signing.note_text(audit_settings.audit.origin, row.tree_size, root)
        assert signing.verify_note(public, text, base64.b64decode(row.signature))
    # An explicit checkpoint (at a purchase) covers the current size, once.
    with database.write() as session:
        cp = log.checkpoint(session, audit_settings)
        again = log.checkpoint(session, audit_settings)
    assert cp.tree_size == 9 and again.id == cp.id
    parsed = signing.parse_signed_note(log.checkpoint_json(cp)["note"])
    assert parsed.tree_size == 9 and parsed.root == merkle.root(leaves)


def test_a_rolled_back_append_leaves_no_gap(database: Database, audit_settings: Settings) -> None:
    append_many(database, audit_settings, 2)
    with pytest.raises(RuntimeError), database.write() as session:
        log.append(session, kind="run.started", subject="r1", actor_id=None, data={})
        raise RuntimeError("the use case failed after appending")
    append_many(database, audit_settings, 1, start=2)
    assert [e.seq for e in _all_entries(database)] == [1, 2, 3]


@pytest.mark.parametrize(
    "data",
    [
        {"epsilon": math.nan},
        {"epsilon": math.inf},
        {"when": datetime(2026, 1, 1)},
        {"blob": b"bytes"},
        {"amount": Decimal("NaN")},
        {1: "non-string key"},
    ],
)
def test_values_without_a_canonical_form_are_refused(
    database: Database, audit_settings: Settings, data: dict
) -> None:
    with pytest.raises(NotCanonical), database.write() as session:
        log.append(session, kind="x.y", subject="s", actor_id=None, data=data)
    assert _all_entries(database) == []


def test_inclusion_proof_of_an_entry_verifies_with_the_public_key_only(
    database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    from market.audit.verify import verify_inclusion_evidence

    append_many(database, audit_settings, 7)
    with database.write() as session:
        seqs = log.seqs_for_subject(session, "subject-2") + log.seqs_for_subject(
            session, "subject-6"
        )
        assert seqs == [3, 7]
        evidence = log.receipt_evidence(session, audit_settings, seqs=seqs)
    assert evidence["checkpoint"]["tree_size"] == 7
    for proof in evidence["proofs"]:
        assert verify_inclusion_evidence(proof, public_pem)
    # Any change to the entry, the path or the signed checkpoint fails.
    proof = evidence["proofs"][0]
    assert not verify_inclusion_evidence(
        {**proof, "entry": proof["entry"].replace("subject-2", "subject-X")}, public_pem
    )
    assert not verify_inclusion_evidence({**proof, "path": proof["path"][::-1]}, public_pem)
    forged_cp = {**proof["checkpoint"], "tree_size": 8}
    assert not verify_inclusion_evidence({**proof, "checkpoint": forged_cp}, public_pem)
    other = signing.public_key_pem(
        __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"])
        .Ed25519PrivateKey.generate()
        .public_key()
    )
    assert not verify_inclusion_evidence(proof, other)


def test_consistency_proofs_between_checkpoints(
    database: Database, audit_settings: Settings
) -> None:
    append_many(database, audit_settings, 13)
    with database.read() as session:
        old = log.get_checkpoint(session, tree_size=4)
        new = log.get_checkpoint(session, tree_size=12)
        proof = log.consistency_proof(session, old_size=4, new_size=12)
    assert merkle.verify_consistency(
        4, 12, bytes.fromhex(old.root), bytes.fromhex(new.root), [bytes.fromhex(p) for p in proof]
    )


def test_concurrent_appends_get_unique_gap_free_seq(
    database: Database, audit_settings: Settings
) -> None:
    threads, per_thread = 6, 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with database.write() as session:
                    log.record(
                        session,
                        audit_settings,
                        kind="run.started",
                        subject=f"t{t}-{i}",
                        actor_id=t,
                        data={"i": i},
                    )
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    entries = _all_entries(database)
    assert [e.seq for e in entries] == list(range(1, threads * per_thread + 1))
    assert len({e.subject for e in entries}) == threads * per_thread
    leaves = [bytes.fromhex(e.leaf_hash) for e in entries]
    with database.read() as session:
        for cp in session.exec(select(Checkpoint)):
            assert cp.root == merkle.root(leaves[: cp.tree_size]).hex()


def test_the_head_is_rebuilt_from_the_entries_if_lost(
    database: Database, audit_settings: Settings
) -> None:
    from market.audit.models import AuditHead

    append_many(database, audit_settings, 5)
    with database.write() as session:
        head = session.get(AuditHead, 1)
        assert head is not None
        session.delete(head)
    append_many(database, audit_settings, 1, start=5)
    entries = _all_entries(database)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    with database.write() as session:
        cp = log.checkpoint(session, audit_settings)
    assert cp.root == merkle.root([bytes.fromhex(e.leaf_hash) for e in entries]).hex()


def test_an_export_of_either_database_verifies_offline(
    tmp_path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    from market.audit.export import export_log
    from market.audit.verify import verify_export

    append_many(database, audit_settings, 6)
    out = tmp_path / "log.jsonl"
    assert export_log(database, audit_settings, out) == 6
    report = verify_export(out, public_pem)
    assert report.ok and report.entries == 6, report.summary()
