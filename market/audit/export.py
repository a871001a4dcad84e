"""Write the log to one JSON Lines file an auditor verifies offline.

Layout (one JSON object per line, UTF-8)::

    {"type": "header", "format": "market-audit-log/1", "origin": ..., "tree_size": n,
     "public_key": "<PEM, informative only: verify with a key obtained elsewhere>",
     "exported_at": ...}
    {"type": "checkpoint", "origin": ..., "tree_size": s, "root": "<hex>",
     "signature": "<base64>", "key_id": "<hex>", "created_at": ..., "note": ...}   (oldest first)
    ...
    {"type": "entry", "leaf_hash": "<hex>", "entry": "<canonical JSON text>"}     (seq 1..n)
    ...

Checkpoints come first so the verifier can stream the entries, checking each signed root
as the running tree reaches its size, with memory for the checkpoints only. An entry is its
canonical text *as a JSON string*, the exact bytes that were hashed; ``leaf_hash`` is a
convenience that lets the verifier name the entry whose bytes changed.

The export signs a checkpoint of the current size first (in its own short write
transaction), then reads up to that size: the file is always fully covered by a signature.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from sqlmodel import col, select

from market.audit import log, signing
from market.audit.canonical import format_time
from market.audit.models import Checkpoint
from market.config import Settings
from market.db import Database, utcnow

FORMAT = "market-audit-log/1"


def sign_for_export(database: Database, settings: Settings) -> int:
    """Sign a checkpoint of the current log (its own short write) and return its size."""
    with database.write() as session:
        return log.checkpoint(session, settings).tree_size


def export_lines(database: Database, settings: Settings, size: int) -> Iterator[str]:
    """The export's lines (each ending in a newline) up to a signed ``size``.

    ``market audit export`` writes them to a file; the auditor's download on the web streams
    them, so both give the same bytes but for ``exported_at``. Raises RuntimeError when the
    log holds fewer entries than the checkpoint covers (nothing valid can be produced).
    """
    public_pem = signing.public_key_pem(signing.load_signing_key(settings).public_key())
    with database.read() as session:
        header = {
            "type": "header",
            "format": FORMAT,
            "origin": settings.audit.origin,
            "tree_size": size,
            "public_key": public_pem,
            "exported_at": format_time(utcnow()),
        }
        yield json.dumps(header, ensure_ascii=False) + "\n"
        checkpoints = session.exec(
            select(Checkpoint)
            .where(col(Checkpoint.tree_size) <= size)
            .order_by(col(Checkpoint.tree_size), col(Checkpoint.id))
        )
        for row in list(checkpoints):
            line = {"type": "checkpoint", **log.checkpoint_json(row)}
            yield json.dumps(line, ensure_ascii=False) + "\n"
        written = 0
        for entry in log.iter_entries(session, up_to=size):
            line = {"type": "entry", "leaf_hash": entry.leaf_hash, "entry": entry.canonical}
            yield json.dumps(line, ensure_ascii=False) + "\n"
            written += 1
    if written != size:
        raise RuntimeError(f"the log has {written} entries up to its checkpoint of size {size}")


def export_log(database: Database, settings: Settings, out: Path) -> int:
    """Write the export to ``out`` (atomically: a partial file never appears); returns n."""
    size = sign_for_export(database, settings)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for line in export_lines(database, settings, size):
                handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return size
