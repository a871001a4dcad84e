"""Offline verification of an export: no database, no service, only the file and a key.

What an auditor learns, in the order it is checked (the first problem found is the one
named, with the entry's seq or the checkpoint's tree size)::

    1. every checkpoint's signature verifies with the public key the auditor trusts
    2. entries are seq 1, 2, 3, ... in order           (a deleted or moved entry is named)
    3. each entry is canonical JSON and hashes to its recorded leaf hash
                                                        (an edited byte names the entry)
    4. the running Merkle root equals each signed root as the tree reaches its size
                                                        (edits re-hashed by a forger are
                                                         caught here, between two checkpoints)
    5. the auditor's own older checkpoint: its signature, and its root recomputed from the
       first tree_size entries           (a truncated tail or a rewritten history: a fork)
    6. the ledgers re-derived from the entries (market.audit.ledgers): each dataset's
       composed epsilon and cap, each run's cost terms

Step 5 is the consistency check of RFC 9162 done the direct way: holding every entry, the
verifier rebuilds the old root from the prefix instead of walking a consistency proof (a
proof is what a client without the entries uses: ``market.audit.merkle.verify_consistency``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from market.audit import canonical, merkle, signing
from market.audit.export import FORMAT


@dataclass(frozen=True)
class Problem:
    """One failed check; ``seq`` names the first bad entry, ``checkpoint`` a tree size."""

    kind: str
    message: str
    seq: int | None = None
    checkpoint: int | None = None


@dataclass
class VerifyReport:
    origin: str = ""
    entries: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root: str = ""
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # dataset id -> composed epsilon re-derived from the log
    datasets: dict[str, float] = field(default_factory=dict)
    runs_priced: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def first_bad_seq(self) -> int | None:
        return self.problems[0].seq if self.problems else None

    def summary(self) -> str:
        """One sentence: what verified, or the first problem."""
        if self.problems:
            return self.problems[0].message
        return (
            f"the log of {self.origin} verifies: {self.entries} entries, "
            f"{self.checkpoints} signed checkpoints, root {self.root} at size {self.tree_size}; "
            f"{len(self.datasets)} datasets' budgets and {self.runs_priced} runs' costs re-derived"
        )


@dataclass(frozen=True)
class SignedCheckpoint:
    origin: str
    tree_size: int
    root: bytes
    key_hint: bytes
    signature: bytes
    where: str  # for messages: "checkpoint 3 (line 4)" or "your checkpoint"


class _Stop(Exception):
    """The stream cannot be read any further meaningfully; the report says why."""


def parse_checkpoint(text: str, *, where: str = "your checkpoint") -> SignedCheckpoint:
    """A checkpoint as kept by an auditor: the signed note, or the JSON of the API/export."""
    stripped = text.strip()
    if stripped.startswith("{"):
        data = json.loads(stripped)
        if "note" in data and "signature" not in data:
            return parse_checkpoint(data["note"], where=where)
        return SignedCheckpoint(
            origin=str(data["origin"]),
            tree_size=int(data["tree_size"]),
            root=bytes.fromhex(data["root"]),
            key_hint=bytes.fromhex(data.get("key_id", "")),
            signature=base64.b64decode(data["signature"], validate=True),
            where=where,
        )
    note = signing.parse_signed_note(text)
    return SignedCheckpoint(
        note.origin, note.tree_size, note.root, note.key_hint, note.signature, where
    )


def checkpoint_signature_ok(cp: SignedCheckpoint, public_key: Ed25519PublicKey) -> bool:
    text = signing.note_text(cp.origin, cp.tree_size, cp.root)
    if cp.key_hint and cp.key_hint != signing.key_id(cp.origin, public_key):
        return False
    return signing.verify_note(public_key, text, cp.signature)


def verify_export(
    path: Path | str,
    public_key_pem: bytes | str,
    old_checkpoint: str | None = None,
    *,
    semantic: bool = True,
) -> VerifyReport:
    """Verify an export offline (module docstring); a bad file is reported, never raised.

    Raises ValueError only if ``public_key_pem`` is not an Ed25519 public key in PEM.

    ``old_checkpoint`` is the text of a checkpoint the auditor kept from earlier (a signed
    note or its JSON). ``semantic=False`` skips the ledger re-derivation.
    """
    report = VerifyReport()
    public_key = signing.load_public_key(public_key_pem)
    try:
        entries = _verify_structure(Path(path), public_key, old_checkpoint, report)
    except _Stop:
        return report
    if semantic and report.ok:
        rederive(entries, report)
    return report


def rederive(entries: list[dict[str, Any]], report: VerifyReport) -> None:
    """The semantic audit (market.audit.ledgers): append a Problem to ``report`` for every
    mismatch; fill its per-dataset summary."""
    from market.audit import ledgers  # imports the accountant (numpy, opacus): lazily

    privacy = [e for e in entries if e["kind"] in ledgers.PRIVACY_KINDS]
    costs = [e for e in entries if e["kind"] == ledgers.COST_KIND]
    for seq, message, kind in ledgers.rederive_privacy(privacy, report.datasets):
        report.problems.append(Problem(kind, message, seq=seq))
    for seq, message in ledgers.rederive_costs(costs):
        report.problems.append(Problem("cost", message, seq=seq))
    report.runs_priced = len(costs)
    report.problems.sort(key=lambda p: p.seq or 0)


def _fail(report: VerifyReport, problem: Problem) -> _Stop:
    report.problems.append(problem)
    return _Stop(problem.message)


def _verify_structure(
    path: Path,
    public_key: Ed25519PublicKey,
    old_text: str | None,
    report: VerifyReport,
) -> list[dict[str, Any]]:
    """Steps 1 to 5; returns the parsed entries the ledgers need (privacy and cost kinds)."""
    from market.audit import ledgers

    old: SignedCheckpoint | None = None
    if old_text is not None:
        try:
            old = parse_checkpoint(old_text)
        except (ValueError, KeyError, TypeError) as exc:
            raise _fail(
                report, Problem("checkpoint", f"your checkpoint cannot be read: {exc}")
            ) from None
        if not checkpoint_signature_ok(old, public_key):
            raise _fail(
                report,
                Problem(
                    "signature",
                    f"your checkpoint of size {old.tree_size} is not signed by this public key",
                    checkpoint=old.tree_size,
                ),
            )

    # Binary lines, each decoded on its own: a byte that is not UTF-8 is then reported as
    # a fault of the entry on that line, not of the whole file.
    with path.open("rb") as handle:
        lines = iter(handle)
        header = _parse_line(next(lines, b""), 1, report, what="the header")
        if header.get("type") != "header" or header.get("format") != FORMAT:
            raise _fail(report, Problem("format", f"line 1 is not a {FORMAT} header"))
        report.origin = str(header.get("origin", ""))
        if old is not None and old.origin != report.origin:
            raise _fail(
                report,
                Problem(
                    "origin",
                    f"your checkpoint is for the log {old.origin!r}, "
                    f"this export is of {report.origin!r}",
                    checkpoint=old.tree_size,
                ),
            )
        collected = _verify_body(lines, public_key, old, report, ledgers.KINDS)
    announced = header.get("tree_size")
    if isinstance(announced, int) and announced != report.entries:
        # The header is not signed (a forger rewrites it); this catches a partial copy.
        n = report.entries
        raise _fail(
            report,
            Problem(
                "truncated",
                f"entry {min(n, announced) + 1} is missing: the export's header announces "
                f"{announced} entries but it holds {n}",
                seq=min(n, announced) + 1,
            ),
        )
    return collected


def _parse_line(line: bytes, number: int, report: VerifyReport, *, what: str) -> dict[str, Any]:
    try:
        value = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one too
        value = None
    if not isinstance(value, dict):
        seq = None
        if what.startswith("entry "):
            seq = int(what.split()[1])
        raise _fail(
            report, Problem("format", f"{what} (line {number}) is not a JSON object", seq=seq)
        )
    return value


#: The fields of an entry, exactly (``market.audit.log`` writes them canonically).
_ENTRY_FIELDS = frozenset({"seq", "time", "kind", "subject", "actor", "data"})


@dataclass
class _Walk:
    """What the walk over an export's body has verified so far (steps 1 to 5)."""

    public_key: Ed25519PublicKey
    old: SignedCheckpoint | None
    report: VerifyReport
    checkpoints: list[SignedCheckpoint] = field(default_factory=list)
    by_size: dict[int, list[SignedCheckpoint]] = field(default_factory=dict)
    frontier: merkle.Frontier = field(default_factory=merkle.Frontier)
    verified_up_to: int = 0  # the largest signed size whose root the entries reproduced


def _verify_body(
    lines: Iterator[bytes],
    public_key: Ed25519PublicKey,
    old: SignedCheckpoint | None,
    report: VerifyReport,
    semantic_kinds: frozenset[str],
) -> list[dict[str, Any]]:
    """The lines after the header: the signed checkpoints first, then the entries in order;
    returns the entries of ``semantic_kinds``. Raises _Stop at the first problem."""
    walk = _Walk(public_key, old, report)
    collected: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=2):
        seq = walk.frontier.size + 1
        obj = _parse_line(line, number, report, what=f"entry {seq}")
        kind = obj.get("type")
        if kind == "checkpoint":
            _accept_checkpoint(walk, obj, number)
        elif kind == "entry":
            payload = _accept_entry(walk, obj, number, seq)
            if payload["kind"] in semantic_kinds:
                collected.append(payload)
        else:
            raise _fail(
                report, Problem("format", f"line {number} is neither a checkpoint nor an entry")
            )
    _check_the_end(walk)
    return collected


def _accept_checkpoint(walk: _Walk, obj: Mapping[str, Any], number: int) -> None:
    """Step 1: a checkpoint before any entry, of this log, signed by the key, and no two
    signed for one size with different roots."""
    report = walk.report
    if walk.frontier.size:
        raise _fail(
            report,
            Problem(
                "format",
                f"a checkpoint (line {number}) follows the entries: the file was rearranged",
            ),
        )
    cp = _read_checkpoint(obj, number, len(walk.checkpoints) + 1, report)
    if cp.origin != report.origin:
        raise _fail(
            report,
            Problem(
                "origin",
                f"{cp.where} is for the log {cp.origin!r}, not {report.origin!r}",
                checkpoint=cp.tree_size,
            ),
        )
    if not checkpoint_signature_ok(cp, walk.public_key):
        raise _fail(
            report,
            Problem(
                "signature",
                f"{cp.where} of size {cp.tree_size}: its signature does not verify "
                "with this public key (forged or altered)",
                checkpoint=cp.tree_size,
            ),
        )
    for other in walk.by_size.get(cp.tree_size, []):
        if other.root != cp.root:
            raise _fail(
                report,
                Problem(
                    "fork",
                    f"{other.where} and {cp.where} are both signed for size "
                    f"{cp.tree_size} with different roots: the log forked",
                    checkpoint=cp.tree_size,
                ),
            )
    walk.checkpoints.append(cp)
    walk.by_size.setdefault(cp.tree_size, []).append(cp)


def _accept_entry(walk: _Walk, obj: Mapping[str, Any], number: int, seq: int) -> dict[str, Any]:
    """Steps 2 to 5 for entry ``seq``: in place, intact, then added to the tree and the
    tree checked against every signed root of this size and the auditor's own."""
    text, payload = _entry_payload(obj, number, seq, walk.report)
    walk.frontier.append(_entry_leaf(obj, text, payload, number, seq, walk.report))
    _check_signed_roots(walk, seq)
    _check_old_checkpoint(walk, seq)
    return payload


def _entry_payload(
    obj: Mapping[str, Any], number: int, seq: int, report: VerifyReport
) -> tuple[str, dict[str, Any]]:
    """Step 2: the entry's text parses and carries the next sequence number."""
    text = obj.get("entry")
    if not isinstance(text, str):
        raise _fail(
            report, Problem("format", f"entry {seq} (line {number}) has no entry text", seq=seq)
        )
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("seq"), int):
        raise _fail(
            report,
            Problem(
                "entry",
                f"entry {seq} (line {number}) is not a valid entry: it was altered",
                seq=seq,
            ),
        )
    if payload["seq"] != seq:
        found = payload["seq"]
        raise _fail(
            report,
            Problem(
                "sequence",
                f"entry {seq} is missing or out of place: line {number} holds entry {found}",
                seq=seq,
            ),
        )
    return text, payload


def _entry_leaf(
    obj: Mapping[str, Any],
    text: str,
    payload: dict[str, Any],
    number: int,
    seq: int,
    report: VerifyReport,
) -> bytes:
    """Step 3: the text hashes to the recorded leaf hash and is a canonical entry."""
    leaf = merkle.leaf_hash(text.encode("utf-8"))
    if obj.get("leaf_hash") != leaf.hex():
        raise _fail(
            report,
            Problem(
                "entry",
                f"entry {seq} (line {number}) does not hash to its recorded leaf hash: "
                "its bytes were altered",
                seq=seq,
            ),
        )
    if not canonical.is_canonical(text) or set(payload) != _ENTRY_FIELDS:
        raise _fail(
            report,
            Problem(
                "entry",
                f"entry {seq} (line {number}) is not a canonical entry: it was altered",
                seq=seq,
            ),
        )
    return leaf


def _check_signed_roots(walk: _Walk, seq: int) -> None:
    """Step 4: at a signed size, the running root is the signed one."""
    if seq not in walk.by_size:
        return
    root = walk.frontier.root()
    for cp in walk.by_size[seq]:
        if cp.root != root:
            first = walk.verified_up_to + 1
            raise _fail(
                walk.report,
                Problem(
                    "root",
                    f"entries {first} to {seq} do not match the signed "
                    f"checkpoint of size {seq}: an entry among them was altered, "
                    f"first suspect entry {first}",
                    seq=first,
                    checkpoint=seq,
                ),
            )
    walk.verified_up_to = seq


def _check_old_checkpoint(walk: _Walk, seq: int) -> None:
    """Step 5: at the size of the auditor's checkpoint, the running root is its root."""
    old = walk.old
    if old is None or seq != old.tree_size or walk.frontier.root() == old.root:
        return
    raise _fail(
        walk.report,
        Problem(
            "fork",
            f"your checkpoint of size {seq} has root {old.root.hex()} but this "
            f"export's first {seq} entries give {walk.frontier.root().hex()}: the history "
            "was rewritten (a fork)",
            checkpoint=seq,
        ),
    )


def _check_the_end(walk: _Walk) -> None:
    """The report's totals, then what only the end can tell: the empty tree's checkpoint,
    a tail cut short (of the auditor's checkpoint or of one the export carries), an export
    signed nowhere, and entries past the last signed size (a warning)."""
    report, checkpoints, old = walk.report, walk.checkpoints, walk.old
    n = walk.frontier.size
    report.entries = n
    report.checkpoints = len(checkpoints)
    report.tree_size = n
    report.root = walk.frontier.root().hex()
    if 0 in walk.by_size and any(cp.root != merkle.EMPTY_ROOT for cp in walk.by_size[0]):
        raise _fail(
            report,
            Problem("root", "the signed checkpoint of size 0 is not the empty tree", checkpoint=0),
        )
    if old is not None and old.tree_size > n:
        raise _fail(
            report,
            Problem(
                "truncated",
                f"entry {n + 1} is missing: the export ends at entry {n} but your checkpoint "
                f"of size {old.tree_size} covers entries up to {old.tree_size} (truncated)",
                seq=n + 1,
                checkpoint=old.tree_size,
            ),
        )
    beyond = [cp for cp in checkpoints if cp.tree_size > n]
    if beyond:
        raise _fail(
            report,
            Problem(
                "truncated",
                f"entry {n + 1} is missing: the export ends at entry {n} but it carries a "
                f"signed checkpoint of size {beyond[0].tree_size} (truncated)",
                seq=n + 1,
                checkpoint=beyond[0].tree_size,
            ),
        )
    if n and not checkpoints:
        raise _fail(report, Problem("unsigned", "the export carries no signed checkpoint"))
    if walk.verified_up_to < n:
        report.warnings.append(
            f"entries {walk.verified_up_to + 1} to {n} are not covered by a signed checkpoint"
        )


def _read_checkpoint(
    obj: Mapping[str, Any], number: int, index: int, report: VerifyReport
) -> SignedCheckpoint:
    where = f"checkpoint {index} (line {number})"
    try:
        return SignedCheckpoint(
            origin=str(obj["origin"]),
            tree_size=int(obj["tree_size"]),
            root=bytes.fromhex(obj["root"]),
            key_hint=bytes.fromhex(obj.get("key_id", "")),
            signature=base64.b64decode(obj["signature"], validate=True),
            where=where,
        )
    except (KeyError, ValueError, TypeError):
        raise _fail(report, Problem("format", f"{where} cannot be read")) from None


def verify_inclusion_evidence(evidence: Mapping[str, Any], public_key_pem: bytes | str) -> bool:
    """Check a receipt's inclusion proof (``log.InclusionProof.to_json()``) with the key alone.

    True when the checkpoint is signed by the key and the entry's leaf, walked up its path,
    reaches the checkpoint's root.
    """
    public_key = signing.load_public_key(public_key_pem)
    try:
        cp = parse_checkpoint(json.dumps(dict(evidence["checkpoint"])))
        if not checkpoint_signature_ok(cp, public_key):
            return False
        text = evidence["entry"]
        payload = json.loads(text)
        seq = int(evidence["seq"])
        if payload.get("seq") != seq:
            return False
        path = [bytes.fromhex(p) for p in evidence["path"]]
    except (KeyError, ValueError, TypeError):
        return False
    leaf = merkle.leaf_hash(text.encode("utf-8"))
    return merkle.verify_inclusion(leaf, seq - 1, cp.tree_size, path, cp.root)
