"""Proofs from the stored Merkle nodes equal proofs from the full leaf list, and read
O(log n) nodes instead of every leaf.

The node table holds the hash of every perfect subtree, written by the append that
completes it. These tests compare, for every tree size and every leaf (or old size), the
proof the service builds from those rows with RFC 9162's definition over the whole list.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, text
from sqlmodel import select

from market.audit import log, merkle
from market.audit.models import AuditNode, Checkpoint
from market.config import Settings
from market.db import Database
from tests.audit.conftest import append_many


def _nodes_for(leaves: list[bytes]) -> dict[merkle.NodeKey, bytes]:
    frontier = merkle.Frontier()
    nodes: dict[merkle.NodeKey, bytes] = {}
    for leaf in leaves:
        for level, position, h in frontier.append(leaf):
            nodes[(level, position)] = h
    return nodes


def test_node_proofs_equal_list_proofs_up_to_130_leaves_and_read_log_n_nodes() -> None:
    leaves = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(130)]
    for n in range(1, len(leaves) + 1):
        nodes = _nodes_for(leaves[:n])
        read: set[merkle.NodeKey] = set()

        def subtree(start: int, end: int, nodes=nodes, read=read) -> bytes:  # noqa: ANN001
            parts = merkle.perfect_parts(start, end)
            read.update(parts)
            return merkle.fold([nodes[key] for key in parts])

        for i in range(n):
            read.clear()
            assert merkle.inclusion_path(n, i, subtree) == merkle.inclusion_proof(leaves[:n], i)
            assert len(read) <= 2 * n.bit_length()
        for m in range(1, n + 1):
            read.clear()
            assert merkle.consistency_path(m, n, subtree) == merkle.consistency_proof(leaves[:n], m)
            assert len(read) <= 2 * n.bit_length()
        assert merkle.fold([nodes[key] for key in merkle.perfect_parts(0, n)]) == merkle.root(
            leaves[:n]
        )


def test_append_returns_each_perfect_subtree_once_with_its_root() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(64)]
    nodes = _nodes_for(leaves)
    for (level, position), h in nodes.items():
        start = position << level
        assert h == merkle.root(leaves[start : start + (1 << level)])
    # 64 leaves: 64 + 32 + ... + 1 perfect subtrees.
    assert len(nodes) == 127


@contextmanager
def _statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)


def _sign_every_size(database: Database, settings: Settings, count: int) -> None:
    """``count`` entries, a checkpoint signed at every size."""
    for i in range(count):
        with database.write() as session:
            log.append(session, kind="user.created", subject=f"s{i}", actor_id=None, data={"i": i})
            log.checkpoint(session, settings)


def _leaves(database: Database) -> list[bytes]:
    with database.read() as session:
        return log._leaf_hashes(session, log.tree_size(session))


def _checkpoint(session, size: int) -> Checkpoint:  # noqa: ANN001
    return log.get_checkpoint(session, tree_size=size)


def test_service_proofs_from_nodes_equal_proofs_from_the_leaves(
    database: Database, audit_settings: Settings
) -> None:
    _sign_every_size(database, audit_settings, 23)
    leaves = _leaves(database)
    with _statements(database) as seen, database.read() as session:
        for n in range(1, len(leaves) + 1):
            cp = _checkpoint(session, n)
            for seq in range(1, n + 1):
                proof = log.inclusion_proof(session, seq=seq, checkpoint=cp)
                expected = merkle.inclusion_proof(leaves[:n], seq - 1)
                assert proof.path == [p.hex() for p in expected]
            for m in range(1, n + 1):
                got = log.consistency_proof(session, old_size=m, new_size=n)
                assert got == [p.hex() for p in merkle.consistency_proof(leaves[:n], m)]
    # No proof read the leaf hashes of a range of entries: only nodes (and single entries).
    assert not [s for s in seen if "audit_entries.seq <=" in s]
    assert any("audit_nodes" in s for s in seen)


def test_proofs_fall_back_to_the_leaves_where_nodes_are_missing(
    database: Database, audit_settings: Settings
) -> None:
    """A log whose nodes are gone (emptied by hand) still proves correctly, from its leaves."""
    append_many(database, audit_settings, 9)
    leaves = _leaves(database)
    with database.write() as session:
        session.execute(text("DELETE FROM audit_nodes WHERE level = 1"))
    with database.read() as session:
        cp = _checkpoint(session, 8)
        for seq in range(1, 9):
            proof = log.inclusion_proof(session, seq=seq, checkpoint=cp)
            assert proof.path == [p.hex() for p in merkle.inclusion_proof(leaves[:8], seq - 1)]
        assert log.consistency_proof(session, old_size=3, new_size=9) == [
            p.hex() for p in merkle.consistency_proof(leaves, 3)
        ]


def test_every_append_writes_its_nodes_in_its_own_transaction(
    database: Database, audit_settings: Settings
) -> None:
    append_many(database, audit_settings, 5)
    with pytest.raises(RuntimeError), database.write() as session:
        log.append(session, kind="user.created", subject="rolled back", actor_id=None, data={})
        raise RuntimeError("the change it recorded failed")
    with database.read() as session:
        rows = session.exec(select(AuditNode)).all()
        stored = {(r.level, r.position): bytes.fromhex(r.hash) for r in rows}
    assert stored == _nodes_for(_leaves(database))  # 5 leaves: nothing of the 6th
    assert len(stored) == 5 + 2 + 1
