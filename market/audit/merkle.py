"""RFC 6962 / RFC 9162 Merkle tree hashing: roots, inclusion and consistency proofs.

Pure functions over bytes: no database, no I/O, so the offline verifier and the service
compute exactly the same thing. Domain separation keeps a leaf from ever posing as a node
(the second-preimage attack on plain Merkle trees)::

    leaf hash  = SHA-256(0x00 || entry bytes)
    node hash  = SHA-256(0x01 || left || right)

The root of n leaves (MTH, RFC 9162 section 2.1.1) splits at k, the largest power of two
smaller than n; the left subtree is always perfect, so the tree of 7 leaves is::

                      root
                /              \\
             k=4                 .
          /      \\            /     \\
        .          .         .        g
       / \\        / \\      / \\
      a   b      c   d    e   f

Appending never changes a perfect left subtree, which is what makes consistency proofs
short: the tree of size m is a prefix of the tree of size n exactly when a handful of
subtree hashes (O(log n)) rebuild both roots.

A *frontier* (``Frontier``) keeps only the roots of the perfect subtrees of the current
size (one per set bit of n), so appending and asking for the root are O(log n) without
holding every leaf: the service keeps it in the audit head row, the verifier folds the
whole export through one.

Proofs without the leaves. Every range a proof names is ``[start, end)`` with ``start``
aligned to a power of two at least ``end - start``, so its root is the fold of at most
log2(n) *perfect* subtrees (``perfect_parts``). A perfect subtree never changes once
complete: the service stores each one as appends complete it (``Frontier.append`` returns
them), and ``inclusion_path``/``consistency_path`` build proofs from a lookup of those
nodes, O(log n) of them, instead of from every leaf hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: MTH({}) = SHA-256 of the empty string (RFC 9162 section 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || entry)."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of *leaf hashes* (not entries), RFC 9162 section 2.1.1."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


@dataclass
class Frontier:
    """The roots of the perfect subtrees making up a tree of ``size`` leaves, left to right.

    There is one hash per set bit of ``size``, largest subtree first; the MTH is those
    hashes folded from the right (which is the MTH's recursive split, unrolled).
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; merges equal-sized subtrees like a binary counter carries.

        Returns the perfect subtrees this append completed, as ``(level, position, hash)``
        (level 0 is the leaf itself; position counts subtrees of that level from 0)."""
        h = leaf
        s = self.size
        level = 0
        completed = [(0, self.size, leaf)]
        while s & 1:
            h = node_hash(self.hashes.pop(), h)
            s >>= 1
            level += 1
            completed.append((level, self.size >> level, h))
        self.hashes.append(h)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def to_hex(self) -> list[str]:
        return [h.hex() for h in self.hashes]

    @classmethod
    def from_hex(cls, size: int, hashes: Sequence[str]) -> Frontier:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a frontier of size {size} has {bin(size).count('1')} hashes")
        return cls(size=size, hashes=[bytes.fromhex(h) for h in hashes])


#: A perfect subtree by ``(level, position)``: leaves ``[position * 2**level, ...)``.
NodeKey = tuple[int, int]


def perfect_parts(start: int, end: int) -> list[NodeKey]:
    """The perfect subtrees whose fold is the root of leaves ``[start, end)``, left to right.

    ``start`` must be aligned to a power of two at least ``end - start`` (true of every
    range a proof names), so the parts follow the binary digits of ``end - start``.
    """
    parts = []
    size = end - start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append((level, start >> level))
            start += 1 << level
    return parts


def fold(parts: Sequence[bytes]) -> bytes:
    """The root of perfect subtrees side by side (``perfect_parts``): folded from the right."""
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def inclusion_path(tree_size: int, index: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """``inclusion_proof`` with ``subtree(start, end)`` giving the root of a leaf range."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} outside a tree of size {tree_size}")
    path: list[bytes] = []
    start, end = 0, tree_size
    while end - start > 1:  # top-down; the path is read leaf to root, so prepend
        k = _split(end - start)
        if index < start + k:
            path.insert(0, subtree(start + k, end))
            end = start + k
        else:
            path.insert(0, subtree(start, start + k))
            start += k
    return path


def consistency_path(
    old_size: int, new_size: int, subtree: Callable[[int, int], bytes]
) -> list[bytes]:
    """``consistency_proof`` with ``subtree(start, end)`` giving the root of a leaf range."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    path: list[bytes] = []
    m, start, end, complete = old_size, 0, new_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            path.insert(0, subtree(start + k, end))
            end = start + k
        else:
            path.insert(0, subtree(start, start + k))
            m, start, complete = m - k, start + k, False
    if not complete:
        path.insert(0, subtree(start, end))
    return path


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1: the audit path of leaf ``index`` (0-based)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_proof(leaves[:k], index) + [root(leaves[k:])]
    return inclusion_proof(leaves[k:], index - k) + [root(leaves[:k])]


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does ``leaf`` sit at ``index`` of the tree with this root?"""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1, n = len(leaves), 0 < m <= n."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from size {old_size} to size {n}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [root(leaves[:k])]


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree (old_size, old_root) a prefix of (new_size, new_root)?

    A rewritten or truncated history cannot produce a proof that passes: the old root is
    rebuilt from hashes that must also rebuild the new one.
    """
    if old_size < 0 or new_size < old_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        # The empty tree is a prefix of everything; RFC 9162 sends no proof for it.
        return not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
