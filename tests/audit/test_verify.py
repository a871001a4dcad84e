"""The tamper matrix: each way of altering an export is caught and the culprit named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from market.audit import log, signing
from market.audit.export import export_log
from market.audit.verify import verify_export
from market.config import Settings
from market.db import Database
from tests.audit.conftest import append_many

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _entry_line(lines: list[str], seq: int) -> int:
    """Index in ``lines`` of entry ``seq``."""
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj["type"] == "entry" and json.loads(obj["entry"])["seq"] == seq:
            return i
    raise AssertionError(f"no entry {seq}")


def _write(path: Path, lines: list[str]) -> Path:
    out = path.with_name("tampered.jsonl")
    out.write_text("".join(lines), encoding="utf-8")
    return out


def _kept_checkpoint(database: Database, settings: Settings) -> str:
    with database.write() as session:
        return str(log.checkpoint_json(log.checkpoint(session, settings))["note"])


def test_an_untouched_export_verifies(export_file: Path, public_pem: bytes) -> None:
    report = verify_export(export_file, public_pem)
    assert report.ok, report.problems
    assert (report.entries, report.tree_size) == (11, 11)
    assert report.checkpoints == 3  # 4, 8 and the one the export signs at 11
    assert report.warnings == []
    assert "verifies" in report.summary()


@pytest.mark.parametrize("seq", [1, 6, 11])
@pytest.mark.parametrize("position", [2, 15, 40, -3])
def test_editing_any_byte_of_an_entry_names_it(
    export_file: Path, public_pem: bytes, seq: int, position: int
) -> None:
    lines = _lines(export_file)
    i = _entry_line(lines, seq)
    obj = json.loads(lines[i])
    text = obj["entry"]
    pos = position % len(text)
    replacement = "0" if text[pos] != "0" else "1"
    obj["entry"] = text[:pos] + replacement + text[pos + 1 :]
    lines[i] = json.dumps(obj, ensure_ascii=False) + "\n"
    report = verify_export(_write(export_file, lines), public_pem)
    assert not report.ok
    assert report.first_bad_seq == seq, report.summary()
    assert f"entry {seq}" in report.summary()


@pytest.mark.parametrize("seq", [2, 9])
def test_a_raw_byte_flip_in_the_file_names_the_entry(
    export_file: Path, public_pem: bytes, seq: int
) -> None:
    data = bytearray(export_file.read_bytes())
    lines = _lines(export_file)
    i = _entry_line(lines, seq)
    offset = sum(len(line.encode()) for line in lines[:i]) + len(lines[i].encode()) // 2
    data[offset] ^= 0x01
    tampered = export_file.with_name("flipped.jsonl")
    tampered.write_bytes(bytes(data))
    report = verify_export(tampered, public_pem)
    assert report.first_bad_seq == seq, report.summary()


def test_an_edit_rehashed_by_a_forger_is_caught_by_the_signed_root(
    export_file: Path, public_pem: bytes
) -> None:
    from market.audit import merkle

    lines = _lines(export_file)
    i = _entry_line(lines, 6)
    obj = json.loads(lines[i])
    obj["entry"] = obj["entry"].replace("subject-5", "subject-X")
    obj["leaf_hash"] = merkle.leaf_hash(obj["entry"].encode()).hex()
    lines[i] = json.dumps(obj, ensure_ascii=False) + "\n"
    report = verify_export(_write(export_file, lines), public_pem)
    problem = report.first_problem
    assert problem is not None and problem.kind == "root"
    # Entries 1-4 are proven by the checkpoint at 4; the culprit is among 5 to 8.
    assert (problem.seq, problem.checkpoint) == (5, 8)
    assert "entries 5 to 8" in report.summary()


def test_reordering_entries_names_the_first_displaced(export_file: Path, public_pem: bytes) -> None:
    lines = _lines(export_file)
    a, b = _entry_line(lines, 3), _entry_line(lines, 4)
    lines[a], lines[b] = lines[b], lines[a]
    report = verify_export(_write(export_file, lines), public_pem)
    assert report.first_bad_seq == 3
    assert "entry 3 is missing or out of place" in report.summary()


def test_deleting_a_middle_entry_names_it(export_file: Path, public_pem: bytes) -> None:
    lines = _lines(export_file)
    del lines[_entry_line(lines, 7)]
    report = verify_export(_write(export_file, lines), public_pem)
    assert report.first_bad_seq == 7


def test_truncating_the_tail_is_caught_against_a_kept_checkpoint(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    append_many(database, audit_settings, 10)
    kept = _kept_checkpoint(database, audit_settings)  # the auditor keeps size 10
    out = tmp_path / "export.jsonl"
    export_log(database, audit_settings, out)
    # The service (or an attacker) drops entries 9 and 10 and the checkpoints covering them.
    lines = [
        line
        for line in _lines(out)
        if not (
            (
                json.loads(line)["type"] == "entry"
                and json.loads(json.loads(line)["entry"])["seq"] > 8
            )
            or (json.loads(line)["type"] == "checkpoint" and json.loads(line)["tree_size"] > 8)
        )
    ]
    header = json.loads(lines[0])
    lines[0] = json.dumps({**header, "tree_size": 8}) + "\n"  # the forger fixes the header
    truncated = _write(out, lines)
    assert verify_export(truncated, public_pem).ok  # consistent on its own...
    report = verify_export(truncated, public_pem, kept)  # ...but not with what was kept
    assert report.first_problem is not None and report.first_problem.kind == "truncated"
    assert report.first_bad_seq == 9 and "entry 9 is missing" in report.summary()
    # The honest, longer export is consistent with the kept checkpoint.
    append_many(database, audit_settings, 3, start=10)
    export_log(database, audit_settings, out)
    assert verify_export(out, public_pem, kept).ok


def test_a_forged_checkpoint_signature_names_the_checkpoint(
    export_file: Path, public_pem: bytes
) -> None:
    import base64

    lines = _lines(export_file)
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj["type"] == "checkpoint" and obj["tree_size"] == 8:
            forger = Ed25519PrivateKey.generate()
            text = signing.note_text(obj["origin"], 8, bytes.fromhex(obj["root"]))
            obj["signature"] = base64.b64encode(forger.sign(text.encode())).decode()
            lines[i] = json.dumps(obj) + "\n"
    report = verify_export(_write(export_file, lines), public_pem)
    problem = report.first_problem
    assert problem is not None and (problem.kind, problem.checkpoint) == ("signature", 8)
    assert "size 8" in report.summary()


def test_a_fork_same_size_different_root_is_caught(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    """The service signs two histories of the same size; the auditor kept the first."""
    from sqlalchemy import text

    append_many(database, audit_settings, 6)
    kept = _kept_checkpoint(database, audit_settings)
    # Rewrite entry 3 in the database (and its hash, and the head), then re-sign: a
    # well-formed, validly signed log of size 6 that disagrees with the kept checkpoint.
    with database.write() as session:
        session.execute(text("DELETE FROM audit_checkpoints"))
        session.execute(text("DELETE FROM audit_entries WHERE seq >= 3"))
        session.execute(text("DELETE FROM audit_head"))
    with database.write() as session:
        log.append(session, kind="user.created", subject="someone-else", actor_id=None, data={})
    append_many(database, audit_settings, 3, start=3)
    out = tmp_path / "fork.jsonl"
    export_log(database, audit_settings, out)
    assert verify_export(out, public_pem).ok
    report = verify_export(out, public_pem, kept)
    problem = report.first_problem
    assert problem is not None and (problem.kind, problem.checkpoint) == ("fork", 6)
    assert "fork" in report.summary()


def test_a_kept_checkpoint_signed_by_another_key_is_refused(
    export_file: Path, public_pem: bytes
) -> None:
    forger = Ed25519PrivateKey.generate()
    text = signing.note_text("localhost/market/audit", 3, bytes(32))
    note = signing.render_signed_note(
        text, "localhost/market/audit", b"\0\0\0\0", forger.sign(text.encode())
    )
    report = verify_export(export_file, public_pem, note)
    assert report.first_problem is not None and report.first_problem.kind == "signature"


def test_garbage_is_reported_not_raised(tmp_path: Path, public_pem: bytes) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe not json")
    assert not verify_export(bad, public_pem).ok
    bad.write_text("{}\n")
    assert "header" in verify_export(bad, public_pem).summary()


def test_two_signed_checkpoints_of_one_size_with_different_roots_are_a_fork(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    """The service signed a second history of size 4 and shipped both checkpoints."""
    import base64

    from market.audit import merkle

    append_many(database, audit_settings, 6)
    out = tmp_path / "log.jsonl"
    export_log(database, audit_settings, out)
    lines = _lines(out)
    key = signing.load_signing_key(audit_settings)  # the service's own key: a real fork
    root = merkle.root([merkle.leaf_hash(b"another history")] * 4)
    text = signing.note_text(audit_settings.audit.origin, 4, root)
    forked = {
        "type": "checkpoint",
        "origin": audit_settings.audit.origin,
        "tree_size": 4,
        "root": root.hex(),
        "signature": base64.b64encode(key.sign(text.encode())).decode(),
        "key_id": signing.key_id(audit_settings.audit.origin, key.public_key()).hex(),
    }
    lines.insert(2, json.dumps(forked) + "\n")
    report = verify_export(_write(out, lines), public_pem)
    problem = report.first_problem
    assert problem is not None and (problem.kind, problem.checkpoint) == ("fork", 4)
    assert "forked" in report.summary()


def test_a_byte_that_is_not_utf8_names_its_entry(export_file: Path, public_pem: bytes) -> None:
    lines = [line.encode() for line in _lines(export_file)]
    i = _entry_line(_lines(export_file), 5)
    lines[i] = lines[i].replace("é".encode(), b"\xff\xfe")
    tampered = export_file.with_name("not-utf8.jsonl")
    tampered.write_bytes(b"".join(lines))
    report = verify_export(tampered, public_pem)
    assert report.first_bad_seq == 5, report.summary()


def test_a_checkpoint_kept_as_the_api_json_works_too(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    append_many(database, audit_settings, 5)
    with database.write() as session:
        kept = json.dumps(log.checkpoint_json(log.checkpoint(session, audit_settings)))
    append_many(database, audit_settings, 2, start=5)
    out = tmp_path / "log.jsonl"
    export_log(database, audit_settings, out)
    assert verify_export(out, public_pem, kept).ok
    lines = _lines(out)
    del lines[_entry_line(lines, 7)]
    del lines[_entry_line(lines, 6)]
    lines = [
        ln
        for ln in lines
        if json.loads(ln)["type"] != "checkpoint" or json.loads(ln)["tree_size"] <= 5
    ]
    report = verify_export(_write(out, lines), public_pem, kept)
    assert report.first_bad_seq == 6 and "header announces 7" in report.summary()
    header = json.loads(lines[0])
    lines[0] = json.dumps({**header, "tree_size": 5}) + "\n"
    report = verify_export(_write(out, lines), public_pem, kept)
    assert report.ok  # a prefix of size 5 is consistent with a checkpoint of size 5
