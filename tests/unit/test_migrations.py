"""Alembic is the only way the schema changes: head matches the models on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from market.migrations import alembic_config, upgrade_to_head
from market.models import metadata


def _drift(url: str) -> list:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "target_metadata": metadata}
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    return diff


def test_head_has_no_drift_from_the_models(database_url: str) -> None:
    # database_url is already at head (fixtures migrate it with Alembic, never create_all).
    assert _drift(database_url) == []


def test_downgrade_to_base_and_back_up(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade_to_head(url)
    command.downgrade(alembic_config(url), "base")
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    upgrade_to_head(url)
    assert _drift(url) == []
