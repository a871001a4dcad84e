"""The service holds out at most ``trading.holdout_max_rows`` rows for a run's metrics:
every plan it makes (quote, purchase, the largest epsilon that fits) trains on the rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from market.trading.models import Quote
from tests.conftest import running_app
from tests.trading.test_recipe_defaults import LAYERS, _quote
from tests.trading.test_recipe_defaults import listed_digits as listed_digits  # fixture

CAP = 20


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    with running_app(tmp_path, database_url, trading={"holdout_max_rows": CAP}) as application:
        yield application


def test_a_quote_on_digits_holds_out_the_cap_not_a_fifth(app, client, listed_digits, researcher):
    _, headers = researcher
    rows = listed_digits["rows"]
    assert rows * 0.2 > CAP  # the cap, not the share, decides here
    quote = _quote(client, headers, listed_digits["id"], {"layers": LAYERS})
    with app.extensions["market"].database.read() as session:
        plan = session.get(Quote, quote["id"]).plan
    assert plan["holdout_rows"] == CAP
    assert plan["train_rows"] == rows - CAP
    assert plan["steps_per_epoch"] == -(-(rows - CAP) // 64)
