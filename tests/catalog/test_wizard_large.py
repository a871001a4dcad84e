"""Files larger than what is read in memory: a CSV is profiled from its first part and
listed whole (it streams); a Parquet file that big is refused at once and nothing stays."""

from __future__ import annotations

import random
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from market.accounts.models import Role
from tests.catalog.conftest import cancer_rows, to_csv, to_parquet
from tests.catalog.test_wizard import (
    _count,
    _inspect,
    list_step,
    listed_files,
    staged_files,
    wizard_fields,
)
from tests.conftest import TEST_PASSWORD, running_app
from tests.helpers import login

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
IN_MEMORY = 64 << 10


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The usual app, reading at most 64 KiB in memory."""
    with running_app(
        tmp_path, database_url, catalog={"max_in_memory_bytes": IN_MEMORY}
    ) as application:
        yield application


def test_a_large_csv_is_profiled_from_its_first_part_and_listed_whole(
    app, client, make_user
) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    body = to_csv(cancer_rows() * 12)  # 6,828 rows, about 190 KB
    assert len(body) > 2 * IN_MEMORY
    page = _inspect(client, body, name="cancer.csv")
    assert page.status_code == 200
    html = unescape(page.get_data(as_text=True))
    assert "in its first part" in html
    fields = wizard_fields(html)
    fields["delta"] = "1e-6"
    listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    with app.extensions["market"].database.read() as session:
        from market.catalog.models import Dataset

        assert session.get(Dataset, fields["draft"]).rows == 6828


def test_a_parquet_file_too_large_to_read_in_memory_is_refused_at_once(
    app, client, make_user
) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    rng = random.Random(3)
    rows = [
        {**row, "mean radius": rng.uniform(5, 30), "mean texture": rng.uniform(5, 40)}
        for row in cancer_rows() * 8
    ]
    body = to_parquet(rows)
    assert len(body) > IN_MEMORY
    page = _inspect(client, body, name="cancer.parquet")
    assert page.status_code == 413
    assert "read in memory" in unescape(page.get_data(as_text=True))
    assert staged_files(app) == [] and listed_files(app) == [] and _count(app) == 0
