"""Fixtures of the audit tests: settings with a signing key, a database, a small real log."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from market.audit import log, signing
from market.audit.export import export_log
from market.config import Settings, load_settings
from market.db import Database, make_engine
from tests.conftest import app_overrides


@pytest.fixture
def audit_settings(tmp_path: Path, database_url: str) -> Settings:
    settings = load_settings(
        overrides=app_overrides(tmp_path, database_url, audit={"checkpoint_every": 4})
    )
    signing.ensure_signing_key(settings)
    return settings


@pytest.fixture
def database(audit_settings: Settings) -> Iterator[Database]:
    db = Database(make_engine(audit_settings.database_url))
    yield db
    db.dispose()


@pytest.fixture
def public_pem(audit_settings: Settings) -> bytes:
    return signing.public_key_path(audit_settings).read_bytes()


def append_many(database: Database, settings: Settings, count: int, *, start: int = 0) -> None:
    """``count`` entries of assorted kinds, each in its own transaction, via ``record``."""
    for i in range(start, start + count):
        with database.write() as session:
            log.record(
                session,
                settings,
                kind="dataset.listed" if i % 2 else "user.created",
                subject=f"subject-{i}",
                actor_id=i % 3 or None,
                data={"index": i, "price": Decimal("5.00"), "note": "é ✓", "ratio": 0.1},
            )


@pytest.fixture
def export_file(tmp_path: Path, database: Database, audit_settings: Settings) -> Path:
    """A real export of 11 entries with checkpoints at 4, 8 and 11."""
    append_many(database, audit_settings, 11)
    out = tmp_path / "audit.jsonl"
    export_log(database, audit_settings, out)
    return out
