"""A delivered run to share: a listed dataset, a researcher who bought a real DP training run
through the API and the worker, and helpers shared by the API and browser tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from market.db import utcnow
from market.trading.models import Quote, Run, RunStatus
from tests.ledgers_web.conftest import browser_for  # noqa: F401 - fixtures reused here
from tests.trading.conftest import (  # noqa: F401 - fixtures reused here
    consumer,
    create_draft,
    listed_cancer,
    owner,
    quote_body,
    researcher,
    upload,
    wait_for_run,
)


@pytest.fixture
def delivered_run(
    client,
    listed_cancer,  # noqa: F811
    researcher,  # noqa: F811
    consumer,  # noqa: F811
    wait_for_run,  # noqa: F811
) -> dict[str, Any]:
    """A run bought through the API and trained for real by the worker (small, one epoch)."""
    _, headers = researcher
    quote = client.post(
        "/api/v1/quotes",
        json=quote_body(listed_cancer["id"], epsilon=1.0, epochs=2, batch_size=64),
        headers=headers,
    )
    assert quote.status_code == 201, quote.get_json()
    bought = client.post("/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=headers)
    assert bought.status_code == 202, bought.get_json()
    run = wait_for_run(headers, bought.get_json()["id"])
    assert run["status"] == "succeeded", run
    return run


@pytest.fixture
def failed_run(app) -> Callable[[str, int], str]:
    """A failed run's rows (no model), bought by ``buyer_id``."""

    def seed(dataset_id: str, buyer_id: int) -> str:
        now = utcnow()
        with app.extensions["market"].database.write() as session:
            quote = Quote.model_validate(
                {
                    "id": uuid.uuid4().hex,
                    "dataset_id": dataset_id,
                    "researcher_id": buyer_id,
                    "request": {"epsilon": 0.5},
                    "plan": {"epsilon": 0.5},
                    "estimate": {},
                    "price_total_minor": 100,
                    "currency": "EUR",
                    "fits_budget": True,
                    "epsilon_after": 0.5,
                    "expires_at": now + timedelta(hours=1),
                    "used_at": now,
                }
            )
            session.add(quote)
            session.flush()
            run = Run.model_validate(
                {
                    "id": uuid.uuid4().hex,
                    "quote_id": quote.id,
                    "dataset_id": dataset_id,
                    "buyer_id": buyer_id,
                    "status": RunStatus.FAILED,
                    "price_total_minor": 100,
                    "currency": "EUR",
                    "error_code": "training_failed",
                    "finished_at": now,
                }
            )
            session.add(run)
            return run.id

    return seed
