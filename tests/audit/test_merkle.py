"""RFC 6962 hashing against published vectors, a brute-force reference and properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.audit import merkle

# The eight leaves of the Certificate Transparency test vectors (RFC 6962 reference code,
# certificate-transparency-go merkle tests) and the published roots for sizes 1 to 8.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_root(entries: list[bytes]) -> bytes:
    """Brute force, bottom-up and independent of merkle.py: hash pairs level by level,
    promoting an odd last node unchanged (which is what the MTH split amounts to)."""
    if not entries:
        return hashlib.sha256(b"").digest()
    level = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def leaves_of(entries: list[bytes]) -> list[bytes]:
    return [merkle.leaf_hash(e) for e in entries]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_certificate_transparency_vectors(size: int) -> None:
    leaves = leaves_of(CT_LEAVES[:size])
    assert merkle.root(leaves).hex() == CT_ROOTS[size - 1]
    assert reference_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]


def test_empty_tree_and_single_leaf() -> None:
    assert merkle.root([]) == hashlib.sha256(b"").digest() == merkle.Frontier().root()
    assert merkle.root([merkle.leaf_hash(b"x")]) == merkle.leaf_hash(b"x")


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    # A leaf whose bytes are two hashes must not collide with the node over them.
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)


@pytest.mark.parametrize("n", range(0, 70))
def test_root_and_frontier_equal_the_reference(n: int) -> None:
    entries = [i.to_bytes(2, "big") for i in range(n)]
    frontier = merkle.Frontier()
    for leaf in leaves_of(entries):
        frontier.append(leaf)
    assert merkle.root(leaves_of(entries)) == reference_root(entries) == frontier.root()
    assert merkle.Frontier.from_hex(n, frontier.to_hex()).root() == frontier.root()


def test_every_inclusion_and_consistency_proof_up_to_33_leaves() -> None:
    all_leaves = leaves_of([i.to_bytes(2, "big") for i in range(33)])
    for n in range(1, 34):
        leaves = all_leaves[:n]
        root_n = merkle.root(leaves)
        for i in range(n):
            proof = merkle.inclusion_proof(leaves, i)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, root_n)
            if n > 1:  # the same path from another position climbs to another root
                assert not merkle.verify_inclusion(leaves[i], (i + 1) % n, n, proof, root_n)
            assert not merkle.verify_inclusion(leaves[i], i, n, proof + [bytes(32)], root_n)
            other = all_leaves[(i + 1) % n] if n > 1 else merkle.leaf_hash(b"other")
            assert not merkle.verify_inclusion(other, i, n, proof, root_n)
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(leaves, m)
            root_m = merkle.root(leaves[:m])
            assert merkle.verify_consistency(m, n, root_m, root_n, proof), (m, n)
            # A different old history is never consistent with this one.
            forged_old = merkle.root([merkle.leaf_hash(b"forged")] + leaves[1:m])
            assert not merkle.verify_consistency(m, n, forged_old, root_n, proof)
            if proof:
                bent = [bytes(32)] + proof[1:]
                assert not merkle.verify_consistency(m, n, root_m, root_n, bent)


def test_inclusion_proof_of_a_ct_vector() -> None:
    # Leaf 0 in the tree of 8: the path is the roots of [1], [2,3], [4..7].
    leaves = leaves_of(CT_LEAVES)
    proof = merkle.inclusion_proof(leaves, 0)
    assert proof == [leaves[1], merkle.root(leaves[2:4]), merkle.root(leaves[4:8])]


def test_truncated_tree_is_not_consistent() -> None:
    leaves = leaves_of([bytes([i]) for i in range(10)])
    old = merkle.root(leaves)
    # Claiming the 10-leaf tree is a prefix of a 7-leaf tree is refused outright.
    assert not merkle.verify_consistency(10, 7, old, merkle.root(leaves[:7]), [])


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(st.binary(max_size=8), min_size=1, max_size=80),
    data=st.data(),
)
def test_proofs_verify_for_random_trees(entries: list[bytes], data: st.DataObject) -> None:
    leaves = leaves_of(entries)
    n = len(leaves)
    root_n = merkle.root(leaves)
    assert root_n == reference_root(entries)
    i = data.draw(st.integers(0, n - 1))
    assert merkle.verify_inclusion(leaves[i], i, n, merkle.inclusion_proof(leaves, i), root_n)
    m = data.draw(st.integers(1, n))
    proof = merkle.consistency_proof(leaves, m)
    assert merkle.verify_consistency(m, n, merkle.root(leaves[:m]), root_n, proof)
    assert len(proof) <= 2 * n.bit_length()
